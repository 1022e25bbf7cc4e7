"""``baton_runs_started_total`` and ``baton_runs_ended_total``: true counters of what this
process committed, on both databases, with real orchestrations run by a real worker (and,
last, what a worker's JSON log line about a failed callout says: its run's and record's ids,
the URL called without its query).

* Runs started (``baton start``'s path, child runs started by a worker's commit) count once
  each; runs ended count once per run leaving ``in_progress``, by status: completed and
  failed by the worker, canceled by an operator (the API's path) and by the worker (a
  canceled parent's children). A failed run that is resumed ends again; its resume starts
  nothing.
* A batch whose commit fails and is committed again counts its runs once: the database
  refusing one result's values (the poison path: the batch then committed one job per
  transaction), and SQLite's write lock held by another connection (the batch handed back
  and run again).

The counters are this process's, shared by every test: each test compares them before and
after, on orchestration names of its own.
"""

from __future__ import annotations

import io
import json
import logging
import re
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from baton import flow, logs
from baton.errors import StepFailure
from baton.flows import FlowContext
from baton.runtime import metrics
from baton.runtime import worker as worker_module
from baton.runtime.engine import Engine
from baton.runtime.worker import REFUSED_BACKOFF_MAX, Worker
from baton.store.sql import dialects

from ..net import free_port
from ..procs import eventually

LOCK: dict[str, Any] = {}  # the lock test: the file, and the connection holding its lock


@flow("t_count.ok")
def _ok(ctx: FlowContext) -> dict[str, Any]:
    return {"done": True}


@flow("t_count.boom")
def _boom(ctx: FlowContext) -> dict[str, Any]:
    raise StepFailure("the other side said no", retryable=False)


@flow("t_count.hold_lock")
def _hold_lock(ctx: FlowContext) -> dict[str, Any]:
    """The first time, takes SQLite's write lock in another connection and keeps it (the test
    lets go): the batch's commit waits for the lock and gives up, again and again."""
    if "taken" not in LOCK:
        holder = sqlite3.connect(LOCK["path"], isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
        LOCK["holder"], LOCK["taken"] = holder, True
    return {"done": True}


DEFS = """
kind: orchestration
name: t_count_ok
trigger: {type: autolaunched}
stages:
  - name: work
    steps:
      - {name: go, type: background, flow: t_count.ok}
---
kind: orchestration
name: t_count_fail
trigger: {type: autolaunched}
stages:
  - name: work
    steps:
      - {name: go, type: background, flow: t_count.boom, on_failure: fail_run}
---
kind: orchestration
name: t_count_parent
trigger: {type: autolaunched}
stages:
  - name: work
    steps:
      - {name: prep, type: background, flow: t_count.ok}
      - {name: kids, type: orchestration, orchestration: t_count_child, for_each: '=[1, 2, 3]',
         after: [prep]}
---
kind: orchestration
name: t_count_child
trigger: {type: autolaunched}
stages:
  - name: work
    steps:
      - {name: cool_off, type: pause, for: 2h}
---
kind: orchestration
name: t_count_two
trigger: {type: autolaunched}
stages:
  - name: work
    steps:
      - {name: prep, type: background, flow: t_count.ok}
      - {name: go, type: background, flow: t_count.ok, after: [prep]}
---
kind: orchestration
name: t_count_lock
trigger: {type: autolaunched}
stages:
  - name: work
    steps:
      - {name: go, type: background, flow: t_count.hold_lock}
"""

RECORD_DEFS = """
kind: object
name: Ticket
fields:
  title: {type: string}
---
kind: orchestration
name: t_count_ticket
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: work
    steps:
      - {name: review, type: interactive, label: Review it, assign: {user: eve}}
"""

STATUSES = ("completed", "failed", "canceled")


def _counts(*names: str) -> dict[str, int]:
    """This process's counters as ``/metrics`` shows them, for these orchestrations:
    ``NAME started`` and ``NAME STATUS`` (0 where a series is absent)."""
    registry = metrics.process_registry()
    out: dict[str, int] = {}
    for name in names:
        got = registry.get_sample_value("baton_runs_started_total", {"orchestration": name})
        out[f"{name} started"] = int(got or 0)
        for status in STATUSES:
            got = registry.get_sample_value("baton_runs_ended_total",
                                            {"orchestration": name, "status": status})
            out[f"{name} {status}"] = int(got or 0)
    return out


def _moved(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    LOCK.clear()
    yield
    holder = LOCK.pop("holder", None)
    if holder is not None:
        holder.close()


def test_runs_started_and_ended_are_counted_once_each_by_the_process_that_committed_them(
        harness: Any) -> None:
    harness.deploy_text(DEFS)
    eng: Engine = harness.engine
    names = ("t_count_ok", "t_count_fail", "t_count_parent", "t_count_child")
    before = _counts(*names)

    ok = [eng.start("t_count_ok", actor="t") for _ in range(4)]
    failing = [eng.start("t_count_fail", actor="t") for _ in range(3)]
    dropped = eng.start("t_count_ok", actor="t")
    eng.cancel_run(dropped.id, "not wanted", actor="user:ops")  # before its step ran
    parent = eng.start("t_count_parent", actor="t")
    assert _moved(before, _counts(*names)) == {
        "t_count_ok started": 5, "t_count_ok canceled": 1, "t_count_fail started": 3,
        "t_count_parent started": 1}

    harness.work()  # the steps run; the parent's children start in the worker's commit
    assert all(eng.get_run(r.id).status.value == "completed" for r in ok)
    assert all(eng.get_run(r.id).status.value == "failed" for r in failing)
    children = [r for r in eng.list_runs(limit=100) if r.orchestration == "t_count_child"]
    assert len(children) == 3 and all(c.status.value == "in_progress" for c in children)
    assert _moved(before, _counts(*names)) == {
        "t_count_ok started": 5, "t_count_ok completed": 4, "t_count_ok canceled": 1,
        "t_count_fail started": 3, "t_count_fail failed": 3,
        "t_count_parent started": 1, "t_count_child started": 3}

    # The parent canceled (the API's path): its children are canceled by the worker.
    eng.cancel_run(parent.id, "customer withdrew", actor="user:ops")
    harness.work()
    assert all(eng.get_run(c.id).status.value == "canceled" for c in children)
    # A failed run resumed: nothing starts; its step fails again, and the run ends again.
    eng.resume_run(failing[0].id, "the other side is fixed", actor="user:ops")
    harness.work()
    assert eng.get_run(failing[0].id).status.value == "failed"
    # Work that moves no run counts nothing.
    harness.work()
    assert _moved(before, _counts(*names)) == {
        "t_count_ok started": 5, "t_count_ok completed": 4, "t_count_ok canceled": 1,
        "t_count_fail started": 3, "t_count_fail failed": 4,
        "t_count_parent started": 1, "t_count_parent canceled": 1,
        "t_count_child started": 3, "t_count_child canceled": 3}


def test_a_plans_orchestration_counts_as_plan() -> None:
    """One label for every plan's runs (``plan:ORDER_ID``), as the other metrics have it."""
    before = _counts("plan")
    metrics.count_runs([("plan:o-1", metrics.STARTED), ("plan:o-2", metrics.STARTED),
                        ("plan:o-1", "completed")])
    assert _moved(before, _counts("plan")) == {"plan started": 2, "plan completed": 1}
    assert metrics.process_registry().get_sample_value(
        "baton_runs_started_total", {"orchestration": "plan:o-1"}) is None


def _refuse_completion(eng: Engine, run_id: str) -> None:
    """A trigger refusing the update that completes ``run_id``, as a constraint would."""
    assert re.fullmatch(r"[A-Za-z0-9_]+", run_id)
    if eng.store.dialect == "sqlite":
        sql = [(f"CREATE TRIGGER t_count_poison BEFORE UPDATE ON baton_runs WHEN NEW.id = "
                f"'{run_id}' AND NEW.status = 'completed' BEGIN SELECT RAISE(ABORT, 'poison'); END")]
    else:
        sql = [f"""CREATE FUNCTION t_count_poison() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN
                     IF NEW.id = '{run_id}' AND NEW.status = 'completed' THEN
                       RAISE EXCEPTION 'poison' USING ERRCODE = 'check_violation';
                     END IF;
                     RETURN NEW;
                   END $$""",
               ("CREATE TRIGGER t_count_poison BEFORE UPDATE ON baton_runs "
                "FOR EACH ROW EXECUTE FUNCTION t_count_poison()")]
    with eng.store.write() as tx:
        for statement in sql:
            tx.conn.exec_driver_sql(statement)


def _cure(eng: Engine) -> None:
    with eng.store.write() as tx:
        tx.conn.exec_driver_sql("DROP TRIGGER t_count_poison" if eng.store.dialect == "sqlite"
                                else "DROP TRIGGER t_count_poison ON baton_runs")


@pytest.mark.parametrize("name", ["t_count_ok", "t_count_two"])
def test_a_batch_the_database_refuses_once_counts_each_run_once(
        harness: Any, name: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Six runs in one batch, the third's completion refused by the database: the batch's
    commit (planned: ``t_count_two`` chains each run's second step into it) fails, and is
    committed one job per transaction; the five that land count once, the refused one not.
    Once the cause is gone its job runs again and its run counts once."""
    caplog.set_level(logging.WARNING, logger="baton.worker")
    monkeypatch.setattr(worker_module, "CHAIN_SECONDS", 600.0)  # (the chain never runs out)
    harness.deploy_text(DEFS)
    eng: Engine = harness.engine
    before = _counts(name)
    runs = [eng.start(name, actor="t").id for _ in range(6)]
    _refuse_completion(eng, runs[2])

    harness.work()
    assert any("refused by the database" in r.getMessage() for r in caplog.records)
    assert [eng.get_run(r).status.value for r in runs] == ["completed"] * 2 + ["in_progress"] \
        + ["completed"] * 3
    assert _moved(before, _counts(name)) == {f"{name} started": 6, f"{name} completed": 5}

    _cure(eng)
    harness.clock.advance(timedelta(seconds=REFUSED_BACKOFF_MAX))  # (its job's wait)
    harness.work()
    assert eng.get_run(runs[2]).status.value == "completed"
    assert _moved(before, _counts(name)) == {f"{name} started": 6, f"{name} completed": 6}


def test_a_batch_whose_commit_waits_out_the_lock_counts_each_run_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """SQLite's write lock held by another connection (taken by the batch's flow) longer than
    the lock wait: the batch's commit fails, planned and under the lock, again and again,
    its jobs handed back and run again; once the lock is let go, each run counts once."""
    caplog.set_level(logging.WARNING, logger="baton.worker")
    monkeypatch.setattr(dialects, "BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(dialects, "_FAST_WAIT_S", 0.05)
    path = tmp_path / "baton.db"
    LOCK["path"] = str(path)
    (tmp_path / "defs.yaml").write_text(DEFS)
    eng = Engine(f"sqlite:///{path}")
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

    thread = threading.Thread(target=serve, name="t-count-lock", daemon=True)
    try:
        eng.deploy([tmp_path / "defs.yaml"], known_flows=None)
        before = _counts("t_count_lock")
        runs = [eng.start("t_count_lock", actor="t").id for _ in range(4)]
        thread.start()
        eventually(lambda: locked() >= 2, timeout=60, what="two failed commits on the lock")
        assert _moved(before, _counts("t_count_lock")) == {"t_count_lock started": 4}
        LOCK.pop("holder").close()  # the other connection lets go
        eventually(lambda: all(eng.get_run(r).status.value == "completed" for r in runs),
                   timeout=60, what="every run completed")
    finally:
        worker.stop()
        if thread.is_alive():
            thread.join(30)
        eng.close()
    assert errors == []
    assert _moved(before, _counts("t_count_lock")) == {
        "t_count_lock started": 4, "t_count_lock completed": 4}


def test_runs_started_by_a_record_and_ended_by_a_person_are_counted(harness: Any) -> None:
    harness.deploy_text(RECORD_DEFS)
    eng: Engine = harness.engine
    before = _counts("t_count_ticket")
    records = eng.create_records("Ticket", [{"title": f"t{i}"} for i in range(3)], actor="t")
    assert _moved(before, _counts("t_count_ticket")) == {"t_count_ticket started": 3}
    for item in eng.list_work(limit=10):
        eng.complete(item["id"], "eve", {})
    assert all(run.status.value == "completed" for rec in records
               for run in eng.list_runs(record_id=rec["id"]))
    assert _moved(before, _counts("t_count_ticket")) == {
        "t_count_ticket started": 3, "t_count_ticket completed": 3}


CALLOUT_DEFS = """
kind: object
name: Member
fields:
  email: {type: string}
---
kind: connection
name: t_count_crm
type: http
base_url: http://127.0.0.1:PORT
---
kind: orchestration
name: t_count_notify
trigger: {type: record, object: Member, on: [create]}
stages:
  - name: work
    steps:
      - {name: tell, type: callout, connection: t_count_crm, method: GET, path: /members,
         query: {email: '=record.email', page: 1}}
"""


def test_a_failed_callouts_log_line_names_its_run_and_record_and_not_the_query(
        harness: Any) -> None:
    """A callout to a port nothing listens on, whose query holds a member's e-mail: the
    worker's JSON line about the failure carries the job's run id and record id, and the
    URL as scheme://host:port/path (the query, with the address, left out)."""
    port = free_port()  # (closed: the call is refused)
    harness.deploy_text(CALLOUT_DEFS.replace("PORT", str(port)))
    eng: Engine = harness.engine
    root = logging.getLogger()
    kept = (root.handlers[:], root.level, {n: logging.getLogger(n).level for n in logs.QUIET})
    buf, stderr = io.StringIO(), logs.sys.stderr
    logs.sys.stderr = buf  # type: ignore[assignment]
    try:
        logs.configure("json", logging.DEBUG)
        logs.sys.stderr = stderr  # type: ignore[assignment]
        record = eng.create_record("Member", {"email": "ada.lovelace@example.com"})
        harness.work()
    finally:
        logs.sys.stderr = stderr  # type: ignore[assignment]
        root.handlers[:], root.level = kept[0], kept[1]
        for n, level in kept[2].items():
            logging.getLogger(n).setLevel(level)
        logs._context = False
    (run,) = eng.list_runs(record_id=record["id"])
    sr = eng.get_run(run.id).steps["tell"]
    assert sr.status.value in ("running", "fallout") and sr.error is not None
    assert "lovelace" in sr.error["message"]  # (the operator's view keeps the URL called)
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    (failed,) = [x for x in lines if x["event"].startswith("step tell of run")]
    assert (failed["run_id"], failed["record_id"], failed["step"]) == (
        run.id, record["id"], "tell"), failed
    assert f"http://127.0.0.1:{port}/members: " in failed["event"], failed
    assert "lovelace" not in buf.getvalue().lower() and "?" not in failed["event"]
