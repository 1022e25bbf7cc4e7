"""A worker's metrics are added once per batch (``BatchTally``), and the step-duration
histogram takes many observations at a time (``StepSeconds``): what a scrape reads must be
exactly what ``prometheus_client``'s own Histogram and Counters, updated step by step, give."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from baton.runtime import metrics
from baton.runtime.metrics import BatchTally, StepSeconds

BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0)
# On a bound, just below and above it, zero, the largest bucket and beyond it (+Inf).
VALUES = [0.0, 0.0005, 0.001, 0.0010001, 0.005, 0.03, 0.1, 0.7, 5.0, 29.9, 600.0, 601.0,
          1e9, 0.001, 0.2]


def _exposition(registry: CollectorRegistry) -> list[str]:
    """The text a scrape reads, ``_created`` values (times) masked."""
    text = generate_latest(registry).decode()
    return [re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", line) for line in text.splitlines()]


def test_step_seconds_exposes_what_a_histogram_observed_one_by_one_exposes() -> None:
    reference = CollectorRegistry()
    hist = Histogram(StepSeconds.name, StepSeconds.documentation, ["step_type"],
                     registry=reference, buckets=BUCKETS)
    mine = CollectorRegistry()
    batched = StepSeconds(BUCKETS)
    mine.register(batched)

    for v in VALUES:
        hist.labels("background").observe(v)
    hist.labels("callout").observe(0.02)
    batched.add("background", VALUES[:4])  # in batches of any size, in any split
    batched.add("background", VALUES[4:])
    batched.add("callout", [0.02])

    got, want = _exposition(mine), _exposition(reference)
    assert got == want
    assert 'baton_step_duration_seconds_bucket{le="0.001",step_type="background"} 4.0' in got
    assert 'baton_step_duration_seconds_bucket{le="+Inf",step_type="background"} 15.0' in got
    assert mine.get_sample_value("baton_step_duration_seconds_sum",
                                 {"step_type": "background"}) == sum(VALUES)


def test_a_batch_tally_adds_to_the_process_metrics_only_when_flushed() -> None:
    registry = metrics.process_registry()

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    jobs0 = value("baton_jobs_processed_total", kind="t_tally.kind")
    done0 = value("baton_step_attempts_total", step_type="t_tally", outcome="completed")
    failed0 = value("baton_step_attempts_total", step_type="t_tally", outcome="failed")
    count0 = value("baton_step_duration_seconds_count", step_type="t_tally")

    tally = BatchTally()
    for _ in range(3):
        tally.job("t_tally.kind")
    tally.step("t_tally", 0.002, False)
    tally.step("t_tally", 0.5, False)
    tally.step("t_tally", 0.003, True)
    assert value("baton_jobs_processed_total", kind="t_tally.kind") == jobs0  # not yet

    tally.flush()
    tally.flush()  # (nothing twice)
    assert value("baton_jobs_processed_total", kind="t_tally.kind") == jobs0 + 3
    assert value("baton_step_attempts_total", step_type="t_tally", outcome="completed") \
        == done0 + 2
    assert value("baton_step_attempts_total", step_type="t_tally", outcome="failed") \
        == failed0 + 1
    assert value("baton_step_duration_seconds_count", step_type="t_tally") == count0 + 3
    assert value("baton_step_duration_seconds_bucket", step_type="t_tally", le="0.005") >= 2


def test_observe_step_still_counts_one_attempt() -> None:
    registry = metrics.process_registry()
    before = registry.get_sample_value("baton_step_attempts_total",
                                       {"step_type": "t_one", "outcome": "failed"}) or 0.0
    metrics.observe_step("t_one", 0.01, True)
    assert registry.get_sample_value("baton_step_attempts_total",
                                     {"step_type": "t_one", "outcome": "failed"}) == before + 1
    assert registry.get_sample_value("baton_step_duration_seconds_count",
                                     {"step_type": "t_one"}) is not None

