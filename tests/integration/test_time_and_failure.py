"""Time and failure on virtual time (issue 5): retries, fallout and operator actions, resume,
timeouts, pause steps, SLA timers. Each test runs on SQLite and on PostgreSQL; nothing sleeps
to wait for a timer: ``harness.clock.advance(...)`` then ``harness.work()``.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest

from baton import flow
from baton.clock import iso
from baton.engine.status import RunStatus
from baton.errors import StepFailure, TransitionConflict, ValidationError
from baton.flows import FlowContext

FAILS: dict[str, int] = {}  # subject -> how many more attempts of t_time.flaky fail
RELEASE = threading.Event()


@flow("t_time.flaky")
def _flaky(ctx: FlowContext) -> dict[str, Any]:
    subject = ctx.record["subject"]
    if FAILS.get(subject, 0) > 0:
        FAILS[subject] -= 1
        raise ConnectionError(f"backend down for {subject}")
    return {"ok": True}


@flow("t_time.fatal")
def _fatal(ctx: FlowContext) -> dict[str, Any]:
    raise StepFailure("card declined", retryable=False)


@flow("t_time.ok")
def _ok(ctx: FlowContext) -> dict[str, Any]:
    return {"done": True}


@flow("t_time.stuck")
def _stuck(ctx: FlowContext) -> dict[str, Any]:
    RELEASE.wait(10)  # blocks past the step's timeout (released at test end)
    return {"late": True}


@flow("t_time.escalate")
def _escalate(ctx: FlowContext) -> dict[str, Any]:
    return {"escalated": ctx.step}


CASE = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
  status:  {type: choice, choices: [New, Approved], default: New}
---
"""


def deploy(harness: Any, body: str) -> None:
    harness.deploy_text(CASE + body)


def start(harness: Any, subject: str) -> Any:
    rec = harness.engine.create_record("Case", {"subject": subject})
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    return run


def events(harness: Any, run_id: str, type_: str) -> list[dict[str, Any]]:
    with harness.engine.store.read() as tx:
        return [e for e in tx.events_txn(run_id=run_id) if e["type"] == type_]


def pending(harness: Any) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from baton.store import schema

    with harness.engine.store.read() as tx:
        return [dict(r._mapping) for r in tx.conn.execute(select(schema.jobs))]


def sla_at(harness: Any, run_id: str) -> str | None:
    """The run's next SLA instant as stored (the column the workers' claim reads)."""
    from sqlalchemy import select

    from baton.store import schema

    with harness.engine.store.read() as tx:
        return tx.conn.execute(select(schema.runs.c.sla_at)
                               .where(schema.runs.c.id == run_id)).scalar_one()


RETRY = """
kind: orchestration
name: t_time_retry
trigger: {type: record, object: Case, on: [create]}
retry: {max: 1}
stages:
  - name: s
    steps:
      - name: call
        type: background
        flow: t_time.flaky
        retry: {max: 3, backoff: exponential, initial: 10s, max_delay: 30s}
      - {name: sibling, type: background, flow: t_time.ok}
      - {name: dependent, type: background, flow: t_time.ok, after: [call]}
      - {name: fatal, type: background, flow: t_time.fatal}
      - {name: default_policy, type: background, flow: t_time.flaky, on_failure: continue}
"""


def test_retry_schedule_backoff_values_then_fallout(harness: Any) -> None:
    deploy(harness, RETRY)
    FAILS["r1"] = 10
    run = start(harness, "r1")
    t0 = harness.clock.now()
    harness.work()  # attempt 1 of each fails; retries are not due yet, --until-idle leaves them
    st = harness.step_status(run.id)
    assert st["call"] == "running" and st["sibling"] == "completed"
    # a non-retryable error skips the retries
    assert st["fatal"] == "fallout"
    (fatal,) = [e for e in events(harness, run.id, "step_attempt_failed")
                if e["data"]["step"] == "fatal"]
    assert fatal["data"]["next_retry_at"] is None and fatal["data"]["error"]["retryable"] is False
    for expected in (10, 20, 30):  # exponential, capped at max_delay
        att = [e for e in events(harness, run.id, "step_attempt_failed") if e["data"]["step"] == "call"]
        due = att[-1]["data"]["next_retry_at"]
        assert due == iso(harness.clock.now() + timedelta(seconds=expected))
        harness.clock.advance(timedelta(seconds=expected) - timedelta(milliseconds=1))
        harness.work()
        assert len([e for e in events(harness, run.id, "step_attempt_failed")
                    if e["data"]["step"] == "call"]) == len(att)  # not due yet: not retried
        harness.clock.advance(timedelta(milliseconds=1))
        harness.work()
    att = [e for e in events(harness, run.id, "step_attempt_failed") if e["data"]["step"] == "call"]
    assert [e["data"]["attempt"] for e in att] == [1, 2, 3, 4]
    assert att[-1]["data"]["next_retry_at"] is None
    assert "backend down" in att[0]["data"]["error"]["message"]
    run = harness.engine.get_run(run.id)
    assert run.status is RunStatus.IN_PROGRESS
    assert harness.step_status(run.id)["call"] == "fallout"
    assert harness.step_status(run.id)["dependent"] == "not_started"  # dependents wait
    err = run.steps["call"].error
    assert err["type"] == "ConnectionError" and err["attempts"] == 4
    assert "backend down" in err["traceback"]  # a summary: the last frames
    # the orchestration default (max: 1) applies to a step without its own policy
    assert run.steps["default_policy"].attempts == 2
    assert harness.clock.now() - t0 == timedelta(seconds=60)


def test_fallout_list_and_operator_actions(harness: Any) -> None:
    deploy(harness, RETRY.replace("retry: {max: 1}\n", ""))
    FAILS["f1"] = 100
    run = start(harness, "f1")
    for _ in range(4):
        harness.work()
        harness.clock.advance(timedelta(minutes=1))
    eng = harness.engine
    ids = sorted(f["id"] for f in eng.list_fallout() if f["run_id"] == run.id)
    assert ids == [f"{run.id}:call", f"{run.id}:fatal"]
    # skip: audited with who and why
    eng.resolve_fallout(f"{run.id}:fatal", "skip", reason="charged by hand", actor="user:ops")
    (skip,) = events(harness, run.id, "step_skipped")
    assert skip["actor"] == "user:ops" and skip["data"]["reason"] == "charged by hand"
    # retry: runs the step again (the policy applies afresh); the cause is fixed now
    FAILS["f1"] = 0
    eng.resolve_fallout(f"{run.id}:call", "retry", reason="backend is back", actor="user:ops")
    assert harness.step_status(run.id)["call"] == "running"
    harness.work()
    st = harness.step_status(run.id)
    assert st["call"] == "completed" and st["dependent"] == "completed"
    assert events(harness, run.id, "fallout_retried")[0]["data"]["reason"] == "backend is back"
    # not in fallout any more: a clear conflict
    with pytest.raises(TransitionConflict):
        eng.resolve_fallout(f"{run.id}:call", "skip", reason="again", actor="user:ops")


def test_fallout_complete_validates_declared_output_then_run_finishes(harness: Any) -> None:
    deploy(harness, """
kind: orchestration
name: t_time_complete
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - name: charge
        type: background
        flow: t_time.fatal
        output: {receipt: {type: string, required: true}}
      - {name: after_charge, type: background, flow: t_time.ok, after: [charge]}
""")
    run = start(harness, "c1")
    harness.work()
    eng = harness.engine
    with pytest.raises(ValidationError):
        eng.resolve_fallout(f"{run.id}:charge", "complete", reason="paid", actor="user:ops",
                            output={})
    eng.resolve_fallout(f"{run.id}:charge", "complete", reason="paid by phone", actor="user:ops",
                        output={"receipt": "R-1"})
    harness.work()
    run = eng.get_run(run.id)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["charge"].output == {"receipt": "R-1"}
    done = [e for e in events(harness, run.id, "step_completed") if e["data"]["step"] == "charge"]
    assert done[0]["actor"] == "user:ops" and done[0]["data"]["reason"] == "paid by phone"


def test_fallout_cancel_run_and_resume_of_a_failed_run(harness: Any) -> None:
    deploy(harness, """
kind: orchestration
name: t_time_failrun
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - {name: call, type: background, flow: t_time.flaky, on_failure: fail_run}
      - {name: look, type: interactive, assign: {queue: ops}}
""")
    FAILS["x1"] = 1
    run = start(harness, "x1")
    harness.work()
    eng = harness.engine
    assert eng.get_run(run.id).status is RunStatus.FAILED
    eng.resume_run(run.id, "backend fixed", actor="user:ops")
    (resumed,) = events(harness, run.id, "run_resumed")
    assert resumed["actor"] == "user:ops" and resumed["data"]["reason"] == "backend fixed"
    harness.work()
    assert harness.step_status(run.id) == {"call": "completed", "look": "waiting_for_person"}
    with pytest.raises(TransitionConflict):
        eng.resume_run(run.id, "again")
    eng.cancel_run(run.id, "customer withdrew", actor="user:ops")
    (canceled,) = events(harness, run.id, "run_canceled")
    assert canceled["data"]["reason"] == "customer withdrew"
    # The item of the first attempt was canceled when the run failed, the one created after
    # resuming when the run was canceled: no item of a canceled run stays open.
    assert [i["status"] for i in eng.list_work(run_id=run.id, statuses=("canceled",))] == [
        "canceled", "canceled"]
    assert eng.list_work(run_id=run.id) == []


def test_timeout_counts_as_a_failed_attempt_and_frees_the_worker(harness: Any) -> None:
    deploy(harness, """
kind: orchestration
name: t_time_timeout
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - {name: slow, type: background, flow: t_time.stuck, timeout: 200ms, retry: {max: 1, initial: 1m}}
""")
    RELEASE.clear()
    try:
        run = start(harness, "t1")
        harness.work()  # returns after ~200 ms real time, not after the flow
        (att,) = events(harness, run.id, "step_attempt_failed")
        assert att["data"]["error"]["type"] == "StepTimeout"
        assert att["data"]["error"]["retryable"] is True
        harness.clock.advance(timedelta(minutes=1))
        harness.work()
        assert harness.step_status(run.id) == {"slow": "fallout"}
    finally:
        RELEASE.set()


PAUSE = """
kind: orchestration
name: t_time_pause
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - {name: cool_off, type: pause, for: 2h}
      - {name: approval, type: pause, until: '=record.status == "Approved"'}
      - {name: docs, type: pause, signal: docs_received}
      - {name: done, type: milestone, after: [cool_off, approval, docs]}
"""


def test_pause_by_duration_condition_and_signal(harness: Any) -> None:
    deploy(harness, PAUSE)
    run = start(harness, "p1")
    eng = harness.engine
    harness.work()
    assert harness.step_status(run.id) == {"cool_off": "running", "approval": "running",
                                           "docs": "running", "done": "not_started"}
    harness.clock.advance(timedelta(hours=2) - timedelta(milliseconds=1))
    harness.work()
    assert harness.step_status(run.id)["cool_off"] == "running"
    harness.clock.advance(timedelta(milliseconds=1))
    harness.work()
    assert harness.step_status(run.id)["cool_off"] == "completed"
    eng.update_record(run.record_id, {"status": "Approved"})
    harness.work()
    assert harness.step_status(run.id)["approval"] == "completed"
    with pytest.raises(TransitionConflict):
        eng.signal(run.id, "no_such_signal", {})
    eng.signal(run.id, "docs_received", {"pages": 3}, actor="user:ann")
    harness.work()
    run = eng.get_run(run.id)
    assert run.steps["docs"].output == {"pages": 3}
    assert run.status is RunStatus.COMPLETED
    assert pending(harness) == []  # every timer fired exactly once and is gone


SLA = """
kind: orchestration
name: t_time_sla
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - name: triage
        type: interactive
        assign: {queue: tier1}
        sla:
          duration: 4h
          jeopardy: 1h
          on_jeopardy: {notify: supervisor, flow: t_time.escalate}
          on_overdue: {reassign: "queue:tier2"}
"""


def test_sla_transitions_at_the_exact_instants_with_actions(harness: Any) -> None:
    deploy(harness, SLA)
    run = start(harness, "s1")
    eng = harness.engine
    t0 = harness.clock.now()
    sla = eng.get_run(run.id).steps["triage"].sla
    assert sla == {"status": "on_track", "due_at": iso(t0 + timedelta(hours=4)),
                   "jeopardy_at": iso(t0 + timedelta(hours=3))}
    harness.clock.advance(timedelta(hours=3) - timedelta(milliseconds=1))
    harness.work()
    assert eng.get_run(run.id).steps["triage"].sla["status"] == "on_track"
    harness.clock.advance(timedelta(milliseconds=1))
    harness.work()
    assert eng.get_run(run.id).steps["triage"].sla["status"] == "in_jeopardy"
    (item,) = eng.list_work(queue="tier1")  # work list shows the SLA status and due time
    assert (item["sla_status"], item["due_at"]) == ("in_jeopardy", iso(t0 + timedelta(hours=4)))
    assert eng.get_work_item(item["id"])["sla_status"] == "in_jeopardy"
    (j,) = events(harness, run.id, "sla_in_jeopardy")
    assert j["at"] == iso(t0 + timedelta(hours=3))
    (n,) = events(harness, run.id, "notification_requested")
    assert n["data"]["recipients"] == ["supervisor"]
    (esc,) = events(harness, run.id, "escalation_flow_ran")
    assert esc["data"]["output"] == {"escalated": "triage"}
    harness.clock.advance(timedelta(hours=1))
    harness.work()
    assert eng.get_run(run.id).steps["triage"].sla["status"] == "overdue"
    (item,) = eng.list_work(run_id=run.id)
    assert (item["assignee_kind"], item["assignee"]) == ("queue", "tier2")
    assert events(harness, run.id, "work_item_reassigned")[0]["data"]["reason"] == "sla overdue"
    assert pending(harness) == []


def test_sla_timers_of_a_completed_step_are_canceled_with_it(harness: Any) -> None:
    deploy(harness, SLA)
    run = start(harness, "s2")
    eng = harness.engine
    # The SLA's instants are kept on the run, not as timer jobs: its next one is sla_at.
    sla = eng.get_run(run.id).steps["triage"].sla
    assert pending(harness) == []
    assert sla_at(harness, run.id) == sla["jeopardy_at"] is not None
    (item,) = eng.list_work(run_id=run.id)
    eng.complete(item["id"], "ann", {})
    assert sla_at(harness, run.id) is None  # cleared in the step's completing transaction
    harness.clock.advance(timedelta(hours=5))
    harness.work()
    assert events(harness, run.id, "sla_in_jeopardy") == []
    assert events(harness, run.id, "sla_overdue") == []
    assert pending(harness) == []


CALENDAR = """
kind: calendar
name: support_hours
timezone: America/Los_Angeles
hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"], thu: ["09:00-17:00"],
        fri: ["09:00-17:00"]}
holidays: {country: US, subdivision: CA}
---
kind: orchestration
name: t_time_business_sla
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - name: triage
        type: interactive
        assign: {queue: tier1}
        sla: {duration: 8h, jeopardy: 1h, calendar: support_hours}
"""


def test_sla_in_business_time_across_a_weekend_and_a_holiday(harness: Any) -> None:
    from datetime import UTC, datetime

    deploy(harness, CALENDAR)
    # Friday 16 Jan 2026 13:00 in Los Angeles (21:00 UTC); Monday 19 Jan is MLK Day.
    harness.clock.set(datetime(2026, 1, 16, 21, 0, tzinfo=UTC))
    run = start(harness, "b1")
    eng = harness.engine
    jeopardy = datetime(2026, 1, 20, 20, 0, tzinfo=UTC)  # Tue 12:00 LA: 7 business hours later
    due = datetime(2026, 1, 20, 21, 0, tzinfo=UTC)  # Tue 13:00 LA: 8 business hours later
    assert eng.get_run(run.id).steps["triage"].sla == {
        "status": "on_track", "due_at": iso(due), "jeopardy_at": iso(jeopardy)}
    for instant, status in ((jeopardy, "in_jeopardy"), (due, "overdue")):
        harness.clock.set(instant - timedelta(milliseconds=1))
        harness.work()
        assert eng.get_run(run.id).steps["triage"].sla["status"] != status
        harness.clock.set(instant)
        harness.work()
        assert eng.get_run(run.id).steps["triage"].sla["status"] == status
        (ev,) = events(harness, run.id, f"sla_{status}")
        assert ev["at"] == iso(instant)


def test_sla_clock_restarts_on_operator_retry_and_old_timers_change_nothing(harness: Any) -> None:
    deploy(harness, """
kind: orchestration
name: t_time_sla_retry
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - {name: charge, type: background, flow: t_time.fatal, sla: {duration: 4h, jeopardy: 1h}}
""")
    run = start(harness, "sr1")
    harness.work()
    eng = harness.engine
    harness.clock.advance(timedelta(hours=2))
    eng.resolve_fallout(f"{run.id}:charge", "retry", reason="try again", actor="user:ops")
    due = eng.get_run(run.id).steps["charge"].sla["due_at"]
    assert due == iso(harness.clock.now() + timedelta(hours=4))
    harness.clock.advance(timedelta(hours=1, minutes=30))  # the first clock's jeopardy instant
    harness.work()
    assert events(harness, run.id, "sla_in_jeopardy") == []
    harness.clock.advance(timedelta(hours=1, minutes=30))  # the new clock's jeopardy instant
    harness.work()
    assert len(events(harness, run.id, "sla_in_jeopardy")) == 1
