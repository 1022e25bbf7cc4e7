"""The connections' HTTP client against a real loopback server: keep-alive connections are
reused and bounded by ``max_in_flight``, a connection the server closes is not reused, the
request carries Host/Content-Length/query as sent, and gzip bodies and repeated headers
arrive as a step sees them (``baton.connections.http`` drives h11 directly)."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from baton.connections.calls import CallFailed, HttpRequest
from baton.connections.http import HttpConnections
from baton.connections.secrets import Secrets
from baton.definitions.model import ConnectionDefinition
from tests.net import free_port


@dataclass
class Server:
    url: str = ""
    seen: list[dict[str, Any]] = field(default_factory=list)  # one per request
    close_after: bool = False  # answer with Connection: close
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def peers(self) -> set[int]:
        """The client ports the requests came from: one per TCP connection."""
        return {s["peer"] for s in self.seen}


class _Handler(BaseHTTPRequestHandler):
    server_state: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _handle(self) -> None:
        state = self.server_state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with state.lock:
            state.seen.append({"peer": self.client_address[1], "method": self.command,
                               "path": self.path, "body": body,
                               "headers": [(k.lower(), v) for k, v in self.headers.items()]})
        if state.delay:
            time.sleep(state.delay)
        if self.path.startswith("/gzip"):
            raw = gzip.compress(json.dumps({"packed": True, "n": 7}).encode())
            extra = [("Content-Encoding", "gzip")]
        else:
            raw, extra = json.dumps({"ok": True}).encode(), []
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("X-Tag", "a")
        self.send_header("X-Tag", "b")
        for k, v in extra:
            self.send_header(k, v)
        if state.close_after:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = _handle


@contextmanager
def server() -> Iterator[Server]:
    state = Server()
    handler = type("Handler", (_Handler,), {"server_state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True, name="pool-server")
    thread.start()
    try:
        yield state
    finally:
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


def conn(url: str, **kw: Any) -> ConnectionDefinition:
    return ConnectionDefinition(name="remote", type="http", base_url=url, **kw)


def request(path: str, key: str = "k", **kw: Any) -> HttpRequest:
    return HttpRequest(kw.pop("method", "POST"), path, key, **kw)


def test_sequential_calls_reuse_one_keep_alive_connection(http: HttpConnections) -> None:
    with server() as s:
        c = conn(s.url)
        for i in range(20):
            r = http.call(c, request("/ping", f"k{i}", body={"i": i}))
            assert r.status == 200 and r.body == {"ok": True}
        assert len(s.seen) == 20
        assert len(s.peers()) == 1, "every call after the first reused the connection"


def test_concurrent_calls_open_at_most_max_in_flight_connections(http: HttpConnections) -> None:
    with server() as s:
        s.delay = 0.05
        c = conn(s.url, max_in_flight=4)
        futures = [http.submit(c, request("/ping", f"k{i}")) for i in range(24)]
        wait(futures, timeout=60)
        assert all(f.result().status == 200 for f in futures)
        assert len(s.seen) == 24
        assert 1 <= len(s.peers()) <= 4


def test_a_connection_the_server_closes_is_not_reused(http: HttpConnections) -> None:
    with server() as s:
        s.close_after = True
        c = conn(s.url)
        for i in range(5):
            assert http.call(c, request("/ping", f"k{i}")).status == 200
        assert len(s.peers()) == 5, "one new connection per call after Connection: close"
        s.close_after = False
        for i in range(3):
            assert http.call(c, request("/ping", f"again{i}")).status == 200
        assert len(s.peers()) == 6


def test_the_request_is_framed_and_addressed_as_given(http: HttpConnections) -> None:
    with server() as s:
        port = s.url.rsplit(":", 1)[1]
        c = conn(s.url + "/api", headers={"X-Default": "d", "Accept": "application/json"})
        http.call(c, request("items?a=1", "key-1", query={"b": "two words"},
                             headers={"x-default": "step", "X-Other": "ü"}, body={"x": 1}))
        http.call(c, request("/empty", "key-2"))  # a POST without a body
        http.call(c, request("/get", "key-3", method="GET"))
        first, empty, get = s.seen
        assert first["path"] == "/api/items?a=1&b=two+words"
        headers = dict(first["headers"])
        assert headers["host"] == f"127.0.0.1:{port}"
        assert headers["idempotency-key"] == "key-1"
        assert headers["content-type"] == "application/json"
        assert headers["accept"] == "application/json"  # the connection's, over the default
        names = [k for k, _v in first["headers"]]
        assert names.count("x-default") == 1 and headers["x-default"] == "step"
        assert headers["x-other"].encode("latin-1").decode() == "ü"  # sent as UTF-8
        assert json.loads(first["body"]) == {"x": 1}
        assert int(headers["content-length"]) == len(first["body"])
        assert dict(empty["headers"])["content-length"] == "0"
        assert "content-length" not in dict(get["headers"]) and get["method"] == "GET"


def test_gzip_bodies_are_decoded_and_repeated_headers_joined(http: HttpConnections) -> None:
    with server() as s:
        r = http.call(conn(s.url), request("/gzip", method="GET"))
        assert r.body == {"packed": True, "n": 7}
        assert r.headers["x-tag"] == "a, b"
        assert r.summary.response_bytes == len(json.dumps({"packed": True, "n": 7}))
        assert dict(s.seen[0]["headers"])["accept-encoding"] == "gzip, deflate"


def test_a_refused_connection_fails_and_the_next_call_connects_again(
        http: HttpConnections) -> None:
    c = conn(f"http://127.0.0.1:{free_port()}", connect_timeout_ms=2000)
    with pytest.raises(CallFailed) as failed:
        http.call(c, request("/ping"))
    assert failed.value.retryable and "could not reach" in str(failed.value)
    with server() as s:
        again = conn(s.url)
        assert http.call(again, request("/ping")).status == 200


def test_a_url_that_is_not_http_fails_as_a_call(http: HttpConnections) -> None:
    with pytest.raises(CallFailed) as failed:
        http.call(conn("ftp://127.0.0.1:21"), request("/x"))
    assert "could not reach" in str(failed.value)


def test_calls_submitted_together_share_one_wake_up_of_the_loop(http: HttpConnections) -> None:
    with server() as s:
        c = conn(s.url, max_in_flight=8)
        assert http.call(c, request("/ping", "k-first")).status == 200
        woken = []
        start = http._start_queued

        def counted() -> None:
            woken.append(len(http._queue))
            start()

        http._start_queued = counted  # type: ignore[method-assign]
        loop = http._ensure_loop()
        busy = threading.Event()
        loop.call_soon_threadsafe(lambda: (busy.set(), time.sleep(0.3)))  # the loop is busy
        busy.wait(5)
        futures = [http.submit(c, request("/ping", f"k{i}")) for i in range(40)]
        wait(futures, timeout=60)
        assert [f.result().status for f in futures] == [200] * 40
        assert woken == [40], "one wake-up started the 40 calls"
        futures = [http.submit(c, request("/ping", f"again{i}")) for i in range(3)]
        assert all(f.result(30).status == 200 for f in futures)
        assert sum(woken) == 43 and len(woken) <= 4


def test_calls_not_started_when_the_client_closes_are_cancelled(http: HttpConnections) -> None:
    with server() as s:
        c = conn(s.url)
        assert http.call(c, request("/ping", "k0")).status == 200
        loop = http._ensure_loop()
        busy = threading.Event()
        loop.call_soon_threadsafe(lambda: (busy.set(), time.sleep(0.3)))
        busy.wait(5)
        queued = http.submit(c, request("/ping", "k1"))
        http.close()
        assert queued.cancelled()
        assert http.call(c, request("/ping", "k2")).status == 200, "a new call starts a new loop"
        assert [x["path"] for x in s.seen] == ["/ping", "/ping"]


def test_a_connection_in_flight_when_its_definition_changes_is_closed_after(
        http: HttpConnections) -> None:
    with server() as s:
        s.delay = 0.3
        old = conn(s.url)
        in_flight = http.submit(old, request("/ping", "k-old"))
        time.sleep(0.1)
        replaced = http._conns["remote"]
        assert http.call(conn(s.url, max_in_flight=3), request("/ping", "k-new")).status == 200
        assert replaced.closed and http._conns["remote"] is not replaced
        assert in_flight.result(30).status == 200
        assert not any(replaced._idle.values()), "not kept by the replaced definition"
        assert sum(len(v) for v in http._conns["remote"]._idle.values()) == 1
