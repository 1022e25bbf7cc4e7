"""A stdio MCP server's messages are read up to the connection's bound (twice its
``max_response`` and 64 KB, as over HTTP), no further: a message over it fails the request
it answers with ``ResponseTooLarge`` (not retried: an mcp step goes to fallout at once), any
other request in flight with a retryable transport error, and the server is stopped (the
next call starts it again). A line that never ends is read no further than a long one.

A real MCP server process (the SDK's ``MCPServer`` over stdio, a script written here) whose
tools answer with a long line, or print a line with no end on its stdout.
"""

from __future__ import annotations

import os
import sys
import textwrap
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baton.connections.mcp import (
    McpSessions,
    McpTransportError,
    ResponseTooLarge,
    endpoint_from,
    shared_sessions,
)
from baton.connections.mcp_stdio import _answered
from tests.procs import eventually

KB, MB = 1024, 1024 * 1024

SERVER = '''
import asyncio
import os

from mcp.server.mcpserver import MCPServer

server = MCPServer("loud", log_level="WARNING")
WIRE = os.dup(1)  # the server's stdout (the SDK turns fd 1 to stderr while it serves)


@server.tool(structured_output=False)
def blob(n: int) -> str:
    """n characters of text (one line as sent)."""
    return "b" * n


@server.tool()
async def slow(seconds: float) -> dict[str, float]:
    """Answer after ``seconds``."""
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@server.tool()
def whoami() -> dict[str, int]:
    """This process's id."""
    return {"pid": os.getpid()}


@server.tool()
def unterminated(mb: int) -> str:
    """Print ``mb`` MB on stdout with no newline (not an MCP message), then answer."""
    chunk = b"x" * (1024 * 1024)
    for _ in range(mb):
        os.write(WIRE, chunk)
    return "done"


server.run()
'''


@pytest.fixture(scope="module")
def script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mcp_stdio") / "loud_server.py"
    path.write_text(SERVER)
    return path


@pytest.fixture
def sessions() -> Iterator[McpSessions]:
    s = McpSessions()
    try:
        yield s
    finally:
        s.close()


def endpoint(script: Path, max_response: int = 64 * KB) -> Any:
    return endpoint_from("loud", transport="stdio", command=sys.executable, args=[str(script)],
                         connect_timeout=30.0, read_timeout=60.0, max_response=max_response)


def running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not running
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def test_a_line_over_the_bound_fails_its_call_and_stops_the_server(
        sessions: McpSessions, script: Path) -> None:
    ep = endpoint(script)
    pid = sessions.call_tool(ep, "whoami", {}).structured["pid"]
    assert sessions.call_tool(ep, "blob", {"n": 60 * KB}).text == "b" * (60 * KB)
    assert sessions.call_tool(ep, "whoami", {}).structured["pid"] == pid  # kept
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge) as info:
            sessions.call_tool(ep, "blob", {"n": 16 * MB})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = info.value
    assert err.retryable is False and err.limit == 64 * KB
    assert 192 * KB < err.size <= 256 * KB + 64 * KB  # read in pieces of at most 64 KB
    message = str(err)
    assert "over 196,608 bytes as sent" in message and "not read further" in message
    assert "max_response of 65,536 bytes" in message and "the server was stopped" in message
    assert peak < 8 * MB, f"the call held {peak:,} bytes at its peak"
    eventually(lambda: not running(pid), timeout=30, what="the MCP server to be stopped")
    assert not sessions.alive(ep)
    # the next call starts the server again
    assert sessions.call_tool(ep, "blob", {"n": 10}).text == "b" * 10
    assert sessions.call_tool(ep, "whoami", {}).structured["pid"] != pid


def test_a_line_without_end_is_read_no_further_than_the_bound(
        sessions: McpSessions, script: Path) -> None:
    ep = endpoint(script)
    pid = sessions.call_tool(ep, "whoami", {}).structured["pid"]
    tracemalloc.start()
    try:
        # 50 MB, no newline, nothing after (a read until the line ends would end with the
        # call's 60 s timeout, as a transport error)
        with pytest.raises(ResponseTooLarge) as info:
            sessions.call_tool(ep, "unterminated", {"mb": 50})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.retryable is False and info.value.size <= 256 * KB + 64 * KB
    assert "the server was stopped" in str(info.value)
    assert peak < 8 * MB, f"the call held {peak:,} bytes at its peak"
    eventually(lambda: not running(pid), timeout=30, what="the MCP server to be stopped")
    assert sessions.call_tool(ep, "slow", {"seconds": 0}).structured == {"slept": 0}


def test_other_calls_in_flight_fail_retryably_and_say_why(sessions: McpSessions,
                                                          script: Path) -> None:
    ep = endpoint(script)
    sessions.call_tool(ep, "whoami", {})
    waiting = sessions.submit_tool(ep, "slow", {"seconds": 60})
    big = sessions.submit_tool(ep, "blob", {"n": 4 * MB})
    with pytest.raises(ResponseTooLarge):  # the answer names its request: this one
        big()
    with pytest.raises(McpTransportError) as info:
        waiting()
    assert info.value.retryable is True
    message = str(info.value)
    assert "lost the connection" in message
    assert "the server sent a message over 196,608 bytes" in message
    assert "while other requests were in flight, and was stopped" in message
    assert sessions.call_tool(ep, "slow", {"seconds": 0}).structured == {"slept": 0}


def test_which_request_a_message_too_large_answers() -> None:
    head = b'{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"bbbb'
    assert _answered(head, {3, 7}) == 7
    assert _answered(b'{"id": "a-1", "jsonrpc": "2.0", "result": {', {"a-1"}) == "a-1"
    assert _answered(head, {3}) is None  # an id not in flight
    # the id after the result (another SDK's order), or garbage: the only request in flight
    assert _answered(b'{"result":{"content":[{"type":"text","text":"bb', {4}) == 4
    assert _answered(b"xxxxxxxx", {4}) == 4
    assert _answered(b'{"result":{"content":[', {4, 5}) is None
    # the server's own request or notification answers nothing
    assert _answered(b'{"jsonrpc":"2.0","method":"notifications/message","params":{', {4}) \
        is None
    assert _answered(b'{"params":{"level":"info","data":"zzz', {4}) is None
    # an id cut off at the end of the first bytes is not taken
    assert _answered(b'{"jsonrpc":"2.0","id":12', {1, 12}) is None


# --- an mcp step ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def _sessions_closed() -> Iterator[None]:
    yield
    shared_sessions().close()  # no stdio server outlives the tests


def test_an_mcp_step_answered_over_the_bound_goes_to_fallout_at_once(
        harness: Any, script: Path, _sessions_closed: None) -> None:
    harness.deploy_text(textwrap.dedent(f"""\
        kind: connection
        name: loud
        type: mcp
        transport: stdio
        command: python
        args: [{script}]
        max_response: 1KB
        ---
        kind: orchestration
        name: t_loud
        trigger:
          type: autolaunched
          input:
            n: {{type: int, required: true}}
        stages:
          - name: s
            steps:
              - name: fetch
                type: mcp
                connection: loud
                tool: blob
                arguments: {{n: '=input.n'}}
                retry: {{max: 2, initial: 1m}}
        """))
    run = harness.engine.start("t_loud", {"n": 2 * MB})
    harness.work()
    sr = harness.engine.get_run(run.id).steps["fetch"]
    assert sr.status.value == "fallout" and sr.attempts == 1  # retry: max 2, not retried
    assert sr.error is not None and sr.error["type"] == "ResponseTooLarge"
    assert sr.error["retryable"] is False and "not read further" in sr.error["message"]
    assert sr.error["call"]["outcome"] == "too_large"
    ok = harness.engine.start("t_loud", {"n": 100})  # a new server answers
    harness.work()
    assert harness.engine.get_run(ok.id).steps["fetch"].output == {"text": "b" * 100}
