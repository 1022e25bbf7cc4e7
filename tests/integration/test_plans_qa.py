"""Fulfillment plans as a DRO user amends them (QA): a line removed from the order takes
only its own steps with it — the lines after it keep their keys, their steps and their
state (no recall and second shipment of a laptop the customer kept, no installer's task
reopened) and a removed line's key is never given to a new line; a canceled bundle takes
its child lines with it; an order without lines is refused when submitted, and an
amendment that would remove every line is refused (that is a cancel), nothing stored.
Real Engine and Worker on SQLite and PostgreSQL, virtual time, the ``ship`` callouts to
``baton demo``'s carrier on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from baton.cli.demo_carrier import DemoCarrier, pointed_at
from baton.errors import TransitionConflict
from baton.plans.decompose import OrderLine, PlanningError, commercial_keys, line_keys
from tests.conftest import Harness

# the example's flows, as recorders (CALLS): registered once, by that module
from tests.integration.test_plans import CALLS, EXAMPLE, _work


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


@pytest.fixture
def carrier() -> Iterator[DemoCarrier]:
    c = DemoCarrier(busy_first=False).start()
    yield c
    c.stop()


def _deploy(h: Harness, carrier: DemoCarrier) -> None:
    h.setenv(CARRIER_TOKEN=carrier.token)
    h.engine.deploy(texts=pointed_at(EXAMPLE, carrier.url), known_flows=None)


def _order(h: Harness, lines: list[dict[str, Any]]) -> str:
    rec = h.engine.create_record("Order", {"number": "Q-1", "status": "Submitted"},
                                 children={"OrderLine": lines})
    _work(h)
    return str(rec["id"])


def _lines(h: Harness) -> list[dict[str, Any]]:
    return h.engine.list_records("OrderLine", limit=50)


def _steps(h: Harness, order: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in h.engine.plans.show(order)["steps"]}


RED = {"product": "LAPTOP-PRO", "attributes": {"color": "red"}}
BLUE = {"product": "LAPTOP-PRO", "attributes": {"color": "blue"}}
PARIS = {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}}


def test_a_removed_line_takes_only_its_own_steps(harness: Harness,
                                                 carrier: DemoCarrier) -> None:
    _deploy(harness, carrier)
    order = _order(harness, [RED, BLUE, PARIS])
    assert carrier.stats.booked == 2
    before = _steps(harness, order)
    assert before["ship[L2.1]"]["status"] == "completed"
    assert before["install[PARIS]"]["status"] == "waiting_for_person"
    items = [w["id"] for w in harness.engine.list_work()]
    assert len(items) == 1  # the installation in Paris
    red = next(r for r in _lines(harness) if r["attributes"] == {"color": "red"})
    harness.engine.delete_record(red["id"])
    out = harness.engine.plans.amend(order, "qa")
    # the red laptop's steps leave (its completed ones undone); nothing of the blue laptop
    # (L2) or of the broadband (L3) is renumbered, changed or done again
    assert out["removed"] == ["reserve[L1.1]", "ship[L1.1]", "provision[L1.1]"]
    assert out["added"] == [] and out["changed"] == []
    assert out["compensate"] == ["reserve[L1.1]", "ship[L1.1]"]
    CALLS.clear()
    _work(harness)
    assert sorted(CALLS) == ["recall:L1.1", "release:L1.1"], CALLS
    assert carrier.stats.booked == 2  # the blue laptop is not shipped a second time
    after = _steps(harness, order)
    for name in ("reserve[L2.1]", "ship[L2.1]", "provision[L2.1]"):
        assert after[name]["status"] == "completed"
    assert after["install[PARIS]"]["status"] == "waiting_for_person"
    assert "activate[L3.1]" in after
    # the installer's task is the one that was open: not canceled and opened afresh
    assert [w["id"] for w in harness.engine.list_work()] == items
    plan = harness.engine.plans.show(order)
    assert [ln["source"] for ln in plan["lines"]] == ["L2", "L2", "L3"]


def test_a_removed_lines_key_is_never_given_to_a_new_line(harness: Harness,
                                                          carrier: DemoCarrier) -> None:
    _deploy(harness, carrier)
    order = _order(harness, [RED, PARIS, BLUE])
    blue = next(r for r in _lines(harness) if r["attributes"] == {"color": "blue"})
    harness.engine.delete_record(blue["id"])
    first = harness.engine.plans.amend(order, "qa")
    assert first["rollbacks"] == ["rollback_reserve[L3.1]", "rollback_ship[L3.1]"]
    # a new laptop: L4, not L3 (whose rollbacks are in the plan under that name)
    harness.engine.create_record("OrderLine", {"order": order, **BLUE})
    second = harness.engine.plans.amend(order, "qa")
    assert second["added"] == ["reserve[L4.1]", "ship[L4.1]", "provision[L4.1]"]
    assert second["removed"] == second["changed"] == second["rollbacks"] == []
    CALLS.clear()
    _work(harness)
    assert sorted(CALLS) == ["provision:L4.1", "recall:L3.1", "release:L3.1",
                             "reserve:L4.1"], CALLS
    steps = _steps(harness, order)
    assert steps["rollback_ship[L3.1]"]["status"] == "completed"
    assert steps["ship[L4.1]"]["status"] == "completed"
    assert "rollback_ship[L4.1]" not in steps["ship[L4.1]"]["after"]
    assert carrier.stats.booked == 3


def test_a_canceled_bundle_takes_its_child_lines_with_it(harness: Harness,
                                                         carrier: DemoCarrier) -> None:
    _deploy(harness, carrier)
    order = _order(harness, [
        {"product": "LAPTOP-BUNDLE"},
        {"product": "LAPTOP-PRO", "bundle": "#1", "attributes": {"color": "grey"}},
        {"product": "DOCK", "bundle": "#1"}, PARIS])
    assert _steps(harness, order)["ship[L2.1]"]["status"] == "completed"
    bundle = next(r for r in _lines(harness) if r["product"] == "LAPTOP-BUNDLE")
    harness.engine.update_record(bundle["id"], {"action": "cancel"})
    out = harness.engine.plans.amend(order, "qa")
    # its child lines keep their own action "add", yet are canceled with it
    assert out["removed"] == ["reserve[L2.1]", "ship[L2.1]", "provision[L2.1]"]
    assert out["compensate"] == ["reserve[L2.1]", "ship[L2.1]"]
    plan = harness.engine.plans.show(order)
    assert {ln["key"]: ln["action"] for ln in plan["lines"]} == {
        "L2.1": "cancel", "L2.2": "cancel", "L3.1": "cancel", "L4.1": "add"}
    CALLS.clear()
    _work(harness)
    assert sorted(CALLS) == ["recall:L2.1", "release:L2.1"], CALLS


def test_an_order_without_lines_is_refused_nothing_stored(harness: Harness,
                                                          carrier: DemoCarrier) -> None:
    _deploy(harness, carrier)
    with pytest.raises(PlanningError, match="has no OrderLine lines: nothing to fulfill"):
        harness.engine.create_record("Order", {"number": "Q-0", "status": "Submitted"})
    assert harness.engine.list_records("Order", limit=5) == []
    # a draft without lines is fine; submitted once it has them, it gets its plan
    draft = harness.engine.create_record("Order", {"number": "Q-0", "status": "Draft"})
    with pytest.raises(PlanningError, match="no OrderLine lines"):
        harness.engine.update_record(draft["id"], {"status": "Submitted"})
    assert harness.engine.get_record(draft["id"])["status"] == "Draft"
    harness.engine.create_record("OrderLine", {"order": draft["id"], **RED})
    harness.engine.update_record(draft["id"], {"status": "Submitted"})
    assert harness.engine.plans.show(draft["id"])["status"] == "in_progress"


def test_an_amendment_removing_every_line_is_refused(harness: Harness,
                                                     carrier: DemoCarrier) -> None:
    _deploy(harness, carrier)
    order = _order(harness, [RED, PARIS])
    for r in _lines(harness):
        harness.engine.delete_record(r["id"])
    # the difference is shown; applying it (or its dry run) is refused: it is a cancel
    assert harness.engine.plans.diff(order)["compensate"] == ["reserve[L1.1]", "ship[L1.1]"]
    for attempt in (lambda: harness.engine.plans.amend(order, "qa"),
                    lambda: harness.engine.plans.diff(order, refuse=True)):
        with pytest.raises(TransitionConflict, match="no lines left.*plans cancel"):
            attempt()
    plan = harness.engine.plans.show(order)
    assert plan["revision"] == 1 and plan["status"] == "in_progress"
    out = harness.engine.plans.cancel(order, "customer took it all back", "qa")
    assert sorted(out["rollbacks"]) == ["rollback_reserve[L1.1]", "rollback_ship[L1.1]"]


def test_line_keys_of_a_graph_stored_without_them() -> None:
    # a plan stored before graphs kept their line keys: found from its lines' views, a
    # bundle's (which has no view of its own) through the order lines that name it
    graph = {"lines": [
        {"key": "L2.1", "id": "rec_kid", "source": "L2", "bundle": "L1"},
        {"key": "L3.1", "id": "rec_bb", "source": "L3", "bundle": None}]}
    lines = [OrderLine("rec_bundle", "LAPTOP-BUNDLE"),
             OrderLine("rec_kid", "LAPTOP-PRO", bundle_id="rec_bundle"),
             OrderLine("rec_new", "DOCK")]
    kept = line_keys(graph, lines)
    assert kept == {"rec_kid": "L2", "rec_bb": "L3", "rec_bundle": "L1"}
    assert commercial_keys(lines, kept) == {"rec_bundle": "L1", "rec_kid": "L2",
                                            "rec_new": "L4"}
    assert commercial_keys(lines) == {"rec_bundle": "L1", "rec_kid": "L2", "rec_new": "L3"}
