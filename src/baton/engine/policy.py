"""Retry policy and backoff: pure functions of the step's options and the attempt number.

``retry: {max: 3, backoff: exponential, initial: 10s, max_delay: 10m, jitter: true}``

- ``max``: how many times a failed attempt is retried (so ``max: 3`` allows 4 attempts);
  default 0 (no retry) when a step and its orchestration give no policy.
- ``backoff``: ``exponential`` (default: initial, 2x initial, 4x initial …) or ``fixed``.
- ``initial``: the first delay (default 10s); ``max_delay`` caps every delay (default 10m).
- ``jitter``: spread the delay over [delay/2, delay) so failed attempts of many runs do not
  retry in lock-step. Deterministic: derived from a hash of run, step, iteration and
  attempt, so virtual-time tests (and replays) see the same schedule every time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from baton.definitions.checks import MAX_DURATION_MS

_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_DURATION = timedelta(milliseconds=MAX_DURATION_MS)
"""The longest duration a definition may give (100 years, ``definitions/checks.py``)."""


def duration_ms(text: str) -> int:
    """Milliseconds of ``30s``, ``10m``, ``4h``, ``2d``, ``250ms`` (already validated), as
    written: more than :data:`MAX_DURATION` for an older definition stored before
    validation bounded them (a number of more than 18 digits: one more than the bound)."""
    for unit in ("ms", "s", "m", "h", "d"):
        digits = text[: -len(unit)]
        if text.endswith(unit) and digits.isdigit() and digits.isascii():
            return int(digits) * _UNIT_MS[unit] if len(digits) <= 18 else MAX_DURATION_MS + 1
    raise ValueError(f"not a duration: {text!r}")


@lru_cache(maxsize=1024)
def duration(text: str) -> timedelta:
    """``30s``, ``10m``, ``4h``, ``2d``, ``250ms`` -> timedelta (already validated).

    At most :data:`MAX_DURATION`: a longer one (an older stored definition) counts as 100
    years, never due in practice, rather than an OverflowError in the step that starts it
    (``99999999999d`` is no timedelta; ``now + 3000000d`` is no date). A pause step says
    so instead (``steps/pause.py``).

    Memoized: a definition names a few durations, read again at every step start (an SLA's
    two, a job's timeout); a timedelta is immutable, so sharing one is safe."""
    return timedelta(milliseconds=min(duration_ms(text), MAX_DURATION_MS))


@dataclass(frozen=True)
class RetryPolicy:
    max: int = 0
    backoff: str = "exponential"
    initial: timedelta = timedelta(seconds=10)
    max_delay: timedelta = timedelta(minutes=10)
    jitter: bool = False

    @classmethod
    def from_options(cls, step: Mapping[str, Any] | None,
                     default: Mapping[str, Any] | None = None) -> RetryPolicy:
        """The step's ``retry`` mapping, else the orchestration's, else no retries."""
        spec = step if step is not None else default
        if not spec:
            return cls()
        return cls(
            max=int(spec.get("max", 3)),
            backoff=str(spec.get("backoff", "exponential")),
            initial=duration(spec["initial"]) if "initial" in spec else cls.initial,
            max_delay=duration(spec["max_delay"]) if "max_delay" in spec else cls.max_delay,
            jitter=bool(spec.get("jitter", False)),
        )

    def delay(self, retry: int, key: str) -> timedelta:
        """Delay before retry number ``retry`` (1-based); ``key`` seeds the jitter."""
        base = self.initial
        if self.backoff != "fixed":
            # Doubled until max_delay caps it (initial x 2^(n-1) is no timedelta once n
            # is in the forties: max: 100 with initial: 10s would overflow).
            for _ in range(retry - 1):
                if base >= self.max_delay or not base:
                    break
                base *= 2
        base = min(base, self.max_delay)
        if not self.jitter:
            return base
        digest = hashlib.sha256(f"{key}:{retry}".encode()).digest()
        fraction = int.from_bytes(digest[:8], "big") / 2**64  # [0, 1)
        return base / 2 + (base / 2) * fraction
