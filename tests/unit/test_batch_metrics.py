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



def test_counters_expose_what_prometheus_clients_counter_exposes() -> None:
    """The process's counters are counted without prometheus_client (a worker that never
    exposes them does not import it); a scrape reads exactly what its Counter gives: the
    same lines in both formats, label sets in the order first counted, ``_created`` on or
    off as prometheus_client's switch says, and the same refusals."""
    from prometheus_client import Counter, disable_created_metrics, enable_created_metrics
    from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

    reference, mine = CollectorRegistry(), CollectorRegistry(auto_describe=True)
    theirs = Counter("baton_t_calls", "Calls, by connection and status",
                     ["connection", "status"], registry=reference)
    ours = metrics.LabelledCounter("baton_t_calls", "Calls, by connection and status",
                                   ["connection", "status"])
    mine.register(ours)  # type: ignore[arg-type]
    for c in (theirs, ours):
        c.labels("crm", 200).inc()
        c.labels("billing", "error").inc(2.5)
        c.labels("crm", "200").inc(3)
        c.labels("ledger", 404)  # a label set counted zero times is still exposed
    got, want = _exposition(mine), _exposition(reference)
    assert got == want
    assert 'baton_t_calls_total{connection="crm",status="200"} 4.0' in got
    mask = re.compile(r"(_created\{[^}]*\}) \S+")
    assert mask.sub("T", openmetrics(mine).decode()) == mask.sub("T", openmetrics(reference).decode())
    disable_created_metrics()
    try:
        assert generate_latest(mine) == generate_latest(reference)
        assert "_created" not in generate_latest(mine).decode()
    finally:
        enable_created_metrics()
    for bad in (lambda c: c.labels("crm"), lambda c: c.labels("crm", 200).inc(-1)):
        for c in (theirs, ours):
            try:
                bad(c)
            except ValueError:
                continue
            raise AssertionError(f"{c} took a bad call")


def test_counting_imports_no_prometheus_client() -> None:
    """The worker counts through this module; prometheus_client is loaded to expose."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src"
    code = ("import sys, json\nfrom baton.runtime import metrics, worker\n"
            "t = metrics.BatchTally(); t.job('step'); t.step('background', 0.01, False); t.flush()\n"
            "metrics.EMAILS.labels('sent').inc()\n"
            "before = 'prometheus_client' in sys.modules\n"
            "r = metrics.process_registry()\n"
            "print(json.dumps([before, r.get_sample_value('baton_emails_total', {'outcome': 'sent'}),"
            " r.get_sample_value('baton_jobs_processed_total', {'kind': 'step'})]))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env["PYTHONPATH"] = str(src)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120, check=True)
    assert json.loads(p.stdout.splitlines()[-1]) == [False, 1.0, 1.0]
