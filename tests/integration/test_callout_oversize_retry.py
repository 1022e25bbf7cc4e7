"""An error answer whose body is over the connection's ``max_response`` is still an answer:
its status decides, as for any error answer (5xx and 429 are retried per the step's
``retry``, a 4xx goes to fallout at once), and its body is cut to its first bytes (it is
only kept for the record). A 2xx over the cap, or an answer the step accepts
(``success:``) whose body was cut, fails at once as ``ResponseTooLarge``.

Real servers on loopback: tests/bank.py (bodies with a Content-Length), and an HTTP server
here for bodies without one (chunked, endless) and gzip-coded ones. Both databases.
"""

from __future__ import annotations

import gzip
import json
import textwrap
import threading
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from baton.clock import iso, parse_iso
from baton.connections.calls import HttpRequest
from baton.connections.http import ERROR_BODY_KEEP, HttpConnections, ResponseTooLarge
from baton.connections.secrets import Secrets
from baton.definitions.loader import load_text
from baton.definitions.model import ConnectionDefinition
from tests.bank import bank_server
from tests.procs import eventually

KB, MB = 1024, 1024 * 1024


# --- a server for bodies without a Content-Length --------------------------------------------


@dataclass
class Errors:
    url: str = ""
    streamed: int = 0  # bytes of the last endless body written before the client hung up
    hung_up: threading.Event = field(default_factory=threading.Event)
    requests: int = 0


class _Handler(BaseHTTPRequestHandler):
    state: Errors
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query))
        self.state.requests += 1
        status = int(query.get("status", "200"))
        if parts.path == "/endless":  # chunked, without end, until the client hangs up
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"E" * (16 * KB)
            try:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.state.streamed += len(chunk)
            except OSError:  # the client closed the connection
                self.state.hung_up.set()
                self.close_connection = True
        elif parts.path == "/gzip":  # a small gzip body that unpacks to n bytes
            body = gzip.compress(b"G" * int(query["n"]))
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            body = json.dumps({"ok": True}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    do_GET = do_POST = _handle


@pytest.fixture(scope="module")
def errors() -> Iterator[Errors]:
    state = Errors()
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True, name="errors-server")
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


def connection(url: str, max_response: str) -> ConnectionDefinition:
    text = (f"kind: connection\nname: big\ntype: http\nbase_url: {url}\n"
            f"max_response: {max_response}\n")
    (doc,) = load_text(text, "big.yaml")
    assert isinstance(doc.definition, ConnectionDefinition)
    return doc.definition


# --- the client ---------------------------------------------------------------------------------


def test_a_5xx_over_the_cap_is_answered_with_its_body_cut(http: HttpConnections) -> None:
    with bank_server() as bank:
        body = b"<html>" + b"D" * (3 * MB) + b"</html>"
        bank.script["/down"] = [(503, {"Retry-After": "7"}, body)]
        conn = connection(bank.url, "1MB")
        r = http.call(conn, HttpRequest("GET", "/down", "k"))
        assert r.status == 503 and r.headers["retry-after"] == "7"
        assert r.cut is not None and r.cut.limit == 1 * MB
        assert r.cut.size == len(body)  # what its Content-Length announced
        # only its first bytes were read and kept (for the record)
        assert r.cut.kept == ERROR_BODY_KEEP and r.body == body[:ERROR_BODY_KEEP].decode()
        assert r.summary.status == 503 and r.summary.response_bytes == len(body)
        assert r.summary.response_body is not None
        assert r.summary.response_body.startswith("<html>DDD")
        assert "cut: its Content-Length announces 3,145,741 bytes" in r.summary.response_body
        assert len(r.summary.response_body) < 2 * KB
        # the connection was closed (the rest is unread); the next call gets a new one
        assert http.call(conn, HttpRequest("POST", "/ok", "k2", body={})).status == 200


def test_an_endless_error_body_is_read_up_to_the_cap_then_dropped(
        http: HttpConnections, errors: Errors) -> None:
    conn = connection(errors.url, "256KB")
    errors.hung_up.clear()
    # (a body read whole would never end: bounded here, so that such a bug fails)
    r = http.submit(conn, HttpRequest("GET", "/endless?status=502", "k")).result(timeout=60)
    assert r.status == 502 and r.cut is not None
    assert 256 * KB < r.cut.size <= 256 * KB + 64 * KB  # read in pieces of at most 64 KB
    assert "bytes read so far" in r.cut.reason
    assert r.cut.kept == min(256 * KB, ERROR_BODY_KEEP) and r.body == "E" * r.cut.kept
    eventually(errors.hung_up.is_set, timeout=30, what="the server to see the client hang up")
    assert http.call(conn, HttpRequest("GET", "/ok", "k2")).body == {"ok": True}


def test_an_error_body_that_unpacks_past_the_cap_is_cut(http: HttpConnections,
                                                        errors: Errors) -> None:
    conn = connection(errors.url, "64KB")
    r = http.call(conn, HttpRequest("GET", f"/gzip?status=500&n={4 * MB}", "k"))
    assert r.status == 500 and r.cut is not None
    assert "decoded from its content coding" in r.cut.reason
    assert r.body == "G" * r.cut.kept and r.cut.kept == 64 * KB
    # a 2xx that does the same still fails: its body is the result, and only whole
    with pytest.raises(ResponseTooLarge) as info:
        http.call(conn, HttpRequest("GET", f"/gzip?status=200&n={4 * MB}", "k"))
    assert info.value.retryable is False and info.value.summary.status == 200


def test_a_2xx_over_the_cap_still_fails_at_once(http: HttpConnections) -> None:
    with bank_server() as bank:
        bank.script["/big"] = [(200, {}, b"x" * (2 * KB))]
        with pytest.raises(ResponseTooLarge) as info:
            http.call(connection(bank.url, "1KB"), HttpRequest("GET", "/big", "k"))
        assert info.value.retryable is False and info.value.size == 2 * KB


# --- callout steps ------------------------------------------------------------------------------

ADDRESS = """\
kind: object
name: Address
fields:
  customer: {type: string, required: true}
"""


def project(url: str, extra: str = "") -> str:
    return ADDRESS + "---\n" + textwrap.dedent(f"""\
        kind: connection
        name: bank
        type: http
        base_url: {url}
        timeout: {{connect: 2s, read: 5s}}
        max_response: 64KB
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
                method: POST
                path: /addresses
                body: {{customer: =record.customer}}
                retry: {{max: 2, initial: 1s}}
        """) + textwrap.indent(textwrap.dedent(extra), " " * 8)


def start(harness: Any) -> Any:
    rec = harness.engine.create_record("Address", {"customer": "c1"})
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    return run


def events(harness: Any, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in harness.engine.run_events(run_id) if e["type"] == kind]


def retry_due(harness: Any, run_id: str) -> None:
    """Move the virtual clock to the last failed attempt's retry and work."""
    due = events(harness, run_id, "step_attempt_failed")[-1]["data"]["next_retry_at"]
    assert due is not None
    harness.clock.set(max(harness.clock.now(), parse_iso(due)))
    harness.work()


def nowhere(harness: Any, run_id: str, text: str) -> bool:
    """``text`` is in neither the run's state nor its events."""
    seen = json.dumps(harness.engine.get_run(run_id).to_json()) \
        + json.dumps(harness.engine.run_events(run_id), default=str)
    return text not in seen


def test_a_5xx_over_the_cap_is_retried_and_the_retry_succeeds(harness: Any) -> None:
    with bank_server() as bank:
        big = b"Q" * (200 * KB)  # over the connection's 64KB
        bank.script["/addresses"] = [(503, {}, big)]
        harness.deploy_text(project(bank.url))
        run = start(harness)
        harness.work()
        sr = harness.engine.get_run(run.id).steps["send"]
        assert sr.status.value == "running"  # its retry is due later
        (failed,) = events(harness, run.id, "step_attempt_failed")
        err = failed["data"]["error"]
        assert err["type"] == "CalloutFailed" and err["retryable"] is True
        assert "answered 503" in err["message"] and "its body was cut" in err["message"]
        assert err["call"]["status"] == 503 and err["call"]["response_bytes"] == len(big)
        assert "max_response of 65,536 bytes" in err["call"]["response_body"]
        retry_due(harness, run.id)
        sr = harness.engine.get_run(run.id).steps["send"]
        assert sr.status.value == "completed" and sr.attempts == 2
        assert sr.output["status"] == 200 and sr.output["body"]["ackId"] == "ack-1"
        assert len(bank.calls("/addresses")) == 2
        assert [e["data"]["status"] for e in events(harness, run.id, "http_call")] == [503, 200]
        assert nowhere(harness, run.id, "Q" * 2 * KB)  # the cut body is kept as an excerpt


def test_a_429_over_the_cap_waits_for_its_retry_after(harness: Any) -> None:
    with bank_server() as bank:
        bank.script["/addresses"] = [(429, {"Retry-After": "120"}, b"slow down " * (10 * KB))]
        harness.deploy_text(project(bank.url))
        run = start(harness)
        t0 = harness.clock.now()
        harness.work()
        (failed,) = events(harness, run.id, "step_attempt_failed")
        assert failed["data"]["error"]["retryable"] is True
        assert failed["data"]["error"]["retry_after"] == 120.0
        assert failed["data"]["next_retry_at"] >= iso(t0 + timedelta(seconds=120))
        retry_due(harness, run.id)
        assert harness.engine.get_run(run.id).steps["send"].status.value == "completed"


def test_a_5xx_over_the_cap_every_time_goes_to_fallout_when_retries_run_out(
        harness: Any) -> None:
    with bank_server() as bank:
        bank.script["/addresses"] = [(500, {}, b"Z" * (100 * KB))] * 3
        harness.deploy_text(project(bank.url))
        run = start(harness)
        harness.work()
        retry_due(harness, run.id)
        retry_due(harness, run.id)
        sr = harness.engine.get_run(run.id).steps["send"]
        assert sr.status.value == "fallout" and sr.attempts == 3  # retry: max 2
        assert sr.error["type"] == "CalloutFailed" and sr.error["call"]["status"] == 500
        assert len(bank.calls("/addresses")) == 3


def test_a_4xx_over_the_cap_goes_to_fallout_at_once_with_its_status(harness: Any) -> None:
    with bank_server() as bank:
        bank.script["/addresses"] = [(422, {}, {"error": "street unknown",
                                                "trace": "T" * (100 * KB)})]
        harness.deploy_text(project(bank.url))
        run = start(harness)
        harness.work()
        sr = harness.engine.get_run(run.id).steps["send"]
        assert sr.status.value == "fallout" and sr.attempts == 1
        assert sr.error["type"] == "CalloutFailed" and sr.error["retryable"] is False
        assert "answered 422 (not retried)" in sr.error["message"]
        assert sr.error["call"]["status"] == 422
        assert '"street unknown"' in sr.error["call"]["response_body"]  # its first bytes
        assert len(bank.calls("/addresses")) == 1
        assert nowhere(harness, run.id, "T" * 2 * KB)


def test_an_accepted_status_whose_body_was_cut_fails_as_too_large(harness: Any) -> None:
    with bank_server() as bank:
        bank.script["/addresses"] = [(404, {}, b"N" * (100 * KB))]
        harness.deploy_text(project(bank.url, "success: [2xx, 404]\n"))
        run = start(harness)
        harness.work()
        sr = harness.engine.get_run(run.id).steps["send"]
        assert sr.status.value == "fallout" and sr.attempts == 1  # retry: max 2, not retried
        assert sr.error["type"] == "ResponseTooLarge" and sr.error["retryable"] is False
        assert "answered 404, but its Content-Length announces 102,400 bytes" \
            in sr.error["message"]
        assert sr.output is None
        (call,) = events(harness, run.id, "http_call")
        assert call["data"]["status"] == 404 and "max_response" in call["data"]["error"]


# --- MCP over HTTP: one message is read up to its bound, no further ----------------------------

MCP_HTTP_SERVER = '''
import asyncio
import socket
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("big", log_level="WARNING")


@server.tool(structured_output=False)
def blob(n: int) -> str:
    """n characters of text."""
    return "b" * n


async def serve() -> None:
    app = server.streamable_http_app(json_response=sys.argv[1] == "json")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="on"))
    task = asyncio.create_task(srv.serve(sockets=[sock]))
    while not srv.started and not task.done():
        await asyncio.sleep(0.01)
    host, port = sock.getsockname()
    print(f"listening on http://{host}:{port}/mcp", flush=True)
    await task


asyncio.run(serve())
'''


@pytest.fixture(scope="module", params=["sse", "json"])
def mcp_http(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An MCP server over streamable HTTP answering with server-sent events, or with JSON
    bodies (``json_response``); yields its URL."""
    import subprocess
    import sys

    script = tmp_path_factory.mktemp("mcp_http") / "big_http_server.py"
    script.write_text(MCP_HTTP_SERVER)
    proc = subprocess.Popen([sys.executable, str(script), request.param],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise AssertionError(f"the MCP server did not start: {line!r}")
    yield line.split()[-1]
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(15)


@pytest.fixture
def sessions() -> Iterator[Any]:
    from baton.connections.mcp import McpSessions

    s = McpSessions()
    try:
        yield s
    finally:
        s.close()


def test_an_mcp_answer_over_its_bound_is_not_read_further(sessions: Any, mcp_http: str) -> None:
    from baton.connections.mcp import ResponseTooLarge as McpResponseTooLarge
    from baton.connections.mcp import endpoint_from, wire_limit

    ep = endpoint_from("big", transport="http", url=mcp_http, max_response=64 * KB,
                       connect_timeout=30.0, read_timeout=60.0)
    assert wire_limit(64 * KB) == 192 * KB
    assert sessions.call_tool(ep, "blob", {"n": 60 * KB}).text == "b" * (60 * KB)
    # 16 MB as sent: reading stops at the bound (twice the cap and 64 KB), which a call that
    # read the answer whole first would pass by far
    tracemalloc.start()
    try:
        with pytest.raises(McpResponseTooLarge) as info:
            sessions.call_tool(ep, "blob", {"n": 16 * MB})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    err = info.value
    assert err.retryable is False and err.limit == 64 * KB and err.size > 192 * KB
    assert "over 196,608 bytes as sent" in str(err) and "not read further" in str(err)
    assert peak < 8 * MB, f"the call held {peak:,} bytes at its peak"
    # a result under the bound as sent, over the cap once measured: refused the same way
    with pytest.raises(McpResponseTooLarge) as measured:
        sessions.call_tool(ep, "blob", {"n": 100 * KB})
    assert "bytes measured so far" in str(measured.value)
    # the session goes on
    assert sessions.call_tool(ep, "blob", {"n": 10}).text == "b" * 10


def test_an_mcp_answer_of_a_few_mb_passes_the_default_cap(sessions: Any, mcp_http: str) -> None:
    """(The SDK bounds one server-sent event to 1 MB by default: a result between that and
    the connection's 5 MB cap failed as a transport error, retried in vain.)"""
    from baton.connections.mcp import endpoint_from

    ep = endpoint_from("big", transport="http", url=mcp_http, connect_timeout=30.0,
                       read_timeout=60.0)
    assert len(sessions.call_tool(ep, "blob", {"n": 3 * MB}).text) == 3 * MB
