"""Rollbacks told that their step's effect is uncertain (``plan.undo.uncertain``: the ship
call answered 503 and waits for its retry when the order is canceled):

- an MCP tool rollback's "nothing to undo" answers are those its ``nothing_to_undo``
  condition holds for — a tool error (``isError``) whose text says ``not_found``, or a
  structured result ``{"status": "not_found"}`` — and, as a callout's, such an answer is
  tried again with the rollback's ``retry`` backoff and taken only on its last try, the
  timeline saying so (``rollback_nothing_to_undo``); undoing a completed step it is final
  at once;
- a rollback without a ``retry`` of its own is given the built-in one
  (``UNCERTAIN_RETRY``: 4 tries) rather than taking the first "nothing to undo"; undoing a
  completed step it gets none.

Real Engine and Workers on SQLite and PostgreSQL, virtual time; the order_fulfillment
example, its ``ship`` callout to a carrier on loopback (tests/bank.py), undone by a recall:
a real MCP server process over stdio (test_plan_edges_recall_server.py) or a callout to the
carrier (which answers 404 for a booking it has not found)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from baton.cli.demo_carrier import pointed_at
from baton.connections.mcp import shared_sessions
from baton.errors import DefinitionError
from baton.plans.compensation import UNCERTAIN_RETRY
from tests.bank import Bank, bank_server
from tests.conftest import Harness
from tests.integration.test_plan_inflight_rollback import PARIS, RED, ROLLBACK, SHIP, _order
from tests.integration.test_plan_uncertain_rollback import NOTHING, Carrier
from tests.integration.test_plans import CALLS, EXAMPLE

SERVER = Path(__file__).resolve().with_name("test_plan_edges_recall_server.py")
NOT_FOUND = {"error": '=result.is_error && result.text.contains("not_found")',
             "structured": '=result.structured.status == "not_found"'}


def mcp_recall(marker: str, retry: str = "retry: {max: 2, initial: 1m}, ") -> str:
    return ("{type: mcp, connection: recalls, tool: recall, "
            "arguments: {booking: '=input.plan.undo.idempotency_key'}, " + retry
            + f"nothing_to_undo: '{NOT_FOUND[marker]}'}}")


# the recall as a callout without a retry: 404 (the carrier's "no such booking") taken as
# "nothing to undo"
CALLOUT_RECALL = ("{type: callout, connection: carrier, method: POST, path: /recalls, "
                  "success: [2xx, 404], body: {booking: '=input.plan.undo.idempotency_key'}}")


@pytest.fixture(autouse=True, scope="module")
def _sessions_closed() -> Iterator[None]:
    yield
    shared_sessions().close()  # no stdio server outlives the tests


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()


@pytest.fixture
def bank() -> Iterator[Bank]:
    with bank_server() as b:
        yield b


class Recalls:
    """The MCP server's state file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {
            "found": [], "calls": [], "marker": "error"}

    def set(self, **values: Any) -> None:
        data = self.read()
        data.update(values)
        self.path.write_text(json.dumps(data))

    @property
    def calls(self) -> list[str]:
        return list(self.read()["calls"])

    def connection(self) -> str:
        return f"""
kind: connection
name: recalls
type: mcp
transport: stdio
command: python
args: [{SERVER}, {self.path}]
"""


@pytest.fixture
def recalls(tmp_path: Path) -> Recalls:
    return Recalls(tmp_path / "recalls.json")


def _deploy(h: Harness, bank: Bank, rollback: str, extra: dict[str, str] | None = None) -> None:
    """The example, its carrier ``bank``, ``ship`` undone by ``rollback``."""
    texts = pointed_at(EXAMPLE, bank.url)
    fulfillment = texts["fulfillment.yaml"].replace(
        "rollback: {type: background, flow: orders.recall}}",
        f"rollback: {rollback}}}").replace(
        "'=response.body.trackingId'", "'=response.body.ackId'")  # (the bank's answer)
    assert fulfillment.count(f"rollback: {rollback}}}") == 1
    h.setenv(CARRIER_TOKEN="tok")
    h.engine.deploy(texts={**texts, "fulfillment.yaml": fulfillment, **(extra or {})},
                    known_flows=None)


def _canceled(h: Harness, bank: Bank, ship: str) -> tuple[str, str, str]:
    """An order whose ship call was answered 503 (``busy``: it waits for its retry, its
    effect uncertain) or booked (``ok``), canceled: its id, its compensation run's id and
    the key the ship call sent."""
    Carrier(bank, ship)
    order, run_id = _order(h, [RED, PARIS])
    h.work()
    assert h.engine.get_run(run_id).steps[SHIP].status.value == (
        "running" if ship == "busy" else "completed")
    out = h.engine.plans.cancel(order, "customer canceled", "test")
    assert out["rollbacks"] == ["rollback_reserve[L1.1]", ROLLBACK]
    return order, str(out["compensation_run_id"]), f"{run_id}:{SHIP}:1"


def _rollback_events(h: Harness, run_id: str) -> list[dict[str, Any]]:
    return [e for e in h.engine.run_events(run_id)
            if (e.get("data") or {}).get("step") == ROLLBACK]


def _retried(h: Harness, tries: int) -> None:
    """The compensation's tries, each retry due within the next 3 minutes."""
    for _ in range(tries):
        h.work()
        h.clock.advance(timedelta(minutes=3))


def _rollback_def(h: Harness, order: str) -> dict[str, Any]:
    graph = h.engine.plans.revision(order)["graph"]
    (rb,) = [s for s in graph["definition"]["stages"][0]["steps"] if s["name"] == ROLLBACK]
    return dict(rb)


@pytest.mark.parametrize("marker", ["error", "structured"])
def test_an_mcp_rollback_takes_nothing_to_undo_on_its_last_try_when_uncertain(
        harness: Harness, bank: Bank, recalls: Recalls, marker: str) -> None:
    """The carrier never finds the booking: the recall tool answers "not found" (a tool
    error, or a structured status) three times, the first two tried again after the
    backoff, the last taken: the compensation completes, no fallout."""
    recalls.set(marker=marker)
    _deploy(harness, bank, mcp_recall(marker), {"recalls.yaml": recalls.connection()})
    _order_id, comp_id, key = _canceled(harness, bank, "busy")
    _retried(harness, 3)
    comp = harness.engine.get_run(comp_id)
    assert comp.status.value == "completed", comp.steps
    assert recalls.calls == [key] * 3
    output = comp.steps[ROLLBACK].output
    if marker == "error":  # (the SDK may put its own words before the tool's)
        assert list(output) == ["text"] and output["text"].endswith(
            f"not_found: no booking {key}"), output
    else:
        assert output == {"status": "not_found"}
    events = _rollback_events(harness, comp_id)
    kinds = [e["type"] for e in events]
    assert kinds.count("step_attempt_failed") == 2, kinds
    assert kinds.index(NOTHING) < kinds.index("step_completed")
    failed = [e["data"]["error"] for e in events if e["type"] == "step_attempt_failed"]
    assert all("nothing to undo yet" in f["message"] and f["nothing_to_undo"] is True
               and f["retryable"] is True for f in failed), failed
    assert "try 1 of 3" in failed[0]["message"] and "try 2 of 3" in failed[1]["message"]
    assert [e["data"] for e in events if e["type"] == NOTHING] == [
        {"step": ROLLBACK, "iteration": 1, "attempt": 3, "tool": "recall", "tries": 3,
         "undone": SHIP, "idempotency_key": key}]
    called = [e["data"] for e in events if e["type"] == "mcp_called"]
    assert [(c["outcome"], c.get("nothing_to_undo")) for c in called] == [
        ("tool_error" if marker == "error" else "ok", True)] * 3
    assert harness.engine.list_fallout() == []
    assert "release:L1.1" in CALLS


def test_an_mcp_rollback_without_a_retry_tries_again_and_recalls_what_landed(
        harness: Harness, bank: Bank, recalls: Recalls) -> None:
    """The recall has no ``retry``: told uncertain, it is given the built-in one. Its first
    call finds nothing (a tool error it takes as "nothing to undo"): tried again after
    30 s, by when the carrier has found the booking, which is recalled."""
    _deploy(harness, bank, mcp_recall("error", retry=""),
            {"recalls.yaml": recalls.connection()})
    order, comp_id, key = _canceled(harness, bank, "busy")
    assert _rollback_def(harness, order)["retry"] == dict(UNCERTAIN_RETRY)
    harness.work()
    step = harness.engine.get_run(comp_id).steps[ROLLBACK]
    assert step.status.value == "running" and step.error is not None, step
    assert "nothing to undo yet" in step.error["message"]
    assert "try 1 of 4" in step.error["message"]
    recalls.set(found=[key])  # the carrier has processed the booking meanwhile
    _retried(harness, 2)
    comp = harness.engine.get_run(comp_id)
    assert comp.status.value == "completed", comp.steps
    assert comp.steps[ROLLBACK].output == {"status": "recalled", "booking": key}
    assert recalls.calls == [key, key]
    kinds = [e["type"] for e in _rollback_events(harness, comp_id)]
    assert kinds.count("step_attempt_failed") == 1 and NOTHING not in kinds, kinds


def test_an_mcp_rollback_of_a_completed_step_takes_nothing_to_undo_at_once(
        harness: Harness, bank: Bank, recalls: Recalls) -> None:
    recalls.set(marker="structured")
    _deploy(harness, bank, mcp_recall("structured"), {"recalls.yaml": recalls.connection()})
    _order_id, comp_id, key = _canceled(harness, bank, "ok")
    harness.work()
    comp = harness.engine.get_run(comp_id)
    assert comp.status.value == "completed", comp.steps
    assert comp.steps[ROLLBACK].output == {"status": "not_found"}
    assert recalls.calls == [key]
    kinds = [e["type"] for e in _rollback_events(harness, comp_id)]
    assert "step_attempt_failed" not in kinds and NOTHING not in kinds, kinds


@pytest.mark.parametrize("ship", ["busy", "ok"])
def test_a_callout_rollback_without_a_retry_gets_the_built_in_one_only_when_uncertain(
        harness: Harness, bank: Bank, ship: str) -> None:
    """The recall callout has no ``retry``. Undoing the ship call answered 503 it is given
    ``UNCERTAIN_RETRY``: the carrier's 404 is tried 4 times, the last taken, the timeline
    saying so. Undoing a booked shipment it gets none: the 404 is final at once."""
    _deploy(harness, bank, CALLOUT_RECALL)
    carrier = Carrier(bank, ship)
    order, run_id = _order(harness, [RED, PARIS])
    harness.work()
    out = harness.engine.plans.cancel(order, "customer canceled", "test")
    comp_id = str(out["compensation_run_id"])
    rb = _rollback_def(harness, order)
    tries = UNCERTAIN_RETRY["max"] + 1 if ship == "busy" else 1
    if ship == "busy":
        assert rb["retry"] == dict(UNCERTAIN_RETRY) and tries == 4
    else:
        assert "retry" not in rb
    _retried(harness, tries)
    comp = harness.engine.get_run(comp_id)
    assert comp.status.value == "completed", comp.steps
    assert carrier.recalls == [404] * tries
    events = _rollback_events(harness, comp_id)
    kinds = [e["type"] for e in events]
    assert kinds.count("step_attempt_failed") == tries - 1, kinds
    nothing = [e["data"] for e in events if e["type"] == NOTHING]
    if ship == "busy":
        assert nothing == [{"step": ROLLBACK, "iteration": 1, "attempt": 4, "status": 404,
                            "tries": 4, "undone": SHIP,
                            "idempotency_key": f"{run_id}:{SHIP}:1"}]
    else:
        assert nothing == []
    assert harness.engine.list_fallout() == []


@pytest.mark.parametrize(("condition", "expected"), [
    ("true", "nothing_to_undo: expected an '=condition' over the tool's result"),
    ("'=reply.status == 1'", "nothing_to_undo"),
], ids=["literal", "unknown_root"])
def test_a_bad_nothing_to_undo_is_refused(harness: Harness, bank: Bank, recalls: Recalls,
                                          condition: str, expected: str) -> None:
    rollback = ("{type: mcp, connection: recalls, tool: recall, "
                f"arguments: {{booking: x}}, nothing_to_undo: {condition}}}")
    with pytest.raises(DefinitionError) as info:
        _deploy(harness, bank, rollback, {"recalls.yaml": recalls.connection()})
    issues = [str(i) for i in info.value.issues]
    assert any("rollback.nothing_to_undo" in i and expected in i for i in issues), issues
