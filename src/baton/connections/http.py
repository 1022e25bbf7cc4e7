"""The HTTP client of connections: one event loop thread per process, many calls in flight.

:class:`HttpConnections` is shared by every worker thread of a process. Calls run as
coroutines on its own event loop thread (``baton-http``), so a thousand calls waiting on
slow systems hold no thread each. Per connection it keeps:

- a pool of keep-alive HTTP/1.1 connections (``baton.connections.http11``: h11 framing
  over the loop's own transports, ``baton.connections.streams``: TLS, connect/read/write
  timeouts) and one TLS context (verify, or a custom CA file), made on the first ``https``
  call;
- ``max_in_flight``: a semaphore; calls over it wait their turn on the loop;
- ``rate_limit``: a token bucket (burst of one second's worth), for the whole process;
- an OAuth2 client-credentials token, fetched once, refreshed before it expires and
  fetched again once when the API answers 401.

The hot path drives h11 directly, not ``httpx2``'s client nor ``httpcore2``'s connections:
httpx2's pool looked at every connection it held (a socket poll each) on each request placed
and each response closed, its request/response models doubled the per-call work, and
httpcore2's connection classes over anyio streams (a cancel scope per read and write) were
most of what was left; at hundreds of calls a second that was most of a worker's CPU. Here
a call takes one idle connection (checked alone) and gives it back; ``max_in_flight``
already bounds how many exist. Failures are ``httpcore2``'s exception types, as before. Redirects are not followed
(a 3xx is the step's answer, as before); ``gzip``/``deflate`` bodies are decoded.

A response body is read up to the connection's ``max_response`` and no further: one whose
``Content-Length`` says more, or that goes on past it (as received, or once decoded: a
small gzip body may unpack to gigabytes), is not read further and its connection is closed,
so a call holds about the cap at most. A 2xx answer then fails the call as
:class:`ResponseTooLarge` (not retried: its body is the result, and only a whole one will
do). An answer of any other status is still an answer, its body cut to its first bytes
(:class:`~baton.connections.calls.BodyCut`; :data:`ERROR_BODY_KEEP` at most): its status
decides, as for any error answer (a 503 is retried, a 404 fails the step), and its body is
only kept for the record.

Secrets are resolved (``baton.connections.secrets``) just before a call; their values
go into the request and nowhere else: summaries redact them, error messages are scrubbed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import urlencode

import h11
import httpcore2
import httpx2

import baton
from baton.connections.calls import (
    BodyCut,
    CallFailed,
    CallSummary,
    HttpRequest,
    HttpResponse,
    ResponseTooLarge,
    excerpt,
    redact_url,
    scrub,
    too_large_message,
)
from baton.connections.http11 import Answer, Headers, Http11Connection, Timeouts
from baton.connections.secrets import SecretError, Secrets
from baton.connections.streams import AsyncioBackend
from baton.definitions.connection import max_response_bytes
from baton.definitions.model import ConnectionDefinition

log = logging.getLogger("baton.connections.http")
# The client library logs each request's URL (INFO) and its transport traces headers
# (DEBUG): a query credential or an Authorization header would reach the logs. Baton
# audits calls itself, redacted; those loggers keep to warnings, whatever the root level.
for _name in ("httpx2", "httpcore2", "httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)

T = TypeVar("T")

TOKEN_REFRESH_MARGIN = 0.1  # refresh a token when less than this share of its life is left
TOKEN_MIN_MARGIN_S = 5.0  # ...or less than this many seconds
DEFAULT_TOKEN_LIFE_S = 300.0  # a token answer without expires_in
KEEPALIVE_S = 5.0  # an idle connection is closed after this long (httpx2's default)
URL_CACHE = 1024  # parsed request URLs kept per connection (most steps call a few paths)
# What every call sends unless the connection or the step sets it (as httpx2 did).
BASE_HEADERS = {"Accept": "*/*", "Accept-Encoding": "gzip, deflate",
                "User-Agent": f"baton/{baton.__version__}"}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})  # sent with Content-Length: 0 when empty
DEFAULT_PORTS = {b"http": 80, b"https": 443}
ERROR_BODY_KEEP = 64 * 1024
"""What is kept of an error answer's body (any status but 2xx) that is over the cap: its
status decides what the step does, its body is only kept for the record (a summary shows
its first KB), so reading further than this would be for nothing."""
Origin = tuple[bytes, bytes, int]  # scheme, host, port


class _TooLarge(Exception):
    """(Internal) a body over the cap, raised while it is read or decoded (``partial``: what
    decoding made up to the cap)."""

    def __init__(self, size: int, limit: int, how: str, status: int | None = None,
                 partial: bytes = b"") -> None:
        super().__init__(size, limit, how)
        self.size, self.limit, self.how, self.status = size, limit, how, status
        self.partial = partial

    def __str__(self) -> str:
        if self.how == "announced":
            return (f"its Content-Length announces {self.size:,} bytes, over the connection's "
                    f"max_response of {self.limit:,} bytes")
        what = "decoded from its content coding" if self.how == "decoded" else "read"
        return (f"its body is over the connection's max_response of {self.limit:,} bytes: "
                f"{self.size:,} bytes {what} so far")


class _Capped(Http11Connection):
    """A pooled connection that reads at most ``limit`` bytes of a response body. A larger
    2xx body raises :class:`_TooLarge` as soon as it is seen; a larger body of any other
    status is cut (:attr:`cut`): the answer ends with what was read, up to the cap (up to
    :data:`ERROR_BODY_KEEP` when its ``Content-Length`` announced it), so that its status
    goes on to decide (a 5xx is retried). Either way the exchange then closes the
    connection, leaving the rest unread. It counts the body's bytes as h11 hands them over
    (after chunked framing, before any content coding)."""

    def __init__(self, origin: Origin, backend: httpcore2.AsyncNetworkBackend,
                 ssl_context: ssl.SSLContext | None, keepalive_expiry: float | None,
                 limit: int) -> None:
        super().__init__(origin, backend, ssl_context, keepalive_expiry)
        self.limit = limit
        self._status: int | None = None
        self._read = 0
        self._keep = limit  # bytes of this body read at most
        self._head = False  # a HEAD request: its Content-Length is not a body's
        self._announced: _TooLarge | None = None  # a Content-Length over the cap (not 2xx)
        self.cut: _TooLarge | None = None  # this exchange's body was cut (why)

    async def exchange(self, method: bytes, target: bytes, headers: Headers, body: bytes,
                       timeouts: Timeouts) -> Answer:
        self._head = method == b"HEAD"
        self._announced = self.cut = None
        return await super().exchange(method, target, headers, body, timeouts)

    async def _next_event(self, stream: httpcore2.AsyncNetworkStream,
                          timeout: float | None) -> h11.Event | type[h11.PAUSED]:
        if self.cut is not None:
            # The body was cut: the answer ends here. (h11 is not done with the response,
            # so the exchange closes the connection rather than pooling it.)
            return h11.EndOfMessage()
        event = await super()._next_event(stream, timeout)
        if isinstance(event, h11.Data):
            read = self._read + len(event.data)
            if read > self._keep:
                cut = self._announced or _TooLarge(read, self.limit, "read", self._status)
                if _whole(self._status):
                    raise cut
                self.cut = cut
                event = h11.Data(data=bytes(event.data[:self._keep - self._read]))
                read = self._keep
            self._read = read
        elif isinstance(event, h11.Response):
            self._status, self._read, self._keep = event.status_code, 0, self.limit
            if self._head or event.status_code in (204, 304):
                return event  # no body follows, whatever Content-Length says
            for name, value in event.headers:
                if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                    over = _TooLarge(int(value), self.limit, "announced", self._status)
                    if _whole(self._status):
                        raise over
                    self._announced = over  # read its first bytes only (for the record)
                    self._keep = min(self.limit, ERROR_BODY_KEEP)
        return event


def _whole(status: int | None) -> bool:
    """Is an answer of ``status`` taken whole or not at all (2xx: its body is the result),
    rather than cut when it is over the cap (any other: its status decides, its body is
    only kept for the record)?"""
    return status is None or 200 <= status < 300


@dataclass
class _Token:
    value: str
    expires_at: float  # monotonic
    refresh_at: float  # monotonic


class _Bucket:
    """A token bucket on the event loop: ``rate`` calls a second, bursts of ``rate`` (at
    least one). Used only from the loop's thread, so it needs no lock."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self.tokens = self.capacity
        self.at = time.monotonic()

    async def take(self) -> None:
        while True:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return
            await asyncio.sleep((1.0 - self.tokens) / self.rate)


class _Target(NamedTuple):
    """Where a request goes: its origin (scheme, host, port), its path and query, its Host
    header."""

    origin: Origin
    path: bytes
    host: str


@dataclass(frozen=True)
class _Answer:
    """A response read to its end: status, headers (lower-case names; repeated ones joined
    with ", "), the body as received (content decoded); ``cut``: an error answer's body over
    the cap, of which ``content`` is the first bytes."""

    status: int
    headers: dict[str, str]
    content: bytes
    cut: BodyCut | None = None

    def json(self) -> Any:
        return json.loads(self.content)


class _Connection:
    """What the loop keeps for one connection definition (rebuilt when it changes): the
    gate, the rate bucket, the OAuth2 token, and the pool of idle keep-alive connections
    per origin. Used from the loop's thread only, so it needs no lock."""

    def __init__(self, defn: ConnectionDefinition, project_dir: Path,
                 backend: httpcore2.AsyncNetworkBackend) -> None:
        self.defn = defn
        self.project_dir = project_dir
        self.gate = asyncio.Semaphore(defn.max_in_flight)
        self.bucket = _Bucket(defn.rate_limit) if defn.rate_limit else None
        self.token: _Token | None = None
        self.token_lock = asyncio.Lock()
        self.timeouts = Timeouts(connect=defn.connect_timeout_ms / 1000,
                                 read=defn.read_timeout_ms / 1000,
                                 write=defn.read_timeout_ms / 1000)
        self.backend = backend
        self.limit = max_response_bytes(defn)
        self._verify = _verify(defn, project_dir)  # a bad CA file fails here: every call
        self._tls: ssl.SSLContext | None = None
        self._idle: dict[Origin, list[Http11Connection]] = {}  # idle connections by origin
        self.closed = False  # replaced by a new version, or the client closed
        self._swept = time.monotonic()
        self._urls: dict[str, _Target] = {}

    def tls(self) -> ssl.SSLContext:
        """The TLS context of this connection's calls, made once (loading a CA bundle costs
        tens of milliseconds: not per call, not per pooled connection)."""
        if self._tls is None:
            self._tls = httpx2.create_ssl_context(verify=self._verify, trust_env=False)
            self._tls.set_alpn_protocols(["http/1.1"])  # (as httpcore2 offered)
        return self._tls

    def target(self, url: str, query: dict[str, str]) -> _Target:
        """The request URL (``query`` merged into ``url``'s own: parsed and normalised by
        httpx2's URL, cached per URL string) and its ``Host`` header."""
        parts = self._urls.get(url) if not query else None
        if parts is None:
            u = httpx2.URL(url)
            if query:
                u = u.copy_merge_params(query)
            if u.scheme not in ("http", "https") or not u.host:
                raise httpcore2.UnsupportedProtocol(
                    f"expected an absolute http or https URL, got {redact_url(url)!r}")
            origin = (u.raw_scheme, u.raw_host, u.port or DEFAULT_PORTS[u.raw_scheme])
            parts = _Target(origin, u.raw_path, u.netloc.decode("ascii"))
            if not query:
                if len(self._urls) >= URL_CACHE:
                    self._urls.clear()
                self._urls[url] = parts
        return parts

    async def acquire(self, origin: Origin) -> Http11Connection:
        """An idle keep-alive connection to ``origin``, else a new one (connected by its
        first request). The gate bounds how many there are."""
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.is_available() and not conn.has_expired():
                return conn
            await conn.aclose()
        return _Capped(origin, self.backend, self.tls() if origin[0] == b"https" else None,
                       KEEPALIVE_S, self.limit)

    async def release(self, conn: Http11Connection) -> None:
        """Give a connection back after its response was read (a closed one is dropped, as
        is one that comes back after this connection was closed); now and then close the
        idle ones that expired."""
        if conn.is_available() and not self.closed:
            self._idle.setdefault(conn.origin, []).append(conn)
        else:
            await conn.aclose()
        now = time.monotonic()
        if now - self._swept > KEEPALIVE_S:
            self._swept = now
            for conns in self._idle.values():
                for old in [c for c in conns if c.has_expired()]:
                    conns.remove(old)
                    await old.aclose()

    async def aclose(self) -> None:
        self.closed = True  # (calls in flight close their connections when they end)
        for conns in self._idle.values():
            for conn in conns:
                await conn.aclose()
        self._idle.clear()


def _verify(defn: ConnectionDefinition, project_dir: Path) -> ssl.SSLContext | bool:
    if not defn.tls_verify:
        return False
    if defn.ca_file is None:
        return True
    path = Path(defn.ca_file)
    path = path if path.is_absolute() else project_dir / path
    try:
        return ssl.create_default_context(cafile=str(path))
    except (OSError, ssl.SSLError) as exc:
        # Reported on each call (see _Connection users): a bad CA file fails the calls.
        raise _SetupError(f"connection {defn.name!r}: cannot load tls.ca_file {path}: "
                          f"{exc}") from None


class _SetupError(Exception):
    pass


class HttpConnections:
    """Calls over HTTP connections for every thread of this process (see the module)."""

    def __init__(self, secrets: Secrets, project_dir: str | Path | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.secrets = secrets
        self.project_dir = Path(project_dir or ".")
        self._clock = clock
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._conns: dict[str, _Connection] = {}  # used on the loop only
        self._backend = AsyncioBackend()
        self.token_fetches = 0  # OAuth2 token requests made (tests, metrics)
        # calls submitted and not started yet, and whether the loop was asked to start them
        self._queue_lock = threading.Lock()
        self._queue: list[tuple[Coroutine[Any, Any, Any], Future[Any]]] = []
        self._wake_asked = False

    # ---- the loop thread -----------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=run, name="baton-http", daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Start ``coro`` on the loop. Calls submitted together (a worker thread starts a
        batch of callout steps) share one wake-up of the loop: the first one queued asks
        for it, the others join the queue it will take."""
        loop = self._ensure_loop()
        future: Future[T] = Future()
        with self._queue_lock:
            self._queue.append((coro, future))
            wake = not self._wake_asked
            self._wake_asked = True
        if wake:
            loop.call_soon_threadsafe(self._start_queued)
        return future

    def _start_queued(self) -> None:
        """(On the loop.) Start every call queued since the last wake-up."""
        with self._queue_lock:
            queue, self._queue = self._queue, []
            self._wake_asked = False
        for coro, future in queue:
            if future.set_running_or_notify_cancel():
                asyncio.ensure_future(_settle(coro, future))
            else:
                coro.close()

    def close(self) -> None:
        """Close every client and stop the loop thread (a new call starts them again)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
            with self._queue_lock:  # submitted to the closing loop, not started: cancelled
                queue, self._queue = self._queue, []
                self._wake_asked = False
        for coro, future in queue:
            coro.close()
            future.cancel()
        if loop is None:
            return

        async def shutdown() -> None:
            for conn in list(self._conns.values()):
                await conn.aclose()
            self._conns.clear()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)
        loop.close()

    # ---- calls ---------------------------------------------------------------------------
    def submit(self, connection: ConnectionDefinition,
               request: HttpRequest) -> Future[HttpResponse]:
        """Start ``request`` over ``connection``; the future holds the response or a
        :class:`CallFailed`."""
        return self._run(self._call(connection, request))

    def call(self, connection: ConnectionDefinition, request: HttpRequest) -> HttpResponse:
        """:meth:`submit` and wait."""
        return self.submit(connection, request).result()

    def _connection(self, defn: ConnectionDefinition) -> _Connection:
        conn = self._conns.get(defn.name)
        if conn is None or conn.defn != defn:  # first use, or a new version was deployed
            if conn is not None:
                asyncio.ensure_future(conn.aclose())
            conn = self._conns[defn.name] = _Connection(defn, self.project_dir, self._backend)
        return conn

    async def _call(self, defn: ConnectionDefinition, req: HttpRequest) -> HttpResponse:
        url = _join(defn.base_url or "", req.path)
        hidden = _secret_params(defn)
        shown = redact_url(_with_query(url, req.query), hidden)
        summary = CallSummary(defn.name, req.method, shown, req.idempotency_key)
        secrets: list[str] = list(req.hide)
        try:
            conn = self._connection(defn)
        except _SetupError as exc:
            raise CallFailed(str(exc), _failed(summary, str(exc)), retryable=False) from None
        async with conn.gate:
            if conn.bucket is not None:
                await conn.bucket.take()
            try:
                headers, query = await self._auth(conn, req, secrets)
            except SecretError as exc:
                raise CallFailed(str(exc), _failed(summary, str(exc)), retryable=False) from None
            if query != req.query:  # an API key went into the query
                shown = redact_url(_with_query(url, query), hidden)
            if secrets:
                shown = scrub(shown, secrets)
            if shown != summary.url:
                summary = replace(summary, url=shown)
            response, raw_req, elapsed = await self._send(conn, req, url, headers, query, summary,
                                                          secrets)
            if response.status == 401 and defn.auth is not None \
                    and defn.auth.type == "oauth2_client_credentials":
                conn.token = None  # expired or revoked early: fetch a new one, once
                headers, query = await self._auth(conn, req, secrets)
                response, raw_req, elapsed = await self._send(conn, req, url, headers, query,
                                                              summary, secrets)
        return _response(defn, summary, response, raw_req, req.body, elapsed, secrets)

    async def _send(self, conn: _Connection, req: HttpRequest, url: str,
                    headers: dict[str, str], query: dict[str, str], summary: CallSummary,
                    secrets: list[str]) -> tuple[_Answer, bytes, float]:
        content, ctype = _encode(req.body)
        if ctype and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = ctype
        started = time.perf_counter()
        try:
            response = await _exchange(conn, req.method, url, query, headers, content)
        except httpcore2.TimeoutException as exc:
            what = "connect" if isinstance(exc, httpcore2.ConnectTimeout | httpcore2.PoolTimeout) \
                else "read" if isinstance(exc, httpcore2.ReadTimeout) else "write"
            limit = conn.defn.connect_timeout_ms if what == "connect" else conn.defn.read_timeout_ms
            message = f"timed out ({what} timeout {limit} ms) calling {summary.url}"
            raise CallFailed(message, _failed(summary, message, started, content, secrets,
                                              conn.defn.redact)) \
                from None
        except _TooLarge as exc:
            message = too_large_message(summary, exc.status, str(exc))
            failed = replace(_failed(summary, message, started, content, secrets,
                                     conn.defn.redact),
                             status=exc.status, response_bytes=exc.size)
            raise ResponseTooLarge(message, failed, exc.size, exc.limit) from None
        except _TRANSPORT_ERRORS as exc:
            tls = _tls_error(exc)
            if tls is not None:  # a certificate that does not verify will not on a retry
                message = f"TLS failed calling {summary.url}: {tls}"
                raise CallFailed(message, _failed(summary, message, started, content, secrets,
                                              conn.defn.redact),
                                 retryable=False) from None
            detail = scrub(str(exc) or type(exc).__name__, secrets)
            message = f"could not reach {summary.url}: {type(exc).__name__}: {detail}"
            raise CallFailed(message, _failed(summary, message, started, content, secrets,
                                              conn.defn.redact)) \
                from None
        return response, content or b"", time.perf_counter() - started

    # ---- auth ----------------------------------------------------------------------------
    async def _auth(self, conn: _Connection, req: HttpRequest,
                    secrets: list[str]) -> tuple[dict[str, str], dict[str, str]]:
        """Headers and query parameters of the call, with its credentials."""
        defn = conn.defn
        headers = {**defn.headers, **req.headers, defn.idempotency_header: req.idempotency_key}
        query = dict(req.query)
        auth = defn.auth
        if auth is None:
            return headers, query
        if auth.type == "bearer":
            assert auth.secret is not None
            token = self._secret(auth.secret, secrets)
            headers["Authorization"] = f"Bearer {token}"
        elif auth.type == "basic":
            assert auth.password_secret is not None
            password = self._secret(auth.password_secret, secrets)
            pair = base64.b64encode(f"{auth.username}:{password}".encode()).decode()
            secrets.append(pair)
            headers["Authorization"] = f"Basic {pair}"
        elif auth.type == "api_key":
            assert auth.secret is not None and auth.key_name is not None
            key = self._secret(auth.secret, secrets)
            if auth.placement == "query":
                query[auth.key_name] = key
            else:
                headers[auth.key_name] = key
        else:
            headers["Authorization"] = f"Bearer {await self._oauth_token(conn, secrets)}"
        return headers, query

    def _secret(self, ref: Any, secrets: list[str]) -> str:
        value = self.secrets.resolve(ref)
        secrets.append(value)
        return value

    async def _oauth_token(self, conn: _Connection, secrets: list[str]) -> str:
        async with conn.token_lock:  # many calls at once fetch one token
            now = self._clock()
            tok = conn.token
            if tok is not None and now < tok.refresh_at:
                secrets.append(tok.value)
                return tok.value
            conn.token = await self._fetch_token(conn, secrets)
            return conn.token.value

    async def _fetch_token(self, conn: _Connection, secrets: list[str]) -> _Token:
        auth = conn.defn.auth
        assert auth is not None and auth.client_secret is not None and auth.token_url
        client_secret = self._secret(auth.client_secret, secrets)
        form = {"grant_type": "client_credentials"}
        headers = {"Accept": "application/json"}
        if auth.scope:
            form["scope"] = auth.scope
        if auth.audience:
            form["audience"] = auth.audience
        if auth.client_auth == "body":
            form.update(client_id=auth.client_id or "", client_secret=client_secret)
        else:
            pair = base64.b64encode(f"{auth.client_id}:{client_secret}".encode()).decode()
            secrets.append(pair)
            headers["Authorization"] = f"Basic {pair}"
        where = redact_url(auth.token_url)
        self.token_fetches += 1
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            r = await _exchange(conn, "POST", auth.token_url, {}, headers,
                                urlencode(form).encode())
        except (httpcore2.TimeoutException, _TooLarge, *_TRANSPORT_ERRORS) as exc:
            message = (f"connection {conn.defn.name!r}: could not get an OAuth2 token from "
                       f"{where}: {type(exc).__name__}: {scrub(str(exc), secrets)}")
            summary = CallSummary(conn.defn.name, "POST", where, "", error=message)
            raise CallFailed(message, summary) from None
        try:
            data = r.json()
            value = data["access_token"]
            assert isinstance(value, str) and value
        except (ValueError, KeyError, TypeError, AssertionError):
            message = (f"connection {conn.defn.name!r}: the token endpoint {where} answered "
                       f"{r.status} without an access_token")
            summary = CallSummary(conn.defn.name, "POST", where, "", status=r.status,
                                  error=message)
            # 5xx/429: the endpoint may recover; a 4xx is a configuration problem.
            raise CallFailed(message, summary, retryable=r.status >= 500
                             or r.status == 429) from None
        secrets.append(value)
        life = float(data.get("expires_in") or DEFAULT_TOKEN_LIFE_S)
        now = self._clock()
        margin = max(TOKEN_MIN_MARGIN_S, life * TOKEN_REFRESH_MARGIN)
        return _Token(value, now + life, now + max(0.0, life - margin))


async def _settle(coro: Coroutine[Any, Any, T], future: Future[T]) -> None:
    """Run ``coro`` and put its outcome in ``future`` (read by the submitting thread)."""
    try:
        result = await coro
    except BaseException as exc:
        future.set_exception(exc)
        if not isinstance(exc, Exception):  # (cancelled: the loop is closing)
            raise
    else:
        future.set_result(result)


# --- the exchange -----------------------------------------------------------------------------

# What a call that got no response can raise besides a timeout (URL, connect, TLS, protocol).
_TRANSPORT_ERRORS = (httpcore2.NetworkError, httpcore2.ProtocolError,
                     httpcore2.UnsupportedProtocol, httpcore2.ProxyError, httpx2.InvalidURL)


async def _exchange(conn: _Connection, method: str, url: str, query: dict[str, str],
                    headers: dict[str, str], content: bytes | None) -> _Answer:
    """One request over a pooled connection, its response read to the end; the
    connection goes back to the pool when the exchange finished cleanly, else it is
    closed. Raises httpcore2's exceptions."""
    target = conn.target(url, query)
    sent = {"host": ("Host", target.host)}  # by lower-case name: the last one wins
    for given in (BASE_HEADERS, headers):
        for k, v in given.items():
            sent[k.lower()] = (k, v)
    if content is not None:
        sent["content-length"] = ("Content-Length", str(len(content)))
    elif method in BODY_METHODS:
        sent["content-length"] = ("Content-Length", "0")
    head = [(k.encode(), v.encode()) for k, v in sent.values()]
    http = await conn.acquire(target.origin)
    try:
        answer = await http.exchange(method.encode("ascii"), target.path, head, content or b"",
                                     conn.timeouts)
    except BaseException:
        await http.aclose()
        raise
    cut = http.cut if isinstance(http, _Capped) else None
    await conn.release(http)
    found: dict[str, str] = {}
    for raw_name, raw_value in answer.headers:
        name, value = raw_name.decode("latin-1").lower(), _header_text(raw_value)
        found[name] = f"{found[name]}, {value}" if name in found else value
    try:
        content = _decoded(answer.content, found.get("content-encoding"), conn.limit,
                           partial=cut is not None)
    except _TooLarge as exc:
        exc.status = answer.status
        if _whole(answer.status):
            raise
        cut, content = cut or exc, exc.partial
    if cut is None:
        return _Answer(answer.status, found, content)
    content = content[:ERROR_BODY_KEEP]
    return _Answer(answer.status, found, content,
                   BodyCut(cut.size, cut.limit, len(content), str(cut)))


def _header_text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _decoded(raw: bytes, encoding: str | None, limit: int, *, partial: bool = False) -> bytes:
    """The body with its content coding undone (gzip, deflate; others are left as sent),
    at most ``limit`` bytes of it: decoding stops past that (:class:`_TooLarge`, with what
    was made up to the cap). ``partial``: ``raw`` is the first bytes of a body that was cut
    (kept for the record): what they decode to, else they are left as they are."""
    if not raw or not encoding:
        return raw
    for coding in reversed([c.strip().lower() for c in encoding.split(",")]):
        try:
            if coding in ("gzip", "x-gzip"):
                raw = _inflate(raw, zlib.MAX_WBITS | 16, limit, partial)
            elif coding == "deflate":
                try:
                    raw = _inflate(raw, zlib.MAX_WBITS, limit, partial)
                except zlib.error:  # raw deflate, without the zlib wrapper
                    raw = _inflate(raw, -zlib.MAX_WBITS, limit, partial)
        except zlib.error as exc:
            if partial:
                return raw
            raise httpcore2.RemoteProtocolError(
                f"the response body is not valid {coding}: {exc}") from None
    return raw


def _inflate(raw: bytes, wbits: int, limit: int, partial: bool = False) -> bytes:
    """``zlib.decompress(raw, wbits)`` that never makes more than ``limit + 1`` bytes
    (``partial``: ``raw`` may end before the stream does)."""
    d = zlib.decompressobj(wbits)
    out = d.decompress(raw, limit + 1)
    if len(out) > limit or d.unconsumed_tail:
        raise _TooLarge(len(out), limit, "decoded", partial=out[:limit])
    if not d.eof and not partial:  # (as zlib.decompress says of a stream cut short)
        raise zlib.error("incomplete or truncated stream")
    return out


# --- helpers ----------------------------------------------------------------------------------


def _tls_error(exc: BaseException) -> str | None:
    """The certificate problem behind a transport error, if that is what it is."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate verify failed: {seen.verify_message}"
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return "certificate verify failed (is tls.ca_file the server's CA?)"
        seen = seen.__cause__ or seen.__context__
    return None


def _join(base: str, path: str) -> str:
    if path.startswith(("http://", "https://")):
        return path
    if not path:
        return base
    return f"{base.rstrip('/')}/{path.lstrip('/')}"


def _with_query(url: str, query: dict[str, str] | Any) -> str:
    if not query:
        return url
    return str(httpx2.URL(url, params=dict(query)))


def _secret_params(defn: ConnectionDefinition) -> tuple[str, ...]:
    auth = defn.auth
    if auth is not None and auth.type == "api_key" and auth.placement == "query" and auth.key_name:
        return (auth.key_name,)
    return ()


def _encode(body: Any) -> tuple[bytes | None, str | None]:
    if body is None:
        return None, None
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    return json.dumps(body, ensure_ascii=False, default=str).encode(), "application/json"


def _decode(raw: bytes, content_type: str) -> Any:
    if not raw:
        return None
    if "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw.decode("utf-8", "replace")


def _failed(summary: CallSummary, error: str, started: float | None = None,
            content: bytes | None = None, secrets: list[str] | None = None,
            redact: Sequence[str] = ()) -> CallSummary:
    """The summary of a call that got no answer: its request body redacted as an answered
    call's is (the connection's ``redact`` fields, the secrets)."""
    elapsed = int((time.perf_counter() - started) * 1000) if started is not None else 0
    return replace(summary, error=error, duration_ms=elapsed, request_bytes=len(content or b""),
                   request_body=excerpt(content or b"", _decode(content or b"", "json"),
                                        redact, secrets or ()))


def _response(defn: ConnectionDefinition, summary: CallSummary, r: _Answer,
              raw_req: bytes, body: Any, elapsed: float, secrets: list[str]) -> HttpResponse:
    """The step's view of an answer. A cut body is shown (and given) as the text it is
    (the first bytes of a JSON document do not parse), and ``response_bytes`` says how
    much there was when reading stopped, as for :class:`ResponseTooLarge`."""
    raw = r.content
    parsed = _decode(raw, r.headers.get("content-type", "") if r.cut is None else "")
    req_parsed = body if not isinstance(body, str | bytes) else None
    done = replace(summary, status=r.status, duration_ms=int(elapsed * 1000),
                   request_bytes=len(raw_req),
                   response_bytes=len(raw) if r.cut is None else r.cut.size,
                   request_body=excerpt(raw_req, req_parsed, defn.redact, secrets),
                   response_body=excerpt(raw, parsed, defn.redact, secrets, r.cut))
    return HttpResponse(r.status, r.headers, parsed, done, r.cut)
