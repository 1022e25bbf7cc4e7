"""A ``wait: callback`` rollback a canceled plan hands over to its compensation run: the
carrier got the plan run's callback URL with the plan's recall (made under the plan's
idempotency key); the compensation's recall, under the same key, is answered with the first
answer and changes nothing at the carrier, which calls back the URL it has — the plan run's.
The callback follows the carry: it reaches the compensation's step waiting for it (at once,
or kept early until that step's call is committed), once. Real Engine and Worker on SQLite
and PostgreSQL, virtual time, the order_fulfillment example, its carrier on loopback
(tests/bank.py: each idempotency key effective once), callbacks through the real app."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from baton.cli.demo_carrier import pointed_at
from baton.web.app import create_app
from tests.bank import Bank, Seen, bank_server
from tests.conftest import Harness

# the example's flows, as recorders (CALLS): registered once, by that module
from tests.integration.test_plans import CALLS, EXAMPLE, _work

RECALLS = "/api/recalls"
ROLLBACK = "rollback_ship[L1.1]"
PUBLIC = "http://testserver"
WAIT = 300  # seconds a held call waits at most (the test releases it long before)


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


@pytest.fixture
def bank() -> Iterator[Bank]:
    with bank_server() as b:
        yield b


def _deploy(h: Harness, bank: Bank) -> TestClient:
    """The example, its ``ship`` step undone by a recall that waits for the carrier's
    callback (its URL sent as ``reply_to``); the app, for the callbacks."""
    texts = pointed_at(EXAMPLE, bank.url)
    texts["fulfillment.yaml"] = texts["fulfillment.yaml"].replace(
        "rollback: {type: background, flow: orders.recall}}",
        "rollback: {type: callout, connection: carrier, method: POST, path: /recalls, "
        "body: {order: '=record.number', reply_to: '=callback.url'}, wait: callback, "
        "timeout: 1d, output: {ack: '=response.body.ackId', "
        "recalled: '=callback.body.recalled'}}}").replace(
        "'=response.body.trackingId'", "'=response.body.ackId'")  # (the bank's answer)
    assert texts["fulfillment.yaml"].count("path: /recalls") == 1
    texts["carrier.yaml"] = texts["carrier.yaml"].replace(
        "timeout: {connect: 5s, read: 30s}", "timeout: {connect: 5s, read: 10m}")
    h.setenv(CARRIER_TOKEN="tok", BATON_PUBLIC_URL=PUBLIC)
    h.engine.deploy(texts=texts, known_flows=None)
    return TestClient(create_app(h.engine))


def _amended(h: Harness) -> tuple[str, str]:
    """A red laptop (reserved, shipped) and broadband, the laptop then changed to blue and
    the plan amended: the ship and reserve steps' rollbacks join the plan. Returns the
    order's id and the plan's run id."""
    order = str(h.engine.create_record(
        "Order", {"number": "K-1", "status": "Submitted"},
        children={"OrderLine": [
            {"product": "LAPTOP-PRO", "attributes": {"color": "red"}},
            {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}}]})["id"])
    _work(h)
    laptop = next(r for r in h.engine.list_records("OrderLine", limit=50)
                  if r["product"] == "LAPTOP-PRO")
    h.engine.update_record(laptop["id"], {"attributes": {"color": "blue"}})
    out = h.engine.plans.amend(order, "test")
    assert out["rollbacks"] == ["rollback_reserve[L1.1]", ROLLBACK]
    return order, str(out["run_id"])


def _recalls_done(bank: Bank) -> list[dict[str, Any]]:
    """The recalls the carrier made (one per key it made effective)."""
    with bank.lock:
        return [a for a in bank.effective.values() if a["path"] == RECALLS]


def _post(client: TestClient, url: str, body: Any) -> Any:
    assert url.startswith(PUBLIC + "/api/callbacks/"), url
    return client.post(url.removeprefix(PUBLIC), content=json.dumps(body).encode(),
                       headers={"Content-Type": "application/json"})


def _finish(h: Harness) -> None:
    _work(h)
    h.clock.advance(timedelta(minutes=5))
    h.work()


def _compensated(h: Harness, bank: Bank, order: str, comp_id: str) -> None:
    """The compensation completed: its recall got the answer of the one recall the carrier
    made and took the carrier's callback; the reservation was released after it, once;
    nothing in fallout."""
    _finish(h)
    plan = h.engine.plans.show(order)
    assert plan["status"] == "canceled"
    assert plan["compensation"]["status"] == "completed", plan["compensation"]
    step = h.engine.get_run(comp_id).steps[ROLLBACK]
    (made,) = _recalls_done(bank)
    assert step.output == {"ack": made["ackId"], "recalled": True}, step.output
    assert CALLS == ["release:L1.1"]
    assert h.engine.list_fallout() == []


def test_the_carriers_callback_to_the_plan_run_reaches_the_compensation(
        harness: Harness, bank: Bank) -> None:
    """The plan's recall was made and waits for its callback when the order is canceled;
    the compensation's recall, under the plan's key, is answered with the first answer.
    The carrier calls back the URL it got with the recall it made (the plan run's): the
    compensation's waiting step completes with it."""
    client = _deploy(harness, bank)
    order, run_id = _amended(harness)
    harness.work()
    plan_step = harness.engine.get_run(run_id).steps[ROLLBACK]
    assert plan_step.status.value == "running"  # its recall made: it waits for the callback
    assert len(_recalls_done(bank)) == 1

    out = harness.engine.plans.cancel(order, "customer canceled", "test")
    comp_id = out["compensation_run_id"]
    CALLS.clear()
    harness.work()
    comp_step = harness.engine.get_run(comp_id).steps[ROLLBACK]
    assert comp_step.status.value == "running"  # its recall answered: it waits too
    (made,) = _recalls_done(bank)  # the carrier recalled once, with the plan's URL
    calls = bank.calls(RECALLS)
    assert len(calls) == 2 and calls[1].headers["idempotency-key"] == \
        calls[0].headers["idempotency-key"]
    plan_url = made["received"]["reply_to"]
    assert plan_url == calls[0].json()["reply_to"] != calls[1].json()["reply_to"]

    r = _post(client, plan_url, {"recalled": True})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "delivered", "step": ROLLBACK,
                        "iteration": comp_step.iteration}
    _compensated(harness, bank, order, comp_id)
    # single use: the plan's URL again, or the compensation's own, changes nothing
    assert _post(client, plan_url, {"recalled": False}).status_code in (409, 410)
    assert _post(client, calls[1].json()["reply_to"], {"recalled": False}).status_code \
        in (409, 410)
    assert harness.engine.get_run(comp_id).steps[ROLLBACK].output["recalled"] is True
    kinds = [e["type"] for e in harness.engine.run_events(comp_id)]
    assert kinds.count("callback_followed") == 1


def test_a_callback_before_the_compensations_call_is_kept_until_it_waits(
        harness: Harness, bank: Bank) -> None:
    """The carrier calls back the plan run's URL after the cancel, before the compensation
    has made its recall: the callback is kept, and delivered when the compensation's
    recall is answered."""
    client = _deploy(harness, bank)
    order, _run_id = _amended(harness)
    harness.work()
    (made,) = _recalls_done(bank)
    out = harness.engine.plans.cancel(order, "customer canceled", "test")
    comp_id = out["compensation_run_id"]
    assert harness.engine.get_run(comp_id).steps[ROLLBACK].status.value != "completed"
    r = _post(client, made["received"]["reply_to"], {"recalled": True})
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "early"
    CALLS.clear()
    _compensated(harness, bank, order, comp_id)


class Hold:
    """The carrier holds the first recall it receives until :meth:`release`; ``seen``."""

    def __init__(self, bank: Bank) -> None:
        self.arrived = threading.Event()
        self.released = threading.Event()
        self.seen: Seen | None = None
        bank.on_request = self

    def __call__(self, seen: Seen) -> None:
        if seen.path != RECALLS or self.seen is not None:
            return
        self.seen = seen
        self.arrived.set()
        self.released.wait(WAIT)

    def release(self) -> None:
        self.released.set()


def test_a_callback_that_came_before_the_cancel_is_delivered_to_the_compensation(
        harness: Harness, bank: Bank) -> None:
    """The carrier calls back while the plan's recall is still in flight (kept early for
    the plan's step), and the order is canceled before that recall is answered: the
    compensation's recall, answered with the first answer, takes that callback."""
    client = _deploy(harness, bank)
    order, _run_id = _amended(harness)
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
        assert hold.seen is not None
        r = _post(client, hold.seen.json()["reply_to"], {"recalled": True})
        assert r.status_code == 202 and r.json()["status"] == "early", r.text
        CALLS.clear()
        out = harness.engine.plans.cancel(order, "customer canceled", "test")
    finally:
        hold.release()
        thread.join(WAIT)
    assert not thread.is_alive() and not errors, errors
    comp_id = out["compensation_run_id"]
    _compensated(harness, bank, order, comp_id)
