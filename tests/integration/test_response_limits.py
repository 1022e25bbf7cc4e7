"""Answers larger than a connection's ``max_response`` (default 5 MB) fail the step at once
as ``ResponseTooLarge``, and are not held whole on the way: an HTTP body is read only up
to the cap (an endless stream ends the call; a gzip bomb is not unpacked past the cap; a
``Content-Length`` over it is not read at all), an MCP tool result is measured and refused.
Also: the stderr lines a timed-out MCP call's message shows are only its own.

Real servers on loopback: an HTTP server here, tests/bank.py, and an MCP server process
(a script written for these tests, started over stdio).
"""

from __future__ import annotations

import gzip
import json
import sys
import textwrap
import threading
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from baton.connections.calls import HttpRequest
from baton.connections.http import HttpConnections, ResponseTooLarge
from baton.connections.mcp import (
    McpSessions,
    McpTransportError,
    endpoint_from,
)
from baton.connections.mcp import ResponseTooLarge as McpResponseTooLarge
from baton.connections.secrets import Secrets
from baton.definitions.connection import MAX_RESPONSE_DEFAULT, max_response_bytes
from baton.definitions.loader import load_text
from baton.definitions.model import ConnectionDefinition
from tests.procs import eventually

KB, MB = 1024, 1024 * 1024


# --- an HTTP server that answers as big as it is asked ---------------------------------------


@dataclass
class Big:
    url: str = ""
    streamed: int = 0  # bytes of /endless written before the client hung up
    hung_up: threading.Event = field(default_factory=threading.Event)
    bomb: bytes = b""  # gzip of many zeros, made once


class _Handler(BaseHTTPRequestHandler):
    state: Big
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, body: bytes, ctype: str = "text/plain",
              extra: dict[str, str] | None = None, length: int | None = None) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        if parts.path == "/bytes":  # exactly n bytes of text
            self._send(b"x" * int(query["n"]))
        elif parts.path == "/json":  # a JSON document of about n bytes
            self._send(json.dumps({"data": "y" * int(query["n"])}).encode(), "application/json")
        elif parts.path == "/endless":  # chunked, without end, until the client hangs up
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"z" * (16 * KB)
            try:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.state.streamed += len(chunk)
            except OSError:  # the client closed the connection
                self.state.hung_up.set()
                self.close_connection = True
        elif parts.path == "/bomb":
            self._send(self.state.bomb, "application/json", {"Content-Encoding": "gzip"})
        elif parts.path == "/head":  # HEAD of a large document: no body follows
            self._send(b"", length=50 * MB)
        else:
            self._send(b"{}", "application/json")

    do_GET = do_POST = do_HEAD = _handle


@pytest.fixture(scope="module")
def big() -> Iterator[Big]:
    state = Big(bomb=gzip.compress(b"\0" * (64 * MB), compresslevel=9))
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True, name="big-server")
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


@pytest.fixture
def http() -> Iterator[HttpConnections]:
    client = HttpConnections(Secrets({}))
    try:
        yield client
    finally:
        client.close()


def connection(url: str, max_response: str | None = None) -> ConnectionDefinition:
    """A connection as a project defines it (YAML, validated and built)."""
    text = f"kind: connection\nname: big\ntype: http\nbase_url: {url}\n"
    if max_response is not None:
        text += f"max_response: {max_response}\n"
    (doc,) = load_text(text, "big.yaml")
    assert isinstance(doc.definition, ConnectionDefinition)
    return doc.definition


def get(path: str, method: str = "GET") -> HttpRequest:
    return HttpRequest(method, path, "k")


def test_the_default_cap_is_5_mb_and_a_body_of_that_size_still_passes(
        http: HttpConnections, big: Big) -> None:
    conn = connection(big.url)
    assert max_response_bytes(conn) == MAX_RESPONSE_DEFAULT == 5 * MB
    assert max_response_bytes(ConnectionDefinition("plain", "http")) == 5 * MB
    ok = http.call(conn, get(f"/bytes?n={5 * MB}"))
    assert ok.status == 200 and len(ok.body) == 5 * MB
    with pytest.raises(ResponseTooLarge) as info:
        http.call(conn, get(f"/bytes?n={5 * MB + 1}"))
    err = info.value
    assert err.retryable is False and (err.size, err.limit) == (5 * MB + 1, 5 * MB)
    assert "Content-Length announces 5,242,881 bytes" in str(err)
    assert "max_response of 5,242,880 bytes" in str(err)
    assert err.summary.status == 200 and err.summary.response_body is None


def test_a_connection_sets_its_own_cap(http: HttpConnections, big: Big) -> None:
    small, large = connection(big.url, "64KB"), connection(big.url, "8MB")
    assert (max_response_bytes(small), max_response_bytes(large)) == (64 * KB, 8 * MB)
    assert http.call(small, get(f"/json?n={60 * KB}")).body["data"] == "y" * (60 * KB)
    with pytest.raises(ResponseTooLarge):
        http.call(small, get(f"/json?n={70 * KB}"))
    assert len(http.call(large, get(f"/bytes?n={6 * MB}")).body) == 6 * MB


def test_an_endless_body_is_read_up_to_the_cap_then_the_connection_is_dropped(
        http: HttpConnections, big: Big) -> None:
    conn = connection(big.url, "256KB")
    with pytest.raises(ResponseTooLarge) as info:
        # (a body read whole would never end: bounded here, so that such a bug fails)
        http.submit(conn, get("/endless")).result(timeout=60)
    err = info.value
    # read in pieces of at most 64 KB (a socket read): stopped within one of the cap
    assert 256 * KB < err.size <= 256 * KB + 64 * KB
    assert f"{err.size:,} bytes read so far" in str(err)
    assert "max_response of 262,144 bytes" in str(err)
    assert err.summary.status == 200 and err.summary.response_bytes == err.size
    # the server sees the client hang up: nothing more is read
    eventually(big.hung_up.is_set, timeout=30, what="the server to see the client hang up")
    # the client goes on: the next call on that connection gets a fresh socket
    assert http.call(conn, get("/json?n=10")).body == {"data": "y" * 10}


def test_a_gzip_bomb_is_not_unpacked_past_the_cap(http: HttpConnections, big: Big) -> None:
    conn = connection(big.url, "1MB")
    assert len(big.bomb) < 1 * MB  # it passes the cap as sent, 64 MB once unpacked
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge) as info:
            http.call(conn, get("/bomb"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.size == 1 * MB + 1
    assert "decoded from its content coding" in str(info.value)
    assert peak < 8 * MB, f"the call held {peak:,} bytes at its peak"


def test_a_head_answer_announcing_a_large_document_is_no_body(http: HttpConnections,
                                                              big: Big) -> None:
    r = http.call(connection(big.url, "1KB"), get("/head", "HEAD"))
    assert r.status == 200 and r.body is None


# --- callout steps ---------------------------------------------------------------------------

ADDRESS = """\
kind: object
name: Address
fields:
  customer: {type: string, required: true}
  street: {type: string}
"""


def callout_project(url: str) -> str:
    return ADDRESS + "---\n" + textwrap.dedent(f"""\
        kind: connection
        name: bank
        type: http
        base_url: {url}
        timeout: {{connect: 2s, read: 5s}}
        max_response: 1KB
        ---
        kind: orchestration
        name: send
        trigger: {{type: record, object: Address}}
        stages:
          - name: only
            steps:
              - name: send
                type: callout
                connection: bank
                method: GET
                path: /json
                query: {{n: =record.street}}
                retry: {{max: 3, initial: 1s}}
        """)


def test_a_callout_answered_too_large_goes_to_fallout_at_once_without_the_body(
        harness: Any, big: Big) -> None:
    harness.deploy_text(callout_project(big.url))  # /json?n=N answers {"data": "yyy…"}
    small = harness.engine.create_record("Address", {"customer": "c1", "street": "100"})
    large = harness.engine.create_record("Address", {"customer": "c2", "street": "4000"})
    harness.work()
    (ok,) = harness.engine.list_runs(record_id=small["id"])
    done = harness.engine.get_run(ok.id)
    assert done.status.value == "completed"
    assert done.steps["send"].output == {"status": 200, "body": {"data": "y" * 100}}
    (run,) = harness.engine.list_runs(record_id=large["id"])
    failed = harness.engine.get_run(run.id)
    sr = failed.steps["send"]
    assert sr.status.value == "fallout" and sr.attempts == 1  # retry: max 3, yet not retried
    assert sr.error is not None and sr.error["type"] == "ResponseTooLarge"
    assert sr.error["retryable"] is False
    assert "max_response of 1,024 bytes" in sr.error["message"]
    assert sr.error["call"]["status"] == 200 and sr.error["call"]["response_bytes"] > KB
    assert sr.output is None
    seen = json.dumps(failed.to_json()) + json.dumps(harness.engine.run_events(run.id),
                                                     default=str)
    assert "y" * 1500 not in seen  # the answer is kept nowhere
    calls = [e for e in harness.engine.run_events(run.id) if e["type"] == "http_call"]
    assert len(calls) == 1 and "max_response" in calls[0]["data"]["error"]


# --- MCP ---------------------------------------------------------------------------------------

MCP_SERVER = '''
import sys
import time

from mcp.server.mcpserver import MCPServer

server = MCPServer("big", log_level="WARNING")


@server.tool(structured_output=False)
def blob(n: int) -> str:
    """n characters of text."""
    return "b" * n


@server.tool()
def table(n: int) -> dict[str, str]:
    """A structured result of about n bytes."""
    return {"data": "t" * n}


@server.tool()
async def noisy(tag: str, seconds: float) -> dict[str, str]:
    """Write a line naming ``tag`` on stderr, then answer after ``seconds``."""
    import asyncio

    print(f"{tag} working", file=sys.stderr, flush=True)
    await asyncio.sleep(seconds)
    return {"tag": tag}


server.run()
'''


@pytest.fixture(scope="module")
def mcp_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mcp") / "big_server.py"
    path.write_text(MCP_SERVER)
    return path


@pytest.fixture
def sessions() -> Iterator[McpSessions]:
    s = McpSessions()
    try:
        yield s
    finally:
        s.close()


def mcp_endpoint(script: Path, max_response: int = MAX_RESPONSE_DEFAULT) -> Any:
    return endpoint_from("big", transport="stdio", command=sys.executable, args=[str(script)],
                         connect_timeout=30.0, max_response=max_response)


def test_an_mcp_result_over_the_cap_is_refused(sessions: McpSessions, mcp_script: Path) -> None:
    ep = mcp_endpoint(mcp_script, max_response=1000)
    assert sessions.call_tool(ep, "blob", {"n": 900}).text == "b" * 900
    with pytest.raises(McpResponseTooLarge) as info:
        sessions.call_tool(ep, "blob", {"n": 5000})
    err = info.value
    assert err.retryable is False and err.limit == 1000 and err.size >= 5000
    assert "max_response of 1,000 bytes" in str(err) and "bytes measured so far" in str(err)
    with pytest.raises(McpResponseTooLarge):  # structured content counts too
        sessions.call_tool(ep, "table", {"n": 2000})
    # the default cap: 5 MB
    roomy = mcp_endpoint(mcp_script)
    assert len(sessions.call_tool(roomy, "blob", {"n": 100_000}).text) == 100_000


def mcp_project(script: Path) -> str:
    return textwrap.dedent(f"""\
        kind: connection
        name: big
        type: mcp
        transport: stdio
        command: python
        args: [{script}]
        max_response: 1KB
        ---
        kind: orchestration
        name: t_big
        trigger:
          type: autolaunched
          input:
            n: {{type: int, required: true}}
        stages:
          - name: s
            steps:
              - name: fetch
                type: mcp
                connection: big
                tool: blob
                arguments: {{n: '=input.n'}}
                retry: {{max: 2, initial: 1m}}
        """)


def test_an_mcp_step_whose_result_is_too_large_goes_to_fallout(harness: Any,
                                                              mcp_script: Path) -> None:
    harness.deploy_text(mcp_project(mcp_script))
    ok = harness.engine.start("t_big", {"n": 100})
    run = harness.engine.start("t_big", {"n": 20_000})
    harness.work()
    assert harness.engine.get_run(ok.id).steps["fetch"].output == {"text": "b" * 100}
    sr = harness.engine.get_run(run.id).steps["fetch"]
    assert sr.status.value == "fallout" and sr.attempts == 1
    assert sr.error is not None and sr.error["type"] == "ResponseTooLarge"
    assert sr.error["retryable"] is False and "1,024 bytes" in sr.error["message"]
    assert sr.error["call"]["outcome"] == "too_large"
    (call,) = [e["data"] for e in harness.engine.run_events(run.id)
               if e["type"] == "mcp_called"]
    assert call["outcome"] == "too_large" and "result" not in call


def test_a_timed_out_mcp_call_shows_only_the_stderr_it_caused(sessions: McpSessions,
                                                              mcp_script: Path) -> None:
    ep = mcp_endpoint(mcp_script)
    # another run's call, done before: its line is in the server's stderr
    assert sessions.call_tool(ep, "noisy", {"tag": "run-A-iban-DE89", "seconds": 0}
                              ).structured == {"tag": "run-A-iban-DE89"}
    with pytest.raises(McpTransportError) as info:
        sessions.call_tool(ep, "noisy", {"tag": "run-B", "seconds": 60}, timeout=1)
    message = str(info.value)
    assert "timed out" in message and "run-B working" in message
    assert "run-A" not in message


def test_while_calls_share_the_server_a_timed_out_one_shows_no_stderr(
        sessions: McpSessions, mcp_script: Path) -> None:
    ep = mcp_endpoint(mcp_script)
    sessions.call_tool(ep, "noisy", {"tag": "warm-up", "seconds": 0})  # started
    other = sessions.submit_tool(ep, "noisy", {"tag": "run-C-iban-FR76", "seconds": 5})
    eventually(lambda: _stderr_has(sessions, ep, "run-C-iban-FR76"), timeout=30,
               what="the other call to write its line")
    with pytest.raises(McpTransportError) as info:
        sessions.call_tool(ep, "noisy", {"tag": "run-D", "seconds": 60}, timeout=1)
    message = str(info.value)
    assert "timed out" in message
    assert "run-C" not in message and "stderr" not in message  # which line is whose: unknown
    assert other().structured == {"tag": "run-C-iban-FR76"}


def _stderr_has(sessions: McpSessions, ep: Any, text: str) -> bool:
    """(White box, for the test's timing only) has the server written ``text`` yet?"""
    live = sessions._live.get(ep.key)
    return live is not None and live.stderr is not None and text in live.stderr.since(None)

