"""An mcp step's tool call carries an idempotency key: its run, step and iteration, the same
on every attempt, in the request's ``_meta`` (``io.baton/idempotency-key``), over HTTP also
as the connection's ``idempotency_header``, and as the tool argument the step names in
``idempotency_argument``. A real MCP server process (tests/mcp_idem_server.py: it refunds
once per key) acts once when the first attempt's answer is lost (the server died after
acting, over stdio; the step's timeout passed, over HTTP), and once when a canceled plan's
compensation run takes over an MCP rollback the plan's run began (it sends the plan's key).
Real Engine and Worker on SQLite and PostgreSQL, virtual time."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from baton.cli.demo_carrier import pointed_at
from baton.connections.mcp import shared_sessions
from baton.errors import DefinitionError
from tests.bank import Bank, bank_server
from tests.conftest import Harness

# the example's flows, as recorders (CALLS): registered once, by that module
from tests.integration.test_plans import CALLS, EXAMPLE, _work

SERVER = Path(__file__).resolve().parents[1] / "mcp_idem_server.py"
ROLLBACK = "rollback_ship[L1.1]"


@pytest.fixture(autouse=True, scope="module")
def _sessions_closed() -> Iterator[None]:
    yield
    shared_sessions().close()  # no stdio server outlives the tests


class Refunds:
    """The server's state file: what the test sets (faults), what the server did."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.exists() else {
            "refunds": {}, "calls": [], "faults": {}}

    def fault(self, **faults: float) -> None:
        data = self.read()
        data["faults"].update(faults)
        self.path.write_text(json.dumps(data))

    @property
    def calls(self) -> list[dict[str, Any]]:
        return list(self.read()["calls"])

    @property
    def refunds(self) -> dict[str, Any]:
        return dict(self.read()["refunds"])


@pytest.fixture
def refunds(tmp_path: Path) -> Refunds:
    return Refunds(tmp_path / "refunds.json")


def stdio_connection(refunds: Refunds) -> str:
    return f"""
kind: connection
name: refunds
type: mcp
transport: stdio
command: python
args: [{SERVER}, {refunds.path}]
"""


def http_connection(url: str, extra: str = "") -> str:
    return f"""
kind: connection
name: refunds
type: mcp
transport: http
url: {url}
timeout: {{connect: 10s, read: 30s}}
{extra}
"""


def orchestration(extra: str = "") -> str:
    return f"""
kind: orchestration
name: t_refund
trigger:
  type: autolaunched
  input:
    order: {{type: string, required: true}}
stages:
  - name: s
    steps:
      - name: refund
        type: mcp
        connection: refunds
        tool: refund
        arguments: {{order: '=input.order'}}
        retry: {{max: 2, initial: 1m}}
        {extra}
      - {{name: done, type: milestone, after: [refund]}}
"""


def audited(h: Harness, run_id: str) -> list[dict[str, Any]]:
    return [e["data"] for e in h.engine.run_events(run_id) if e["type"] == "mcp_called"]


def test_a_retry_after_the_server_died_having_acted_refunds_once(
        harness: Harness, refunds: Refunds) -> None:
    """Over stdio: the server refunds, then dies before it answers (the step's attempt
    fails retryably). The retry, to a new server process, carries the same key, in
    ``_meta`` and as ``request_id``: the server answers with the first refund."""
    refunds.fault(die_after_acting=1)
    harness.deploy_text(stdio_connection(refunds) + "---"
                        + orchestration("idempotency_argument: request_id"))
    run = harness.engine.start("t_refund", {"order": "K-1"})
    harness.work()
    sr = harness.engine.get_run(run.id).steps["refund"]
    assert sr.status.value == "running" and sr.error is not None, sr.error
    assert sr.error["type"] == "McpTransportError"  # retried after its back-off
    assert len(refunds.refunds) == 1
    harness.clock.advance(timedelta(minutes=1))
    harness.work()
    done = harness.engine.get_run(run.id)
    assert done.status.value == "completed", done.steps["refund"].error
    key = f"{run.id}:refund:1"
    assert done.steps["refund"].output == {"refund_id": "rf-1", "order": "K-1",
                                           "replayed": True}
    calls = refunds.calls
    assert [(c["meta_key"], c["request_id"]) for c in calls] == [(key, key)] * 2
    assert calls[0]["pid"] != calls[1]["pid"]  # (a new server process took the retry)
    assert calls[0]["header_key"] is None  # (stdio: no headers)
    assert list(refunds.refunds) == [key]
    assert [(c["outcome"], c["idempotency_key"], c["arguments"]["request_id"])
            for c in audited(harness, run.id)] == [("transport_error", key, key),
                                                   ("ok", key, key)]


def test_without_an_idempotency_argument_the_key_travels_in_meta_only(
        harness: Harness, refunds: Refunds) -> None:
    harness.deploy_text(stdio_connection(refunds) + "---" + orchestration())
    run = harness.engine.start("t_refund", {"order": "K-2"})
    other = harness.engine.start("t_refund", {"order": "K-2"})
    harness.work()
    assert harness.engine.get_run(run.id).status.value == "completed"
    assert harness.engine.get_run(other.id).status.value == "completed"
    calls = sorted(refunds.calls, key=lambda c: str(c["meta_key"]))
    assert [(c["meta_key"], c["request_id"]) for c in calls] == sorted(
        [(f"{run.id}:refund:1", None), (f"{other.id}:refund:1", None)])
    assert len(refunds.refunds) == 2  # two runs, two keys: two refunds


@pytest.fixture
def http_server(refunds: Refunds) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, str(SERVER), str(refunds.path), "--http"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    try:
        assert line.startswith("listening on "), line
        yield line.split()[-1]
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(15)


def test_over_http_a_retry_after_a_lost_answer_refunds_once_and_the_key_is_a_header(
        harness: Harness, refunds: Refunds, http_server: str) -> None:
    """Over HTTP: the server refunds, then answers after the step's timeout (its answer
    is lost); the retry carries the same key in ``_meta`` and in the connection's
    ``idempotency_header``."""
    refunds.fault(hang_after_acting=1, hang_seconds=20)
    harness.deploy_text(http_connection(http_server, "idempotency_header: X-Request-Key")
                        + "---" + orchestration("timeout: 1s"))
    run = harness.engine.start("t_refund", {"order": "K-3"})
    harness.work()
    sr = harness.engine.get_run(run.id).steps["refund"]
    assert sr.status.value == "running" and sr.error is not None
    assert "timed out" in sr.error["message"]
    harness.clock.advance(timedelta(minutes=1))
    harness.work()
    done = harness.engine.get_run(run.id)
    assert done.status.value == "completed", done.steps["refund"].error
    assert done.steps["refund"].output["replayed"] is True
    key = f"{run.id}:refund:1"
    assert [(c["meta_key"], c["x_request_key"], c["header_key"], c["request_id"])
            for c in refunds.calls] == [(key, key, None, None)] * 2
    assert list(refunds.refunds) == [key]


def test_over_http_the_key_goes_in_idempotency_key_by_default(
        harness: Harness, refunds: Refunds, http_server: str) -> None:
    harness.deploy_text(http_connection(http_server) + "---" + orchestration())
    run = harness.engine.start("t_refund", {"order": "K-4"})
    harness.work()
    assert harness.engine.get_run(run.id).status.value == "completed"
    key = f"{run.id}:refund:1"
    assert [(c["meta_key"], c["header_key"]) for c in refunds.calls] == [(key, key)]


# --- a canceled plan's MCP rollback -----------------------------------------------------------


@pytest.fixture
def bank() -> Iterator[Bank]:
    with bank_server() as b:
        yield b


def test_a_carried_mcp_rollback_refunds_once(harness: Harness, refunds: Refunds,
                                             bank: Bank) -> None:
    """The order_fulfillment example, its ``ship`` step undone by an MCP refund. An
    amendment adds the rollback to the plan; its call refunds, then the server dies (the
    step waits for its retry) and the order is canceled. The compensation run's call sends
    the plan's key: the server answers with the first refund."""
    texts = pointed_at(EXAMPLE, bank.url)
    texts["fulfillment.yaml"] = texts["fulfillment.yaml"].replace(
        "rollback: {type: background, flow: orders.recall}}",
        "rollback: {type: mcp, connection: refunds, tool: refund, "
        "arguments: {order: '=record.number'}, idempotency_argument: request_id, "
        "retry: {max: 3, initial: 1m}}}").replace(
        "'=response.body.trackingId'", "'=response.body.ackId'")  # (the bank's answer)
    assert texts["fulfillment.yaml"].count("tool: refund") == 1
    texts["refunds.yaml"] = stdio_connection(refunds)
    harness.setenv(CARRIER_TOKEN="tok")
    harness.engine.deploy(texts=texts, known_flows=None)
    order = str(harness.engine.create_record(
        "Order", {"number": "K-5", "status": "Submitted"},
        children={"OrderLine": [
            {"product": "LAPTOP-PRO", "attributes": {"color": "red"}},
            {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}}]})["id"])
    _work(harness)
    laptop = next(r for r in harness.engine.list_records("OrderLine", limit=50)
                  if r["product"] == "LAPTOP-PRO")
    harness.engine.update_record(laptop["id"], {"attributes": {"color": "blue"}})
    run_id = str(harness.engine.plans.amend(order, "test")["run_id"])
    refunds.fault(die_after_acting=1)
    harness.work()
    step = harness.engine.get_run(run_id).steps[ROLLBACK]
    assert step.status.value == "running" and step.error is not None
    assert step.error["type"] == "McpTransportError"
    plan_key = f"{run_id}:{ROLLBACK}:{step.iteration}"
    assert list(refunds.refunds) == [plan_key]

    out = harness.engine.plans.cancel(order, "customer canceled", "test")
    CALLS.clear()
    harness.work()
    harness.clock.advance(timedelta(minutes=5))
    harness.work()  # (the plan's retry, due meanwhile, is dropped: its run is canceled)
    plan = harness.engine.plans.show(order)
    assert plan["compensation"]["status"] == "completed", plan["compensation"]
    comp = harness.engine.get_run(out["compensation_run_id"])
    assert comp.steps[ROLLBACK].output == {"refund_id": "rf-1", "order": "K-5",
                                           "replayed": True}
    assert [(c["meta_key"], c["request_id"]) for c in refunds.calls] == [(plan_key,) * 2] * 2
    assert list(refunds.refunds) == [plan_key]  # refunded once
    assert CALLS == ["release:L1.1"]
    graph = harness.engine.plans.revision(order, plan["compensation"]["revision"])["graph"]
    defs = {s["name"]: s for s in graph["definition"]["stages"][0]["steps"]}
    assert defs[ROLLBACK]["idempotency_key"] == plan_key
    assert "retry_on" not in defs[ROLLBACK]


@pytest.mark.parametrize(("text", "expected"), [
    (orchestration("idempotency_key: 'abc'"),
     ("stages[0].steps[0].idempotency_key: an mcp step's idempotency key is "
      "RUN_ID:STEP:ITERATION, set by Baton")),
    (orchestration("idempotency_argument: order"),
     "stages[0].steps[0].arguments.order: 'order' is the step's idempotency_argument"),
    (orchestration("idempotency_argument: ''"),
     "stages[0].steps[0].idempotency_argument: expected a non-empty string"),
], ids=["key", "argument_twice", "empty_argument"])
def test_bad_idempotency_options_are_refused(harness: Harness, refunds: Refunds, text: str,
                                             expected: str) -> None:
    with pytest.raises(DefinitionError) as info:
        harness.deploy_text(stdio_connection(refunds) + "---" + text)
    assert any(expected in str(i) for i in info.value.issues), info.value.issues


def test_an_idempotency_header_on_a_stdio_connection_is_refused(
        harness: Harness, refunds: Refunds) -> None:
    with pytest.raises(DefinitionError) as info:
        harness.deploy_text(stdio_connection(refunds) + "idempotency_header: X-Key\n")
    assert [str(i).split(" ", 1)[1] for i in info.value.issues] == [
        "idempotency_header: idempotency_header does not apply to transport: stdio"]
