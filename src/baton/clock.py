"""The only place Baton reads the time.

Everything else receives a :class:`Clock`, so the same code runs on real time
(production) and on virtual time (tests, the simulator).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""
        ...


class SystemClock:
    """Wall-clock time in UTC, shifted by ``offset``.

    The offset is for drills and tests across processes, where a virtual clock cannot be
    shared: ``BATON_CLOCK_OFFSET=7200 baton worker`` (``Settings.clock_offset``) behaves as
    if two hours had passed, so timers due within them fire. Never shift it in production.
    """

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class VirtualClock:
    """A clock that only moves when told to; thread-safe."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when


@lru_cache(maxsize=256)
def iso(dt: datetime) -> str:
    """ISO 8601 with milliseconds and a Z suffix: the one textual time format Baton stores.

    Memoized: a decision formats the same instant many times (every event, every step)."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    dt = datetime.fromisoformat(text)  # 3.11 reads a "Z" suffix itself
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


__all__ = ["Clock", "SystemClock", "VirtualClock", "iso", "parse_iso", "timedelta"]
