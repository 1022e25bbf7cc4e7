"""Identifiers: time-ordered, prefixed by kind (``run_01J…``), injectable for tests."""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Protocol

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


class IdGenerator(Protocol):
    def new(self, prefix: str) -> str: ...


class UlidIds:
    """48 bits of milliseconds + 80 random bits, monotonic within a process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._last_rand = 0

    def new(self, prefix: str) -> str:
        with self._lock:
            ms = int(time.time() * 1000)
            if ms <= self._last_ms:
                ms = self._last_ms
                self._last_rand += 1
            else:
                self._last_rand = int.from_bytes(os.urandom(10), "big") >> 1
            self._last_ms = ms
            rand = self._last_rand
        return f"{prefix}_{_b32(ms, 10)}{_b32(rand, 16)}"


class SequentialIds:
    """Deterministic ids for tests: ``run_000001``, ``run_000002`` …"""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def new(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}_{next(self._counter):06d}"
