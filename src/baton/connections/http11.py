"""Keep-alive HTTP/1.1 connections of callouts, driven with ``h11`` (framing, parsing and
header validation are h11's: no HTTP parsing of Baton's own).

What a call needs of ``httpcore2``'s ``AsyncHTTPConnection``/``AsyncHTTP11Connection`` —
connect (TCP, then TLS with the connection's context and the host as SNI), send one request,
read its response to the end, keep the connection for the next request when both sides are
done, close it otherwise — without what callouts never use: HTTP/2, proxies, upgrades,
response streaming, trace hooks, the locks and cancellation shields of a connection shared
by tasks (a pooled connection here serves one call at a time). The request's head and body
go in one write. Failures raise the ``httpcore2`` exceptions those classes raised, with the
same messages, so ``baton.connections.http`` maps them to call errors as before.
"""

from __future__ import annotations

import enum
import ssl
import time
from dataclasses import dataclass

import h11
import httpcore2

READ_NUM_BYTES = 64 * 1024  # as httpcore2
MAX_INCOMPLETE_EVENT_SIZE = 100 * 1024  # the largest response head accepted (as httpcore2)
Headers = list[tuple[bytes, bytes]]


class _State(enum.Enum):
    NEW = 0  # not connected yet
    ACTIVE = 1  # an exchange is under way
    IDLE = 2  # connected, free for the next request
    CLOSED = 3


@dataclass(frozen=True)
class Timeouts:
    """Seconds (None: no limit)."""

    connect: float | None
    read: float | None
    write: float | None


@dataclass(frozen=True)
class Answer:
    """A response read to its end: headers as received (names as sent, in order)."""

    status: int
    headers: Headers
    content: bytes


class Http11Connection:
    """One connection to ``origin`` (scheme, host, port), one exchange at a time."""

    def __init__(self, origin: tuple[bytes, bytes, int], backend: httpcore2.AsyncNetworkBackend,
                 ssl_context: ssl.SSLContext | None, keepalive_expiry: float | None) -> None:
        self.origin = origin
        self._backend = backend
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry
        self._stream: httpcore2.AsyncNetworkStream | None = None
        self._h11 = h11.Connection(our_role=h11.CLIENT,
                                   max_incomplete_event_size=MAX_INCOMPLETE_EVENT_SIZE)
        self._state = _State.NEW
        self._expire_at: float | None = None
        self._eof = False  # the server closed its side (a body read to the connection's end)

    # ---- as the pool sees it ----------------------------------------------------------------
    def is_available(self) -> bool:
        """Connected and free for a request."""
        return self._state is _State.IDLE

    def has_expired(self) -> bool:
        """Idle past its keep-alive time, or closed (or written to) by the server meanwhile."""
        if self._expire_at is not None and time.monotonic() > self._expire_at:
            return True
        return self._state is _State.IDLE and self._stream is not None \
            and bool(self._stream.get_extra_info("is_readable"))

    async def aclose(self) -> None:
        """Close the connection. Safe at any time, also while an exchange is under way (it
        then fails as a server that hung up would: a ``RemoteProtocolError``/``ReadError``)
        and more than once."""
        self._state = _State.CLOSED
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.aclose()

    # ---- one exchange -----------------------------------------------------------------------
    async def exchange(self, method: bytes, target: bytes, headers: Headers, body: bytes,
                       timeouts: Timeouts) -> Answer:
        """Send a request (``headers`` with Host and, for a body, Content-Length) and read
        its response to the end. On any failure the connection is closed."""
        if self._state is not _State.NEW and self._state is not _State.IDLE:
            raise httpcore2.ConnectionNotAvailable()
        self._state = _State.ACTIVE
        self._expire_at = None
        try:
            stream = self._stream
            if stream is None:
                stream = await self._connect(timeouts.connect)
            answer = await self._exchange(stream, method, target, headers, body, timeouts)
        except BaseException:
            await self.aclose()
            raise
        h = self._h11
        if self._state is _State.ACTIVE and h.our_state is h11.DONE \
                and h.their_state is h11.DONE and not self._eof:
            h.start_next_cycle()
            self._state = _State.IDLE
            if self._keepalive_expiry is not None:
                self._expire_at = time.monotonic() + self._keepalive_expiry
        else:  # Connection: close, a body read to the connection's end, closed meanwhile
            await self.aclose()
        return answer

    async def _connect(self, timeout: float | None) -> httpcore2.AsyncNetworkStream:
        scheme, host, port = self.origin
        stream = await self._backend.connect_tcp(host.decode("ascii"), port, timeout=timeout)
        if scheme == b"https":
            assert self._ssl_context is not None
            stream = await stream.start_tls(self._ssl_context,
                                            server_hostname=host.decode("ascii"),
                                            timeout=timeout)
        if self._state is not _State.ACTIVE:  # closed while connecting
            await stream.aclose()
            raise httpcore2.ConnectError("the connection was closed")
        self._stream = stream
        return stream

    async def _exchange(self, stream: httpcore2.AsyncNetworkStream, method: bytes,
                        target: bytes, headers: Headers, body: bytes,
                        timeouts: Timeouts) -> Answer:
        h = self._h11
        try:
            data = h.send(h11.Request(method=method, target=target, headers=headers))
            if body:
                data += h.send(h11.Data(data=body))
            data += h.send(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            raise httpcore2.LocalProtocolError(exc) from exc
        try:
            await stream.write(data, timeout=timeouts.write)
        except httpcore2.WriteError:
            # (as httpcore2: a server may answer early and close; read what it said)
            pass
        read = timeouts.read
        while True:
            event = await self._next_event(stream, read)
            if isinstance(event, h11.Response):
                break
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                break
        status, found = event.status_code, event.headers.raw_items()
        chunks: list[bytes] = []
        while True:
            part = await self._next_event(stream, read)
            if isinstance(part, h11.Data):
                chunks.append(bytes(part.data))
            elif isinstance(part, h11.EndOfMessage) or part is h11.PAUSED:
                break
        return Answer(status, found, chunks[0] if len(chunks) == 1 else b"".join(chunks))

    async def _next_event(self, stream: httpcore2.AsyncNetworkStream,
                          timeout: float | None) -> h11.Event | type[h11.PAUSED]:
        h = self._h11
        while True:
            try:
                event = h.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpcore2.RemoteProtocolError(exc) from exc
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            data = await stream.read(READ_NUM_BYTES, timeout=timeout)
            if not data:
                if h.their_state is h11.SEND_RESPONSE:
                    raise httpcore2.RemoteProtocolError(
                        "Server disconnected without sending a response.")
                self._eof = True
            h.receive_data(data)
