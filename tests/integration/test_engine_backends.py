"""The Engine on a real SQLite file: transactions, triggers, versions, work items, timeline.

Each test deploys its own definitions into a fresh database (the ``harness`` fixture) and
acts like a user of the embeddable Engine would; workers run with ``harness.work()``
(until idle), never by sleeping.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from baton import flow
from baton.clock import iso
from baton.engine.status import RunStatus
from baton.errors import PermissionDenied, TransitionConflict, ValidationError
from baton.flows import FlowContext
from baton.store import schema

# ---- flows (registered once, at import) ------------------------------------------------------


@flow("t_sqlite.noop")
def _noop(ctx: FlowContext) -> dict[str, Any]:
    return {}


@flow("t_sqlite.classify")
def _classify(ctx: FlowContext) -> dict[str, Any]:
    category = "billing" if "invoice" in ctx.record["subject"] else "tech"
    ctx.update_record({"status": "Triaged", "category": category})
    ctx.vars["level"] = ctx.vars.get("level", 1) + 1
    return {"category": category}


@flow("t_sqlite.bad_update")
def _bad_update(ctx: FlowContext) -> dict[str, Any]:
    ctx.vars["touched"] = True
    ctx.update_record({"category": "ok", "priority": "very high", "colour": "red"})
    return {"done": True}


@flow("t_sqlite.is_urgent")
def _is_urgent(ctx: FlowContext) -> bool:
    return bool(ctx.record["priority"] >= 3)


@flow("t_sqlite.bump_priority")
def _bump_priority(ctx: FlowContext) -> dict[str, Any]:
    ctx.update_record({"priority": 5})
    return {}


CASE = """
kind: object
name: Case
fields:
  subject:  {type: string, required: true}
  origin:   {type: choice, choices: [Web, Email, Phone, Internal], default: Web}
  priority: {type: int, default: 1}
  status:   {type: choice, choices: [New, Triaged, Submitted, Closed], default: New}
  category: {type: string}
"""


# ---- helpers ------------------------------------------------------------------------------------


def deploy(harness: Any, orchestrations: str, name: str = "defs.yaml") -> None:
    harness.deploy_text(CASE + "---\n" + orchestrations, name)


def jobs(harness: Any) -> list[dict[str, Any]]:
    with harness.engine.store.read() as tx:
        rows = tx.conn.execute(select(schema.jobs).order_by(schema.jobs.c.id))
        return [dict(r._mapping) for r in rows]


def count(harness: Any, table: Any) -> int:
    with harness.engine.store.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(table)).scalar_one())


def runs_of(harness: Any, record_id: str) -> list[Any]:
    return harness.engine.list_runs(record_id=record_id)


def the_item(harness: Any, run_id: str, **filters: Any) -> dict[str, Any]:
    (item,) = harness.engine.list_work(run_id=run_id, statuses=("open", "claimed", "completed",
                                                                 "canceled"), **filters)
    return item


# ---- records and triggers ------------------------------------------------------------------------


def test_record_trigger_starts_run_in_the_same_transaction_as_the_record(harness: Any) -> None:
    deploy(harness, """
kind: orchestration
name: t_sqlite_intake
trigger: {type: record, object: Case, on: [create], when: '=record.origin != "Internal"'}
stages:
  - name: triage
    steps:
      - {name: classify, type: background, flow: t_sqlite.noop}
      - {name: look, type: interactive, assign: {queue: tier1}}
""")
    rec = harness.engine.create_record("Case", {"subject": "Printer on fire"}, actor="user:ann")
    # no worker has run: the run, its first job and its work item are already there
    (run,) = runs_of(harness, rec["id"])
    assert run.status is RunStatus.IN_PROGRESS
    assert run.current_stage == "triage"
    assert harness.step_status(run.id) == {"classify": "running", "look": "waiting_for_person"}
    assert [(j["kind"], j["payload"]["step"]) for j in jobs(harness)] == [("step", "classify")]
    assert [i["step"] for i in harness.engine.list_work(queue="tier1")] == ["look"]
    # the trigger's when is honoured
    internal = harness.engine.create_record("Case", {"subject": "Coffee", "origin": "Internal"})
    assert runs_of(harness, internal["id"]) == []
    # a record that is not saved starts nothing: no run, no job
    with pytest.raises(ValidationError):
        harness.engine.create_record("Case", {"origin": "Web"})
    assert count(harness, schema.runs) == 1 and len(jobs(harness)) == 1
    assert harness.work() == 1
    assert harness.step_status(run.id)["classify"] == "completed"


def test_update_trigger_sees_record_and_old(harness: Any) -> None:
    deploy(harness, """
kind: orchestration
name: t_sqlite_on_submit
trigger:
  type: record
  object: Case
  on: [update]
  when: '=record.status == "Submitted" && old.status != "Submitted"'
stages:
  - name: s
    steps: [{name: a, type: interactive, assign: {queue: q}}]
""")
    eng = harness.engine
    rec = eng.create_record("Case", {"subject": "Order 1"})
    assert runs_of(harness, rec["id"]) == []  # create is not update
    eng.update_record(rec["id"], {"priority": 2})
    assert runs_of(harness, rec["id"]) == []  # not submitted
    eng.update_record(rec["id"], {"status": "Submitted"})
    assert len(runs_of(harness, rec["id"])) == 1  # New -> Submitted
    eng.update_record(rec["id"], {"priority": 3})
    assert len(runs_of(harness, rec["id"])) == 1  # still Submitted: old.status is Submitted
    eng.update_record(rec["id"], {"status": "Submitted"})  # no change at all: no update
    assert len(runs_of(harness, rec["id"])) == 1
    eng.update_record(rec["id"], {"status": "New"})
    eng.update_record(rec["id"], {"status": "Submitted"})
    assert len(runs_of(harness, rec["id"])) == 2  # submitted again


def test_record_update_reevaluates_a_waiting_when(harness: Any) -> None:
    deploy(harness, """
kind: orchestration
name: t_sqlite_watcher
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - {name: urgent, type: background, flow: t_sqlite.noop, when: '=record.priority > 2'}
---
kind: orchestration
name: t_sqlite_bumper
trigger: {type: autolaunched, object: Case}
stages:
  - name: s
    steps: [{name: bump, type: background, flow: t_sqlite.bump_priority}]
""")
    eng = harness.engine
    # a person updates the record
    first = eng.create_record("Case", {"subject": "one"})
    (w1,) = runs_of(harness, first["id"])
    harness.work()
    assert harness.step_status(w1.id) == {"urgent": "waiting"}
    eng.update_record(first["id"], {"priority": 4}, actor="user:ann")
    assert [j["kind"] for j in jobs(harness)] == ["evaluate"]  # enqueued with the update
    assert harness.step_status(w1.id) == {"urgent": "waiting"}
    harness.work()
    assert harness.step_status(w1.id) == {"urgent": "completed"}
    assert eng.get_run(w1.id).status is RunStatus.COMPLETED
    # another run's flow updates the record
    second = eng.create_record("Case", {"subject": "two"})
    (w2,) = runs_of(harness, second["id"])
    bumper = eng.start("t_sqlite_bumper", record_id=second["id"], actor="user:ann")
    harness.work()
    assert harness.step_status(bumper.id) == {"bump": "completed"}
    assert eng.get_record(second["id"])["priority"] == 5
    assert harness.step_status(w2.id) == {"urgent": "completed"}


def test_flow_record_update_and_vars_commit_with_the_step(harness: Any) -> None:
    deploy(harness, """
kind: orchestration
name: t_sqlite_classify
trigger: {type: record, object: Case, on: [create]}
variables: {level: 1}
stages:
  - name: s
    steps:
      - {name: classify, type: background, flow: t_sqlite.classify}
      - {name: review, type: interactive, after: [classify],
         assign: {queue: '="tier" + string(vars.level)'}}
""")
    eng = harness.engine
    rec = eng.create_record("Case", {"subject": "invoice wrong"})
    (run,) = runs_of(harness, rec["id"])
    assert eng.get_record(rec["id"])["status"] == "New"  # nothing before the flow ran
    harness.work()
    after = eng.get_record(rec["id"])
    assert (after["status"], after["category"], after["version"]) == ("Triaged", "billing", 2)
    run = eng.get_run(run.id)
    assert run.vars == {"level": 2}
    assert run.steps["classify"].output == {"category": "billing"}
    # the next step already saw the new vars
    assert [i["assignee"] for i in eng.list_work(run_id=run.id)] == ["tier2"]
    updated = [e for e in eng.timeline(rec["id"]) if e["type"] == "record_updated"]
    assert [(e["actor"], e["data"]["changes"]) for e in updated] == [
        ("flow:classify", {"status": ["New", "Triaged"], "category": [None, "billing"]})]


def test_invalid_record_update_from_flow_fails_the_step_and_changes_nothing(harness: Any) -> None:
    deploy(harness, """
kind: orchestration
name: t_sqlite_bad
trigger: {type: record, object: Case, on: [create]}
variables: {touched: false}
stages:
  - name: s
    steps: [{name: bad, type: background, flow: t_sqlite.bad_update}]
""")
    eng = harness.engine
    rec = eng.create_record("Case", {"subject": "x"})
    (run,) = runs_of(harness, rec["id"])
    harness.work()
    assert eng.get_record(rec["id"]) == rec | {"object_type": "Case"}  # not even the valid field
    run = eng.get_run(run.id)
    assert harness.step_status(run.id) == {"bad": "fallout"}
    assert run.vars == {"touched": False}  # vars are not committed either
    assert run.steps["bad"].output is None
    error = run.steps["bad"].error
    assert error is not None and error["type"] == "ValidationError"
    assert "priority" in error["message"] and "colour" in error["message"]
    assert [e["type"] for e in eng.timeline(rec["id"]) if e["type"].startswith("record_")] == [
        "record_created"]
    assert jobs(harness) == []


def test_update_with_stale_version_is_a_conflict_and_changes_nothing(harness: Any) -> None:
    deploy(harness, """
kind: orchestration
name: t_sqlite_upd
trigger: {type: record, object: Case, on: [update]}
stages:
  - name: s
    steps: [{name: a, type: interactive, assign: {queue: q}}]
""")
    eng = harness.engine
    rec = eng.create_record("Case", {"subject": "x"})
    v2 = eng.update_record(rec["id"], {"priority": 2}, expected_version=1, actor="user:ann")
    assert v2["version"] == 2
    events_before = len(eng.timeline(rec["id"]))
    runs_before = len(runs_of(harness, rec["id"]))
    with pytest.raises(TransitionConflict) as exc:
        eng.update_record(rec["id"], {"priority": 9}, expected_version=1, actor="user:bob")
    assert "version 2" in str(exc.value)
    now = eng.get_record(rec["id"])
    assert (now["priority"], now["version"]) == (2, 2)
    assert len(eng.timeline(rec["id"])) == events_before
    assert len(runs_of(harness, rec["id"])) == runs_before
    # with the current version it goes through
    assert eng.update_record(rec["id"], {"priority": 9}, expected_version=2)["version"] == 3


def test_record_validation_names_every_bad_field(harness: Any) -> None:
    deploy(harness, """
kind: orchestration
name: t_sqlite_any
trigger: {type: record, object: Case, on: [create, update]}
stages:
  - name: s
    steps: [{name: a, type: interactive, assign: {queue: q}}]
""")
    eng = harness.engine
    with pytest.raises(ValidationError) as exc:
        eng.create_record("Case", {"origin": "Fax", "priority": "high", "colour": "red",
                                   "id": "mine"})
    assert set(exc.value.fields) == {"subject", "origin", "priority", "colour", "id"}
    assert "required" in exc.value.fields["subject"]
    assert "Fax" in exc.value.fields["origin"]
    assert eng.list_records("Case") == [] and count(harness, schema.runs) == 0

    rec = eng.create_record("Case", {"subject": "ok"})
    with pytest.raises(ValidationError) as exc:
        eng.update_record(rec["id"], {"subject": "", "status": "Lost", "priority": 2})
    assert set(exc.value.fields) == {"subject", "status"}
    assert eng.get_record(rec["id"])["version"] == 1  # the valid field was not written either
    assert eng.get_record(rec["id"])["priority"] == 1


def test_autolaunched_start_with_typed_input(harness: Any) -> None:
    harness.deploy_text("""
kind: orchestration
name: t_sqlite_refund
trigger:
  type: autolaunched
  input:
    amount: {type: int, required: true}
    reason: {type: choice, choices: [damaged, late]}
    rush:   {type: bool, default: false}
stages:
  - name: s
    steps: [{name: approve, type: interactive, assign: {queue: finance}}]
""")
    eng = harness.engine
    run = eng.start("t_sqlite_refund", {"amount": "120", "reason": "late"}, actor="user:ann")
    assert run.input == {"amount": 120, "reason": "late", "rush": False}
    assert eng.get_run(run.id).status is RunStatus.IN_PROGRESS
    with pytest.raises(ValidationError) as exc:
        eng.start("t_sqlite_refund", {"amount": "lots", "reason": "bored", "extra": 1})
    assert set(exc.value.fields) == {"amount", "reason", "extra"}
    with pytest.raises(ValidationError) as exc:
        eng.start("t_sqlite_refund", {})
    assert set(exc.value.fields) == {"amount"}
    assert len(eng.list_runs(orchestration="t_sqlite_refund")) == 1  # only the good one


def test_runs_stay_pinned_to_their_version(harness: Any) -> None:
    v1 = """
kind: orchestration
name: t_sqlite_pinned
trigger: {type: autolaunched}
stages:
  - name: s
    steps:
      - {name: first_look, type: interactive, assign: {user: ann}}
      - {name: v1_only, type: background, flow: t_sqlite.noop, after: [first_look]}
"""
    v2 = v1.replace("v1_only", "v2_only")
    eng = harness.engine
    path = harness.tmp / "pinned.yaml"
    path.write_text(v1)
    (r1,) = eng.deploy([path])
    assert (r1.version, r1.changed) == (1, True)
    old = eng.start("t_sqlite_pinned")
    path.write_text(v2)
    (r2,) = eng.deploy([path])
    assert (r2.version, r2.changed) == (2, True)
    new = eng.start("t_sqlite_pinned")
    assert (old.version, new.version) == (1, 2)
    # deploying the same text again creates no version
    (r3,) = eng.deploy([path])
    assert (r3.version, r3.changed) == (2, False)
    assert eng.start("t_sqlite_pinned").version == 2
    # the old run finishes on v1, the new one on v2
    for run in (old, new):
        item = the_item(harness, run.id)
        eng.complete(item["id"], "ann", {})
    harness.work()
    assert harness.step_status(old.id) == {"first_look": "completed", "v1_only": "completed"}
    assert harness.step_status(new.id) == {"first_look": "completed", "v2_only": "completed"}
    assert eng.get_run(old.id).status is RunStatus.COMPLETED
    assert eng.get_run(new.id).status is RunStatus.COMPLETED


def test_evaluation_flow_conditions_are_answered_by_the_workers(harness: Any) -> None:
    deploy(harness, """
kind: orchestration
name: t_sqlite_flows
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: wait
    exit_when: {flow: t_sqlite.is_urgent}
    steps: [{name: look, type: interactive, assign: {queue: q}}]
    next:
      - {when: {flow: t_sqlite.is_urgent}, goto: urgent}
      - {goto: end}
  - name: urgent
    steps: [{name: page, type: background, flow: t_sqlite.noop}]
""")
    eng = harness.engine
    rec = eng.create_record("Case", {"subject": "x", "priority": 1})
    (run,) = runs_of(harness, rec["id"])
    assert [j["kind"] for j in jobs(harness)] == ["condition"]  # asked with the run's start
    harness.work()
    assert eng.get_run(run.id).current_stage == "wait"  # the flow said no
    item = the_item(harness, run.id)
    eng.update_record(rec["id"], {"priority": 4})
    harness.work()
    run = eng.get_run(run.id)
    assert (run.status, run.current_stage) == (RunStatus.COMPLETED, None)
    assert harness.step_status(run.id) == {"look": "canceled", "page": "completed"}
    assert eng.get_work_item(item["id"])["status"] == "canceled"
    assert [d["goto"] for d in run.decisions] == ["urgent", "end"]


# ---- work items ---------------------------------------------------------------------------------

WORK = """
kind: orchestration
name: t_sqlite_work
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: triage
    exit_when: '=record.status == "Closed"'
    steps:
      - name: triage
        type: interactive
        assign: {user: ann}
        form:
          - {name: resolution, type: choice, choices: [close, escalate], required: true}
          - {name: hours, type: int}
          - {name: notes, type: text}
    next:
      - {when: '=steps.triage.output.resolution == "escalate"', goto: escalate}
      - {goto: end}
  - name: escalate
    steps: [{name: raise, type: background, flow: t_sqlite.noop}]
"""


def test_complete_with_bad_form_data_names_every_field_and_changes_nothing(harness: Any) -> None:
    deploy(harness, WORK)
    eng = harness.engine
    rec = eng.create_record("Case", {"subject": "x"})
    (run,) = runs_of(harness, rec["id"])
    item = the_item(harness, run.id)
    seq = eng.get_run(run.id).seq
    with pytest.raises(ValidationError) as exc:
        eng.complete(item["id"], "ann", {"resolution": "maybe", "hours": "two", "mood": "meh"})
    assert set(exc.value.fields) == {"resolution", "hours", "mood"}
    with pytest.raises(ValidationError) as exc:
        eng.complete(item["id"], "ann", {"notes": "forgot the rest"})
    assert set(exc.value.fields) == {"resolution"}
    again = eng.get_work_item(item["id"])
    assert (again["status"], again["data"], again["version"]) == ("open", None, item["version"])
    assert eng.get_run(run.id).seq == seq
    assert harness.step_status(run.id) == {"triage": "waiting_for_person"}
    done = eng.complete(item["id"], "ann", {"resolution": "escalate", "hours": "2"})
    assert done["status"] == "completed" and done["data"]["hours"] == 2
    assert done["run"].current_stage == "escalate"


def test_user_assigned_item_cannot_be_completed_by_another_user(harness: Any) -> None:
    deploy(harness, WORK)
    eng = harness.engine
    rec = eng.create_record("Case", {"subject": "x"})
    (run,) = runs_of(harness, rec["id"])
    item = the_item(harness, run.id)
    with pytest.raises(PermissionDenied):
        eng.complete(item["id"], "bob", {"resolution": "close"})
    with pytest.raises(PermissionDenied):
        eng.claim(item["id"], "bob")
    assert eng.get_work_item(item["id"])["status"] == "open"
    assert eng.get_run(run.id).status is RunStatus.IN_PROGRESS


def test_reassign_then_new_assignee_completes(harness: Any) -> None:
    deploy(harness, WORK)
    eng = harness.engine
    rec = eng.create_record("Case", {"subject": "x"})
    (run,) = runs_of(harness, rec["id"])
    item = the_item(harness, run.id)
    eng.claim(item["id"], "ann")
    moved = eng.reassign(item["id"], "user:bob", actor="lead:lee")
    assert (moved["status"], moved["assignee_kind"], moved["assignee"], moved["claimed_by"]) == (
        "open", "user", "bob", None)
    assert [i["id"] for i in eng.list_work(user="bob")] == [item["id"]]
    assert eng.list_work(user="ann") == []
    with pytest.raises(PermissionDenied):
        eng.complete(item["id"], "ann", {"resolution": "close"})
    done = eng.complete(item["id"], "bob", {"resolution": "close"})
    assert (done["status"], done["completed_by"]) == ("completed", "bob")
    assert done["run"].status is RunStatus.COMPLETED
    (event,) = [e for e in eng.timeline(rec["id"]) if e["type"] == "work_item_reassigned"]
    assert (event["actor"], event["data"]["from"], event["data"]["to"]) == ("lead:lee", "user:ann",
                                                                            "user:bob")
    with pytest.raises(ValidationError):
        eng.reassign(item["id"], "bob")  # not kind:name
    with pytest.raises(TransitionConflict):
        eng.reassign(item["id"], "user:cy")  # completed: nothing to reassign


def test_work_item_canceled_when_stage_exits(harness: Any) -> None:
    deploy(harness, WORK)
    eng = harness.engine
    rec = eng.create_record("Case", {"subject": "x"})
    (run,) = runs_of(harness, rec["id"])
    item = the_item(harness, run.id)
    eng.update_record(rec["id"], {"status": "Closed"}, actor="user:ann")
    harness.work()
    assert eng.get_work_item(item["id"])["status"] == "canceled"
    assert eng.list_work(user="ann") == []
    assert harness.step_status(run.id) == {"triage": "canceled"}
    assert eng.get_run(run.id).status is RunStatus.COMPLETED  # exited, then next: goto end
    with pytest.raises(TransitionConflict):
        eng.complete(item["id"], "ann", {"resolution": "close"})


# ---- timeline ---------------------------------------------------------------------------------


def test_timeline_of_a_record(harness: Any) -> None:
    deploy(harness, """
kind: orchestration
name: t_sqlite_timeline
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: triage
    steps:
      - {name: classify, type: background, flow: t_sqlite.noop}
      - {name: decide, type: interactive, after: [classify], assign: {queue: tier1},
         form: [{name: resolution, type: choice, choices: [close, escalate], required: true}]}
    next:
      - {when: '=steps.decide.output.resolution == "escalate"', goto: escalate}
      - {goto: end}
  - name: escalate
    steps: [{name: raise, type: background, flow: t_sqlite.noop}]
""")
    eng, clock = harness.engine, harness.clock
    t0 = clock.now()
    rec = eng.create_record("Case", {"subject": "Printer"}, actor="user:ann")
    clock.advance(timedelta(minutes=1))
    eng.update_record(rec["id"], {"subject": "Printer on fire", "priority": 3}, actor="user:ann")
    clock.advance(timedelta(minutes=1))
    harness.work()
    clock.advance(timedelta(minutes=1))
    (item,) = eng.list_work(queue="tier1")
    eng.claim(item["id"], "bob")
    clock.advance(timedelta(minutes=1))
    eng.complete(item["id"], "bob", {"resolution": "close"})

    timeline = eng.timeline(rec["id"])
    assert all(e["record_id"] == rec["id"] for e in timeline)
    seen = [(e["type"], e["actor"], e["at"]) for e in timeline]

    def at(minutes: int) -> str:
        return iso(t0 + timedelta(minutes=minutes))

    expected = [
        ("record_created", "user:ann", at(0)),
        ("run_started", "user:ann", at(0)),  # whose write started it
        ("record_updated", "user:ann", at(1)),
        ("step_completed", "system", at(2)),  # classify, by the worker
        ("work_item_assigned", "system", at(2)),
        ("work_item_claimed", "bob", at(3)),
        ("work_item_completed", "bob", at(4)),
        ("step_completed", "bob", at(4)),  # decide
        ("decision_taken", "system", at(4)),
        ("run_completed", "system", at(4)),
    ]
    important = [s for s in seen if s[0] in {t for t, _, _ in expected}]
    assert important == expected
    # times never go backwards, ids give the order within one moment
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
    assert [e["id"] for e in timeline] == sorted(e["id"] for e in timeline)
    by_type = {e["type"]: e for e in timeline}
    assert by_type["record_updated"]["data"]["changes"] == {
        "subject": ["Printer", "Printer on fire"], "priority": [1, 3]}
    assert by_type["record_created"]["data"]["fields"]["subject"] == "Printer"
    assert by_type["decision_taken"]["data"] == {"stage": "triage", "iteration": 1, "goto": "end",
                                                "rule": 1}
    assert by_type["work_item_completed"]["data"]["data"] == {"resolution": "close"}
    assert by_type["work_item_assigned"]["data"]["assignee"] == "queue:tier1"


ORDERED = """
kind: object
name: Ticket
fields:
  subject: {type: string}
---
kind: orchestration
name: ordered
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: triage_first
    steps:
      - {name: zeta_long_name, type: background, flow: t_sqlite.noop}
      - {name: a, type: background, flow: t_sqlite.noop}
      - {name: mid, type: interactive, assign: {queue: q}, after: [zeta_long_name, a]}
    next: [{goto: ok}]
  - name: ok
    steps: [{name: b, type: interactive, assign: {queue: q}}]
"""


def test_a_run_keeps_its_stages_and_steps_in_the_process_order(harness: Any) -> None:
    """PostgreSQL's jsonb sorted a run document's keys (shorter first): `baton runs show`
    listed steps a, mid, zeta_long_name and stages ok, triage_first there, in process
    order on SQLite. The state is json there since migration 26."""
    harness.deploy_text(ORDERED)
    rec = harness.engine.create_record("Ticket", {"subject": "x"})
    harness.work()
    (item,) = harness.engine.list_work(queue="q")
    harness.engine.complete(item["id"], "ann", {})
    harness.work()
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    run = harness.engine.get_run(run.id)
    assert list(run.stages) == ["triage_first", "ok"]
    assert list(run.steps) == ["zeta_long_name", "a", "mid", "b"]


def test_a_record_is_shown_with_its_fields_in_the_object_types_order(harness: Any) -> None:
    """PostgreSQL's jsonb sorts a record's keys (shorter first): `baton records show` and
    list, the API and the record page showed a, mid, zeta_long_name there and the type's
    order on SQLite. What is shown is put back in the type's order; a key the type no
    longer has comes after."""
    harness.deploy_text("""
kind: object
name: Thing
fields:
  zeta_long_name: {type: string}
  a: {type: string}
  mid: {type: json}
""")
    rec = harness.engine.create_record("Thing", {"mid": {"k": 1}, "a": "x", "zeta_long_name": "z"})
    fields = ["zeta_long_name", "a", "mid"]
    shown = harness.engine.get_record(rec["id"])
    assert [k for k in shown if k in fields] == fields
    (listed,) = harness.engine.list_records("Thing")
    assert [k for k in listed if k in fields] == fields
    (paged,) = harness.engine.page_records("Thing").rows
    assert [k for k in paged if k in fields] == fields
