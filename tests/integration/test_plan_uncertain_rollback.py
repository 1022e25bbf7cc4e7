"""A plan step whose effect is uncertain when it is undone — an operator skipped it after
its calls went unanswered, or its call answered 503 and waits for its retry — is
compensated, its rollback told ``plan.undo.uncertain``: the carrier may still be processing
the booking, so a recall answered "nothing to undo" (a status the recall's ``success`` takes
outside 2xx: ``[2xx, 404]``) is tried again with the recall's ``retry`` backoff, and taken
only on its last try, the compensation's timeline saying so (``rollback_nothing_to_undo``).
Undoing a step that completed, "nothing to undo" is final at once. Real Engine and Workers
on SQLite and PostgreSQL, virtual time; the order_fulfillment example with its ``ship`` step
undone by a recall callout, both calls to a carrier on loopback (tests/bank.py) that finds a
booking only once it has processed it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from baton.plans.compensation import may_have_acted, uncertain, undo_facts
from tests.bank import Bank, Seen, bank_server
from tests.conftest import Harness
from tests.integration.test_plan_cancel_rollback_keys import RECALLS
from tests.integration.test_plan_inflight_rollback import (
    PARIS,
    RED,
    ROLLBACK,
    SHIP,
    SHIPMENTS,
    _deploy,
    _order,
)
from tests.integration.test_plans import CALLS

# the recall: 404 is the carrier's "no such booking", taken as "nothing to undo"
RECALL = ("{type: callout, connection: carrier, method: POST, path: /recalls, "
          "success: [2xx, 404], retry: {max: 2, initial: 1m}, "
          "body: {booking: '=input.plan.undo.idempotency_key'}}")
TRIES = 3  # the recall's: its first try and its two retries
NOTHING = "rollback_nothing_to_undo"


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


@pytest.fixture
def bank() -> Iterator[Bank]:
    with bank_server() as b:
        yield b


class Carrier:
    """``/shipments``: ``lost`` — the carrier books each shipment (once per key) but its
    gateway answers 504; ``busy`` — it answers 503 and books nothing; ``ok`` — it books and
    answers 200. A booking is found by a recall only once the carrier has processed it
    (:meth:`process`); a recall of one it cannot find is answered 404, of one it can,
    recalled (200)."""

    def __init__(self, bank: Bank, shipments: str) -> None:
        self.bank = bank
        self.shipments = shipments
        self.found: set[str] = set()
        self.recalls: list[int] = []  # what each recall was answered, in order
        bank.on_request = self

    def __call__(self, seen: Seen) -> None:
        with self.bank.lock:
            if seen.path == SHIPMENTS and self.shipments != "ok":
                key = seen.headers["idempotency-key"]
                if self.shipments == "lost":
                    self.bank.effective.setdefault(key, {"ackId": "ack-booked",
                                                         "path": SHIPMENTS})
                status = 504 if self.shipments == "lost" else 503
                self.bank.script[SHIPMENTS] = [(status, {}, {"error": "try later"})]
            elif seen.path == RECALLS:
                found = seen.json()["booking"] in self.found
                self.recalls.append(200 if found else 404)
                if not found:
                    self.bank.script[RECALLS] = [(404, {}, {"error": "no such booking"})]

    def process(self) -> None:
        """The carrier has processed its bookings: recalls find them from now on."""
        with self.bank.lock:
            self.found.update(k for k, a in self.bank.effective.items()
                              if a["path"] == SHIPMENTS)


def _rollback_events(h: Harness, run_id: str) -> list[dict[str, Any]]:
    return [e for e in h.engine.run_events(run_id)
            if (e.get("data") or {}).get("step") == ROLLBACK]


def test_a_ship_skipped_after_lost_answers_is_recalled_once_its_booking_is_found(
        harness: Harness, bank: Bank) -> None:
    """The carrier booked the shipment but every answer was lost (504): the ship step went
    to fallout and an operator skipped it, moving the plan on. Canceling the order recalls
    it anyway, told ``skipped`` and ``uncertain``: the carrier, still processing the
    booking, answers the first recall 404, which is tried again after the recall's backoff
    and then recalls the booking."""
    _deploy(harness, bank, "10m", RECALL)
    carrier = Carrier(bank, "lost")
    order, run_id = _order(harness, [RED, PARIS])
    for _ in range(4):  # the ship step's four attempts (defaults.callout.retry: max 3)
        harness.work()
        harness.clock.advance(timedelta(minutes=1))
    (fallout,) = harness.engine.list_fallout()
    assert fallout["step"] == SHIP and fallout["attempts"] == 4
    harness.engine.resolve_fallout(fallout["id"], "skip", reason="carrier unreachable",
                                   actor="ops")
    harness.work()
    plan = harness.engine.get_run(run_id)
    assert plan.steps[SHIP].status.value == "skipped"
    assert plan.status.value == "in_progress"  # the Paris installation is still to do

    out = harness.engine.plans.cancel(order, "customer canceled", "test")
    assert out["rollbacks"] == ["rollback_reserve[L1.1]", ROLLBACK]
    comp_id = out["compensation_run_id"]
    booking = f"{run_id}:{SHIP}:1"
    graph = harness.engine.plans.revision(order)["graph"]
    (rb,) = [s for s in graph["definition"]["stages"][0]["steps"] if s["name"] == ROLLBACK]
    assert rb["input"]["plan"]["undo"] == {"step": SHIP, "status": "skipped", "attempts": 4,
                                           "idempotency_key": booking, "uncertain": True}
    harness.work()  # the recall: the carrier has not found the booking yet
    step = harness.engine.get_run(comp_id).steps[ROLLBACK]
    assert step.status.value == "running" and step.error is not None
    assert "nothing to undo yet" in step.error["message"], step.error
    assert step.error["call"]["status"] == 404
    carrier.process()
    harness.clock.advance(timedelta(minutes=1))
    harness.work()  # tried again after its backoff: found and recalled
    comp = harness.engine.get_run(comp_id)
    assert comp.status.value == "completed", comp.steps
    assert carrier.recalls == [404, 200]
    assert [r.json() for r in bank.calls(RECALLS)] == [{"booking": booking}] * 2
    kinds = [e["type"] for e in _rollback_events(harness, comp_id)]
    assert kinds.count("step_attempt_failed") == 1 and NOTHING not in kinds, kinds
    assert "release:L1.1" in CALLS and harness.engine.list_fallout() == []


@pytest.mark.parametrize("ship", ["busy", "ok"])
def test_nothing_to_undo_waits_out_an_uncertain_call_and_is_final_after_a_completed_one(
        harness: Harness, bank: Bank, ship: str) -> None:
    """The carrier never finds the booking. The ship call answered 503 (the step waits
    for its retry: uncertain): the recall's 404 is tried again with its backoff, and taken
    on its last try, the timeline saying so; no fallout. The ship step completed: the
    recall's 404 is final at once."""
    _deploy(harness, bank, "10m", RECALL)
    carrier = Carrier(bank, ship)
    order, run_id = _order(harness, [RED, PARIS])
    harness.work()
    assert harness.engine.get_run(run_id).steps[SHIP].status.value == (
        "running" if ship == "busy" else "completed")
    out = harness.engine.plans.cancel(order, "customer canceled", "test")
    comp_id = out["compensation_run_id"]
    for _ in range(TRIES):  # (each retry due a minute or two later)
        harness.work()
        harness.clock.advance(timedelta(minutes=3))
    comp = harness.engine.get_run(comp_id)
    assert comp.status.value == "completed", comp.steps
    assert comp.steps[ROLLBACK].output["status"] == 404
    events = _rollback_events(harness, comp_id)
    kinds = [e["type"] for e in events]
    nothing = [e["data"] for e in events if e["type"] == NOTHING]
    if ship == "busy":
        assert carrier.recalls == [404] * TRIES
        assert kinds.count("step_attempt_failed") == TRIES - 1, kinds
        assert kinds.index(NOTHING) < kinds.index("step_completed")
        assert nothing == [{"step": ROLLBACK, "iteration": 1, "attempt": TRIES,
                            "status": 404, "tries": TRIES, "undone": SHIP,
                            "idempotency_key": f"{run_id}:{SHIP}:1"}]
    else:
        assert carrier.recalls == [404]
        assert "step_attempt_failed" not in kinds and nothing == [], kinds
    assert harness.engine.list_fallout() == []
    assert harness.engine.plans.show(order)["compensation"]["status"] == "completed"


def test_what_may_have_acted_and_what_is_uncertain() -> None:
    """A step skipped after its attempts may have acted; one never attempted, or canceled
    before, did not. Its effect is uncertain unless it completed or its last answer was a
    clean refusal (a 4xx other than the "busy" ones, not retried)."""
    assert may_have_acted("skipped", 2) and may_have_acted("fallout", 1)
    assert may_have_acted("completed", 0) and may_have_acted("running", 1)
    assert not may_have_acted("skipped", 0) and not may_have_acted("canceled", 3)
    assert not may_have_acted("not_started", 0)

    def refused(status: int | None, retryable: bool = False) -> dict[str, Any]:
        return {"type": "CalloutFailed", "message": "...", "retryable": retryable,
                "call": {"status": status}}

    assert not uncertain("completed", None)
    assert uncertain("running", None)  # in flight
    assert uncertain("running", refused(503, True))  # waiting for its retry
    assert uncertain("fallout", refused(None, True))  # timed out, retries spent
    assert uncertain("skipped", refused(409))  # the carrier still busy with the key
    assert not uncertain("fallout", refused(400)) and not uncertain("skipped", refused(422))
    assert uncertain("fallout", {"type": "StepFailure", "message": "x", "retryable": False})
    assert undo_facts("R1", "ship[L1.1]", "fallout", 2, 3, refused(400)) == {
        "step": "ship[L1.1]", "status": "fallout", "attempts": 3,
        "idempotency_key": "R1:ship[L1.1]:2", "uncertain": False}
