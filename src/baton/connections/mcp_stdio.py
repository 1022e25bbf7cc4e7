"""The stdio transport of an MCP session, each message read up to a bound.

The MCP SDK's ``stdio_client`` reads the server's stdout line by line with no limit: a
server that prints a huge line (or never a newline) makes the worker hold all of it. This
transport does what the SDK's does — start the command in a session of its own (the
SDK's inherited environment under the connection's ``env``, the given working folder,
stderr to ``errlog``), exchange newline-delimited JSON-RPC messages as the SDK's
``SessionMessage`` objects, and on exit close the server's stdin, give it
:data:`~mcp.client.stdio.PROCESS_TERMINATION_TIMEOUT` to exit, then stop its process tree
(SIGTERM, SIGKILL) — but stops reading a message once it is over ``limit`` bytes.

A message over the bound ends the session: the server is stopped at once (whatever it is
still writing goes nowhere) and the session's read stream closes, so every request in
flight ends. The request it answered (its ``id``, read from the message's first bytes;
or the only request in flight, when those bytes do not say and do not show a request or
notification of the server's) is answered first with a JSON-RPC error whose message is
``too_large(bytes read)``, which the caller recognises; the others end as the SDK ends a
request whose connection closed. :attr:`BoundedStdio.overflow` then says how much was read.

POSIX only (as Baton's worker).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, TextIO

import anyio
import anyio.lowlevel
from anyio.abc import Process
from mcp.client.stdio import (
    FORCE_KILL_TIMEOUT,
    PROCESS_TERMINATION_TIMEOUT,
    get_default_environment,
)
from mcp.os.posix.utilities import terminate_posix_process_tree
from mcp.shared.message import SessionMessage
from mcp_types import (
    INTERNAL_ERROR,
    ErrorData,
    JSONRPCError,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    jsonrpc_message_adapter,
)

log = logging.getLogger("baton.connections.mcp")

__all__ = ["BoundedStdio"]

_KILL_REAP_TIMEOUT = 2.0  # for the event loop to see a killed server exit
_WRITER_FLUSH_TIMEOUT = 0.5  # for messages already accepted to reach stdin on exit
_EXIT_POLL = 0.01
_CHUNK = 64 * 1024  # bytes read from stdout at once
_PREFIX = 4096  # first bytes of an oversize message looked at for its envelope


class BoundedStdio:
    """A transport (an async context manager giving the SDK its read and write streams)
    for the MCP server ``command args``; each message it reads is at most ``limit``
    bytes (see the module). ``overflow``: the bytes read of the message that went over
    the bound, once one did (the server was then stopped), else None."""

    def __init__(self, command: str, args: Sequence[str], env: Mapping[str, str],
                 cwd: str | None, errlog: TextIO, limit: int,
                 too_large: Callable[[int], str]) -> None:
        self.command, self.args, self.env, self.cwd = command, list(args), dict(env), cwd
        self.errlog, self.limit, self.too_large = errlog, limit, too_large
        self.overflow: int | None = None
        self._cm: contextlib.AbstractAsyncContextManager[Any] | None = None

    async def __aenter__(self) -> Any:
        self._cm = self._open()
        return await self._cm.__aenter__()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        assert self._cm is not None
        return await self._cm.__aexit__(kind, exc, tb)

    @contextlib.asynccontextmanager
    async def _open(self) -> AsyncIterator[Any]:
        try:
            process = await anyio.open_process(
                [self.command, *self.args], env=get_default_environment() | self.env,
                stderr=self.errlog, cwd=self.cwd, start_new_session=True)
        finally:
            # The server has its own copy of the pipe's end: this one closed, the pipe ends
            # when the server does (its reader, the stderr tail's thread, then ends too).
            self.errlog.close()
        # No awaits from here until the task group is entered (a cancellation in between
        # would leave the process running).
        read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
        pending: set[int | str] = set()  # ids of the requests sent and not answered yet
        writer_done = anyio.Event()
        shutting_down = False

        async def deliver(item: SessionMessage | Exception) -> bool:
            """Pass ``item`` to the session; False: the session is gone."""
            if isinstance(item, SessionMessage) and \
                    isinstance(item.message, JSONRPCResponse | JSONRPCError) and \
                    item.message.id is not None:
                pending.discard(item.message.id)
            try:
                await read_writer.send(item)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return False
            return True

        async def overflowed(prefix: bytes, read: int) -> None:
            self.overflow = read
            answered = _answered(prefix, pending)
            log.warning("MCP server %s sent a message over %d bytes (%d read): stopping it",
                        self.command, self.limit, read)
            if answered is not None:
                error = ErrorData(code=INTERNAL_ERROR, message=self.too_large(read))
                await deliver(SessionMessage(JSONRPCError(jsonrpc="2.0", id=answered,
                                                          error=error)))

        async def reader() -> None:
            assert process.stdout is not None
            stdout = process.stdout
            try:
                async with read_writer:
                    try:
                        line = bytearray()
                        while True:
                            try:
                                chunk = await stdout.receive(_CHUNK)
                            except anyio.EndOfStream:
                                return
                            start = 0
                            while True:
                                end = chunk.find(b"\n", start)
                                size = len(line) + (len(chunk) if end < 0 else end) - start
                                if size > self.limit:
                                    head = bytes(line[:_PREFIX]) + \
                                        chunk[start:start + max(0, _PREFIX - len(line))]
                                    await overflowed(head, size)
                                    return
                                if end < 0:
                                    line += memoryview(chunk)[start:]
                                    break
                                line += memoryview(chunk)[start:end]
                                start = end + 1
                                if line and not line.isspace() and not await deliver(_parse(line)):
                                    return
                                line = bytearray()
                    finally:
                        if self.overflow is None:
                            await _drain(process)
            except anyio.ClosedResourceError:
                pass  # our own shutdown closed stdout under the read
            except (anyio.BrokenResourceError, ConnectionError):
                if not shutting_down:
                    log.exception("reading the MCP server's stdout failed")
            finally:
                if self.overflow is not None:  # the session has ended: stop the server
                    with anyio.CancelScope(shield=True):
                        await terminate_posix_process_tree(process, FORCE_KILL_TIMEOUT)

        async def writer() -> None:
            assert process.stdin is not None
            try:
                async with write_reader:
                    async for item in write_reader:
                        message = item.message
                        if isinstance(message, JSONRPCRequest):
                            pending.add(message.id)
                        elif isinstance(message, JSONRPCNotification) and \
                                message.method == "notifications/cancelled":
                            pending.discard((message.params or {}).get("requestId"))
                        data = message.model_dump_json(by_alias=True, exclude_unset=True)
                        await process.stdin.send(data.encode() + b"\n")
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
                # The server may still run: end the session's reading, or a request
                # would wait for an answer that cannot come.
                await read_writer.aclose()
            finally:
                writer_done.set()

        async def shutdown() -> None:
            read_stream.close()  # the reader drains: a server writing can then read stdin
            write_stream.close()
            with anyio.move_on_after(_WRITER_FLUSH_TIMEOUT) as flush:
                await writer_done.wait()
            if flush.cancelled_caught:
                await anyio.lowlevel.cancel_shielded_checkpoint()
            await _stop(process)
            for stream in (read_stream, write_stream, read_writer, write_reader):
                await stream.aclose()
            await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(writer)
            try:
                yield read_stream, write_stream
            finally:
                shutting_down = True
                with anyio.CancelScope(shield=True):  # bounded: the server must not outlive us
                    await shutdown()
                tg.cancel_scope.cancel()
        await anyio.lowlevel.cancel_shielded_checkpoint()


def _parse(line: bytearray) -> SessionMessage | Exception:
    """One message as read, or what was wrong with it (the session passes that on)."""
    try:
        return SessionMessage(jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        log.warning("MCP server sent a message that is not JSON-RPC: %s", str(exc)[:300])
        return exc


_MEMBER = re.compile(rb'\s*"((?:[^"\\]|\\.)*)"\s*:\s*')
_SCALAR = re.compile(rb'("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)'
                     rb'\s*([,}])')


def _envelope(head: bytes) -> tuple[dict[str, Any], str | None]:
    """The top-level members with a plain value that open the JSON object ``head`` begins,
    up to the first whose value is an object or array (its name is returned too, None if
    there is none in ``head``)."""
    found: dict[str, Any] = {}
    opening = re.match(rb"\s*\{", head)
    if opening is None:
        return found, None
    pos = opening.end()
    while True:
        member = _MEMBER.match(head, pos)
        if member is None:
            return found, None
        name = member.group(1).decode("utf-8", "replace")
        value = _SCALAR.match(head, member.end())
        if value is None:
            return found, name if head[member.end():member.end() + 1] in (b"{", b"[") \
                else None
        with contextlib.suppress(ValueError):
            found[name] = json.loads(value.group(1))
        if value.group(2) == b"}":
            return found, None
        pos = value.end()


def _answered(head: bytes, pending: set[int | str]) -> int | str | None:
    """Which request in flight a message too large to read answers, from its first bytes
    ``head``: its ``id``; without one, the only request in flight, unless the message is
    one of the server's requests or notifications (a ``method``, or ``params`` first)."""
    members, nested = _envelope(head)
    if "method" in members or nested == "params":
        return None
    rid = members.get("id")
    if isinstance(rid, int | str) and not isinstance(rid, bool):
        return rid if rid in pending else None
    return next(iter(pending)) if len(pending) == 1 else None


async def _drain(process: Process) -> None:
    """Read and drop what the server still writes (so that one stuck writing can exit);
    ends when its stdout closes."""
    assert process.stdout is not None
    with anyio.CancelScope(shield=True), contextlib.suppress(
            anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError,
            ConnectionError, OSError):
        while True:
            await process.stdout.receive(_CHUNK)


async def _stop(process: Process) -> None:
    """Close the server's stdin, give it time to exit, then stop its process tree (the
    MCP specification's shutdown; the SDK's timeouts)."""
    assert process.stdin is not None and process.stdout is not None
    with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        await process.stdin.aclose()
    if not await _exited(process, PROCESS_TERMINATION_TIMEOUT):
        await terminate_posix_process_tree(process, FORCE_KILL_TIMEOUT)
        if not await _exited(process, _KILL_REAP_TIMEOUT):
            log.warning("MCP server process %d is still alive after SIGKILL", process.pid)
    with contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        await process.stdout.aclose()
    # The asyncio subprocess transport stays open (and warns when collected) while a
    # descendant that survived holds a pipe: close it (as the SDK does).
    transport = getattr(getattr(process, "_process", None), "_transport", None)
    close = getattr(transport, "close", None)
    if callable(close):
        with contextlib.suppress(PermissionError):
            close()


async def _exited(process: Process, timeout: float) -> bool:
    """Did the process exit within ``timeout`` seconds? (Polls its return code: waiting
    for it would also wait for its pipes to close, which a child may hold.)"""
    deadline = anyio.current_time() + timeout
    while process.returncode is None:
        if anyio.current_time() >= deadline:
            return False
        await anyio.sleep(_EXIT_POLL)
    return True
