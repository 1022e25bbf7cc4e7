"""Running Baton in production (issue 16 point 4): liveness, readiness and Prometheus
metrics whose values match the database."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from baton.clock import iso
from baton.runtime.metrics import process_registry
from tests.api.conftest import FLAKY, Api


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_healthz_answers_without_credentials(api: Api) -> None:
    r = api.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_readyz_needs_a_heartbeating_worker_and_a_migrated_database(api: Api) -> None:
    r = api.client.get("/readyz")
    assert r.status_code == 503, r.text
    body = r.json()
    assert body["checks"]["database"]["ok"] and body["checks"]["schema"]["ok"], body
    assert not body["checks"]["workers"]["ok"] and "heartbeat" in body["checks"]["workers"]["detail"]

    store = api.engine.store
    store.register_worker("w-ready", store.host(), 1, iso(api.clock.now()))
    r = api.client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready", r.text


def test_readyz_says_which_migration_the_database_lacks(api: Api) -> None:
    """Every migration applied, not only the highest: a database missing one in the middle
    (a branch build's numbering) is not ready, and the check names it."""
    store = api.engine.store
    store.register_worker("w-ready", store.host(), 1, iso(api.clock.now()))
    with store.write() as tx:
        name = tx.conn.exec_driver_sql(
            "SELECT name FROM baton_schema_migrations WHERE version = 13").scalar_one()
        tx.conn.exec_driver_sql("DELETE FROM baton_schema_migrations WHERE version = 13")
    r = api.client.get("/readyz")
    assert r.status_code == 503, r.text
    schema = r.json()["checks"]["schema"]
    assert not schema["ok"] and schema["missing"] == [name], schema


def test_metrics_match_the_database(api: Api) -> None:
    assert api.client.get("/metrics").status_code == 401
    assert api.get("ann", "/metrics").status_code == 403  # an agent does not read runs

    here = process_registry()  # this process's counters: compared before and after

    def attempts(outcome: str) -> float:
        return here.get_sample_value("baton_step_attempts_total",
                                     {"step_type": "background", "outcome": outcome}) or 0.0

    before = attempts("completed"), attempts("failed")
    api.post("root", "/api/definitions/deploy", {"files": {"flaky.yaml": FLAKY}})
    for i in range(3):
        api.new_case(f"Invoice {i} wrong", number=i)
    r = api.post("opal", "/api/runs", {"orchestration": "flaky_job", "input": {"n": 1}})
    assert r.status_code == 201, r.text
    api.work()  # boom fails its one attempt (retry max 1): the step is in fallout

    r = api.get("opal", "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    got = samples(r.text)

    def value(name: str, **labels: str) -> float:
        return got.get((name, tuple(sorted(labels.items()))), 0.0)

    runs = api.engine.list_runs(limit=1000)
    by: dict[str, int] = {}
    for run in runs:
        if run.status.value == "in_progress":
            by[run.orchestration] = by.get(run.orchestration, 0) + 1
    assert by and all(value("baton_runs_in_progress", orchestration=orch) == n
                      for orch, n in by.items()), (by, got)
    assert value("baton_steps_in_fallout", orchestration="flaky_job") == 1

    items = api.engine.list_work(limit=1000)
    open_by: dict[str, int] = {}
    for item in items:
        open_by[item["assignee"]] = open_by.get(item["assignee"], 0) + 1
    seen: dict[str, float] = {}
    for (name, labels), v in got.items():
        if name == "baton_work_items_open":
            d = dict(labels)
            seen[d["assignee"]] = seen.get(d["assignee"], 0) + v
    assert seen == open_by and sum(open_by.values()) == 3, (seen, open_by)

    # What this process's worker did: background step attempts (classify and find_agent of
    # each case; boom's one attempt), each timed by step type.
    assert (attempts("completed") - before[0], attempts("failed") - before[1]) == (6, 1)
    assert value("baton_step_duration_seconds_count", step_type="background") == sum(
        value("baton_step_attempts_total", step_type="background", outcome=o)
        for o in ("completed", "failed"))
    assert value("baton_workers_alive") == 0  # api.work() ran and unregistered its worker
    lag: Any = value("baton_job_lag_seconds")
    assert lag == 0.0
