"""``type: approval`` on both databases: a resource assignee resolved at run time, the
record locked against people's edits while it is pending (not against the process), the
approval history on the timeline, routing on the decision, recall by the submitter only."""

from __future__ import annotations

from typing import Any

import pytest

from baton import flow
from baton.errors import DefinitionError, PermissionDenied, TransitionConflict, ValidationError
from baton.flows import FlowContext


@flow("t_approvals.touch")
def _touch(ctx: FlowContext) -> dict[str, Any]:
    ctx.update_record({"note": "the process may write"})
    return {}


DEFS = """
kind: object
name: Quote
fields:
  amount: {type: int}
  approver: {type: string}
  note: {type: string}
  status: {type: choice, choices: [Draft, Approved, Rejected, Recalled], default: Draft}
---
kind: orchestration
name: t_quote_approval
trigger: {type: record, object: Quote, on: [create], when: '=record.amount > 1000'}
stages:
  - name: approve
    steps:
      - name: manager
        type: approval
        assign: {resource: '=record.approver'}
        instructions: Approve quotes over 1000.
      - {name: touch, type: background, flow: t_approvals.touch}
    next:
      - {when: '=steps.manager.output.decision == "approve"', goto: approved, label: Approved}
      - {when: '=steps.manager.output.decision == "recalled"', goto: end, label: Recalled}
      - {goto: rejected, label: Rejected}
  - name: approved
    steps: [{name: book, type: interactive, assign: {queue: sales}}]
  - name: rejected
    steps: [{name: rework, type: interactive, assign: {queue: sales}}]
"""


def start(harness: Any, approver: str = "queue:managers") -> tuple[dict[str, Any], dict[str, Any]]:
    harness.deploy_text(DEFS)
    eng = harness.engine
    rec = eng.create_record("Quote", {"amount": 5000, "approver": approver}, actor="user:ann")
    harness.work()
    (item,) = eng.list_work(queue="managers") if approver.startswith("queue:") else \
        eng.list_work(user=approver.split(":")[-1])
    return rec, item


def test_approve_routes_and_the_history_is_on_the_timeline(harness: Any) -> None:
    rec, item = start(harness)
    eng = harness.engine
    assert item["assignee_kind"] == "queue" and item["assignee"] == "managers"
    assert [f["name"] for f in item["form"]] == ["decision", "comments"]
    # the record is locked for people while the approval is pending...
    with pytest.raises(TransitionConflict, match="locked: approval 'manager'"):
        eng.update_record(rec["id"], {"amount": 1}, actor="user:ann")
    # ...but the process wrote to it (the background step's flow ran)
    assert eng.get_record(rec["id"])["note"] == "the process may write"
    with pytest.raises(ValidationError):
        eng.complete(item["id"], "mo", {"decision": "maybe"})
    result = eng.complete(item["id"], "mo", {"decision": "approve", "comments": "fine"})
    out = result["run"].steps["manager"].output
    assert (out["decision"], out["comments"], out["approver"]) == ("approve", "fine", "mo")
    assert result["run"].current_stage == "approved"
    assert result["run"].decisions[-1]["label"] == "Approved"
    eng.update_record(rec["id"], {"amount": 6000}, actor="user:ann")  # unlocked again
    kinds = [(e["type"], e["actor"]) for e in eng.timeline(rec["id"])
             if e["type"] in ("approval_requested", "approval_decided")]
    assert kinds == [("approval_requested", "system"), ("approval_decided", "mo")]
    decided = next(e for e in eng.timeline(rec["id"]) if e["type"] == "approval_decided")
    assert decided["data"]["decision"] == "approve" and decided["data"]["comments"] == "fine"


def test_resource_names_a_user(harness: Any) -> None:
    _rec, item = start(harness, approver="user:mo")
    assert (item["assignee_kind"], item["assignee"]) == ("user", "mo")
    result = harness.engine.complete(item["id"], "mo", {"decision": "reject"})
    assert result["run"].current_stage == "rejected"


def test_recall_by_the_submitter_only(harness: Any) -> None:
    rec, item = start(harness)
    eng = harness.engine
    with pytest.raises(PermissionDenied, match="only who submitted"):
        eng.work.recall(item["id"], "eve", None)
    result = eng.work.recall(item["id"], "ann", None)
    out = result["run"].steps["manager"].output
    assert out["decision"] == "recalled" and out["recalled_by"] == "ann"
    assert result["run"].status.value == "completed"
    assert eng.get_work_item(item["id"])["status"] == "canceled"
    eng.update_record(rec["id"], {"amount": 7000}, actor="user:ann")  # unlocked
    with pytest.raises(TransitionConflict):
        eng.work.recall(item["id"], "ann", None)


def test_bad_approvals_are_located(harness: Any) -> None:
    bad = DEFS.replace("assign: {resource: '=record.approver'}",
                       "assign: {resource: managers}\n        form: [{name: x, type: string}]")
    with pytest.raises(DefinitionError) as exc:
        harness.deploy_text(bad)
    text = str(exc.value)
    assert "a resource is an =expression" in text and "form" in text
