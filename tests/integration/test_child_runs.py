"""Child orchestrations (issue 12 item 5): ``type: orchestration`` steps, on both databases.

A parent run starts one child, or one per element of a list (``for_each``); the step
completes with the children's results in element order; a child that fails sends the step
to fallout and an operator retry starts only that child again; canceling the parent cancels
its children (and theirs); a child may run on a new record per element. Real Engine, real
Worker, real SQLite file and PostgreSQL database.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from baton import flow
from baton.engine.status import RunStatus, StepStatus
from baton.errors import DefinitionError, StepFailure
from baton.flows import FlowContext
from baton.store import schema as s
from tests.conftest import Harness

FAIL: set[str] = set()  # accounts whose child fails (cleared to let a retry succeed)
CALLS: list[str] = []


@flow("t_child.compute")
def _compute(ctx: FlowContext) -> dict[str, Any]:
    account = ctx.input["account"]
    CALLS.append(account)
    if account in FAIL:
        raise StepFailure(f"account {account} is blocked", retryable=False)
    ctx.vars["result"] = f"done {account} #{ctx.input.get('n')}"
    return {"ok": True}


DEFS = """
kind: object
name: Account
fields:
  name: {type: string, required: true}
  region: {type: string}
---
kind: object
name: Email
fields:
  subject: {type: string, required: true}
  accounts: {type: json}
---
kind: orchestration
name: t_child
trigger:
  type: autolaunched
  input:
    account: {type: string, required: true}
    n: {type: int}
variables: {result: ''}
stages:
  - name: work
    steps:
      - {name: compute, type: background, flow: t_child.compute, on_failure: fail_run}
---
kind: orchestration
name: t_parent
trigger:
  type: autolaunched
  input:
    accounts: {type: json, required: true}
stages:
  - name: split
    steps:
      - name: per_account
        type: orchestration
        orchestration: t_child
        for_each: '=input.accounts'
        input: {account: '=item', n: '=index'}
  - name: wrap
    steps:
      - {name: wait_here, type: pause, signal: go}
---
kind: orchestration
name: t_one
trigger: {type: autolaunched}
stages:
  - name: only
    steps:
      - {name: child, type: orchestration, orchestration: t_child, input: {account: solo, n: 7}}
---
kind: orchestration
name: t_account_case
trigger: {type: record, object: Account, on: [create]}
variables: {seen: ''}
stages:
  - name: look
    steps:
      - {name: hold, type: pause, signal: release}
---
kind: orchestration
name: t_intake
trigger: {type: record, object: Email, on: [create]}
stages:
  - name: split
    steps:
      - name: per_account
        type: orchestration
        orchestration: t_account_case
        for_each: '=record.accounts'
        record:
          create: Account
          fields: {name: '=item.name', region: '=item.region'}
"""


@pytest.fixture(autouse=True)
def _reset() -> None:
    FAIL.clear()
    CALLS.clear()


def _deploy(h: Harness) -> None:
    h.deploy_text(DEFS)


def _children(h: Harness, run_id: str) -> list[dict[str, Any]]:
    with h.engine.store.read() as tx:
        return tx.child_runs_txn(run_id, 10_000)


def test_one_child_completes_the_step_with_its_result(harness: Harness) -> None:
    _deploy(harness)
    parent = harness.engine.start("t_one", {}, actor="test")
    assert harness.step_status(parent.id) == {"child": "running"}
    [row] = _children(harness, parent.id)
    assert row["orchestration"] == "t_child" and row["parent_step"] == "child"
    child = harness.engine.get_run(row["id"])
    assert child.parent is not None and child.parent.run_id == parent.id
    assert child.input == {"account": "solo", "n": 7}
    harness.work()
    done = harness.engine.get_run(parent.id)
    assert done.status is RunStatus.COMPLETED
    out = done.steps["child"].output
    assert out == {"count": 1, "children": [
        {"run_id": row["id"], "record_id": None, "vars": {"result": "done solo #7"}}]}


def test_for_each_of_50_one_failing_retry_restarts_only_it(harness: Harness) -> None:
    _deploy(harness)
    accounts = [f"acc{i:02d}" for i in range(50)]
    FAIL.add("acc17")
    parent = harness.engine.start("t_parent", {"accounts": accounts}, actor="test")
    assert len(_children(harness, parent.id)) == 50
    harness.work()
    run = harness.engine.get_run(parent.id)
    sr = run.steps["per_account"]
    assert sr.status is StepStatus.FALLOUT, sr
    assert sr.error is not None and sr.error["type"] == "ChildRunsFailed"
    assert "1 of 50" in sr.error["message"] and "#17" in sr.error["message"]
    assert [c["index"] for c in sr.error["children"]] == [17]
    failed_run = sr.children[17]["run_id"]  # type: ignore[index]
    assert harness.engine.get_run(failed_run).status is RunStatus.FAILED
    assert [f["step"] for f in harness.engine.list_fallout()] == ["per_account"]
    assert sorted(CALLS) == sorted(accounts)

    FAIL.clear()
    CALLS.clear()
    harness.engine.resolve_fallout(f"{parent.id}:per_account", "retry", reason="unblocked",
                                   actor="op")
    harness.work()
    assert CALLS == ["acc17"]  # only the failed child ran again
    run = harness.engine.get_run(parent.id)
    sr = run.steps["per_account"]
    assert sr.status is StepStatus.COMPLETED
    assert sr.output is not None and sr.output["count"] == 50
    results = [c["vars"]["result"] for c in sr.output["children"]]
    assert results == [f"done acc{i:02d} #{i}" for i in range(50)]  # in element order
    assert sr.output["children"][17]["run_id"] != failed_run
    assert sr.children[17]["previous_run_ids"] == [failed_run]  # type: ignore[index]
    assert len(_children(harness, parent.id)) == 51  # the failed run is kept, linked
    assert run.current_stage == "wrap"
    finished = [e for e in harness.engine.run_events(parent.id) if e["type"] == "child_run_finished"]
    assert len(finished) == 51  # each child's end counted once


def test_cancel_cascades_to_children_and_theirs(harness: Harness) -> None:
    harness.deploy_text(DEFS)
    harness.deploy_text("""
    kind: orchestration
    name: t_grand
    trigger: {type: autolaunched}
    stages:
      - name: s
        steps:
          - {name: kids, type: orchestration, orchestration: t_mid, for_each: '=[1, 2]'}
    ---
    kind: orchestration
    name: t_mid
    trigger: {type: autolaunched}
    stages:
      - name: s
        steps:
          - {name: grandkids, type: orchestration, orchestration: t_leaf, for_each: '=[1, 2, 3]'}
    ---
    kind: orchestration
    name: t_leaf
    trigger: {type: autolaunched}
    stages:
      - name: s
        steps:
          - {name: hold, type: pause, signal: never}
    """, name="grand.yaml")
    top = harness.engine.start("t_grand", {}, actor="test")
    mids = [r["id"] for r in _children(harness, top.id)]
    leaves = [r["id"] for m in mids for r in _children(harness, m)]
    assert len(mids) == 2 and len(leaves) == 6
    harness.engine.cancel_run(top.id, "customer withdrew", actor="op")
    harness.work()
    for rid in mids + leaves:
        assert harness.engine.get_run(rid).status is RunStatus.CANCELED, rid
    events = [e for e in harness.engine.run_events(top.id) if e["type"] == "child_runs_canceled"]
    assert events and sorted(events[0]["data"]["run_ids"]) == sorted(mids)


def test_a_new_record_per_element(harness: Harness) -> None:
    _deploy(harness)
    email = harness.engine.create_record("Email", {
        "subject": "three accounts", "accounts": [
            {"name": "Acme", "region": "north"}, {"name": "Globex", "region": "south"},
            {"name": "Initech", "region": "east"}]}, actor="test")
    [intake] = harness.engine.list_runs(orchestration="t_intake")
    assert intake.record_id == email["id"]
    rows = _children(harness, intake.id)
    assert [r["orchestration"] for r in rows] == ["t_account_case"] * 3
    names = [harness.engine.get_record(r["record_id"])["name"] for r in rows]
    assert sorted(names) == ["Acme", "Globex", "Initech"]
    # The record triggers of t_account_case did not start a second run per account.
    assert harness.engine.count_runs(orchestration="t_account_case") == 3
    by_index = {harness.engine.get_run(r["id"]).parent.index: r for r in rows}  # type: ignore[union-attr]
    assert harness.engine.get_record(by_index[1]["record_id"])["region"] == "south"
    for r in rows:
        harness.engine.signal(r["id"], "release", {}, actor="test")
    harness.work()
    run = harness.engine.get_run(intake.id)
    assert run.status is RunStatus.COMPLETED
    out = run.steps["per_account"].output
    assert out is not None
    assert [c["record_id"] for c in out["children"]] == [by_index[i]["record_id"] for i in range(3)]


def test_a_child_that_cannot_start_sends_the_step_to_fallout(harness: Harness) -> None:
    _deploy(harness)
    # n must be an int: element 1 gives a string, which the child's input refuses.
    harness.deploy_text("""
    kind: orchestration
    name: t_bad_input
    trigger: {type: autolaunched}
    stages:
      - name: s
        steps:
          - name: kids
            type: orchestration
            orchestration: t_child
            for_each: '=["a", "b"]'
            input: {account: '=item', n: '=index == 1 ? "one" : index'}
    """, name="bad.yaml")
    parent = harness.engine.start("t_bad_input", {}, actor="test")
    harness.work()
    sr = harness.engine.get_run(parent.id).steps["kids"]
    assert sr.status is StepStatus.FALLOUT
    assert sr.error is not None and "1 of 2" in sr.error["message"]
    assert sr.error["children"][0]["run_id"] is None
    assert "n" in sr.error["children"][0]["error"]["message"]
    assert len(_children(harness, parent.id)) == 1  # nothing was written for element 1


def test_for_each_over_the_cap_fails_the_step_with_a_clear_error(harness: Harness) -> None:
    _deploy(harness)
    harness.deploy_text("""
    kind: orchestration
    name: t_capped
    trigger:
      type: autolaunched
      input: {accounts: {type: json, required: true}}
    stages:
      - name: s
        steps:
          - {name: kids, type: orchestration, orchestration: t_child, for_each: '=input.accounts',
             input: {account: '=item'}, max_children: 3}
    """, name="capped.yaml")
    parent = harness.engine.start("t_capped", {"accounts": ["a", "b", "c", "d"]}, actor="test")
    sr = harness.engine.get_run(parent.id).steps["kids"]
    assert sr.status is StepStatus.FALLOUT
    assert sr.error is not None and sr.error["type"] == "LimitExceeded"
    assert "4 elements" in sr.error["message"] and "max_children of 3" in sr.error["message"]
    assert _children(harness, parent.id) == []


def test_an_empty_list_completes_at_once(harness: Harness) -> None:
    _deploy(harness)
    parent = harness.engine.start("t_parent", {"accounts": []}, actor="test")
    run = harness.engine.get_run(parent.id)
    assert run.steps["per_account"].status is StepStatus.COMPLETED
    assert run.steps["per_account"].output == {"count": 0, "children": []}


def test_a_child_whose_parent_is_gone_is_harmless(harness: Harness) -> None:
    _deploy(harness)
    parent = harness.engine.start("t_one", {}, actor="test")
    [row] = _children(harness, parent.id)
    with harness.engine.store.write() as tx:  # the parent vanishes (an operator's DELETE)
        tx.conn.execute(s.runs.delete().where(s.runs.c.id == parent.id))
    harness.work()
    assert harness.engine.get_run(row["id"]).status is RunStatus.COMPLETED
    with harness.engine.store.read() as tx:
        left = tx.conn.execute(select(s.jobs.c.kind)).scalars().all()
    assert left == []


def test_validation_errors_are_located(harness: Harness) -> None:
    _deploy(harness)
    bad = """
    kind: orchestration
    name: t_invalid
    trigger: {type: autolaunched}
    stages:
      - name: s
        steps:
          - {name: a, type: orchestration, orchestration: t_chlid}
          - {name: b, type: orchestration, orchestration: t_child, input: {account: '=item'}}
          - {name: c, type: orchestration, orchestration: t_child, for_each: [1, 2]}
          - {name: d, type: orchestration, orchestration: t_child, for_each: '=[1]',
             record: {create: Acount, fields: {name: '=item'}}}
          - {name: e, type: orchestration, orchestration: t_child, for_each: '=[1]',
             record: {create: Account, fields: {nmae: '=item'}}, max_children: 20000}
          - {name: f, type: orchestration}
          - {name: g, type: orchestration, orchestration: t_child, record: parent}
          - {name: h, type: orchestration, orchestration: t_child, input: {acount: x}}
          - {name: i, type: orchestration, orchestration: t_account_case, for_each: '=[1]',
             record: {create: Email, fields: {subject: x}}}
          - {name: j, type: orchestration, orchestration: t_sched}
    ---
    kind: orchestration
    name: t_sched
    trigger: {type: schedule, cron: '0 6 * * *'}
    stages: [{name: s, steps: [{name: w, type: pause, for: 1h}]}]
    """
    with pytest.raises(DefinitionError) as err:
        harness.deploy_text(bad, name="invalid.yaml")
    messages = [f"{i.path}: {i.message}" for i in err.value.issues]
    text = "\n".join(messages)
    assert "stages[0].steps[0].orchestration: unknown orchestration 't_chlid' (did you mean 't_child'?)" in text
    assert "stages[0].steps[1].input.account: 'item' is only available" in text
    assert "stages[0].steps[2].for_each: for_each takes an '=expression'" in text
    assert "stages[0].steps[3].record.create: unknown object type 'Acount'" in text
    assert "stages[0].steps[4].record.fields.nmae: unknown field 'nmae' of Account" in text
    assert "stages[0].steps[4].max_children: max_children is at most 10000" in text
    assert "stages[0].steps[5].orchestration: required key 'orchestration' is missing" in text
    assert "stages[0].steps[6].record: record: parent, but this orchestration has no record" in text
    assert "stages[0].steps[7].input.acount: orchestration 't_child' has no input 'acount' (did you mean 'account'?)" in text
    assert "stages[0].steps[7].input: input 'account' of orchestration 't_child' is required" in text
    assert "stages[0].steps[8].record.create: orchestration 't_account_case' runs on a Account record, not a Email" in text
    assert "stages[0].steps[9].orchestration: orchestration 't_sched' starts from its schedule trigger" in text
    assert "stages[0].steps[0].input" not in text  # an unknown orchestration: no more said
    assert all(i.line > 0 for i in err.value.issues)
    # and `baton validate` says the same without deploying
    issues = harness.engine.validate_texts({"invalid.yaml": bad.replace("\n    ", "\n")})
    assert any("unknown orchestration 't_chlid'" in i.message for i in issues)


def test_a_failed_child_resumed_by_an_operator_completes_the_step(harness: Harness) -> None:
    _deploy(harness)
    FAIL.add("b")
    parent = harness.engine.start("t_parent", {"accounts": ["a", "b"]}, actor="test")
    harness.work()
    sr = harness.engine.get_run(parent.id).steps["per_account"]
    assert sr.status is StepStatus.FALLOUT
    failed = sr.children[1]["run_id"]  # type: ignore[index]
    FAIL.clear()
    harness.engine.resume_run(failed, "account unblocked", actor="op")
    harness.work()
    run = harness.engine.get_run(parent.id)
    sr = run.steps["per_account"]
    assert sr.status is StepStatus.COMPLETED, sr
    assert sr.output is not None
    assert [c["run_id"] for c in sr.output["children"]] == [sr.children[0]["run_id"], failed]  # type: ignore[index]
    assert len(_children(harness, parent.id)) == 2  # no new run was needed


def test_skip_and_complete_act_as_for_any_step_in_fallout(harness: Harness) -> None:
    _deploy(harness)
    FAIL.add("x")
    skipped = harness.engine.start("t_parent", {"accounts": ["x"]}, actor="test")
    completed = harness.engine.start("t_parent", {"accounts": ["x"]}, actor="test")
    harness.work()
    harness.engine.resolve_fallout(f"{skipped.id}:per_account", "skip", reason="not needed",
                                   actor="op")
    harness.engine.resolve_fallout(f"{completed.id}:per_account", "complete", reason="by hand",
                                   actor="op", output={"count": 0, "children": []})
    for rid, status in ((skipped.id, StepStatus.SKIPPED), (completed.id, StepStatus.COMPLETED)):
        run = harness.engine.get_run(rid)
        assert run.steps["per_account"].status is status
        assert run.current_stage == "wrap"  # the run went on


def test_a_stage_exit_cancels_the_children(harness: Harness) -> None:
    _deploy(harness)
    harness.deploy_text("""
    kind: orchestration
    name: t_exit
    trigger: {type: autolaunched}
    variables: {enough: false}
    stages:
      - name: s
        exit_when: '=steps.stop.status == "completed"'
        steps:
          - {name: kids, type: orchestration, orchestration: t_account_hold, for_each: '=[1, 2]'}
          - {name: stop, type: pause, signal: stop}
    ---
    kind: orchestration
    name: t_account_hold
    trigger: {type: autolaunched}
    stages:
      - name: s
        steps:
          - {name: hold, type: pause, signal: never}
    """, name="exit.yaml")
    parent = harness.engine.start("t_exit", {}, actor="test")
    kids = [r["id"] for r in _children(harness, parent.id)]
    harness.engine.signal(parent.id, "stop", {}, actor="test")
    harness.work()
    run = harness.engine.get_run(parent.id)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["kids"].status is StepStatus.CANCELED
    assert [harness.engine.get_run(k).status for k in kids] == [RunStatus.CANCELED] * 2


def test_an_orchestration_that_starts_itself_stops_at_the_nesting_limit(harness: Harness) -> None:
    from baton.runtime.children import MAX_DEPTH

    harness.deploy_text("""
    kind: orchestration
    name: t_forever
    trigger: {type: autolaunched}
    stages:
      - name: s
        steps:
          - {name: again, type: orchestration, orchestration: t_forever}
    """, name="forever.yaml")
    top = harness.engine.start("t_forever", {}, actor="test")
    harness.work()
    chain = [top.id]
    while kids := _children(harness, chain[-1]):
        chain.append(kids[0]["id"])
    assert len(chain) == MAX_DEPTH + 1  # the top run and ten generations below it
    deepest = harness.engine.get_run(chain[-1])
    assert deepest.parent is not None and deepest.parent.depth == MAX_DEPTH
    sr = deepest.steps["again"]
    assert sr.status is StepStatus.FALLOUT and sr.error is not None
    assert f"nest at most {MAX_DEPTH} deep" in sr.error["children"][0]["error"]["message"]
    assert all(harness.engine.get_run(r).status is RunStatus.IN_PROGRESS for r in chain)
