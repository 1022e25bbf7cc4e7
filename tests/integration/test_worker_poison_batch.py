"""A batch one of whose results the database refuses every time (a "poison" job), on both
databases, and a transient error beside it.

* A non-transient error (a constraint, a value out of range, a trigger that refuses the
  row) fails the batch's commit: its results are committed one job per transaction, so the
  good ones land; the one still refused on its own is run again after a wait, and after
  its attempts its step goes to fallout with the error's class and message (never the
  statement's parameters), or, when even the step's failure is refused, an incident is
  opened and the job dropped. The worker goes on with other work all along.
* A transient error (SQLite's write lock held by another connection longer than the lock
  wait) is retried as before, without limit (the batch handed back, the worker backing
  off), and then succeeds: nothing goes to fallout or to an incident.
* The errors both databases raise are sorted in one place, from real errors of real
  servers: transient (``store.is_transient``), refusing the values written
  (``store.refuses_data``: what sends a job to fallout after its attempts), or neither (a
  schema's error: retried without limit, as a transient one).

The poison is a database trigger on one run's row (SQLite ``RAISE(ABORT)``, PostgreSQL a
``check_violation`` with the refused row in its DETAIL, as a CHECK constraint reports it).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from baton import flow
from baton.clock import VirtualClock, iso
from baton.flows import FlowContext
from baton.runtime import worker as worker_module
from baton.runtime.engine import Engine
from baton.runtime.worker import MAX_REFUSED_ATTEMPTS, REFUSED_BACKOFF_MAX, Worker
from baton.store import schema as s
from baton.store.sql import dialects
from baton.web.api.incidents import Incident

from ..procs import eventually

CALLS: Counter[str] = Counter()  # run id -> times its step ship's flow ran
SECRET = "Lovelace"  # personal data: in the refused row, never in what an operator is shown
LOCK: dict[str, Any] = {}  # the transient test: where its flow takes SQLite's write lock


@flow("t_poison.ship")
def _ship(ctx: FlowContext) -> dict[str, Any]:
    CALLS[ctx.run_id] += 1
    return {"to": ctx.record["name"], "n": ctx.record["n"]}


@flow("t_poison.prep")
def _prep(ctx: FlowContext) -> dict[str, Any]:
    return {"ready": True}


@flow("t_poison.hold_lock")
def _hold_lock(ctx: FlowContext) -> dict[str, Any]:
    """The first time, takes SQLite's write lock in another connection and keeps it (the
    test releases it): the batch's commit then waits for the lock and gives up."""
    CALLS[ctx.run_id] += 1
    if "taken" not in LOCK:
        holder = sqlite3.connect(LOCK["path"], isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        LOCK["holder"], LOCK["taken"] = holder, True
    return {"n": ctx.record["n"]}


DEFS = """
kind: object
name: Parcel
fields:
  name: {type: string}
  n: {type: int}
  mode: {type: string, default: one}
---
kind: orchestration
name: t_poison
trigger: {type: record, object: Parcel, on: [create], when: '=record.mode == "one"'}
stages:
  - name: work
    steps:
      - {name: ship, type: background, flow: t_poison.ship}
---
kind: orchestration
name: t_poison_two
trigger: {type: record, object: Parcel, on: [create], when: '=record.mode == "two"'}
stages:
  - name: work
    steps:
      - {name: prep, type: background, flow: t_poison.prep}
      - {name: ship, type: background, flow: t_poison.ship, after: [prep]}
---
kind: orchestration
name: t_poison_lock
trigger: {type: record, object: Parcel, on: [create], when: '=record.mode == "lock"'}
stages:
  - name: work
    steps:
      - {name: ship, type: background, flow: t_poison.hold_lock}
"""


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    CALLS.clear()
    LOCK.clear()
    yield
    holder = LOCK.get("holder")
    if holder is not None:
        holder.close()


def _refuse(engine: Engine, run_id: str, *, only_completion: bool) -> None:
    """Install a trigger that refuses every update of ``run_id``'s row (``only_completion``:
    the update that completes it), as a constraint would: every time the same."""
    assert re.fullmatch(r"[A-Za-z0-9_]+", run_id)
    completing = " AND NEW.status = 'completed'" if only_completion else ""
    if engine.store.dialect == "sqlite":
        sql = [(f"CREATE TRIGGER t_poison BEFORE UPDATE ON baton_runs "
                f"WHEN NEW.id = '{run_id}'{completing} "
                "BEGIN SELECT RAISE(ABORT, 'poison'); END")]
    else:
        sql = [f"""CREATE FUNCTION t_poison() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN
                     IF NEW.id = '{run_id}'{completing} THEN
                       RAISE EXCEPTION 'poison' USING ERRCODE = 'check_violation',
                         DETAIL = 'Failing row contains ' || NEW.state::text;
                     END IF;
                     RETURN NEW;
                   END $$""",
               ("CREATE TRIGGER t_poison BEFORE UPDATE ON baton_runs "
                "FOR EACH ROW EXECUTE FUNCTION t_poison()")]
    with engine.store.write() as tx:
        for statement in sql:
            tx.conn.exec_driver_sql(statement)


def _cure(engine: Engine) -> None:
    with engine.store.write() as tx:
        tx.conn.exec_driver_sql("DROP TRIGGER t_poison" if engine.store.dialect == "sqlite"
                                else "DROP TRIGGER t_poison ON baton_runs")


def _jobs(engine: Engine) -> list[dict[str, Any]]:
    with engine.store.read() as tx:
        return [dict(r._mapping) for r in tx.conn.execute(
            select(s.jobs.c.id, s.jobs.c.run_id, s.jobs.c.status, s.jobs.c.claimed_by,
                   s.jobs.c.attempts, s.jobs.c.run_after))]


def _expected_error(engine: Engine) -> dict[str, str]:
    if engine.store.dialect == "sqlite":
        return {"type": "IntegrityError", "code": "SQLITE_CONSTRAINT_TRIGGER"}
    return {"type": "CheckViolation", "code": "23514"}


def _shows_nothing_of_the_statement(*texts: str) -> None:
    for text in texts:
        for leak in (SECRET, "Failing row", "UPDATE", "baton_runs", "[SQL", "parameters"):
            assert leak not in text, (leak, text)


def _start(engine: Engine, n: int, mode: str = "one") -> tuple[list[str], str]:
    """``n`` parcels, one run each (a job each, ready); the third's run is the poison."""
    recs = engine.create_records("Parcel", [{"name": f"Ada {SECRET} {i}", "n": i, "mode": mode}
                                            for i in range(n)], actor="t")
    by_record = {r.record_id: r.id for r in engine.list_runs(limit=n + 10)}
    runs = [by_record[r["id"]] for r in recs]
    return runs, runs[2]


@pytest.mark.parametrize("mode", ["one", "two"])
def test_the_good_jobs_of_a_refused_batch_land_and_the_poison_goes_to_fallout(
        harness: Any, mode: str, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``one``: a batch of six one-step runs, the poison's step completing its run. ``two``:
    a batch of six first steps, whose plan runs each run's second step in the same batch
    (chained, no job row); the poison's second step is refused, its result dropped, and the
    job queued for that step when the batch was committed one job at a time runs it again."""
    caplog.set_level(logging.WARNING, logger="baton.worker")
    monkeypatch.setattr(worker_module, "CHAIN_SECONDS", 600.0)  # (the chain never runs out)
    harness.deploy_text(DEFS)
    eng: Engine = harness.engine
    runs, poison = _start(eng, 6, mode)
    _refuse(eng, poison, only_completion=True)

    # One batch of six: its commit is refused, then it is committed one job per transaction.
    harness.work()
    chained = 1 if mode == "two" else 0  # (the poison's flow ran once in the chain)
    # (two: the chained results landed; the jobs queued for those steps found them done)
    assert harness.worker.stats.stale == 5 * chained
    assert all(CALLS[r] == 1 for r in runs if r != poison)
    assert {r: eng.get_run(r).status.value for r in runs} == {
        r: "in_progress" if r == poison else "completed" for r in runs}
    (job,) = _jobs(eng)
    assert job["run_id"] == poison and job["status"] == "ready" and job["claimed_by"] is None
    assert job["attempts"] == 1 and job["run_after"] > iso(harness.clock.now())
    assert eng.get_run(poison).steps["ship"].status.value == "running"
    assert CALLS[poison] == 1 + chained

    # The worker goes on with other work while the poison waits for its next attempt.
    later = eng.create_record("Parcel", {"name": "Grace", "n": 100, "mode": mode})
    harness.work()
    (later_run,) = eng.list_runs(record_id=later["id"])
    assert eng.get_run(later_run.id).status.value == "completed"
    assert CALLS[poison] == 1 + chained

    for attempt in range(2, MAX_REFUSED_ATTEMPTS + 1):
        harness.clock.advance(timedelta(seconds=REFUSED_BACKOFF_MAX))
        harness.work()
        assert CALLS[poison] == attempt + chained
        if attempt < MAX_REFUSED_ATTEMPTS:
            assert [(j["status"], j["attempts"]) for j in _jobs(eng)] == [("ready", attempt)]

    # After its attempts: its step is in fallout, with the error's class and message.
    assert _jobs(eng) == []
    sr = eng.get_run(poison).steps["ship"]
    assert sr.status.value == "fallout"
    assert sr.error is not None
    assert {k: sr.error[k] for k in ("type", "code")} == _expected_error(eng)
    assert sr.error["retryable"] is False and sr.error["attempts"] == 1  # (the step's)
    assert sr.error["message"].startswith(
        f"the database refused its result {MAX_REFUSED_ATTEMPTS} times: "
        f"{_expected_error(eng)['type']}: poison"), sr.error
    (entry,) = eng.list_fallout()
    assert entry["id"] == f"{poison}:ship" and entry["error"] == sr.error
    _shows_nothing_of_the_statement(json.dumps(sr.error),
                                    *(r.getMessage() for r in caplog.records))
    assert eng.list_incidents() == []
    # Every other run's flow ran once; each completed once.
    assert all(CALLS[r] == 1 for r in runs if r != poison)

    # The operator removes the cause and retries it: it completes.
    _cure(eng)
    eng.resolve_fallout(f"{poison}:ship", "retry", reason="trigger removed", actor="user:ops")
    harness.work()
    assert eng.get_run(poison).status.value == "completed"
    assert CALLS[poison] == MAX_REFUSED_ATTEMPTS + chained + 1


@pytest.fixture
def engine(tmp_path: Path, db_url: str, clock: VirtualClock) -> Iterator[Engine]:
    (tmp_path / "defs.yaml").write_text(DEFS)
    eng = Engine(db_url, clock=clock)
    eng.deploy([tmp_path / "defs.yaml"], known_flows=None)
    yield eng
    eng.close()


def test_a_job_whose_failure_is_refused_too_opens_an_incident_and_the_worker_goes_on(
        engine: Engine, clock: VirtualClock, caplog: pytest.LogCaptureFixture) -> None:
    """Every write of the poison run is refused, its step's failure too: after its attempts
    its job is dropped with a ``job_failed`` incident. A worker running as ``baton worker``
    does (not until idle) runs the other jobs meanwhile and is still running after."""
    caplog.set_level(logging.WARNING, logger="baton.worker")
    eng = engine
    worker = Worker(eng, poll_interval=0.2, idle_poll=0.2, heartbeat_timeout=3600)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            worker.run()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    runs, poison = _start(eng, 5)
    _refuse(eng, poison, only_completion=False)
    thread = threading.Thread(target=serve, name="t-poison-worker", daemon=True)
    thread.start()
    try:
        def settled(attempts: int) -> bool:
            return [(j["status"], j["attempts"]) for j in _jobs(eng)] == [("ready", attempts)]

        eventually(lambda: all(eng.get_run(r).status.value == "completed"
                               for r in runs if r != poison) and settled(1),
                   timeout=60, what="the good runs completed, the poison handed back")
        more = [r["id"] for r in eng.create_records("Parcel", [{"name": "x", "n": 50 + i}
                                                               for i in range(3)], actor="t")]
        eventually(lambda: all(run.status.value == "completed" for rec in more
                               for run in eng.list_runs(record_id=rec)),
                   timeout=60, what="later runs completed while the poison waits")
        for attempt in range(2, MAX_REFUSED_ATTEMPTS):
            clock.advance(timedelta(seconds=20))  # (past the wait, never past a heartbeat)
            eventually(functools.partial(settled, attempt), timeout=60,
                       what=f"attempt {attempt}")
        clock.advance(timedelta(seconds=20))
        (incident,) = eventually(lambda: eng.list_incidents(), timeout=60,
                                 what="the incident opened")
        assert thread.is_alive() and errors == []
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive() and errors == []
    assert _jobs(eng) == []
    assert CALLS[poison] == MAX_REFUSED_ATTEMPTS
    assert incident["kind"] == "job_failed" and incident["run_id"] == poison
    assert incident["orchestration"] == "t_poison" and incident["expression"] == \
        "step job of step ship"
    assert incident["error"] == f"{_expected_error(eng)['type']}: poison"
    Incident.model_validate(incident)  # as GET /api/incidents answers it
    run = eng.get_run(poison)
    assert run.status.value == "in_progress" and run.steps["ship"].status.value == "running"
    failed = [e for e in eng.timeline(run.record_id or "") if e["type"] == "job_failed"]
    assert [e["data"]["incident"] for e in failed] == [incident["id"]]
    _shows_nothing_of_the_statement(json.dumps(incident), json.dumps(failed),
                                    *(r.getMessage() for r in caplog.records))

    # The operator removes the cause and retries the incident: the job runs again.
    _cure(eng)
    done = eng.retry_incident(incident["id"], reason="trigger removed", actor="user:ops")
    assert done["status"] == "resolved"
    Worker(eng).run(until_idle=True)
    assert eng.get_run(poison).status.value == "completed"
    assert CALLS[poison] == MAX_REFUSED_ATTEMPTS + 1


def test_a_transient_error_is_retried_until_the_database_answers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """SQLite's write lock is held by another connection longer than the lock wait while a
    batch commits (its flow took it): the commit fails as "database is locked", again and
    again, the batch's jobs are handed back each time, and once the lock is released they
    all complete: nothing went to fallout or to an incident, no attempt ran out."""
    caplog.set_level(logging.WARNING, logger="baton.worker")
    monkeypatch.setattr(dialects, "BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(dialects, "_FAST_WAIT_S", 0.05)
    path = tmp_path / "baton.db"
    LOCK["path"] = str(path)
    (tmp_path / "defs.yaml").write_text(DEFS)
    eng = Engine(f"sqlite:///{path}")
    try:
        _retried_until_the_lock_is_released(eng, tmp_path, caplog)
    finally:
        eng.close()


def _retried_until_the_lock_is_released(eng: Engine, tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    eng.deploy([tmp_path / "defs.yaml"], known_flows=None)
    recs = eng.create_records("Parcel", [{"name": "x", "n": i, "mode": "lock"}
                                         for i in range(4)], actor="t")
    worker = Worker(eng, poll_interval=0.2, idle_poll=0.2)
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            worker.run()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    def locked() -> int:
        return sum("database unavailable" in r.getMessage() and "locked" in r.getMessage()
                   for r in caplog.records)

    thread = threading.Thread(target=serve, name="t-poison-lock", daemon=True)
    thread.start()
    try:
        eventually(lambda: locked() >= 3, timeout=60, what="three failures on the lock")
        assert LOCK.get("taken") and _jobs(eng) != []  # (taken by a flow: the commit's)
        LOCK.pop("holder").close()  # the other connection lets go
        eventually(lambda: all(run.status.value == "completed" for rec in recs
                               for run in eng.list_runs(record_id=rec["id"])),
                   timeout=60, what="every run completed")
    finally:
        worker.stop()
        thread.join(30)
    assert not thread.is_alive() and errors == []
    runs = [run for rec in recs for run in eng.list_runs(record_id=rec["id"])]
    assert len(runs) == 4
    for run in runs:
        sr = run.steps["ship"]
        assert sr.status.value == "completed" and sr.attempts == 1 and sr.error is None
        done = [e for e in eng.timeline(run.record_id or "") if e["type"] == "step_completed"]
        assert len(done) == 1
    assert eng.list_fallout() == [] and eng.list_incidents() == []
    assert _jobs(eng) == []
    assert not any("refused" in r.getMessage() for r in caplog.records)


def _raised(engine: Engine, *statements: str, setup: str | None = None) -> DBAPIError:
    """What running ``statements`` (in one transaction) on the store's database raised."""
    with pytest.raises(DBAPIError) as caught, engine.store.write() as tx:
        if setup:
            tx.conn.exec_driver_sql(setup)
        for statement in statements:
            tx.conn.exec_driver_sql(statement)
    return caught.value


def test_database_errors_are_sorted_into_transient_and_not_in_one_place(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real errors of both databases: what may go through on another try (a lock wait that
    ran out, a statement or lock timeout, a server shutting a connection) is transient; what
    refuses what is written (a trigger, a CHECK, a value out of range, a row past a limit)
    is not."""
    monkeypatch.setattr(dialects, "BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(dialects, "_FAST_WAIT_S", 0.05)
    eng = Engine(db_url)
    store = eng.store
    try:
        with store.write() as tx:
            tx.conn.exec_driver_sql("CREATE TABLE t_sort (n INTEGER CHECK (n > 0))")
        refused = [_raised(eng, "INSERT INTO t_sort VALUES (-1)")]
        if store.dialect == "sqlite":
            holder = sqlite3.connect(db_url.split("///", 1)[1], isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
            try:
                transient = [_raised(eng, "SELECT 1")]  # the lock wait runs out
            finally:
                holder.close()
            assert "locked" in str(transient[0])
            with store.write() as tx:
                tx.conn.exec_driver_sql(
                    "CREATE TRIGGER t_sort_poison BEFORE INSERT ON t_sort WHEN NEW.n = 7 "
                    "BEGIN SELECT RAISE(ABORT, 'poison'); END")
            refused.append(_raised(eng, "INSERT INTO t_sort VALUES (7)"))
        else:
            refused += [
                _raised(eng, "SELECT 2147483647::int + 1"),  # 22003: integer out of range
                _raised(eng, "SELECT array_fill(1, ARRAY[200000000])"),  # 54000: a limit
            ]
            transient = [
                _raised(eng, "SELECT pg_sleep(5)", setup="SET LOCAL statement_timeout = 50"),
            ]
            import psycopg

            admin = psycopg.connect(db_url.replace("+psycopg", ""), autocommit=False)
            try:
                admin.execute("LOCK TABLE t_sort IN ACCESS EXCLUSIVE MODE")
                transient.append(_raised(eng, "SELECT * FROM t_sort",
                                         setup="SET LOCAL lock_timeout = 50"))  # 55P03
            finally:
                admin.rollback()
                admin.close()
            codes = [getattr(e.orig, "sqlstate", None) for e in refused + transient]
            assert codes == ["23514", "22003", "54000", "57014", "55P03"]
        assert [store.is_transient(e) for e in refused] == [False] * len(refused)
        assert [store.is_transient(e) for e in transient] == [True] * len(transient)
        assert [store.refuses_data(e) for e in refused] == [True] * len(refused)
        assert [store.refuses_data(e) for e in transient] == [False] * len(transient)
        # A schema's error (a table or column missing: an upgrade half done, old code on a
        # new schema) refuses every write alike: neither transient nor the values' fault,
        # so no job is failed for it (the worker backs off and retries, as before).
        schema = _raised(eng, "SELECT nope FROM t_sort")
        assert not store.refuses_data(schema) and not store.is_transient(schema)
    finally:
        eng.close()
