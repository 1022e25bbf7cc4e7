"""Retry policy: backoff values, caps and deterministic jitter (pure)."""

from __future__ import annotations

from datetime import timedelta

from baton.engine.policy import RetryPolicy, duration


def test_exponential_backoff_doubles_and_is_capped() -> None:
    p = RetryPolicy.from_options({"max": 6, "initial": "10s", "max_delay": "1m"})
    assert [p.delay(n, "k").total_seconds() for n in range(1, 6)] == [10, 20, 40, 60, 60]


def test_fixed_backoff() -> None:
    p = RetryPolicy.from_options({"max": 3, "backoff": "fixed", "initial": "30s"})
    assert {p.delay(n, "k") for n in (1, 2, 3)} == {timedelta(seconds=30)}


def test_jitter_is_deterministic_and_within_half_to_full_delay() -> None:
    p = RetryPolicy.from_options({"max": 3, "initial": "10s", "jitter": True})
    delays = [p.delay(1, f"run-{i}:step:1") for i in range(50)]
    assert all(timedelta(seconds=5) <= d < timedelta(seconds=10) for d in delays)
    assert len(set(delays)) > 40  # spread out, not lock-step
    assert delays == [p.delay(1, f"run-{i}:step:1") for i in range(50)]  # same every time


def test_step_policy_wins_over_the_orchestration_default_and_no_policy_means_no_retry() -> None:
    assert RetryPolicy.from_options(None, None).max == 0
    assert RetryPolicy.from_options(None, {"max": 2}).max == 2
    assert RetryPolicy.from_options({"max": 5}, {"max": 2}).max == 5


def test_durations() -> None:
    assert duration("250ms") == timedelta(milliseconds=250)
    assert duration("2h") == timedelta(hours=2)
    assert duration("1d") == timedelta(days=1)
