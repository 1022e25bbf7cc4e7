"""``type: mcp`` steps against a real MCP server (``examples/mcp_erp/server.py``), on both
databases: over stdio (the worker starts the server and keeps it), and over streamable HTTP
(a server process started here on a port of its own, with a bearer token).

A tool that succeeds gives the step its structured result; a tool error goes to fallout at
once with the call's summary (no retry: the tool would say the same again); a server that
cannot be reached is retried per the step's policy; a stdio server killed under the worker
is started again; every call is audited, and no secret reaches the run or its events.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from baton.connections.mcp import endpoint_from, shared_sessions
from baton.engine.status import RunStatus
from tests.net import free_port
from tests.procs import eventually

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "examples" / "mcp_erp" / "server.py"
TOKEN = "erp-token-5b0c8e1f-never-shown"


def start_http_server(port: int = 0, token: str | None = TOKEN) -> tuple[subprocess.Popen[str], str]:
    """The example server over streamable HTTP; returns the process and its URL."""
    args = [sys.executable, str(SERVER), "--http", "--port", str(port)]
    if token:
        args += ["--token", token]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # printed once it accepts requests
    if not line.startswith("listening on "):
        proc.kill()
        raise AssertionError(f"the MCP server did not start: {line!r}")
    return proc, line.split()[-1]


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(15)


@pytest.fixture(scope="module")
def erp_http() -> Iterator[str]:
    proc, url = start_http_server()
    yield url
    stop(proc)


@pytest.fixture(autouse=True, scope="module")
def _sessions_closed() -> Iterator[None]:
    yield
    shared_sessions().close()  # no stdio server outlives the tests


STDIO_CONNECTION = f"""
kind: connection
name: erp
type: mcp
transport: stdio
command: python
args: [{SERVER}]
"""


def http_connection(url: str, name: str = "erp_http") -> str:
    return f"""
kind: connection
name: {name}
type: mcp
transport: http
url: {url}
auth: {{type: bearer, secret: env:ERP_TOKEN}}
timeout: {{connect: 10s, read: 30s}}
"""


def orchestration(connection: str, name: str = "t_lookup", tool: str = "find_account",
                  extra: str = "") -> str:
    return f"""
kind: orchestration
name: {name}
trigger:
  type: autolaunched
  input:
    domain: {{type: string, required: true}}
stages:
  - name: s
    steps:
      - name: lookup
        type: mcp
        connection: {connection}
        tool: {tool}
        arguments: {{domain: '=input.domain'}}
        retry: {{max: 2, initial: 1m}}
        {extra}
      - {{name: done, type: milestone, after: [lookup]}}
"""


def calls(harness: Any, run_id: str) -> list[dict[str, Any]]:
    return [e["data"] for e in harness.engine.run_events(run_id) if e["type"] == "mcp_called"]


def test_stdio_tool_result_becomes_the_output_and_the_call_is_audited(harness: Any) -> None:
    harness.deploy_text(STDIO_CONNECTION + "---" + orchestration("erp"))
    run = harness.engine.start("t_lookup", {"domain": "acme.example"})
    harness.work()
    done = harness.engine.get_run(run.id)
    assert done.status is RunStatus.COMPLETED
    assert done.steps["lookup"].output == {"account_id": "ACC-1001", "name": "Acme Corp",
                                           "tier": "gold"}
    (call,) = calls(harness, run.id)
    assert call["connection"] == "erp" and call["tool"] == "find_account"
    assert call["arguments"] == {"domain": "acme.example"}
    assert call["outcome"] == "ok" and call["step"] == "lookup" and call["attempt"] == 1
    assert call["result"]["account_id"] == "ACC-1001"
    assert isinstance(call["duration_ms"], int) and call["duration_ms"] >= 0


def test_output_mapping_reads_the_structured_result_and_the_text(harness: Any) -> None:
    harness.deploy_text(STDIO_CONNECTION + "---" + orchestration(
        "erp", extra="output: {account: '=result.structured.account_id', "
                     "shown: '=result.text.contains(\"Acme\")', source: erp}"))
    run = harness.engine.start("t_lookup", {"domain": "ACME.example"})
    harness.work()
    done = harness.engine.get_run(run.id)
    assert done.status is RunStatus.COMPLETED
    assert done.steps["lookup"].output == {"account": "ACC-1001", "shown": True, "source": "erp"}


def test_a_text_only_tool_gives_its_text(harness: Any) -> None:
    harness.deploy_text(STDIO_CONNECTION + "---" + orchestration("erp", tool="credit_limit")
                        .replace("domain: '=input.domain'", "account_id: '=input.domain'"))
    run = harness.engine.start("t_lookup", {"domain": "ACC-1002"})
    harness.work()
    assert harness.engine.get_run(run.id).steps["lookup"].output == {"text": "20000 EUR"}


def test_a_tool_error_goes_to_fallout_at_once_with_the_call_summary(harness: Any) -> None:
    harness.deploy_text(STDIO_CONNECTION + "---" + orchestration("erp"))
    run = harness.engine.start("t_lookup", {"domain": "unknown.example"})
    harness.work()
    failed = harness.engine.get_run(run.id)
    sr = failed.steps["lookup"]
    assert sr.status.value == "fallout"
    assert sr.attempts == 1  # retry: max 2, yet not retried: the tool would say the same
    assert sr.error is not None
    assert sr.error["type"] == "McpToolError" and sr.error["retryable"] is False
    assert "no account for domain 'unknown.example'" in sr.error["message"]
    assert sr.error["call"]["tool"] == "find_account"
    assert sr.error["call"]["arguments"] == {"domain": "unknown.example"}
    (call,) = calls(harness, run.id)
    assert call["outcome"] == "tool_error" and "no account" in call["error"]
    # an operator retries it once the ERP knows the domain: here it still fails, audited again
    harness.engine.resolve_fallout(f"{run.id}:lookup", "retry", reason="try again",
                                   actor="user:ops", output=None)
    harness.work()
    assert harness.engine.get_run(run.id).steps["lookup"].status.value == "fallout"
    assert [c["outcome"] for c in calls(harness, run.id)] == ["tool_error", "tool_error"]


def test_http_transport_with_bearer_auth_and_no_secret_in_the_run(harness: Any,
                                                                  erp_http: str) -> None:
    harness.setenv(ERP_TOKEN=TOKEN)
    harness.deploy_text(http_connection(erp_http) + "---" + orchestration("erp_http"))
    ok = harness.engine.start("t_lookup", {"domain": "globex.example"})
    bad = harness.engine.start("t_lookup", {"domain": "nowhere.example"})
    harness.work()
    assert harness.engine.get_run(ok.id).steps["lookup"].output["account_id"] == "ACC-1002"
    sr = harness.engine.get_run(bad.id).steps["lookup"]
    assert sr.status.value == "fallout" and sr.error is not None
    assert sr.error["type"] == "McpToolError"
    seen = repr([harness.engine.get_run(r.id).to_json() for r in (ok, bad)]) + repr(
        [harness.engine.run_events(r.id) for r in (ok, bad)])
    assert TOKEN not in seen


def test_a_refused_token_fails_without_retry_and_without_the_token(harness: Any,
                                                                  erp_http: str) -> None:
    harness.setenv(ERP_TOKEN="not-the-token-77")
    harness.deploy_text(http_connection(erp_http) + "---" + orchestration("erp_http"))
    run = harness.engine.start("t_lookup", {"domain": "globex.example"})
    harness.work()
    sr = harness.engine.get_run(run.id).steps["lookup"]
    assert sr.status.value == "fallout" and sr.attempts == 1 and sr.error is not None
    assert "HTTP 401" in sr.error["message"]
    assert "not-the-token-77" not in repr(sr.error) + repr(harness.engine.run_events(run.id))


def test_a_server_that_is_down_is_retried_and_the_retry_succeeds(harness: Any) -> None:
    port = free_port()
    harness.setenv(ERP_TOKEN=TOKEN)
    harness.deploy_text(http_connection(f"http://127.0.0.1:{port}/mcp", "erp_later") + "---"
                        + orchestration("erp_later"))
    run = harness.engine.start("t_lookup", {"domain": "initech.example"})
    harness.work()
    sr = harness.engine.get_run(run.id).steps["lookup"]
    assert sr.status.value == "running" and sr.attempts == 2  # its retry is scheduled
    assert [c["outcome"] for c in calls(harness, run.id)] == ["transport_error"]
    assert sr.error is not None and sr.error["type"] == "McpTransportError"
    assert sr.error["retryable"] is True
    proc, _url = start_http_server(port)
    try:
        harness.clock.advance(timedelta(minutes=1))
        harness.work()
    finally:
        stop(proc)
    done = harness.engine.get_run(run.id)
    assert done.status is RunStatus.COMPLETED
    assert done.steps["lookup"].output["account_id"] == "ACC-1003"
    assert [c["outcome"] for c in calls(harness, run.id)] == ["transport_error", "ok"]


def test_a_call_that_overruns_the_step_timeout_is_retried(harness: Any) -> None:
    harness.deploy_text(STDIO_CONNECTION + "---" + orchestration(
        "erp", name="t_slow", tool="month_end_report",
        extra="timeout: 1s").replace("arguments: {domain: '=input.domain'}",
                                     "arguments: {seconds: 60}"))
    run = harness.engine.start("t_slow", {"domain": "-"})
    harness.work()
    sr = harness.engine.get_run(run.id).steps["lookup"]
    assert sr.status.value == "running" and sr.attempts == 2  # its retry is scheduled
    assert sr.error is not None and sr.error["type"] == "McpTransportError"
    assert "timed out" in sr.error["message"] and sr.error["retryable"] is True
    (call,) = calls(harness, run.id)
    assert call["outcome"] == "transport_error" and call["arguments"] == {"seconds": 60}


def work_keeping_sessions(harness: Any) -> None:
    """Run what is ready as a worker that goes on running would (``run()`` ends with the
    worker's stop, which stops its MCP servers)."""
    while harness.worker.run_once():
        pass


def test_a_killed_stdio_server_is_started_again_and_stopped_with_the_worker(
        harness: Any) -> None:
    harness.deploy_text(STDIO_CONNECTION + "---" + orchestration(
        "erp", name="t_pid", tool="whoami").replace("arguments: {domain: '=input.domain'}",
                                                    "arguments: {}"))
    first = harness.engine.start("t_pid", {"domain": "-"})
    work_keeping_sessions(harness)
    pid = harness.engine.get_run(first.id).steps["lookup"].output["pid"]
    again = harness.engine.start("t_pid", {"domain": "-"})
    work_keeping_sessions(harness)
    assert harness.engine.get_run(again.id).steps["lookup"].output["pid"] == pid  # kept
    os.kill(pid, signal.SIGKILL)
    endpoint = endpoint_from("erp", transport="stdio", command="python", args=[str(SERVER)],
                             cwd=Path.cwd(), connect_timeout=30.0)
    eventually(lambda: not shared_sessions().alive(endpoint), timeout=30,
               what="the worker to see its MCP server die")
    second = harness.engine.start("t_pid", {"domain": "-"})
    work_keeping_sessions(harness)
    done = harness.engine.get_run(second.id)
    assert done.status is RunStatus.COMPLETED
    assert done.steps["lookup"].attempts == 1  # started again before the call, not after a failure
    new_pid = done.steps["lookup"].output["pid"]
    assert new_pid != pid
    assert shared_sessions().alive(endpoint)
    harness.work()  # run() until idle, then the worker stops: so does its MCP server
    assert not shared_sessions().alive(endpoint)
    eventually(lambda: not _running(new_pid), timeout=30, what="the MCP server to exit")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not running
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_sessions_open_again_after_close_and_calls_run_together() -> None:
    """No DB: the client alone. A closed McpSessions serves the next call on a new loop
    (a worker that stopped and runs again), and calls started together all answer."""
    from baton.connections.mcp import McpSessions

    sessions = McpSessions()
    ep = endpoint_from("erp", transport="stdio", command="python", args=[str(SERVER)],
                       connect_timeout=30.0)
    try:
        first = sessions.call_tool(ep, "whoami", {}).structured["pid"]
        sessions.close()
        assert not sessions.alive(ep)
        pending = [sessions.submit_tool(ep, "find_account", {"domain": d})
                   for d in ("acme.example", "globex.example", "initech.example")]
        assert [p().structured["account_id"] for p in pending] == [
            "ACC-1001", "ACC-1002", "ACC-1003"]
        assert sessions.call_tool(ep, "whoami", {}).structured["pid"] != first
    finally:
        sessions.close()
