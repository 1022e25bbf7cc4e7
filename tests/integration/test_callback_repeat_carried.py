"""A repeat of a callback that followed a carried rollback (see
tests/integration/test_carried_callback_rollback.py): the carrier, retrying a delivery whose
answer it lost, posts the plan run's URL again with the same body. It is answered what the
first delivery was (200 for the compensation's step it was delivered to, or 202 when it was
kept early for it, even once delivered since), with ``Idempotent-Replayed: true``, and
changes nothing; another body is a conflict (409). Real Engine and Worker on SQLite and
PostgreSQL, the carrier on loopback, callbacks through the real app."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.bank import Bank
from tests.conftest import Harness
from tests.integration.test_carried_callback_rollback import (
    ROLLBACK,
    _amended,
    _compensated,
    _deploy,
    _post,
    _recalls_done,
    _reset,  # noqa: F401 - its autouse fixture
    bank,  # noqa: F401 - its fixture
)
from tests.integration.test_plans import CALLS


def _repeat(client: TestClient, url: str, body: Any, first: Any) -> None:
    again = _post(client, url, body)
    assert again.status_code == first.status_code, again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    other = _post(client, url, {"recalled": False})
    assert other.status_code == 409, other.text
    assert "different body" in other.json()["detail"]


def test_a_repeat_of_a_followed_callback_is_answered_as_the_first(
        harness: Harness, bank: Bank) -> None:  # noqa: F811 - the fixture
    client = _deploy(harness, bank)
    order, _run_id = _amended(harness)
    harness.work()
    (made,) = _recalls_done(bank)
    out = harness.engine.plans.cancel(order, "customer canceled", "test")
    comp_id = out["compensation_run_id"]
    url = made["received"]["reply_to"]
    # before the compensation's call: kept early for it (under the plan run's step)
    first = _post(client, url, {"recalled": True})
    assert first.status_code == 202 and first.json()["status"] == "early", first.text
    _repeat(client, url, {"recalled": True}, first)
    CALLS.clear()
    _compensated(harness, bank, order, comp_id)
    # delivered since: still answered as it was (202), nothing more delivered or audited
    events = harness.engine.run_events(comp_id)
    assert [e["type"] for e in events].count("callback_followed") == 1
    _repeat(client, url, {"recalled": True}, first)
    assert harness.engine.run_events(comp_id) == events
    assert harness.engine.get_run(comp_id).steps[ROLLBACK].output["recalled"] is True


def test_a_repeat_of_a_callback_delivered_to_the_carrier(
        harness: Harness, bank: Bank) -> None:  # noqa: F811 - the fixture
    client = _deploy(harness, bank)
    order, _run_id = _amended(harness)
    harness.work()
    (made,) = _recalls_done(bank)
    out = harness.engine.plans.cancel(order, "customer canceled", "test")
    comp_id = out["compensation_run_id"]
    harness.work()  # the compensation's recall answered: its step waits
    comp_step = harness.engine.get_run(comp_id).steps[ROLLBACK]
    assert comp_step.status.value == "running"
    url = made["received"]["reply_to"]
    first = _post(client, url, {"recalled": True})
    assert first.status_code == 200, first.text
    assert first.json() == {"status": "delivered", "step": ROLLBACK,
                            "iteration": comp_step.iteration}
    CALLS.clear()
    _compensated(harness, bank, order, comp_id)
    events = harness.engine.run_events(comp_id)
    _repeat(client, url, {"recalled": True}, first)
    assert harness.engine.run_events(comp_id) == events
