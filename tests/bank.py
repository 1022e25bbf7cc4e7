"""A real HTTP server on loopback that plays an external system for callout tests.

It answers ``POST/PUT /...`` with an acknowledgment and makes each idempotency key effective
once (a repeated key gets the first answer again), can be scripted to answer a path with a
series of statuses first (503, 429 + Retry-After, 400…), can be slow, can require
credentials, serves an OAuth2 client-credentials token endpoint with expiring tokens, and
speaks TLS with a given certificate. Every request it saw is kept.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Bank:
    """What the server does; change it while it runs (the handler reads it each time)."""

    requests: list[Seen] = field(default_factory=list)
    effective: dict[str, dict[str, Any]] = field(default_factory=dict)  # idem key -> answer
    script: dict[str, list[tuple[int, dict[str, str], Any]]] = field(default_factory=dict)
    delay: float = 0.0
    key_header: str = "idempotency-key"
    check_auth: Callable[[Seen], bool] | None = None  # False -> 401
    # OAuth2 (POST /token): client credentials, tokens that expire
    client_id: str = "baton"
    client_secret: str = ""
    token_life: int = 3600
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expires (monotonic)
    token_requests: int = 0
    on_request: Callable[[Seen], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def calls(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    def valid_bearer(self, seen: Seen) -> bool:
        auth = seen.headers.get("authorization", "")
        token = auth.removeprefix("Bearer ")
        with self.lock:
            expires = self.tokens.get(token)
        return auth.startswith("Bearer ") and expires is not None and time.monotonic() < expires


class _Handler(BaseHTTPRequestHandler):
    bank: Bank
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = b"" if body is None else (body if isinstance(body, bytes)
                                        else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _handle(self) -> None:
        bank = self.bank
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, parts.path, dict(parse_qsl(parts.query)),
                    {k.lower(): v for k, v in self.headers.items()}, body)
        with bank.lock:
            bank.requests.append(seen)
        if bank.on_request is not None:
            bank.on_request(seen)
        if parts.path == "/token":
            self._token(seen)
            return
        if bank.delay:
            time.sleep(bank.delay)
        with bank.lock:
            scripted = bank.script.get(parts.path)
            step = scripted.pop(0) if scripted else None
        if step is not None:
            self._answer(*step[::2], step[1])
            return
        if bank.check_auth is not None and not bank.check_auth(seen):
            self._answer(401, {"error": "unauthorized"})
            return
        key = seen.headers.get(bank.key_header, "")
        with bank.lock:
            if key and key in bank.effective:
                answer = {**bank.effective[key], "replayed": True}
            else:
                answer = {"ackId": f"ack-{len(bank.effective) + 1}", "path": parts.path,
                          "received": seen.json() if seen.body else None}
                if key:
                    bank.effective[key] = answer
        self._answer(200, answer, {"X-Ack": answer["ackId"]})

    def _token(self, seen: Seen) -> None:
        bank = self.bank
        form = dict(parse_qsl(seen.body.decode()))
        auth = seen.headers.get("authorization", "")
        if auth.startswith("Basic "):
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        else:
            cid, secret = form.get("client_id", ""), form.get("client_secret", "")
        if form.get("grant_type") != "client_credentials" or cid != bank.client_id \
                or secret != bank.client_secret:
            self._answer(401, {"error": "invalid_client"})
            return
        with bank.lock:
            bank.token_requests += 1
            token = f"tok-{bank.token_requests}-{time.monotonic_ns()}"
            bank.tokens[token] = time.monotonic() + bank.token_life
        self._answer(200, {"access_token": token, "token_type": "Bearer",
                           "expires_in": bank.token_life})

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@contextmanager
def bank_server(bank: Bank | None = None, *, tls: ssl.SSLContext | None = None
                ) -> Iterator[Bank]:
    """Serve ``bank`` on a free loopback port until the block ends; ``bank.url`` is set."""
    bank = bank or Bank()
    handler = type("Handler", (_Handler,), {"bank": bank})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    host = "localhost" if tls is not None else "127.0.0.1"
    bank.url = f"{scheme}://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="bank")
    thread.start()
    try:
        yield bank
    finally:
        server.shutdown()
        server.server_close()
