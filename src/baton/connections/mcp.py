"""MCP client sessions (the official ``mcp`` SDK), kept per worker process.

A ``type: mcp`` connection reaches its server over ``transport: stdio`` (the worker starts
the command once, keeps it, starts it again when it died, stops it when the worker stops) or
``transport: http`` (streamable HTTP with the connection's headers and auth). The SDK is
async: every session of the process lives on one event-loop thread (:class:`McpSessions`),
and worker threads call into it with ``asyncio.run_coroutine_threadsafe``; concurrent calls
share a session (JSON-RPC requests are multiplexed by id).

Failures come out as :class:`McpError` subclasses, each a :class:`~baton.errors.StepFailure`
that says whether a retry may help: the server could not be reached, died or timed out
(:class:`McpTransportError`, retryable); the server refused the request (an unknown tool,
invalid arguments: :class:`McpProtocolError`, not retryable); the tool ran and reported an
error (``isError``: :class:`McpToolError`, not retryable); the result was larger than the
connection's ``max_response`` (:class:`ResponseTooLarge`, not retryable). Messages name the
connection and never carry a secret value (resolved secrets are scrubbed from anything the
SDK says).

How much is read of one message: at most :func:`wire_limit` bytes. Over ``http`` a JSON
body is read through :func:`_bounded`, a server-sent event is bounded by the SDK's
``max_sse_event_size``; the session goes on. Over ``stdio`` Baton's own transport
(:class:`~baton.connections.mcp_stdio.BoundedStdio`, in place of the SDK's, which reads a
line whole) stops reading a line past the bound and stops the server (it is started again
on the next call): the request it answered fails with :class:`ResponseTooLarge`, any other
in flight with :class:`McpTransportError`. What passes is then measured against
``max_response``.

Idempotency: a call given a key (an mcp step sends its run, step and iteration, the same on
every attempt) carries it in the request's ``_meta`` as :data:`META_KEY`, and over ``http``
also as the connection's ``idempotency_header`` (default ``Idempotency-Key``) on the POST
that carries the ``tools/call`` (the SDK takes no per-call headers: an HTTP request hook
reads it from the message). A server that keeps what it did per key can then act once.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from baton.definitions.connection import MAX_RESPONSE_DEFAULT, max_response_bytes
from baton.definitions.model import ConnectionDefinition, SecretRef, parse_secret_ref
from baton.errors import StepFailure

log = logging.getLogger("baton.connections.mcp")

__all__ = [
    "META_KEY",
    "McpEndpoint",
    "McpError",
    "McpProtocolError",
    "McpSessions",
    "McpToolError",
    "McpTransportError",
    "ResponseTooLarge",
    "ToolInfo",
    "ToolResult",
    "close_shared_sessions",
    "shared_sessions",
]

_T = TypeVar("_T")

# The SDK's JSON-RPC codes for "the connection is gone" and "no answer in time".
_CONNECTION_CLOSED = -32000
_REQUEST_TIMEOUT = -32001
_STDERR_TAIL = 2000
STDIO_START_TIMEOUT = 30.0
"""Seconds a stdio server has to start and answer the handshake (at least; the
connection's ``timeout.connect`` if longer), on a busy machine too."""
WIRE_SLACK = 64 * 1024
"""What one MCP message may take beyond twice the connection's ``max_response``
(:func:`wire_limit`): its JSON-RPC envelope, and room for small caps."""
_OVER_WIRE = "is over the bound of one MCP message"  # (in what the SDK passes on)
META_KEY = "io.baton/idempotency-key"
"""The key of a tool call's idempotency key in its request's ``_meta``."""
_WIRE_READ = re.compile(re.escape(_OVER_WIRE) + r" \(([\d,]+) bytes\): ([\d,]+) bytes read")


def wire_limit(max_response: int) -> int:
    """The most bytes one message from an MCP server may take as sent (a JSON answer's
    body, one server-sent event, one line of a stdio server): reading stops past it.
    Twice ``max_response``, since a result's text (a structured result's JSON, too)
    travels as a JSON string, its quotes and line breaks escaped, plus :data:`WIRE_SLACK`.
    A result that passes this may still be over ``max_response`` once measured
    (:class:`ResponseTooLarge` either way)."""
    return 2 * max_response + WIRE_SLACK


class McpError(StepFailure):
    """An MCP call or connection failed; ``retryable`` says whether trying again may help.
    ``details``: merged into the step's error (the call's redacted summary, for fallout)."""

    details: dict[str, Any] | None = None
    audit: tuple[Mapping[str, Any], ...] = ()  # the call's audit event(s), set by the step
    duration_ms: int | None = None  # how long the call took until it failed


class McpTransportError(McpError):
    """The server could not be reached or started, went away, or did not answer in time."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=True)


class McpProtocolError(McpError):
    """The server answered the request with a JSON-RPC error (unknown tool, bad arguments)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, retryable=False)
        self.code = code


class McpToolError(McpError):
    """The tool ran and reported a failure (``isError``): its text is the message."""

    def __init__(self, message: str, result: ToolResult) -> None:
        super().__init__(message, retryable=False)
        self.result = result


class ResponseTooLarge(McpError):
    """The tool's result was larger than the connection's ``max_response`` (its content
    blocks and structured content, measured as sent), or its message larger than
    :func:`wire_limit` (not read further; a stdio server is then stopped): not kept, not
    retried. ``size``: the bytes measured or read (counting stops soon after the bound);
    ``limit``: the cap. (Named as ``baton.connections.http``'s, so a step's error type is
    the same for both.)"""

    def __init__(self, message: str, size: int, limit: int) -> None:
        super().__init__(message, retryable=False)
        self.size = size
        self.limit = limit


@dataclass(frozen=True)
class ToolInfo:
    """A tool as the server lists it."""

    name: str
    description: str
    input_schema: Mapping[str, Any]

    def argument_names(self) -> tuple[str, ...]:
        props = self.input_schema.get("properties")
        return tuple(props) if isinstance(props, dict) else ()

    def required(self) -> tuple[str, ...]:
        req = self.input_schema.get("required")
        return tuple(r for r in req if isinstance(r, str)) if isinstance(req, list) else ()


@dataclass(frozen=True)
class ToolResult:
    """What a tool call answered: its structured content (None when it gave none), its text
    content blocks joined with newlines, and whether the tool reported an error."""

    structured: Any
    text: str
    is_error: bool
    content_types: tuple[str, ...] = ()
    duration_ms: int = 0  # from asking for the session to the answer


@dataclass(frozen=True)
class McpEndpoint:
    """Everything needed to open a session to one MCP server, secrets resolved.

    Built in the worker at call time (:func:`endpoint`) and never
    stored or shown: ``repr`` leaves out the values that may hold secrets, and :attr:`key`
    (which tells sessions apart) is a digest."""

    connection: str
    transport: str  # "stdio" | "http"
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    cwd: str | None = None
    url: str | None = field(default=None, repr=False)  # may carry an api key in its query
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    basic: tuple[str, str] | None = field(default=None, repr=False)
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    verify: bool | str = True  # False, True, or a CA file
    secrets: tuple[str, ...] = field(default=(), repr=False)  # values to scrub from messages
    max_response: int = MAX_RESPONSE_DEFAULT  # bytes of a tool result (see ResponseTooLarge)
    idempotency_header: str = "Idempotency-Key"  # http: the header a call's key also goes in

    @property
    def key(self) -> str:
        """Which session serves this endpoint: a change of any setting (a rotated secret,
        a new command, a new cap, which bounds what its transport reads) opens a new
        session."""
        wire = (self.max_response, self.idempotency_header) if self.transport == "http" \
            else self.max_response
        material = json.dumps([self.connection, self.transport, self.command, self.args,
                               sorted(self.env.items()), self.cwd, self.url,
                               sorted(self.headers.items()), self.basic, self.verify, wire],
                              default=str)
        return hashlib.sha256(material.encode()).hexdigest()

    @property
    def where(self) -> str:
        """The server as messages name it (no secrets: an URL's query values are masked)."""
        if self.transport == "stdio":
            return " ".join([self.command or "", *self.args]).strip()
        return redact_url(self.url or "")

    def scrub(self, text: str) -> str:
        """``text`` with every resolved secret value of this endpoint masked."""
        for value in self.secrets:
            if value:
                text = text.replace(value, "***")
        return text


def redact_url(url: str) -> str:
    """The URL with its userinfo and query values masked (an api key may travel there)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = urlencode([(k, "***") for k, _v in parse_qsl(parts.query, keep_blank_values=True)])
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


# ---- sessions ---------------------------------------------------------------------------


class _Live:
    """One open session: a task on the loop holds the SDK client open until told to stop
    (anyio's task groups must be entered and left by the same task)."""

    def __init__(self, endpoint: McpEndpoint) -> None:
        self.endpoint = endpoint
        self.client: Any = None
        self.read_stream: Any = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.stop = asyncio.Event()
        self.broken = False
        self.task: asyncio.Task[None] | None = None
        self.stderr: _StderrTail | None = None
        self.stdio: Any = None  # a stdio session's transport (BoundedStdio)
        self.http_status: list[int] = []
        self.requests_started = 0  # requests made on the session (on the loop only)
        self.requests_active = 0

    def begin(self) -> _Window:
        """A request starts: where its server's stderr stands, and who else is asking."""
        window = _Window(self.stderr.mark() if self.stderr is not None else 0,
                         self.requests_started, self.requests_active > 0)
        self.requests_started += 1
        self.requests_active += 1
        return window

    def alone(self, window: _Window) -> bool:
        """Did the request of ``window`` have the session to itself from its start until
        now (no other request in flight at any time)? Only then is what its server wrote
        on stderr meanwhile known to be about this request."""
        return not window.shared and self.requests_started == window.seq + 1

    def alive(self) -> bool:
        if self.broken or self.task is None or self.task.done() or not self.ready.done():
            return False
        stats = getattr(self.read_stream, "statistics", None)
        # stdio: the transport closes its end of the read stream when the server's stdout
        # ends, i.e. when the process died; the session is then of no use.
        return not (stats is not None and stats().open_send_streams == 0)


@dataclass(frozen=True)
class _Window:
    """Where a request started: its server's stderr position, how many requests the
    session had started before it, and whether one was still in flight then."""

    mark: int
    seq: int
    shared: bool


class McpSessions:
    """The MCP sessions of one process, on one event-loop thread.

    Thread-safe: worker threads call :meth:`call_tool` and :meth:`list_tools` concurrently.
    A session is opened on first use and kept; one whose server died (stdio) or that failed
    in transport is replaced by a new one on the next call. :meth:`close` stops them all
    (stdio servers are asked to exit, then killed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._live: dict[str, _Live] = {}  # endpoint key -> session (touched on the loop only)
        self._opening: dict[str, asyncio.Lock] = {}

    # ---- called from any thread -------------------------------------------------------
    def call_tool(self, endpoint: McpEndpoint, tool: str, arguments: Mapping[str, Any],
                  timeout: float | None = None, idempotency_key: str | None = None
                  ) -> ToolResult:
        """Call ``tool``; a tool error raises :class:`McpToolError` (with the result).
        ``idempotency_key``: sent with the call (see the module), for a server to act once
        however often the call is repeated."""
        return self.submit_tool(endpoint, tool, arguments, timeout, idempotency_key)()

    def submit_tool(self, endpoint: McpEndpoint, tool: str, arguments: Mapping[str, Any],
                    timeout: float | None = None, idempotency_key: str | None = None
                    ) -> Callable[[], ToolResult]:
        """Start the call of ``tool`` now; the returned function waits for its result (as
        :meth:`call_tool` returns or raises). A worker starts every call of its batch
        before it waits for the first, so they are in flight together."""
        read = endpoint.read_timeout if timeout is None else timeout
        fut = self._submit(self._call_tool(endpoint, tool, dict(arguments), read,
                                           idempotency_key))
        bound = endpoint.connect_timeout + endpoint.read_timeout + read + 5

        def result() -> ToolResult:
            res = self._wait(fut, bound)
            if res.is_error:
                text = res.text.strip() or "(no message)"
                err = McpToolError(f"MCP tool {tool!r} of connection {endpoint.connection!r} "
                                   f"reported an error: {endpoint.scrub(text)[:1000]}", res)
                err.duration_ms = res.duration_ms
                raise err
            return res

        return result

    def list_tools(self, endpoint: McpEndpoint) -> list[ToolInfo]:
        """Every tool the server lists (all pages)."""
        return self._run(self._list_tools(endpoint),
                         endpoint.connect_timeout + 2 * endpoint.read_timeout + 5)

    def alive(self, endpoint: McpEndpoint) -> bool:
        """Is a session to ``endpoint`` open and usable now?"""
        if self._loop is None:
            return False
        return self._run(self._alive(endpoint), 10)

    def close(self) -> None:
        """Close every session and stop the loop thread (a later call starts them again)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    # ---- the loop thread --------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()
                    loop.close()

                thread = threading.Thread(target=run, name="baton-mcp", daemon=True)
                thread.start()
                started.wait(10)
                # Sessions and locks of an earlier loop (closed) belong to it: start afresh.
                self._live, self._opening = {}, {}
                self._loop, self._thread = loop, thread
            return self._loop

    def _run(self, coro: Coroutine[Any, Any, _T], timeout: float) -> _T:
        return self._wait(self._submit(coro), timeout)

    def _submit(self, coro: Coroutine[Any, Any, _T]) -> Future[_T]:
        _import_sdk()  # here, not on the loop: importing takes seconds on a busy machine
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())

    @staticmethod
    def _wait(fut: Future[_T], timeout: float) -> _T:
        try:
            return fut.result(timeout)
        except FutureTimeout:
            fut.cancel()
            raise McpTransportError(f"the MCP call did not finish within {timeout:.0f} s") from None

    async def _alive(self, endpoint: McpEndpoint) -> bool:
        live = self._live.get(endpoint.key)
        return live is not None and live.alive()

    async def _session(self, endpoint: McpEndpoint) -> _Live:
        key = endpoint.key
        live = self._live.get(key)
        if live is not None and live.alive():
            return live
        lock = self._opening.setdefault(key, asyncio.Lock())
        async with lock:
            live = self._live.get(key)
            if live is not None and live.alive():
                return live
            if live is not None:
                log.info("MCP connection %s: the session ended; opening a new one",
                         endpoint.connection)
                await self._stop(live)
            live = _Live(endpoint)
            live.task = asyncio.get_running_loop().create_task(self._hold(live))
            # Connecting is a TCP connect (or a process start) and a request answered.
            bound = endpoint.connect_timeout + endpoint.read_timeout
            try:
                await asyncio.wait_for(asyncio.shield(live.ready), bound)
            except TimeoutError:
                live.stop.set()
                raise McpTransportError(
                    f"MCP connection {endpoint.connection!r}: no session with {endpoint.where} "
                    f"within {bound:g} s") from None
            self._live[key] = live
            return live

    async def _hold(self, live: _Live) -> None:
        """The session's task: open it, hold it until ``stop``, close it."""
        ep = live.endpoint
        try:
            async with _client(ep, live) as client:
                live.client = client
                if not live.ready.done():
                    live.ready.set_result(None)
                await live.stop.wait()
        except BaseException as exc:
            live.broken = True
            if not live.ready.done():
                live.ready.set_exception(_transport_error(ep, exc, live))
            elif not isinstance(exc, asyncio.CancelledError):
                log.info("MCP connection %s: session ended: %s", ep.connection,
                         ep.scrub(_describe(exc)))
            if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                raise
        finally:
            live.broken = True

    async def _stop(self, live: _Live) -> None:
        live.stop.set()
        if live.task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(live.task), 15)

    async def _close_all(self) -> None:
        lives, self._live = list(self._live.values()), {}
        await asyncio.gather(*(self._stop(live) for live in lives), return_exceptions=True)

    async def _call_tool(self, ep: McpEndpoint, tool: str, arguments: dict[str, Any],
                         read_timeout: float, idempotency_key: str | None = None
                         ) -> ToolResult:
        started = time.perf_counter()  # (on the loop: what the call took, not the waiting)
        meta = None if idempotency_key is None else {META_KEY: idempotency_key}
        try:
            live = await self._session(ep)
            async with self._calling(ep, live, f"call of tool {tool!r}", read_timeout):
                res = await live.client.call_tool(tool, arguments,
                                                  read_timeout_seconds=read_timeout, meta=meta)
            size = _result_size(res, ep.max_response)
            if size > ep.max_response:
                raise ResponseTooLarge(
                    f"MCP connection {ep.connection!r}: the result of tool {tool!r} is over "
                    f"the connection's max_response of {ep.max_response:,} bytes: {size:,} "
                    "bytes measured so far (not kept, not retried; the connection's "
                    "max_response raises the cap)", size, ep.max_response)
        except McpError as exc:
            exc.duration_ms = elapsed_ms(started)
            raise
        texts = [getattr(c, "text", "") for c in res.content if getattr(c, "type", "") == "text"]
        return ToolResult(structured=res.structured_content, text="\n".join(texts),
                          is_error=bool(res.is_error),
                          content_types=tuple(getattr(c, "type", "?") for c in res.content),
                          duration_ms=elapsed_ms(started))

    async def _list_tools(self, ep: McpEndpoint) -> list[ToolInfo]:
        live = await self._session(ep)
        out: list[ToolInfo] = []
        cursor: str | None = None
        async with self._calling(ep, live, "listing of tools", ep.read_timeout):
            for _page in range(100):  # a server whose pages never end cannot hang a check
                page = await live.client.list_tools(cursor=cursor)
                out += [ToolInfo(t.name, t.description or "", dict(t.input_schema or {}))
                        for t in page.tools]
                cursor = page.next_cursor
                if cursor is None:
                    break
        return out

    @contextlib.asynccontextmanager
    async def _calling(self, ep: McpEndpoint, live: _Live, what: str,
                       read_timeout: float) -> AsyncIterator[None]:
        """Translate what a request raised; a transport failure retires the session."""
        from mcp import MCPError

        window = live.begin()
        try:
            with _timeout(read_timeout + 1):
                yield
        except McpError:
            raise
        except MCPError as exc:
            over = _over_wire(ep, exc.message)
            if over is not None:  # (over http the session goes on: only this answer was cut)
                limit = wire_limit(ep.max_response)
                stopped = ""
                if ep.transport == "stdio":
                    live.broken = True
                    stopped = "; the server was stopped (started again on the next call)"
                raise ResponseTooLarge(
                    f"MCP connection {ep.connection!r}: the answer to the {what} is over "
                    f"{limit:,} bytes as sent (twice the connection's max_response of "
                    f"{ep.max_response:,} bytes, and 64 KB): not read further, not kept, not "
                    f"retried (the connection's max_response raises the cap){stopped}",
                    over, ep.max_response) from None
            if exc.code in (_CONNECTION_CLOSED, _REQUEST_TIMEOUT):
                live.broken = exc.code == _CONNECTION_CLOSED or live.broken
                why = "timed out" if exc.code == _REQUEST_TIMEOUT else "lost the connection"
                raise McpTransportError(
                    f"MCP connection {ep.connection!r}: the {what} {why} "
                    f"({ep.where}){_overflow_note(live)}{_stderr_hint(live, window)}") from None
            raise McpProtocolError(f"MCP connection {ep.connection!r}: the server refused the "
                                   f"{what}: {ep.scrub(exc.message)} (code {exc.code})",
                                   exc.code) from None
        except TimeoutError:
            raise McpTransportError(f"MCP connection {ep.connection!r}: the {what} timed out "
                                    f"after {read_timeout:g} s ({ep.where})") from None
        except Exception as exc:  # noqa: BLE001 - a transport's own errors vary (httpx, OS)
            live.broken = True
            raise _transport_error(ep, exc, live, window) from None
        finally:
            live.requests_active -= 1


def _over_wire_text(limit: int, read: int) -> str:
    """What a transport says when it stopped reading a message at ``limit`` bytes, ``read``
    having been read (:func:`_over_wire` recognises it in the error the SDK passes on)."""
    return f"the answer {_OVER_WIRE} ({limit:,} bytes): {read:,} bytes read"


def _overflow_note(live: _Live) -> str:
    """Why a stdio session ended under a request, if a message over the bound ended it."""
    read = getattr(live.stdio, "overflow", None)
    if read is None:
        return ""
    limit = wire_limit(live.endpoint.max_response)
    return (f"; the server sent a message over {limit:,} bytes ({read:,} bytes read; twice "
            f"the connection's max_response of {live.endpoint.max_response:,} bytes, and "
            "64 KB) while other requests were in flight, and was stopped")


def _over_wire(ep: McpEndpoint, message: str) -> int | None:
    """The bytes read of an answer whose reading stopped at :func:`wire_limit`, if the
    SDK's error ``message`` says so (a JSON body or a stdio line: :func:`_over_wire_text`;
    a server-sent event: httpx2's), else None."""
    limit = wire_limit(ep.max_response)
    found = _WIRE_READ.search(message)
    if found is not None and int(found.group(1).replace(",", "")) == limit:
        return int(found.group(2).replace(",", ""))
    if f"exceeded the {limit} byte limit" in message:
        return limit + 1  # (how much more there was is not known)
    return None


def _result_size(res: Any, limit: int) -> int:
    """About how many bytes a tool result took as sent: its content blocks' text and data
    (base64, for images, audio and embedded blobs) and its structured content as JSON.
    Counting stops once it is over ``limit`` (the structured content is then not encoded)."""
    size = 0
    for block in res.content:
        parts = (block, getattr(block, "resource", None))
        for part in parts:
            for attr in ("text", "data", "blob"):
                value = getattr(part, attr, None)
                if isinstance(value, str):
                    size += len(value) if value.isascii() else len(value.encode())
        if size > limit:
            return size
    if res.structured_content is not None:
        size += _json_size(res.structured_content)
    return size


def _json_size(value: Any) -> int:
    import orjson

    try:
        return len(orjson.dumps(value))
    except orjson.JSONEncodeError:  # an int beyond 64 bits...
        return len(json.dumps(value, default=str, ensure_ascii=False).encode())


def _import_sdk() -> None:
    """Import the SDK's modules this module uses (once; later calls are dict lookups)."""
    import httpx2  # noqa: F401
    import mcp.client.streamable_http  # noqa: F401

    import baton.connections.mcp_stdio  # noqa: F401 - (the SDK's stdio modules with it)


@contextlib.contextmanager
def _timeout(seconds: float) -> Iterator[None]:
    import anyio

    with anyio.fail_after(seconds):
        yield


@contextlib.asynccontextmanager
async def _client(ep: McpEndpoint, live: _Live) -> AsyncIterator[Any]:
    """The SDK client for ``ep``, open, with its transport (and HTTP client) under it."""
    from mcp import Client

    async with contextlib.AsyncExitStack() as stack:
        if ep.transport == "stdio":
            transport = _stdio_transport(ep, live)
        else:
            transport = await _http_transport(ep, live, stack)
        client = Client(_Watched(transport, live), read_timeout_seconds=ep.read_timeout,
                        mode="legacy", cache=None)
        await stack.enter_async_context(client)
        yield client


def _stdio_transport(ep: McpEndpoint, live: _Live) -> Any:
    from baton.connections.mcp_stdio import BoundedStdio

    if not ep.command:
        raise McpTransportError(f"MCP connection {ep.connection!r} has no command")
    live.stderr = _StderrTail()
    limit = wire_limit(ep.max_response)
    live.stdio = BoundedStdio(ep.command, ep.args, ep.env, ep.cwd, live.stderr.file(), limit,
                              functools.partial(_over_wire_text, limit))
    return live.stdio


async def _http_transport(ep: McpEndpoint, live: _Live,
                          stack: contextlib.AsyncExitStack) -> Any:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    limit = wire_limit(ep.max_response)

    async def note(response: httpx2.Response) -> None:
        live.http_status.append(response.status_code)
        del live.http_status[:-5]
        # The SDK reads a JSON answer whole: its body is read up to the bound, no further.
        # (Server-sent events are bounded one by one: max_sse_event_size, below.)
        if response.headers.get("content-type", "").lower().startswith("application/json"):
            response.stream = _bounded(response.stream, limit)

    async def stamp(request: httpx2.Request) -> None:
        # A tool call's idempotency key (in its _meta) also as a header, for servers and
        # gateways that look there (the SDK takes no headers per call).
        if request.method == "POST":
            key = _call_key(request)
            if key is not None:
                request.headers[ep.idempotency_header] = key

    auth = httpx2.BasicAuth(*ep.basic) if ep.basic is not None else None
    http = httpx2.AsyncClient(
        # identity: the bound counts the bytes as sent, which are then the message's
        headers={"Accept-Encoding": "identity", **ep.headers}, auth=auth, verify=ep.verify,
        timeout=httpx2.Timeout(ep.connect_timeout, read=max(ep.read_timeout, 60.0)),
        event_hooks={"request": [stamp], "response": [note]})
    await stack.enter_async_context(http)
    return streamable_http_client(ep.url or "", http_client=http, max_sse_event_size=limit)


_META_BYTES = META_KEY.encode()


def _call_key(request: Any) -> str | None:
    """The idempotency key in the ``_meta`` of the ``tools/call`` an HTTP request carries
    (its body is in memory: the SDK posts JSON), else None."""
    try:
        body = request.content
    except Exception:  # noqa: BLE001 - a streamed body (not the SDK's): nothing to read
        return None
    if not isinstance(body, bytes) or _META_BYTES not in body:
        return None
    try:
        message = json.loads(body)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return None
    meta = (message.get("params") or {}).get("_meta")
    key = meta.get(META_KEY) if isinstance(meta, dict) else None
    return key if isinstance(key, str) and key.isascii() and key.isprintable() else None


@functools.cache
def _bounded_type() -> type[Any]:
    """The bounded body stream's class (made on first use: httpx2 loads with the first
    call, not with this module)."""
    import httpx2

    class Bounded(httpx2.AsyncByteStream):
        """A response body read up to ``limit`` bytes: past that, reading stops with an
        ``httpx2.StreamError`` (the SDK answers the request with it, as a JSON-RPC
        error whose message :func:`_over_wire` recognises) and the response is closed
        with the rest unread."""

        def __init__(self, inner: Any, limit: int) -> None:
            self.inner, self.limit = inner, limit

        async def __aiter__(self) -> AsyncIterator[bytes]:
            read = 0
            async for part in self.inner:
                read += len(part)
                if read > self.limit:
                    raise httpx2.StreamError(_over_wire_text(self.limit, read))
                yield part

        async def aclose(self) -> None:
            await self.inner.aclose()

    return Bounded


def _bounded(inner: Any, limit: int) -> Any:
    """``inner`` (a response's body stream) read up to ``limit`` bytes (see
    :func:`_bounded_type`)."""
    return _bounded_type()(inner, limit)


class _Watched:
    """A transport whose read stream :meth:`_Live.alive` can look at."""

    def __init__(self, inner: Any, live: _Live) -> None:
        self._inner, self._live = inner, live

    async def __aenter__(self) -> Any:
        streams = await self._inner.__aenter__()
        self._live.read_stream = streams[0]
        return streams

    async def __aexit__(self, *exc: object) -> Any:
        return await self._inner.__aexit__(*exc)


class _StderrTail:
    """The last lines a stdio server wrote on stderr (for messages when it fails to start,
    or when a request fails), and how much it wrote in all (so that a request's message
    shows only what came during it); also logged at debug level."""

    def __init__(self) -> None:
        import os

        self._read, self._write = os.pipe()
        # (characters written in all, the last _STDERR_TAIL of them): one value, so the
        # loop reads the two as the pump thread left them together
        self._state: tuple[int, str] = (0, "")
        threading.Thread(target=self._pump, name="baton-mcp-stderr", daemon=True).start()

    def file(self) -> Any:
        import os

        return os.fdopen(self._write, "w", closefd=True)

    def _pump(self) -> None:
        import os

        with contextlib.suppress(OSError):
            while True:
                chunk = os.read(self._read, 4096)
                if not chunk:
                    break
                text = chunk.decode("utf-8", "replace")
                written, tail = self._state
                self._state = (written + len(text), (tail + text)[-_STDERR_TAIL:])
                log.debug("mcp server stderr: %s", text.rstrip())
        with contextlib.suppress(OSError):
            os.close(self._read)

    def mark(self) -> int:
        """Where the output stands now (characters written so far)."""
        return self._state[0]

    def since(self, mark: int | None) -> str:
        """What was written after ``mark`` (its last :data:`_STDERR_TAIL` characters);
        None: all that is kept."""
        written, tail = self._state
        if mark is None:
            return tail
        new = written - mark
        return tail[-new:] if 0 < new < len(tail) else tail if new > 0 else ""


def _stderr_hint(live: _Live, window: _Window | None = None) -> str:
    """The last lines a stdio server wrote on stderr, for an error message. For a request
    (``window``): only lines written since it started, and none unless it had the server to
    itself meanwhile — a shared server's stderr may be about other runs' calls, whose data
    must not show in this run's error. Without one (the session failed to open): what the
    new process wrote while starting."""
    if live.stderr is None:
        return ""
    if window is not None and not live.alone(window):
        return ""
    text = live.stderr.since(window.mark if window is not None else None)
    if not text.strip():
        return ""
    last = text.strip().splitlines()[-3:]
    return "; its stderr ended with: " + live.endpoint.scrub(" | ".join(last))[:600]


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in _leaves(e)]
    return [exc]


def _describe(exc: BaseException) -> str:
    leaves = [e for e in _leaves(exc) if not isinstance(e, asyncio.CancelledError)] or [exc]
    return "; ".join(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                     for e in leaves[:3])


def _transport_error(ep: McpEndpoint, exc: BaseException, live: _Live,
                     window: _Window | None = None) -> McpError:
    """A failure to open or use the session (the request of ``window``), as one clear
    message."""
    for leaf in _leaves(exc):
        if isinstance(leaf, McpError):
            return leaf
    status = [s for s in live.http_status if s >= 400]
    if status and status[-1] in (401, 403):
        return McpError(f"MCP connection {ep.connection!r}: {ep.where} answered HTTP "
                        f"{status[-1]}: the connection's auth was refused", retryable=False)
    detail = ep.scrub(_describe(exc))[:800]
    if status:
        detail = f"HTTP {status[-1]}; {detail}"
    return McpTransportError(f"MCP connection {ep.connection!r}: cannot talk to {ep.where}: "
                             f"{detail}{_stderr_hint(live, window)}")


# ---- the process's sessions -------------------------------------------------------------

_SHARED: McpSessions | None = None
_SHARED_LOCK = threading.Lock()


def shared_sessions() -> McpSessions:
    """This process's sessions (one event-loop thread, whatever the number of workers)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = McpSessions()
            atexit.register(_SHARED.close)
        return _SHARED


def close_shared_sessions() -> None:
    """Stop every MCP session of this process (stdio servers exit); the worker calls it
    when it stops. Sessions open again on the next call."""
    with _SHARED_LOCK:
        sessions = _SHARED
    if sessions is not None:
        sessions.close()


def endpoint_from(connection: str, *, transport: str, command: str | None = None,
                  args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                  cwd: str | Path | None = None, url: str | None = None,
                  headers: Mapping[str, str] | None = None, connect_timeout: float = 10.0,
                  read_timeout: float = 30.0, verify: bool | str = True,
                  secrets: Sequence[str] = (),
                  max_response: int = MAX_RESPONSE_DEFAULT,
                  idempotency_header: str = "Idempotency-Key") -> McpEndpoint:
    """An endpoint from plain values (tests and the CLI use it with no definition)."""
    if command == "python":  # the interpreter Baton runs on, whatever PATH says
        command = sys.executable
    return McpEndpoint(connection, transport, command, tuple(args), dict(env or {}),
                       str(cwd) if cwd is not None else None, url, dict(headers or {}), None,
                       connect_timeout, read_timeout, verify, tuple(secrets), max_response,
                       idempotency_header)


def endpoint(conn: ConnectionDefinition, secret: Callable[[SecretRef], str],
             project_dir: str | None = None) -> McpEndpoint:
    """The endpoint of an ``mcp`` connection, its secrets resolved with ``secret`` now.

    stdio: ``command`` ``python`` is the interpreter Baton runs on; the command runs in the
    project folder (relative ``args`` are the project's files), with the connection's
    ``env`` (values may be secret references) over a minimal inherited environment, and
    has :data:`STDIO_START_TIMEOUT` (or ``timeout.connect`` if longer) to answer.
    http: the connection's headers, and its auth as headers (bearer, api_key in a header
    or the query) or HTTP basic; ``tls.ca_file`` is relative to the project folder.
    """
    if conn.type != "mcp":
        raise McpError(f"connection {conn.name!r} is of type {conn.type}, not mcp",
                       retryable=False)
    secrets: list[str] = []

    def value(ref: SecretRef) -> str:
        got = secret(ref)
        secrets.append(got)
        return got

    base = Path(project_dir) if project_dir else Path.cwd()
    connect_s, read_s = conn.connect_timeout_ms / 1000, conn.read_timeout_ms / 1000
    if conn.transport == "stdio":  # starting an interpreter and its imports takes longer
        connect_s = max(connect_s, STDIO_START_TIMEOUT)
    if conn.transport == "stdio":
        env = {}
        for k, v in conn.env.items():
            ref = parse_secret_ref(v)
            env[k] = value(ref) if ref is not None else v
        return endpoint_from(conn.name, transport="stdio", command=conn.command,
                             args=conn.args, env=env, cwd=base, secrets=secrets,
                             connect_timeout=connect_s, read_timeout=read_s,
                             max_response=max_response_bytes(conn))
    url, headers, basic = conn.url or "", dict(conn.headers), None
    auth = conn.auth
    if auth is not None:
        if auth.type == "bearer" and auth.secret is not None:
            headers["Authorization"] = f"Bearer {value(auth.secret)}"
        elif auth.type == "api_key" and auth.secret is not None:
            if auth.placement == "query":
                parts = urlsplit(url)
                query = parse_qsl(parts.query, keep_blank_values=True)
                query.append((auth.key_name or "api_key", value(auth.secret)))
                url = urlunsplit((*parts[:3], urlencode(query), parts.fragment))
            else:
                headers[auth.key_name or "X-Api-Key"] = value(auth.secret)
        elif auth.type == "basic" and auth.password_secret is not None:
            basic = (auth.username or "", value(auth.password_secret))
        else:
            raise McpError(f"MCP connection {conn.name!r}: auth type {auth.type} is not "
                           "supported over MCP (bearer, api_key or basic are)",
                           retryable=False)
    verify: bool | str = conn.tls_verify
    if conn.tls_verify and conn.ca_file:
        verify = str(base / conn.ca_file)
    ep = endpoint_from(conn.name, transport="http", url=url, headers=headers, verify=verify,
                       secrets=secrets, connect_timeout=connect_s, read_timeout=read_s,
                       max_response=max_response_bytes(conn),
                       idempotency_header=conn.idempotency_header)
    return dataclasses.replace(ep, basic=basic)


def elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
