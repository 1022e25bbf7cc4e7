"""Fulfillment plans (issue 13): an order submitted with its lines is decomposed and gets
one plan run executed by the engine; PONR refuses cancel; cancel before it compensates in
reverse dependency order. Real Engine and Worker on SQLite and PostgreSQL, virtual time; the
``ship`` steps are callouts to a real carrier service on loopback (``baton demo``'s)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from baton import flow
from baton.cli.demo_carrier import DemoCarrier, pointed_at
from baton.errors import TransitionConflict, ValidationError
from baton.flows import FlowContext
from tests.conftest import Harness

EXAMPLE = Path(__file__).parents[2] / "examples" / "order_fulfillment" / "definitions"
CALLS: list[str] = []


def _recorder(name: str) -> Any:
    def f(ctx: FlowContext) -> dict[str, Any]:
        plan = ctx.input.get("plan") or {}
        CALLS.append(f"{name}:{plan.get('instance', '')}")
        return {"ok": True}
    return f


for _name in ("credit_check", "reserve", "release", "ship", "recall", "provision", "bill", "cease",
              "activate", "deactivate"):
    flow(f"orders.{_name}")(_recorder(_name))


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


@pytest.fixture
def carrier() -> Iterator[DemoCarrier]:
    c = DemoCarrier().start()
    yield c
    c.stop()


_CARRIER: list[DemoCarrier] = []


@pytest.fixture(autouse=True)
def _the_carrier(carrier: DemoCarrier) -> Iterator[None]:
    _CARRIER.append(carrier)
    yield
    _CARRIER.clear()


def _work(h: Harness) -> None:
    """Run the workers until idle, then a minute later once more: a ship callout the
    carrier answered 503 is retried after its back-off (virtual time)."""
    h.work()
    h.clock.advance(timedelta(minutes=1))
    h.work()


def _deploy(h: Harness) -> None:
    """The example, its carrier connection pointed at this test's carrier (and its token in
    the worker's environment)."""
    carrier = _CARRIER[-1]
    h.setenv(CARRIER_TOKEN=carrier.token)
    h.engine.deploy(texts=pointed_at(EXAMPLE, carrier.url), known_flows=None)


LINES = [
    {"product": "LAPTOP-BUNDLE", "quantity": 2},
    {"product": "LAPTOP-PRO", "quantity": 2, "bundle": "#1", "attributes": {"color": "grey"}},
    {"product": "DOCK", "bundle": "#1"},
    {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}},
    {"product": "BROADBAND", "attributes": {"site": "LYON", "speed": "500M"}},
]


def _order(h: Harness, lines: list[dict[str, Any]] | None = None) -> str:
    rec = h.engine.create_record("Order", {"number": "O-1", "status": "Submitted"},
                                 children={"OrderLine": LINES if lines is None else lines})
    return str(rec["id"])


def test_submitted_order_gets_one_plan_by_lane(harness: Harness) -> None:
    _deploy(harness)
    order = _order(harness)
    plan = harness.engine.plans.show(order)
    names = [s["name"] for s in plan["steps"]]
    # The bundle's laptop decomposes into a device line (L2.1) and a shipment (L2.2); the
    # dock into a shipment (L3.1); broadband by family into an access line per site.
    assert names == ["reserve[L2.1]", "ship[L2.1]", "credit_check", "billing", "done",
                     "provision[L2.1]", "install[PARIS]", "install[LYON]",
                     "activate[L4.1]", "activate[L5.1]"]
    steps = {s["name"]: s for s in plan["steps"]}
    assert steps["reserve[L2.1]"]["after"] == ["credit_check"]  # line -> plan
    assert steps["ship[L2.1]"]["after"] == ["reserve[L2.1]"]  # line -> same line
    assert steps["billing"]["after"] == ["ship[L2.1]", "install[PARIS]", "install[LYON]"]
    assert steps["activate[L4.1]"]["after"] == ["install[PARIS]"]  # line -> its group
    assert steps["install[LYON]"]["lines"] == ["L5.1"]
    assert plan["lines"][0]["attributes"] == {"model": "LAPTOP-PRO", "color": "grey"}
    assert [ln["attributes"]["region"] for ln in plan["lines"][-2:]] == ["north", "south"]
    assert plan["pinned"] if "pinned" in plan else plan["catalog_version"] == 1
    assert plan["status"] == "in_progress"


def test_plan_runs_on_the_engine_and_ponr_refuses_cancel(harness: Harness) -> None:
    _deploy(harness)
    order = _order(harness)
    _work(harness)
    items = harness.engine.list_work(queue="installers")
    assert len(items) == 2
    for it in items:
        harness.engine.complete(it["id"], "tech", {})
    _work(harness)
    plan = harness.engine.plans.show(order)
    assert plan["status"] == "completed"
    assert {s["status"] for s in plan["steps"]} == {"completed"}
    assert CALLS.index("credit_check:") < CALLS.index("reserve:L2.1") < CALLS.index("bill:")
    with pytest.raises(TransitionConflict, match="step 'billing' is a point of no return"):
        harness.engine.plans.cancel(order, "customer changed mind", "test")
    harness.engine.create_record("OrderLine", {"order": order, "product": "DOCK"})
    with pytest.raises(TransitionConflict, match="can no longer be amended: step 'billing'"):
        harness.engine.plans.amend(order, "test")


def test_cancel_before_ponr_rolls_back_in_reverse_dependency_order(harness: Harness) -> None:
    _deploy(harness)
    order = _order(harness)
    _work(harness)  # everything but the installs (manual) and what waits for them
    status = {s["name"]: s["status"] for s in harness.engine.plans.show(order)["steps"]}
    assert status["ship[L2.1]"] == "completed" and status["billing"] == "not_started"
    out = harness.engine.plans.cancel(order, "customer canceled", "test")
    assert out["rollbacks"] == ["rollback_reserve[L2.1]", "rollback_ship[L2.1]"]
    CALLS.clear()
    _work(harness)
    # ship is undone before reserve: it depended on it
    assert CALLS == ["recall:L2.1", "release:L2.1"]
    plan = harness.engine.plans.show(order)
    assert plan["status"] == "canceled"
    assert plan["compensation"]["status"] == "completed"
    assert harness.engine.list_work(queue="installers") == []
    events = [e["type"] for e in harness.engine.timeline(order)]
    assert "plan_generated" in events and "plan_canceled" in events


def test_lines_are_created_with_the_order_atomically(harness: Harness) -> None:
    _deploy(harness)
    bad = [{"product": "DOCK"}, {"product": "DOCK", "bundle": "#5"}]
    with pytest.raises(ValidationError):
        _order(harness, bad)
    assert harness.engine.count_records("Order") == 0
    assert harness.engine.count_records("OrderLine") == 0


def test_amend_plans_only_the_difference(harness: Harness) -> None:
    _deploy(harness)
    order = _order(harness)
    _work(harness)  # up to the manual installations
    before = harness.engine.get_run(harness.engine.plans.show(order)["run_id"])
    lyon = next(r for r in harness.engine.list_records("OrderLine", limit=50)
            if (r.get("attributes") or {}).get("site") == "LYON")
    harness.engine.update_record(lyon["id"], {"action": "cancel"})  # a line removed
    harness.engine.create_record("OrderLine", {"order": order, "product": "LAPTOP-PRO",
                                               "attributes": {"color": "blue"}})  # one added
    diff = harness.engine.plans.diff(order)
    # the canceled Lyon line is a disconnect: its steps leave, the example's `cease` joins
    assert diff["added"] == ["reserve[L6.1]", "ship[L6.1]", "provision[L6.1]", "cease[L5.1]"]
    assert diff["removed"] == ["install[LYON]", "activate[L5.1]"]
    assert diff["changed"] == [] and "billing" in diff["rewired"]
    assert "reserve[L2.1]" in diff["unchanged"] and diff["compensate"] == []
    CALLS.clear()
    out = harness.engine.plans.amend(order, "test")
    assert out["revision"] == 2
    _work(harness)
    after = harness.engine.get_run(before.id)
    # unchanged steps were not run again: the same completion
    assert after.steps["reserve[L2.1]"].completed_at == before.steps["reserve[L2.1]"].completed_at
    assert sorted(CALLS) == ["cease:L5.1", "provision:L6.1", "reserve:L6.1"]
    # ship[L2.1] booked once before the amend (after the carrier's one busy answer), the
    # added line's ship[L6.1] now: two shipments, each under its own idempotency key
    assert _CARRIER[-1].stats.booked == 2 and _CARRIER[-1].stats.busy == 1
    assert "install[LYON]" not in after.steps
    assert [i["step"] for i in harness.engine.list_work(queue="installers")] == ["install[PARIS]"]
    plan = harness.engine.plans.show(order)
    assert plan["revision"] == 2 and plan["status"] == "in_progress"
    assert [s["name"] for s in plan["steps"]][-2:] == ["activate[L4.1]", "cease[L5.1]"]
    cease = plan["steps"][-1]
    assert cease["status"] == "completed" and cease["lane"] == "provisioning"


def test_a_line_changed_in_place_changes_its_steps(harness: Harness) -> None:
    """A line-item step's line is stored by key in the plan graph (its view once, in the
    graph's lines): the diff still sees a line whose attributes changed in its steps."""
    _deploy(harness)
    order = _order(harness)
    laptop = next(r for r in harness.engine.list_records("OrderLine", limit=50)
                  if r["product"] == "LAPTOP-PRO")
    harness.engine.update_record(laptop["id"], {"attributes": {"color": "blue"}})
    diff = harness.engine.plans.diff(order)
    assert diff["changed"] and diff["added"] == [] and diff["removed"] == []
    keys = {n[n.index("[") + 1:-1] for n in diff["changed"]}
    assert len(keys) == 1 and all("[" in n for n in diff["changed"])
    assert any(n.startswith("reserve[") for n in diff["changed"])


def test_amend_compensates_a_removed_completed_step(harness: Harness) -> None:
    _deploy(harness)
    order = _order(harness)
    _work(harness)
    laptop = next(r for r in harness.engine.list_records("OrderLine", limit=50)
              if r["product"] == "LAPTOP-PRO")
    harness.engine.update_record(laptop["id"], {"action": "cancel"})
    diff = harness.engine.plans.diff(order)
    assert diff["compensate"] == ["reserve[L2.1]", "ship[L2.1]"]
    CALLS.clear()
    out = harness.engine.plans.amend(order, "test")
    # the rollbacks are steps of the amended plan (no run of their own)
    assert out["compensation_run_id"] is None
    assert out["rollbacks"] == ["rollback_reserve[L2.1]", "rollback_ship[L2.1]"]
    _work(harness)
    assert CALLS == ["recall:L2.1", "release:L2.1"]
    steps = {s["name"]: s for s in harness.engine.plans.show(order)["steps"]}
    assert steps["rollback_reserve[L2.1]"]["after"] == ["rollback_ship[L2.1]"]
    assert steps["rollback_reserve[L2.1]"]["status"] == "completed"
    assert steps["rollback_ship[L2.1]"]["status"] == "completed"
    assert "ship[L2.1]" not in steps


def test_a_worker_keeps_a_bounded_number_of_plan_definitions_built(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every order has its own plan definition: a worker keeps the most recently used
    within a budget of steps (not every plan it ever ran), and builds a dropped one again
    from its stored graph when its run moves on."""
    from baton.runtime import definitions

    monkeypatch.setattr(definitions, "PLAN_CACHE_STEPS", 15)
    _deploy(harness)
    orders = [_order(harness) for _ in range(4)]  # ten steps each
    _work(harness)
    repo = harness.engine.definitions
    assert 1 <= len(repo._plans) <= 2 and repo._plan_steps <= 20
    for it in harness.engine.list_work(queue="installers"):
        harness.engine.complete(it["id"], "tech", {})
    _work(harness)  # the dropped plans are built again from their graphs
    assert [harness.engine.plans.show(o)["status"] for o in orders] == ["completed"] * 4
    assert len(repo._plans) <= 2
    # nor does the worker keep them in its own step cache (one entry per order's step)
    assert not [k for k in harness.worker._step_defs if k[0].startswith("plan:")]


DIAMOND = """
kind: fulfillment
name: diamond
trigger: {type: record, object: Order, on: [create, update], when: '=record.status == "Submitted"', changed_to_meet: true}
lines: {object: OrderLine}
lanes: [left, right]
scenarios:
  - name: every_order
    when: '=true'
    steps:
      - {name: top, type: background, scope: plan, flow: orders.reserve,
         rollback: {type: background, flow: orders.release}}
      - {name: west, type: background, scope: plan, lane: left, flow: orders.provision, after: [top],
         rollback: {type: background, flow: orders.deactivate}}
      - {name: east, type: background, scope: plan, lane: right, flow: orders.activate, after: [top],
         rollback: {type: background, flow: orders.recall}}
      - {name: bottom, type: background, scope: plan, flow: orders.credit_check, after: [west, east],
         rollback: {type: background, flow: orders.release}}
      - {name: sign_off, type: interactive, scope: plan, after: [bottom], assign: {queue: installers}}
      - {name: invoice, type: background, scope: plan, flow: orders.bill, after: [sign_off], ponr: true}
"""


def test_cancel_compensates_a_diamond_in_reverse_dependency_order_by_the_audit_log(
        harness: Harness) -> None:
    """top -> (west, east) -> bottom, all completed, a person's sign-off before the PONR:
    canceling undoes bottom first, then west and east (in either order), then top; the
    order is read from the audit log, where each rollback's completion is an event."""
    texts = {f.name: f.read_text() for f in EXAMPLE.iterdir()
             if f.name in ("objects.yaml", "catalog.yaml")}
    harness.engine.deploy(texts={**texts, "diamond.yaml": DIAMOND}, known_flows=None)
    order = _order(harness, LINES[3:4])
    _work(harness)
    status = {s["name"]: s["status"] for s in harness.engine.plans.show(order)["steps"]}
    assert [status[n] for n in ("top", "west", "east", "bottom", "invoice")] == [
        "completed", "completed", "completed", "completed", "not_started"], status
    out = harness.engine.plans.cancel(order, "customer canceled", "test")
    assert sorted(out["rollbacks"]) == ["rollback_bottom", "rollback_east", "rollback_top",
                                        "rollback_west"]
    _work(harness)
    plan = harness.engine.plans.show(order)
    assert plan["status"] == "canceled" and plan["compensation"]["status"] == "completed"
    # The plan run's log says it was canceled and which run compensates; that run's log
    # has each rollback's completion, in the order they completed.
    (canceled,) = [e for e in harness.engine.run_events(plan["run_id"])
                   if e["type"] == "plan_canceled"]
    comp = canceled["data"]["compensation_run"]
    assert comp == plan["compensation"]["run_id"]
    done = [e["data"]["step"] for e in harness.engine.run_events(comp)
            if e["type"] == "step_completed"]
    assert sorted(done) == sorted(out["rollbacks"]), done
    assert done[0] == "rollback_bottom" and done[-1] == "rollback_top", done
    assert set(done[1:3]) == {"rollback_west", "rollback_east"}, done


def test_not_before_holds_a_step_until_the_line_start_date_on_virtual_time(
        harness: Harness) -> None:
    """The Lyon installation may not start before its line's start date, three days out:
    the plan waits (a durable timer), the work item appears once the clock reaches it."""
    _deploy(harness)
    start = (harness.clock.now() + timedelta(days=3)).date().isoformat()
    lines = [{"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}},
             {"product": "BROADBAND", "attributes": {"site": "LYON", "speed": "1G"},
              "start_date": start}]
    order = _order(harness, lines)
    _work(harness)

    def installs() -> list[str]:
        return sorted(str(w["title"]) for w in harness.engine.list_work(queue="installers"))

    status = {s["name"]: s["status"] for s in harness.engine.plans.show(order)["steps"]}
    assert status["install[PARIS]"] == "waiting_for_person" and status["install[LYON]"] != \
        "waiting_for_person", status
    assert status["wait_install[LYON]"] not in ("completed", "not_started"), status
    assert len(installs()) == 1
    harness.clock.advance(timedelta(days=2))
    _work(harness)
    assert len(installs()) == 1  # not yet
    harness.clock.advance(timedelta(days=1, hours=1))
    _work(harness)
    status = {s["name"]: s["status"] for s in harness.engine.plans.show(order)["steps"]}
    assert status["install[LYON]"] == "waiting_for_person", status
    assert status["wait_install[LYON]"] == "completed"
    assert len(installs()) == 2
