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


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits -> 2 characters


def _b32_80(v: int, p: list[str] = _PAIRS) -> str:
    """``_b32(v, 16)`` for ``v`` < 2**80, two characters per lookup, unrolled: an id is
    made for every run, record, work item and incident, and the loop cost ~4 µs of it."""
    return (p[v >> 70] + p[v >> 60 & 1023] + p[v >> 50 & 1023] + p[v >> 40 & 1023]
            + p[v >> 30 & 1023] + p[v >> 20 & 1023] + p[v >> 10 & 1023] + p[v & 1023])


class IdGenerator(Protocol):
    def new(self, prefix: str) -> str: ...


class UlidIds:
    """48 bits of milliseconds + 80 random bits, monotonic within a process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._last_rand = 0
        self._ms_text = ""  # _b32(self._last_ms, 10): the same for every id of a millisecond

    def new(self, prefix: str) -> str:
        with self._lock:
            ms = int(time.time() * 1000)
            if ms <= self._last_ms:
                self._last_rand += 1
            else:
                self._last_rand = int.from_bytes(os.urandom(10), "big") >> 1
                self._last_ms = ms
                self._ms_text = _b32(ms, 10)
            # (80 bits: the random part starts below 2**79, so a millisecond's +1s stay below)
            text = self._ms_text + _b32_80(self._last_rand)
        return f"{prefix}_{text}"


class SequentialIds:
    """Deterministic ids for tests: ``run_000001``, ``run_000002`` …"""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def new(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}_{next(self._counter):06d}"
