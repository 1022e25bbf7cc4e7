"""Amending an order whose plan has completed steps (QA): a changed step is rolled back
before it runs again — never alongside its rollback —, a failed rollback holds the step's
re-execution (fallout), and the re-execution is a new iteration of the step, with its own
idempotency key. And an order line whose ``attributes`` is not a mapping is refused with
an error naming the line, nothing stored. Real Engine and Worker on SQLite and PostgreSQL,
virtual time, the ``ship`` callouts to ``baton demo``'s carrier on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from baton import flow
from baton.cli.demo_carrier import DemoCarrier, pointed_at
from baton.errors import StepFailure, ValidationError
from baton.flows import FlowContext
from tests.conftest import Harness

# the example's flows, as recorders (CALLS): registered once, by that module
from tests.integration.test_plans import CALLS, EXAMPLE, _work

FAIL_RELEASE: list[bool] = []


@flow("amend_test.release")
def _release(ctx: FlowContext) -> dict[str, Any]:
    """orders.release, failing (for good: no retry) while FAIL_RELEASE holds True."""
    plan = ctx.input.get("plan") or {}
    CALLS.append(f"release:{plan.get('instance', '')}")
    if FAIL_RELEASE and FAIL_RELEASE[-1]:
        raise StepFailure("the warehouse refused the release", retryable=False)
    return {"ok": True}


@pytest.fixture(autouse=True)
def _reset() -> Iterator[None]:
    CALLS.clear()
    FAIL_RELEASE.clear()
    yield
    FAIL_RELEASE.clear()


@pytest.fixture
def carrier() -> Iterator[DemoCarrier]:
    c = DemoCarrier(busy_first=False).start()
    yield c
    c.stop()


def _deploy(h: Harness, carrier: DemoCarrier, *, failing_release: bool = False) -> None:
    texts = pointed_at(EXAMPLE, carrier.url)
    if failing_release:
        texts["fulfillment.yaml"] = texts["fulfillment.yaml"].replace(
            "flow: orders.release}", "flow: amend_test.release}")
        assert "amend_test.release" in texts["fulfillment.yaml"]
    h.setenv(CARRIER_TOKEN=carrier.token)
    h.engine.deploy(texts=texts, known_flows=None)


def _order(h: Harness) -> tuple[str, str]:
    """An order of a red laptop (L1: its device line L1.1 is reserved, shipped and
    provisioned) and broadband in Paris; worked up to the manual installation. Returns the
    order's id and the laptop line's."""
    rec = h.engine.create_record(
        "Order", {"number": "A-1", "status": "Submitted"},
        children={"OrderLine": [
            {"product": "LAPTOP-PRO", "attributes": {"color": "red"}},
            {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}}]})
    _work(h)
    laptop = next(r for r in h.engine.list_records("OrderLine", limit=50)
                  if r["product"] == "LAPTOP-PRO")
    return str(rec["id"]), str(laptop["id"])


def _steps(h: Harness, order: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in h.engine.plans.show(order)["steps"]}


def _events(h: Harness, run_id: str) -> list[tuple[str, str, int | None]]:
    """(type, step, iteration) of the run's step events, in the order they happened."""
    return [(e["type"], e["data"].get("step"), e["data"].get("iteration"))
            for e in h.engine.run_events(run_id) if e["type"].startswith("step_")]


def test_a_changed_step_runs_again_only_after_its_rollback(
        harness: Harness, carrier: DemoCarrier) -> None:
    _deploy(harness, carrier)
    order, laptop = _order(harness)
    before = _steps(harness, order)
    assert before["ship[L1.1]"]["status"] == before["reserve[L1.1]"]["status"] == "completed"
    harness.engine.update_record(laptop, {"attributes": {"color": "blue"}})
    CALLS.clear()
    out = harness.engine.plans.amend(order, "test")
    assert out["compensate"] == ["reserve[L1.1]", "ship[L1.1]"]
    assert out["rollbacks"] == ["rollback_reserve[L1.1]", "rollback_ship[L1.1]"]
    # the rollbacks are steps of the amended plan, the changed steps wait for them
    steps = _steps(harness, order)
    assert "rollback_ship[L1.1]" in steps["ship[L1.1]"]["after"]
    assert "rollback_reserve[L1.1]" in steps["reserve[L1.1]"]["after"]
    assert steps["rollback_reserve[L1.1]"]["after"] == ["rollback_ship[L1.1]"]
    assert steps["rollback_reserve[L1.1]"]["compensates"] == "reserve[L1.1]"
    assert {steps[n]["status"] for n in ("reserve[L1.1]", "ship[L1.1]")} == {"not_started"}
    _work(harness)
    # undone in reverse dependency order, then done again: the release never meets the
    # new reservation (the example's reservation id is the same for both)
    assert CALLS == ["recall:L1.1", "release:L1.1", "reserve:L1.1", "provision:L1.1"], CALLS
    events = _events(harness, out["run_id"])

    def at(kind: str, step: str) -> int:
        return max(i for i, (t, s, _) in enumerate(events) if t == kind and s == step)

    assert at("step_completed", "rollback_ship[L1.1]") < at("step_started", "ship[L1.1]")
    assert at("step_completed", "rollback_reserve[L1.1]") < at("step_started", "reserve[L1.1]")
    steps = _steps(harness, order)
    assert {steps[n]["status"] for n in ("rollback_reserve[L1.1]", "rollback_ship[L1.1]",
                                         "reserve[L1.1]", "ship[L1.1]", "provision[L1.1]")
            } == {"completed"}
    # the rollback saw the line as its step had (red), the re-execution the line now (blue)
    graph = harness.engine.plans.revision(order)["graph"]
    defs = {s["name"]: s for s in graph["definition"]["stages"][0]["steps"]}
    assert defs["rollback_reserve[L1.1]"]["input"]["plan"]["lines"][0]["attributes"][
        "color"] == "red"
    assert harness.engine.plans.show(order)["status"] == "in_progress"  # (the installation)
    # asked again: nothing differs (the rollbacks stay in the plan, as they were)
    again = harness.engine.plans.amend(order, "test")
    assert not again["applied"] and again["compensate"] == [] and again["rollbacks"] == []


def test_a_changed_step_runs_again_as_a_new_iteration_under_a_new_idempotency_key(
        harness: Harness, carrier: DemoCarrier) -> None:
    _deploy(harness, carrier)
    order, laptop = _order(harness)
    run_id = harness.engine.plans.show(order)["run_id"]
    first = harness.engine.get_run(run_id).steps["ship[L1.1]"]
    assert first.iteration == 1 and carrier.stats.booked == 1
    harness.engine.update_record(laptop, {"attributes": {"color": "blue"}})
    harness.engine.plans.amend(order, "test")
    _work(harness)
    again = harness.engine.get_run(run_id).steps["ship[L1.1]"]
    assert again.status.value == "completed"
    assert again.iteration == 2
    # a new shipment: the carrier saw a new key, not the first one's again
    assert (carrier.stats.booked, carrier.stats.repeated) == (2, 0)
    assert again.output != first.output


def test_a_failed_rollback_holds_the_changed_step_in_fallout(
        harness: Harness, carrier: DemoCarrier) -> None:
    _deploy(harness, carrier, failing_release=True)
    order, laptop = _order(harness)
    harness.engine.update_record(laptop, {"attributes": {"color": "blue"}})
    FAIL_RELEASE.append(True)
    CALLS.clear()
    out = harness.engine.plans.amend(order, "test")
    _work(harness)
    steps = _steps(harness, order)
    assert steps["rollback_ship[L1.1]"]["status"] == "completed"
    assert steps["rollback_reserve[L1.1]"]["status"] == "fallout"
    assert steps["reserve[L1.1]"]["status"] == steps["ship[L1.1]"]["status"] == "not_started"
    fallout = [f for f in harness.engine.list_fallout() if f["run_id"] == out["run_id"]]
    assert [f["step"] for f in fallout] == ["rollback_reserve[L1.1]"]
    assert "reserve:L1.1" not in CALLS
    # amended again meanwhile (another color): the rollback still waits, in the plan
    harness.engine.update_record(laptop, {"attributes": {"color": "green"}})
    again = harness.engine.plans.amend(order, "test")
    assert again["applied"] and again["compensate"] == [] and again["rollbacks"] == []
    steps = _steps(harness, order)
    assert steps["rollback_reserve[L1.1]"]["status"] == "fallout"
    assert "rollback_reserve[L1.1]" in steps["reserve[L1.1]"]["after"]
    # the operator retries once the warehouse is fixed: then the line is done again
    FAIL_RELEASE.append(False)
    harness.engine.resolve_fallout(fallout[0]["id"], "retry", reason="warehouse fixed",
                                   actor="ops")
    _work(harness)
    steps = _steps(harness, order)
    assert {steps[n]["status"] for n in ("rollback_reserve[L1.1]", "reserve[L1.1]",
                                         "ship[L1.1]")} == {"completed"}
    assert CALLS.index("release:L1.1") < CALLS.index("reserve:L1.1")


def test_cancel_rolls_back_what_an_amendment_left_to_roll_back(
        harness: Harness, carrier: DemoCarrier) -> None:
    """Canceled while an amendment's rollback is in fallout: the compensation run does it
    (the original reservation is released once, by the cancel's compensation)."""
    _deploy(harness, carrier, failing_release=True)
    order, laptop = _order(harness)
    harness.engine.update_record(laptop, {"attributes": {"color": "blue"}})
    FAIL_RELEASE.append(True)
    harness.engine.plans.amend(order, "test")
    _work(harness)
    assert _steps(harness, order)["rollback_reserve[L1.1]"]["status"] == "fallout"
    FAIL_RELEASE.append(False)
    CALLS.clear()
    out = harness.engine.plans.cancel(order, "customer canceled", "test")
    assert "rollback_reserve[L1.1]" in out["rollbacks"]
    assert "rollback_ship[L1.1]" not in out["rollbacks"]  # (undone by the amendment)
    _work(harness)
    plan = harness.engine.plans.show(order)
    assert plan["status"] == "canceled" and plan["compensation"]["status"] == "completed"
    assert CALLS.count("release:L1.1") == 1 and "recall:L1.1" not in CALLS, CALLS


# ---- an order line's attributes must be a mapping ---------------------------------------
@pytest.mark.parametrize("attributes", ["PARIS", [1, 2], 3])
def test_a_line_whose_attributes_are_not_a_mapping_is_refused_nothing_stored(
        harness: Harness, carrier: DemoCarrier, attributes: Any) -> None:
    _deploy(harness, carrier)
    with pytest.raises(ValidationError,
                       match=r"OrderLine L2 \(rec_\w+\): attributes: must be a mapping of "
                             r"names to values, not an? (string|list|integer)") as err:
        harness.engine.create_record(
            "Order", {"number": "O-4", "status": "Submitted"},
            children={"OrderLine": [{"product": "DOCK"},
                                    {"product": "BROADBAND", "attributes": attributes}]})
    assert "\n" not in str(err.value)
    assert harness.engine.count_records("Order") == 0
    assert harness.engine.count_records("OrderLine") == 0
    assert harness.engine.list_runs() == []


def test_a_line_updated_to_attributes_that_are_not_a_mapping_is_refused_by_diff_and_amend(
        harness: Harness, carrier: DemoCarrier) -> None:
    _deploy(harness, carrier)
    order, laptop = _order(harness)
    harness.engine.update_record(laptop, {"attributes": "x"})
    for act in (harness.engine.plans.diff, lambda o: harness.engine.plans.amend(o, "test")):
        with pytest.raises(ValidationError, match=rf"OrderLine L1 \({laptop}\): attributes: "
                                                  "must be a mapping of names to values, not a "
                                                  "string"):
            act(order)
    plan = harness.engine.plans.show(order)
    assert plan["revision"] == 1 and plan["status"] == "in_progress"
