"""A plan step whose callout may have acted when the order is canceled or the step amended
away — its call in flight (the carrier holds it), or timed out and waiting for its retry
after the carrier booked the shipment — is compensated like a completed step: its rollback
runs, told the step's status and the idempotency key its attempts sent (``input.plan.undo``),
by which the carrier finds the booking to undo (or answers that there is none). A step never
attempted (an activation waiting for its installation) gets no rollback. Real Engine and
Workers on SQLite and PostgreSQL, virtual time; the order_fulfillment example, its carrier
a real HTTP server on loopback (tests/bank.py) that books a shipment as it arrives and then
holds the call, and its ``ship`` step undone by a flow that records what it is told, or by
a recall callout that sends the carrier the booking's key. A callout's own ``input:`` is
validated with its location and, outside plans too, read by its request as ``input``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baton import flow
from baton.cli.demo_carrier import pointed_at
from baton.clock import VirtualClock
from baton.definitions.loader import load_text
from baton.errors import DefinitionError
from baton.flows import FlowContext
from baton.runtime.worker import Worker
from tests.bank import Bank, Seen, bank_server
from tests.conftest import Harness

# the example's flows, as recorders (CALLS): registered once, by that module
from tests.integration.test_callouts import ADDRESS, connection, orchestration
from tests.integration.test_plan_cancel_rollback_keys import RECALLS, _finish
from tests.integration.test_plans import CALLS, EXAMPLE

SHIPMENTS = "/api/shipments"
SHIP, ROLLBACK = "ship[L1.1]", "rollback_ship[L1.1]"
WAIT = 300  # seconds a held call waits at most (the test releases it long before)
RED = {"product": "LAPTOP-PRO", "attributes": {"color": "red"}}
PARIS = {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}}
LYON = {"product": "BROADBAND", "attributes": {"site": "LYON", "speed": "1G"}}
TOLD: list[dict[str, Any]] = []  # what each recall was told it undoes (input.plan.undo)
RECALL_FLOW = "{type: background, flow: inflight.recall}"
# the recall as a callout: the carrier is told the booking's key in the body
RECALL_CALLOUT = ("{type: callout, connection: carrier, method: POST, path: /recalls, "
                  "body: {order: '=record.number', booking: '=input.plan.undo.idempotency_key'}}")


@flow("inflight.recall")
def _recall(ctx: FlowContext) -> dict[str, Any]:
    TOLD.append(dict((ctx.input.get("plan") or {}).get("undo") or {}))
    return {"ok": True}


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    TOLD.clear()


@pytest.fixture
def bank() -> Iterator[Bank]:
    with bank_server() as b:
        yield b


class BookAndHold:
    """The carrier books the first shipment as it arrives (under its idempotency key: the
    carrier has acted), then holds the call — no answer — until :meth:`release`."""

    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.key = ""
        bank.on_request = self

    def __call__(self, seen: Seen) -> None:
        if seen.path != SHIPMENTS:
            return
        with self.bank.lock:
            if self.key:
                return
            self.key = seen.headers["idempotency-key"]
            self.bank.effective[self.key] = {"ackId": "ack-booked", "path": SHIPMENTS,
                                             "received": seen.json()}
        self.arrived.set()
        self.released.wait(WAIT)

    def release(self) -> None:
        self.released.set()


def _deploy(h: Harness, bank: Bank, read_timeout: str, rollback: str = RECALL_FLOW) -> None:
    """The example, its carrier ``bank`` (read timeout ``read_timeout``), ``ship`` undone
    by ``rollback`` (the recording recall flow, or :data:`RECALL_CALLOUT`)."""
    texts = pointed_at(EXAMPLE, bank.url)
    fulfillment = texts["fulfillment.yaml"].replace(
        "rollback: {type: background, flow: orders.recall}}",
        f"rollback: {rollback}}}").replace(
        "'=response.body.trackingId'", "'=response.body.ackId'")  # (the bank's answer)
    assert fulfillment.count(f"rollback: {rollback}}}") == 1
    carrier = texts["carrier.yaml"].replace("timeout: {connect: 5s, read: 30s}",
                                            f"timeout: {{connect: 5s, read: {read_timeout}}}")
    assert f"read: {read_timeout}" in carrier
    h.setenv(CARRIER_TOKEN="tok")
    h.engine.deploy(texts={**texts, "fulfillment.yaml": fulfillment,
                           "carrier.yaml": carrier}, known_flows=None)


def _order(h: Harness, lines: list[dict[str, Any]]) -> tuple[str, str]:
    """A submitted order of ``lines``; returns its id and its plan's run id."""
    order = str(h.engine.create_record("Order", {"number": "K-1", "status": "Submitted"},
                                       children={"OrderLine": lines})["id"])
    return order, str(h.engine.plans.show(order)["run_id"])


class PlanWorker:
    """The plan's worker, in a thread: it makes the ship call the carrier holds."""

    def __init__(self, h: Harness) -> None:
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._work, args=(h,), name="plan-worker")
        self.thread.start()

    def _work(self, h: Harness) -> None:
        try:
            h.work()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    def join(self) -> None:
        self.thread.join(WAIT)
        assert not self.thread.is_alive() and not self.errors, self.errors


def _undone_once(h: Harness, bank: Bank, hold: BookAndHold, run_id: str,
                 status: str, attempts: int) -> None:
    """The ship step's rollback ran once, told the step's status and attempts and the key
    the carrier booked under, which is the plan's key of the step."""
    assert hold.key == f"{run_id}:{SHIP}:1"
    assert TOLD == [{"step": SHIP, "status": status, "attempts": attempts,
                     "idempotency_key": hold.key, "uncertain": True}], TOLD
    with bank.lock:
        assert list(bank.effective) == [hold.key]  # booked once: what the recall undoes
    assert "release:L1.1" in CALLS and "recall:L1.1" not in CALLS
    assert h.engine.list_fallout() == []


@pytest.mark.parametrize("call", ["in_flight", "timed_out"])
def test_a_ship_call_that_may_have_acted_is_recalled_on_cancel(
        harness: Harness, bank: Bank, call: str) -> None:
    """Canceled while the ship call is in flight (held), or after it timed out (the
    carrier had booked; the step waits for its retry): the compensation recalls it under
    the booking's key. The broadband's activation, never attempted, is not rolled back."""
    _deploy(harness, bank, "10m" if call == "in_flight" else "1s")
    hold = BookAndHold(bank)
    order, run_id = _order(harness, [RED, PARIS])
    worker = PlanWorker(harness)
    try:
        assert hold.arrived.wait(WAIT), "the ship call never reached the carrier"
        if call == "timed_out":
            worker.join()  # the call timed out; the plan is idle, the retry not due yet
        plan = harness.engine.get_run(run_id)
        ship = plan.steps[SHIP]
        assert ship.status.value == "running"
        attempts = 1 if call == "in_flight" else 2  # (the retry counts once scheduled)
        assert ship.attempts == attempts
        if call == "timed_out":
            assert ship.error is not None and "call" in ship.error
        activate = plan.steps["activate[L2.1]"]
        assert activate.status.value == "not_started" and activate.attempts == 0
        out = harness.engine.plans.cancel(order, "customer canceled", "test")
        assert out["rollbacks"] == ["rollback_reserve[L1.1]", ROLLBACK]
        # the compensation runs while the carrier still holds the plan's call
        Worker(harness.engine).run(until_idle=True)
        comp = harness.engine.get_run(out["compensation_run_id"])
        assert comp.status.value == "completed", comp.steps
    finally:
        hold.release()
        if call == "in_flight":
            worker.join()
    _finish(harness)  # (the plan's retry, due meanwhile, is dropped: its run is canceled)
    assert len(bank.calls(SHIPMENTS)) == 1  # no attempt after the cancel
    assert harness.engine.plans.show(order)["status"] == "canceled"
    _undone_once(harness, bank, hold, run_id, "running", attempts)


def test_a_line_amended_away_while_its_ship_call_is_in_flight_is_recalled(
        harness: Harness, bank: Bank) -> None:
    """The laptop line is removed while its ship call is in flight, with the Lyon line
    whose activation was never attempted: the amended plan recalls the shipment (told its
    key), releases the reservation after it, and rolls back no activation."""
    _deploy(harness, bank, "10m")
    hold = BookAndHold(bank)
    order, run_id = _order(harness, [RED, PARIS, LYON])
    worker = PlanWorker(harness)
    try:
        assert hold.arrived.wait(WAIT), "the ship call never reached the carrier"
        lines = harness.engine.list_records("OrderLine", limit=50)
        for ln in lines:
            if ln["attributes"] in (RED["attributes"], LYON["attributes"]):
                harness.engine.delete_record(ln["id"])
        out = harness.engine.plans.amend(order, "test")
        assert SHIP in out["removed"] and "activate[L3.1]" in out["removed"]
        assert out["status"][SHIP] == "running"
        assert out["status"]["activate[L3.1]"] == "not_started"
        assert out["compensate"] == ["reserve[L1.1]", SHIP]
        assert out["rollbacks"] == ["rollback_reserve[L1.1]", ROLLBACK]
        Worker(harness.engine).run(until_idle=True)  # while the carrier holds the call
        steps = harness.step_status(run_id)
        assert steps[ROLLBACK] == steps["rollback_reserve[L1.1]"] == "completed", steps
    finally:
        hold.release()
        worker.join()
    _finish(harness)
    plan = harness.engine.plans.show(order)
    assert plan["status"] == "in_progress"  # the Paris installation is still to do
    assert not any(s["name"].startswith("rollback_activate") for s in plan["steps"])
    assert len(bank.calls(SHIPMENTS)) == 1
    _undone_once(harness, bank, hold, run_id, "running", 1)
    kinds = [e["type"] for e in harness.engine.run_events(run_id)]
    assert "step_result_stale" in kinds  # the held call's late answer changed nothing


def test_a_line_changed_while_its_ship_call_is_in_flight_is_recalled_then_shipped_anew(
        harness: Harness, bank: Bank) -> None:
    """The laptop line changed in place (another colour) while its ship call is in flight:
    the amended plan recalls the held shipment (told its key), and only after the recall
    ships the line again as the step's next iteration, under a new key, so the carrier
    books the new shipment instead of replaying the recalled one."""
    _deploy(harness, bank, "10m")
    hold = BookAndHold(bank)
    order, run_id = _order(harness, [RED, PARIS])
    worker = PlanWorker(harness)
    try:
        assert hold.arrived.wait(WAIT), "the ship call never reached the carrier"
        (line,) = [ln for ln in harness.engine.list_records("OrderLine", limit=50)
                   if ln["attributes"] == RED["attributes"]]
        harness.engine.update_record(line["id"], {"attributes": {"color": "blue"}})
        out = harness.engine.plans.amend(order, "test")
        assert SHIP in out["changed"] and out["status"][SHIP] == "running"
        assert SHIP in out["compensate"] and ROLLBACK in out["rollbacks"]
        Worker(harness.engine).run(until_idle=True)  # while the carrier holds the call
        assert harness.step_status(run_id)[ROLLBACK] == "completed"
    finally:
        hold.release()
        worker.join()
    _finish(harness)
    assert TOLD == [{"step": SHIP, "status": "running", "attempts": 1,
                     "idempotency_key": hold.key, "uncertain": True}], TOLD
    again = f"{run_id}:{SHIP}:2"
    shipments = bank.calls(SHIPMENTS)
    assert [c.headers["idempotency-key"] for c in shipments] == [hold.key, again]
    with bank.lock:
        assert list(bank.effective) == [hold.key, again]  # recalled, then booked anew
    plan = harness.engine.plans.show(order)
    ship = next(s for s in plan["steps"] if s["name"] == SHIP)
    assert ship["status"] == "completed", ship
    assert "step_result_stale" in [e["type"] for e in harness.engine.run_events(run_id)]
    assert harness.engine.list_fallout() == []


def test_a_callout_rollback_sends_the_key_the_held_ship_call_was_booked_under(
        harness: Harness, bank: Bank) -> None:
    """The ship step undone by a recall callout whose body sends
    ``=input.plan.undo.idempotency_key``, the order canceled while the carrier holds the
    ship call: the carrier is told the key it booked under, and the recall itself is sent
    under the compensation's own key (the ship step's would replay the booking)."""
    _deploy(harness, bank, "10m", RECALL_CALLOUT)
    hold = BookAndHold(bank)
    order, run_id = _order(harness, [RED, PARIS])
    worker = PlanWorker(harness)
    try:
        assert hold.arrived.wait(WAIT), "the ship call never reached the carrier"
        out = harness.engine.plans.cancel(order, "customer canceled", "test")
        assert out["rollbacks"] == ["rollback_reserve[L1.1]", ROLLBACK]
        Worker(harness.engine).run(until_idle=True)  # while the carrier holds the call
        comp = harness.engine.get_run(out["compensation_run_id"])
        assert comp.status.value == "completed", comp.steps
    finally:
        hold.release()
        worker.join()
    _finish(harness)
    own_key = f"{out['compensation_run_id']}:{ROLLBACK}:1"
    assert hold.key == f"{run_id}:{SHIP}:1" != own_key
    (recall,) = bank.calls(RECALLS)
    assert recall.json() == {"order": "K-1", "booking": hold.key}
    assert recall.headers["idempotency-key"] == own_key
    with bank.lock:
        assert list(bank.effective) == [hold.key, own_key]  # booked once, recalled once
    assert len(bank.calls(SHIPMENTS)) == 1
    assert harness.engine.plans.show(order)["status"] == "canceled"
    assert "release:L1.1" in CALLS and harness.engine.list_fallout() == []


def test_a_callouts_input_is_checked_where_it_is_and_read_by_its_request(
        tmp_path: Path) -> None:
    """Outside plans: a callout's ``input:`` expressions are validated, each problem at its
    path (all at once), and its values, evaluated when the attempt is scheduled, are what
    ``input`` gives its request (over the run's input). SQLite, a server on loopback."""
    step = """\
        - name: send
          type: callout
          connection: bank
          method: POST
          path: /addresses
          input: {who: '=record.customer', n: 7}
          body: {who: =input.who, n: =input.n, street: =record.street}
        """
    bad = step.replace("n: 7}", "n: 7, x: '=record.nope', y: '=1 +'}")
    with pytest.raises(DefinitionError) as info:
        load_text(ADDRESS + "---\n" + connection("http://127.0.0.1:9") + "---\n"
                  + orchestration(bad), "send.yaml")
    found = [(i.path, i.message) for i in info.value.issues]
    assert ("stages[0].steps[0].input.x", "unknown record field 'nope'") in found, found
    assert [p for p, _ in found] == ["stages[0].steps[0].input.x",
                                     "stages[0].steps[0].input.y"], found
    h = Harness(tmp_path, VirtualClock(), f"sqlite:///{tmp_path / 'baton.db'}")
    try:
        with bank_server() as srv:
            h.deploy_text(ADDRESS + "---\n" + connection(srv.url) + "---\n"
                          + orchestration(step))
            rec = h.engine.create_record("Address", {"customer": "c1", "street": "1 Main"})
            h.work()
            (run,) = h.engine.list_runs(record_id=rec["id"])
            assert h.step_status(run.id) == {"send": "completed"}
            (seen,) = srv.calls("/api/addresses")
            assert seen.json() == {"who": "c1", "n": 7, "street": "1 Main"}
    finally:
        h.engine.close()
