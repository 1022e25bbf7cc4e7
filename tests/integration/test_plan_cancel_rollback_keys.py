"""Canceling an order while a rollback an amendment added to its plan is not settled —
running (its call in flight, or waiting for a retry) or in fallout, after an attempt that
reached the carrier: the compensation run makes that rollback's call under the idempotency
key its attempts in the plan sent (the plan run's id, the step, its iteration there), so
the carrier undoes once. The plan's late answer to a call in flight at the cancel changes
nothing and is audited as stale, and the plan's worker runs no step of the canceled plan
after it. A rollback of a step the plan completed is a new undo: its own key. Real Engine
and Workers on SQLite and PostgreSQL, virtual time; the order_fulfillment example with its
``ship`` step undone by a recall callout, both calls to a carrier on loopback
(tests/bank.py: each idempotency key effective once)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest

from baton.cli.demo_carrier import pointed_at
from baton.errors import DefinitionError
from baton.runtime.worker import Worker
from tests.bank import Bank, Seen, bank_server
from tests.conftest import Harness

# the example's flows, as recorders (CALLS): registered once, by that module
from tests.integration.test_plans import CALLS, EXAMPLE, _work

RECALLS = "/api/recalls"
ROLLBACK = "rollback_ship[L1.1]"
WAIT = 300  # seconds a held call waits at most (the test releases it long before)


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


@pytest.fixture
def bank() -> Iterator[Bank]:
    with bank_server() as b:
        yield b


class Hold:
    """The carrier holds the first recall it receives (in flight: not done, not answered)
    until :meth:`release`."""

    def __init__(self, bank: Bank) -> None:
        self.arrived = threading.Event()
        self.released = threading.Event()
        self._first = True
        self._lock = threading.Lock()
        bank.on_request = self

    def __call__(self, seen: Seen) -> None:
        if seen.path != RECALLS:
            return
        with self._lock:
            first, self._first = self._first, False
        if first:
            self.arrived.set()
            self.released.wait(WAIT)

    def release(self) -> None:
        self.released.set()


class LostAnswer:
    """The carrier does the first recall it receives, but its gateway answers 504 (the
    answer is lost): the recall is done under that call's key."""

    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        bank.on_request = self

    def __call__(self, seen: Seen) -> None:
        if seen.path != RECALLS:
            return
        with self.bank.lock:
            if any(a["path"] == RECALLS for a in self.bank.effective.values()):
                return
            self.bank.effective[seen.headers["idempotency-key"]] = {
                "ackId": "ack-recall-1", "path": RECALLS, "received": seen.json()}
            self.bank.script[RECALLS] = [(504, {}, {"error": "gateway timeout"})]


def _deploy(h: Harness, bank: Bank, *, retries: int = 3) -> None:
    """The example, its carrier pointed at ``bank`` (a read timeout longer than any hold),
    the ``ship`` step undone by a recall callout retried ``retries`` times."""
    texts = pointed_at(EXAMPLE, bank.url)
    texts["fulfillment.yaml"] = texts["fulfillment.yaml"].replace(
        "rollback: {type: background, flow: orders.recall}}",
        "rollback: {type: callout, connection: carrier, method: POST, path: /recalls, "
        "body: {order: '=record.number'}, "
        f"retry: {{max: {retries}, initial: 1m}}}}}}").replace(
        "'=response.body.trackingId'", "'=response.body.ackId'")
    assert texts["fulfillment.yaml"].count("path: /recalls") == 1
    texts["carrier.yaml"] = texts["carrier.yaml"].replace(
        "timeout: {connect: 5s, read: 30s}", "timeout: {connect: 5s, read: 10m}")
    assert "read: 10m" in texts["carrier.yaml"]
    h.setenv(CARRIER_TOKEN="tok")
    h.engine.deploy(texts=texts, known_flows=None)


def _order(h: Harness) -> str:
    """A red laptop (reserved, shipped) and broadband in Paris (waiting for its
    installation: the plan is before its point of no return)."""
    order = str(h.engine.create_record(
        "Order", {"number": "K-1", "status": "Submitted"},
        children={"OrderLine": [
            {"product": "LAPTOP-PRO", "attributes": {"color": "red"}},
            {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}}]})["id"])
    _work(h)
    return order


def _amended(h: Harness) -> tuple[str, str]:
    """:func:`_order`, the laptop then changed to blue and the plan amended: the ship and
    reserve steps' rollbacks join the plan (no worker has run them yet). Returns the
    order's id and the plan's run id."""
    order = _order(h)
    laptop = next(r for r in h.engine.list_records("OrderLine", limit=50)
                  if r["product"] == "LAPTOP-PRO")
    h.engine.update_record(laptop["id"], {"attributes": {"color": "blue"}})
    out = h.engine.plans.amend(order, "test")
    assert out["rollbacks"] == ["rollback_reserve[L1.1]", ROLLBACK]
    return order, str(out["run_id"])


def _keys(bank: Bank) -> list[str]:
    """The idempotency keys of the recalls the carrier received, in order."""
    return [r.headers["idempotency-key"] for r in bank.calls(RECALLS)]


def _recalls_done(bank: Bank) -> int:
    """Recalls the carrier made (one per key it made effective)."""
    with bank.lock:
        return sum(1 for a in bank.effective.values() if a["path"] == RECALLS)


def _finish(h: Harness) -> None:
    """Work until idle, with the retries' backoffs passed."""
    _work(h)
    h.clock.advance(timedelta(minutes=5))
    h.work()


@pytest.mark.parametrize("retries", [3, 0], ids=["retrying", "fallout"])
def test_a_rollback_whose_answer_was_lost_is_not_undone_twice(
        harness: Harness, bank: Bank, retries: int) -> None:
    """The carrier made the plan's recall, but the answer was lost (a 504): the step
    waits for its retry (with no retry: in fallout) when the order is canceled. The
    compensation's recall carries the plan's key: the carrier answers it with the first
    recall's answer and recalls nothing more."""
    _deploy(harness, bank, retries=retries)
    order, run_id = _amended(harness)
    LostAnswer(bank)
    harness.work()
    step = harness.engine.get_run(run_id).steps[ROLLBACK]
    assert step.status.value == ("running" if retries else "fallout")
    assert step.error is not None and step.error["call"]["status"] == 504
    plan_key = f"{run_id}:{ROLLBACK}:{step.iteration}"
    assert _keys(bank) == [plan_key] and _recalls_done(bank) == 1

    out = harness.engine.plans.cancel(order, "customer canceled", "test")
    assert out["rollbacks"] == ["rollback_reserve[L1.1]", ROLLBACK]
    CALLS.clear()
    _finish(harness)  # (the plan's retry, due meanwhile, is dropped: its run is canceled)
    plan = harness.engine.plans.show(order)
    assert plan["status"] == "canceled"
    assert plan["compensation"]["status"] == "completed", plan["compensation"]
    assert _keys(bank) == [plan_key, plan_key]
    assert _recalls_done(bank) == 1
    comp = harness.engine.get_run(out["compensation_run_id"])
    assert comp.steps[ROLLBACK].output == {
        "status": 200, "body": {"ackId": "ack-recall-1", "path": RECALLS,
                                "received": {"order": "K-1"}, "replayed": True}}
    assert CALLS == ["release:L1.1"]  # undone after the recall, once
    assert harness.engine.list_fallout() == []
    # the compensation step holds the key it was given with the plan's graph
    graph = harness.engine.plans.revision(order, plan["compensation"]["revision"])["graph"]
    defs = {s["name"]: s for s in graph["definition"]["stages"][0]["steps"]}
    assert defs[ROLLBACK]["idempotency_key"] == plan_key
    assert defs[ROLLBACK]["retry_on"] == [409]
    assert "idempotency_key" not in defs["rollback_reserve[L1.1]"]  # (a flow: no key)


@pytest.mark.parametrize("carrier", ["dedupes", "answers_409"])
def test_a_rollback_in_flight_at_the_cancel_is_undone_once_its_late_answer_stale(
        harness: Harness, bank: Bank, carrier: str) -> None:
    """The plan's recall is in flight (the carrier holds it) when the order is canceled,
    and the compensation's recall, under the same key, reaches the carrier meanwhile. A
    carrier that dedupes concurrent repeats recalls once; one that answers a repeat 409
    while the first call with its key is in progress (the IETF Idempotency-Key draft's
    way) has the compensation's call retried, which then gets the first one's answer.
    The plan's late answer fails nothing: its call is audited, its result dropped as
    stale, and its worker runs no step of the canceled plan after it."""
    _deploy(harness, bank)
    order, run_id = _amended(harness)
    hold = Hold(bank)
    errors: list[BaseException] = []

    def plan_worker() -> None:
        try:
            harness.work()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=plan_worker, name="plan-worker")
    thread.start()
    try:
        assert hold.arrived.wait(WAIT), "the plan's recall never reached the carrier"
        step = harness.engine.get_run(run_id).steps[ROLLBACK]
        assert step.status.value == "running"
        plan_key = f"{run_id}:{ROLLBACK}:{step.iteration}"
        if carrier == "answers_409":
            bank.script[RECALLS] = [(409, {}, {"error": "a request with this key is in "
                                                        "progress"})]
        CALLS.clear()
        out = harness.engine.plans.cancel(order, "customer canceled", "test")
        comp_id = out["compensation_run_id"]
        Worker(harness.engine).run(until_idle=True)  # while the plan's recall is held
        comp = harness.engine.get_run(comp_id)
        if carrier == "dedupes":
            assert comp.status.value == "completed", comp.steps[ROLLBACK].error
        else:  # refused for now: to be retried after its backoff, not in fallout
            assert comp.steps[ROLLBACK].status.value == "running"
            assert comp.steps[ROLLBACK].error["call"]["status"] == 409
    finally:
        hold.release()
        thread.join(WAIT)
    assert not thread.is_alive() and not errors, errors
    _finish(harness)
    plan = harness.engine.plans.show(order)
    assert plan["status"] == "canceled"
    assert plan["compensation"]["status"] == "completed", plan["compensation"]
    assert _keys(bank) == [plan_key] * (3 if carrier == "answers_409" else 2)
    assert _recalls_done(bank) == 1
    assert harness.engine.list_fallout() == []
    # the reservation released once (by the compensation), and not made again: the plan's
    # worker did not go on with the plan it had read before the cancel
    assert CALLS == ["release:L1.1"], CALLS
    # the plan's late answer: its call audited, its result dropped as stale
    plan_run = harness.engine.get_run(run_id)
    assert plan_run.status.value == "canceled"
    assert plan_run.steps[ROLLBACK].status.value == "canceled"
    events = harness.engine.run_events(run_id)
    kinds = [e["type"] for e in events]
    calls = [e for e in events if e["type"] == "http_call" and e["data"]["step"] == ROLLBACK]
    assert len(calls) == 1 and calls[0]["data"]["status"] == 200
    assert calls[0]["data"]["idempotency_key"] == plan_key
    (stale,) = [e for e in events if e["type"] == "step_result_stale"]
    assert stale["data"] == {"step": ROLLBACK, "iteration": step.iteration, "attempt": 1,
                             "result": "completed", "run_status": "canceled",
                             "step_status": "canceled", "step_iteration": step.iteration}
    assert kinds.index("run_canceled") < kinds.index("http_call", kinds.index("run_canceled"))
    assert "step_failed" not in kinds and "step_completed" not in kinds[
        kinds.index("run_canceled"):]


def test_the_rollback_of_a_completed_step_is_a_new_undo_under_its_own_key(
        harness: Harness, bank: Bank) -> None:
    """No amendment: the ship step completed, its rollback is made by the compensation
    alone, under the compensation run's key (not the ship step's: that would replay the
    booking)."""
    _deploy(harness, bank)
    order = _order(harness)
    out = harness.engine.plans.cancel(order, "customer canceled", "test")
    assert ROLLBACK in out["rollbacks"]
    _finish(harness)
    assert harness.engine.plans.show(order)["compensation"]["status"] == "completed"
    assert _keys(bank) == [f"{out['compensation_run_id']}:{ROLLBACK}:1"]
    assert _recalls_done(bank) == 1
    graph = harness.engine.plans.revision(order)["graph"]
    (rb,) = [s for s in graph["definition"]["stages"][0]["steps"] if s["name"] == ROLLBACK]
    assert "idempotency_key" not in rb and "retry_on" not in rb


def test_a_definition_cannot_set_a_callouts_idempotency_key(
        harness: Harness, bank: Bank) -> None:
    texts = pointed_at(EXAMPLE, bank.url)
    texts["fulfillment.yaml"] = texts["fulfillment.yaml"].replace(
        "method: POST, path: /shipments,",
        "method: POST, path: /shipments, idempotency_key: '=record.number',")
    with pytest.raises(DefinitionError) as info:
        harness.engine.deploy(texts=texts, known_flows=None)
    expected = ("fulfillment.yaml:17 groups.ship_device[1].idempotency_key: a callout's "
                "idempotency key is RUN_ID:STEP:ITERATION, set by Baton (a compensation run "
                "keeps the one a canceled plan's rollback sent); a definition cannot set it")
    assert [str(i) for i in info.value.issues] == [expected]
    assert harness.engine.list_runs() == []
