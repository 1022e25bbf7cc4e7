"""The network streams of HTTP connections, on the running asyncio loop's own transports.

:class:`AsyncioBackend` is an ``httpcore2`` network backend (what ``AnyIOBackend`` was
here): TCP connections by ``loop.create_connection``, TLS by ``loop.start_tls`` with the
connection's SSL context, bytes received by an :class:`asyncio.Protocol` into a buffer. A
read that finds bytes buffered returns them without waiting; one that waits arms one
``call_later`` for its timeout (anyio opened a cancel scope per read and per write, most of
a call's cost in the network layer). Raises the exceptions ``AnyIOBackend`` raised
(``ConnectError``, ``ConnectTimeout``, ``ReadError``, ``ReadTimeout``, ``WriteError``,
``WriteTimeout``), so callers map errors to messages as before.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore2

# A refused or unreachable address: anyio's words, which call errors have always shown.
CONNECT_FAILED = "All connection attempts failed"


class _Receiver(asyncio.Protocol):
    """Keeps what arrives until a stream reads it; wakes the one reader waiting."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False  # the peer closed its side (or the connection was lost)
        self.error: BaseException | None = None  # why the connection was lost, if not cleanly
        self.waiter: asyncio.Future[bool] | None = None  # a read waiting for bytes
        self.drained: asyncio.Future[bool] | None = None  # a write waiting for the buffer
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        _wake(self.waiter)

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self.waiter)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        if exc is not None:
            self.error = exc
        _wake(self.waiter)
        _wake(self.drained)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        _wake(self.drained)


def _wake(waiter: asyncio.Future[bool] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(True)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


async def _wait(loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[bool],
                timeout: float | None) -> bool:
    """Whether ``waiter`` was woken before ``timeout`` seconds (None: no limit)."""
    if timeout is None:
        return await waiter
    timer = loop.call_later(timeout, _expire, waiter)
    try:
        return await waiter
    finally:
        timer.cancel()


class AsyncioStream(httpcore2.AsyncNetworkStream):
    """One TCP (or TLS) connection: reads, writes, close."""

    def __init__(self, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport,
                 receiver: _Receiver) -> None:
        self._loop = loop
        self._transport = transport
        self._rx = receiver

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        rx = self._rx
        if not rx.buffer and not rx.eof:
            if rx.waiter is not None:
                raise httpcore2.ReadError("another read is waiting on this connection")
            waiter = rx.waiter = self._loop.create_future()
            try:
                woken = await _wait(self._loop, waiter, timeout)
            finally:
                rx.waiter = None
            if not woken:
                raise httpcore2.ReadTimeout("")
        if rx.buffer:
            if len(rx.buffer) <= max_bytes:
                data = bytes(rx.buffer)
                rx.buffer.clear()
            else:
                data = bytes(rx.buffer[:max_bytes])
                del rx.buffer[:max_bytes]
            return data
        if rx.error is not None:
            raise httpcore2.ReadError(str(rx.error)) from rx.error
        return b""  # the peer closed the connection

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        rx = self._rx
        if rx.error is not None or self._transport.is_closing():
            raise httpcore2.WriteError(str(rx.error or "the connection is closed"))
        self._transport.write(buffer)
        if rx.paused and not rx.eof:  # the kernel's buffer is full: wait till it drains
            waiter = rx.drained = self._loop.create_future()
            try:
                woken = await _wait(self._loop, waiter, timeout)
            finally:
                rx.drained = None
            if not woken:
                raise httpcore2.WriteTimeout("")
            if rx.error is not None:
                raise httpcore2.WriteError(str(rx.error)) from rx.error

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore2.AsyncNetworkStream:
        try:
            try:
                transport = await asyncio.wait_for(self._loop.start_tls(
                    self._transport, self._rx, ssl_context, server_hostname=server_hostname,
                    ssl_handshake_timeout=None if timeout is None else timeout + 1.0),
                    timeout)
            except TimeoutError as exc:
                raise httpcore2.ConnectTimeout(str(exc)) from exc
            except (ssl.SSLError, OSError) as exc:
                raise httpcore2.ConnectError(str(exc)) from exc
        except BaseException:
            self._transport.close()
            raise
        if transport is None:  # the connection was closed during the handshake
            raise httpcore2.ConnectError("the connection closed during the TLS handshake")
        assert isinstance(transport, asyncio.Transport)
        self._rx.transport = transport
        return AsyncioStream(self._loop, transport, self._rx)

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # on an idle connection: the peer closed it, or sent junk
            return bool(self._rx.buffer) or self._rx.eof
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "client_addr":
            return self._transport.get_extra_info("sockname")
        if info == "server_addr":
            return self._transport.get_extra_info("peername")
        if info == "socket":
            return self._transport.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore2.AsyncNetworkBackend):
    """Connections on the running loop (see the module)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
                          ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport, receiver = await asyncio.wait_for(loop.create_connection(
                _Receiver, host, port,
                local_addr=(local_address, 0) if local_address else None), timeout)
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(str(exc)) from exc
        except socket.gaierror as exc:  # the name does not resolve
            raise httpcore2.ConnectError(str(exc)) from exc
        except OSError as exc:
            raise httpcore2.ConnectError(CONNECT_FAILED) from exc
        sock = transport.get_extra_info("socket")
        for option in socket_options or ():
            sock.setsockopt(*option)
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return AsyncioStream(loop, transport, receiver)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
                                  ) -> httpcore2.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        try:
            transport, receiver = await asyncio.wait_for(
                loop.create_unix_connection(_Receiver, path), timeout)
        except TimeoutError as exc:
            raise httpcore2.ConnectTimeout(str(exc)) from exc
        except OSError as exc:
            raise httpcore2.ConnectError(str(exc)) from exc
        return AsyncioStream(loop, transport, receiver)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
