"""Canceling a fulfillment plan's run as a run (``Engine.cancel_run``: what ``baton runs
cancel``, ``POST /api/runs/{id}/cancel`` and the run page's cancel call) cancels it as its
plan: refused once its point of no return has completed, with the plan's own message and
nothing changed; before it, the plan's run is canceled and a compensation run rolls back
what its steps did — the carrier's shipment is recalled — and the plan's cancel then says
it is canceled (the compensation is not lost). The compensation run itself, and an earlier
plan of an order planned again, are refused, saying what they are. Before, the plan's run
was canceled as a plain run: no PONR check, no rollback, and ``plans cancel`` refused
afterwards. A child run of a plan step is an ordinary run: canceling it sends its step to
fallout, the plan stays cancelable as a plan.

Real Engine and Worker on SQLite and PostgreSQL, virtual time; the order_fulfillment
example with its ``ship`` callouts booking at a carrier on loopback (tests/bank.py) and
undone by a recall callout to it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from baton import flow
from baton.cli.demo_carrier import pointed_at
from baton.engine.status import RunStatus, StepStatus
from baton.errors import TransitionConflict
from baton.flows import FlowContext
from baton.runtime.runs import PlanRunCancel
from tests.bank import Bank, bank_server
from tests.conftest import Harness

# the example's flows, as recorders (CALLS): registered once, by that module
from tests.integration.test_plans import CALLS, EXAMPLE, _work

SHIPMENTS, RECALLS = "/api/shipments", "/api/recalls"


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


@pytest.fixture
def bank() -> Iterator[Bank]:
    with bank_server() as b:
        yield b


def _deploy(h: Harness, bank: Bank) -> None:
    """The example, its carrier pointed at ``bank``; ``ship`` undone by a recall callout
    to it; after the ``billing`` step (the point of no return) the plan waits for a
    ``delivered`` signal, so that it is still in progress past its point of no return."""
    texts = pointed_at(EXAMPLE, bank.url)
    fulfillment = texts["fulfillment.yaml"].replace(
        "rollback: {type: background, flow: orders.recall}}",
        "rollback: {type: callout, connection: carrier, method: POST, path: /recalls, "
        "body: {order: '=record.number'}}}").replace(
        "'=response.body.trackingId'", "'=response.body.ackId'").replace(
        "{name: done, type: milestone, scope: plan, after: [billing]}",
        "{name: delivered, type: pause, lane: billing, scope: plan, signal: delivered, "
        "after: [billing]}")
    assert fulfillment.count("path: /recalls") == 1 and "signal: delivered" in fulfillment
    texts["fulfillment.yaml"] = fulfillment
    h.setenv(CARRIER_TOKEN="tok")
    h.engine.deploy(texts=texts, known_flows=None)


def _order(h: Harness, number: str = "K-1") -> tuple[str, str]:
    """A red laptop (reserved, shipped: booked at the carrier) and broadband in Paris
    (waiting for its installation: before the point of no return). Returns the order's
    id and its plan's run id."""
    order = str(h.engine.create_record(
        "Order", {"number": number, "status": "Submitted"},
        children={"OrderLine": [
            {"product": "LAPTOP-PRO", "attributes": {"color": "red"}},
            {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}}]})["id"])
    _work(h)
    return order, str(h.engine.plans.show(order)["run_id"])


def _done(bank: Bank, path: str) -> int:
    """What the carrier did at ``path`` (one per idempotency key it made effective)."""
    with bank.lock:
        return sum(1 for a in bank.effective.values() if a["path"] == path)


def test_canceling_a_plans_run_cancels_its_plan_and_rolls_back(harness: Harness,
                                                               bank: Bank) -> None:
    h = harness
    _deploy(h, bank)
    order, run_id = _order(h)
    assert _done(bank, SHIPMENTS) == 1 and h.step_status(run_id)["billing"] == "not_started"

    run = h.engine.cancel_run(run_id, "customer withdrew", actor="ops")
    assert run.id == run_id and run.status is RunStatus.CANCELED
    plan = h.engine.run_plan(run_id)
    assert plan is not None and (plan.order_id, plan.kind, plan.current) == (order, "plan", True)
    comp_id = plan.compensation_run_id
    shown = h.engine.plans.show(order)
    assert shown["status"] == "canceled" and shown["compensation"]["run_id"] == comp_id
    assert [s["name"] for s in shown["compensation"]["steps"]] == [
        "rollback_reserve[L1.1]", "rollback_ship[L1.1]"]
    canceled = [e for e in h.engine.timeline(order) if e["type"] == "plan_canceled"]
    assert len(canceled) == 1 and canceled[0]["actor"] == "ops"
    assert canceled[0]["data"]["reason"] == "customer withdrew"

    # the compensation is not canceled as a run: its rollbacks would never run
    assert comp_id is not None
    with pytest.raises(TransitionConflict, match=f"compensation of order {order}'s canceled "
                                                 f"plan \\(run {run_id}\\)"):
        h.engine.cancel_run(comp_id, "stop it", actor="ops")
    assert h.engine.get_run(comp_id).status is RunStatus.IN_PROGRESS
    comp_plan = h.engine.run_plan(comp_id)
    assert comp_plan is not None and comp_plan.kind == "compensation"
    assert comp_plan.plan_run_id == run_id

    CALLS.clear()
    _work(h)
    assert _done(bank, RECALLS) == 1, "the shipment was recalled at the carrier"
    assert "release:L1.1" in CALLS and h.engine.get_run(comp_id).status is RunStatus.COMPLETED
    # canceled once: every face says so, naming its compensation
    with pytest.raises(TransitionConflict, match=f"is canceled; it cannot be canceled: .*"
                                                 f"compensation is run {comp_id}"):
        h.engine.cancel_run(run_id, "again", actor="ops")
    with pytest.raises(TransitionConflict, match="is canceled"):
        h.engine.plans.cancel(order, "again", "ops")
    with pytest.raises(TransitionConflict, match="is completed; it cannot be canceled"):
        h.engine.cancel_run(comp_id, "late", actor="ops")
    assert _done(bank, RECALLS) == 1


def test_past_its_point_of_no_return_a_plans_run_is_not_canceled(harness: Harness,
                                                                 bank: Bank) -> None:
    h = harness
    _deploy(h, bank)
    order, run_id = _order(h)
    (item,) = h.engine.list_work(queue="installers")
    h.engine.complete(item["id"], "tech", {})
    _work(h)
    status = h.step_status(run_id)
    assert status["billing"] == "completed" and status["delivered"] == "running"
    before = h.engine.get_run(run_id)

    with pytest.raises(TransitionConflict) as refused:
        h.engine.cancel_run(run_id, "customer withdrew", actor="ops")
    # the plan's own refusal, as `baton plans cancel` says it
    with pytest.raises(TransitionConflict) as by_plan:
        h.engine.plans.cancel(order, "customer withdrew", "ops")
    assert str(refused.value) == f"run {run_id} is the plan of order {order}: {by_plan.value}"
    assert "can no longer be canceled: step 'billing' is a point of no return" in \
        str(refused.value)
    after = h.engine.get_run(run_id)
    assert after.status is RunStatus.IN_PROGRESS and after.seq == before.seq
    assert h.engine.plans.show(order)["compensation"] is None
    plan = h.engine.run_plan(run_id)
    assert plan is not None and plan.ponr == ("billing",) and plan.ponr_passed == "billing"
    assert plan.ponr_passed_at == after.steps["billing"].completed_at
    assert not [e for e in h.engine.timeline(order) if e["type"] == "plan_canceled"]
    _work(h)
    assert _done(bank, RECALLS) == 0 and _done(bank, SHIPMENTS) == 1  # the booking stays
    h.engine.signal(run_id, "delivered", actor="ops")
    _work(h)
    assert h.engine.get_run(run_id).status is RunStatus.COMPLETED


def test_the_run_driver_refuses_a_plans_run_pointing_at_its_plan(harness: Harness,
                                                                 bank: Bank) -> None:
    """``engine.runs.cancel`` (what an embedder may call) never cancels a plan as a plain
    run: refused, nothing written, naming the plan's cancel."""
    h = harness
    _deploy(h, bank)
    order, run_id = _order(h)
    before = h.engine.get_run(run_id)
    with pytest.raises(PlanRunCancel, match=f"baton plans cancel {order}") as refused:
        h.engine.runs.cancel(run_id, "plain", "ops")
    assert refused.value.order_id == order and f"/api/plans/{order}/cancel" in str(refused.value)
    assert h.engine.get_run(run_id).seq == before.seq
    assert not [e for e in h.engine.run_events(run_id) if e["type"] == "run_canceled"]


def test_an_earlier_plan_of_an_order_planned_again_is_refused(harness: Harness,
                                                              bank: Bank) -> None:
    h = harness
    _deploy(h, bank)
    order, first = _order(h)
    h.engine.plans.cancel(order, "changed", "ops")
    _work(h)
    h.engine.update_record(order, {"status": "Draft"})
    h.engine.update_record(order, {"status": "Submitted"})  # planned again
    _work(h)
    second = str(h.engine.plans.show(order)["run_id"])
    assert second != first
    old = h.engine.run_plan(first)
    assert old is not None and not old.current and old.plan_run_id == second
    with pytest.raises(TransitionConflict, match=f"an earlier plan of order {order}.*"
                                                 f"run {second}"):
        h.engine.cancel_run(first, "which one?", actor="ops")
    assert h.engine.get_run(second).status is RunStatus.IN_PROGRESS
    h.engine.cancel_run(second, "withdrawn", actor="ops")
    assert h.engine.plans.show(order)["status"] == "canceled"


def test_a_plain_run_is_canceled_as_before(harness: Harness) -> None:
    h = harness
    h.deploy_text(CHILD_DEFS.split("---")[0], "child.yaml")
    run = h.engine.start("site_survey", {})
    assert h.engine.run_plan(run) is None
    assert h.engine.cancel_run(run.id, "not needed", actor="ops").status is RunStatus.CANCELED
    with pytest.raises(TransitionConflict, match="is canceled; it cannot be canceled"):
        h.engine.cancel_run(run.id, "again", actor="ops")


# ---- a child run of a plan step ---------------------------------------------------------
UNDONE: list[str] = []


@flow("plan_run_cancel.prepare")
def _prepare(ctx: FlowContext) -> dict[str, Any]:
    return {"prepared": True}


@flow("plan_run_cancel.unprepare")
def _unprepare(ctx: FlowContext) -> dict[str, Any]:
    UNDONE.append(str((ctx.input.get("plan") or {}).get("instance", "")))
    return {"undone": True}


CHILD_DEFS = """kind: orchestration
name: site_survey
trigger:
  type: autolaunched
  input: {order: {type: string}, plan: {type: json}}
stages:
  - name: s
    steps:
      - {name: wait_for_surveyor, type: pause, signal: surveyed}
---
kind: object
name: Job
fields:
  number: {type: string, required: true}
  status: {type: choice, choices: [Draft, Submitted], default: Draft}
---
kind: object
name: JobLine
fields:
  order: {type: ref, object: Job, required: true}
  product: {type: string, required: true}
---
kind: catalog
name: jobs
products:
  - {code: SITE, family: Site}
---
kind: fulfillment
name: jobs
catalog: jobs
trigger: {type: record, object: Job, on: [create, update], when: '=record.status == "Submitted"', changed_to_meet: true}
lines: {object: JobLine}
lanes: [field]
scenarios:
  - name: every_job
    when: '=true'
    steps:
      - {name: prepare, type: background, lane: field, scope: plan, flow: plan_run_cancel.prepare,
         rollback: {type: background, flow: plan_run_cancel.unprepare}}
      - {name: survey, type: orchestration, lane: field, scope: plan, orchestration: site_survey,
         input: {order: '=record.number'}, after: [prepare]}
      - {name: bill, type: background, lane: field, scope: plan, flow: plan_run_cancel.prepare,
         after: [survey], ponr: true}
"""


def test_canceling_a_plan_steps_child_run_sends_the_step_to_fallout(harness: Harness
                                                                    ) -> None:
    """A child run of a plan step is an ordinary run: canceled as one. Its step fails to
    fallout (the plan does not pass its point of no return on it); the plan stays
    cancelable as a plan, with its rollbacks."""
    h = harness
    UNDONE.clear()
    h.deploy_text(CHILD_DEFS, "jobs.yaml")
    job = str(h.engine.create_record("Job", {"number": "J-1", "status": "Submitted"},
                                     children={"JobLine": [{"product": "SITE"}]})["id"])
    h.work()
    plan_run = str(h.engine.plans.show(job)["run_id"])
    (child,) = h.engine.child_runs(plan_run)
    assert h.engine.run_plan(child["id"]) is None  # not a plan's run
    canceled = h.engine.cancel_run(child["id"], "surveyor unavailable", actor="ops")
    assert canceled.status is RunStatus.CANCELED
    h.work()
    run = h.engine.get_run(plan_run)
    assert run.status is RunStatus.IN_PROGRESS
    assert run.steps["survey"].status is StepStatus.FALLOUT
    assert "bill" not in run.steps or run.steps["bill"].status is StepStatus.NOT_STARTED
    h.engine.cancel_run(plan_run, "job withdrawn", actor="ops")
    h.work()
    shown = h.engine.plans.show(job)
    assert shown["status"] == "canceled" and shown["compensation"]["status"] == "completed"
    assert [s["name"] for s in shown["compensation"]["steps"]] == ["rollback_prepare"]
    assert UNDONE == [""]


def test_a_failed_plans_run_is_canceled_as_its_plan_with_its_rollbacks(harness: Harness,
                                                                       bank: Bank) -> None:
    """A plan whose run failed (a step with ``on_failure: fail_run`` refused) is canceled
    as its plan: what its steps did is rolled back (before, a failed plan could only be
    canceled as a plain run, with no rollback; routed to its plan, it was refused)."""
    h = harness
    texts = pointed_at(EXAMPLE, bank.url)
    fulfillment = texts["fulfillment.yaml"].replace(
        "output: {tracking: '=response.body.trackingId'},",
        "output: {tracking: '=response.body.trackingId'}, on_failure: fail_run,")
    assert "on_failure: fail_run" in fulfillment
    texts["fulfillment.yaml"] = fulfillment
    h.setenv(CARRIER_TOKEN="tok")
    h.engine.deploy(texts=texts, known_flows=None)
    bank.script[SHIPMENTS] = [(400, {}, {"error": "no such address"})]  # refused: not retried
    order, run_id = _order(h)
    assert h.engine.get_run(run_id).status is RunStatus.FAILED
    assert _done(bank, SHIPMENTS) == 0

    CALLS.clear()
    run = h.engine.cancel_run(run_id, "give up", actor="ops")
    assert run.status is RunStatus.CANCELED
    plan = h.engine.run_plan(run_id)
    assert plan is not None and plan.compensation_run_id is not None
    _work(h)
    assert h.engine.get_run(plan.compensation_run_id).status is RunStatus.COMPLETED
    assert "release:L1.1" in CALLS  # the reservation was released
    assert h.engine.plans.show(order)["status"] == "canceled"
