"""The lean HTTP/1.1 client of callouts (``baton.connections.wire``) against real servers on
loopback: keep-alive reuse, a chunked answer, a server that closes kept connections, a
server that answers without a length, and a read timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from baton.connections.wire import WireError, WirePool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _request_head(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))
    return head


def _run(handler: Handler, calls: Callable[[WirePool, str], Awaitable[object]],
         read_timeout: float = 10.0) -> tuple[object, WirePool]:
    async def main() -> tuple[object, WirePool]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = WirePool(ssl_context=None, connect_timeout=5, read_timeout=read_timeout,
                        write_timeout=5, max_idle=4)
        try:
            async with server:
                return await calls(pool, f"http://127.0.0.1:{port}"), pool
        finally:
            await pool.aclose()

    return asyncio.run(main())


def test_keep_alive_reuses_one_connection_and_reads_chunked_answers() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await _request_head(reader)
                assert b"Host: 127.0.0.1:" in head and b"Idempotency-Key: k" in head
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                             b"Content-Type: application/json\r\n\r\n"
                             b"5\r\n{\"ok\"\r\n7\r\n: true}\r\n0\r\n\r\n")
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    async def calls(pool: WirePool, base: str) -> object:
        return [await pool.request("POST", f"{base}/p", params={"a": "1 2"},
                                   headers={"Idempotency-Key": "k"}, content=b'{"n": 1}')
                for _ in range(3)]

    answers, pool = _run(handler, calls)
    assert [(r.status_code, r.content) for r in answers] == [(200, b'{"ok": true}')] * 3
    assert answers[0].headers.get("CONTENT-TYPE") == "application/json"
    assert pool.opened == 1


def test_a_kept_connection_the_server_closed_is_replaced() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request_head(reader)  # one answer, then the connection is closed (no notice)
        writer.write(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nhi")
        await writer.drain()
        writer.close()

    async def calls(pool: WirePool, base: str) -> object:
        first = await pool.request("GET", f"{base}/a")
        await asyncio.sleep(0.05)
        second = await pool.request("GET", f"{base}/b")
        return first, second

    (first, second), pool = _run(handler, calls)  # type: ignore[misc]
    assert first.status_code == second.status_code == 201 and second.content == b"hi"
    assert pool.opened == 2


def test_an_answer_delimited_by_the_end_of_the_stream() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request_head(reader)
        writer.write(b"HTTP/1.0 500 Oops\r\nContent-Type: text/plain\r\n\r\nbroken")
        await writer.drain()
        writer.close()

    async def calls(pool: WirePool, base: str) -> object:
        return await pool.request("GET", base)

    answer, _pool = _run(handler, calls)
    assert answer.status_code == 500 and answer.content == b"broken"  # type: ignore[attr-defined]


def test_read_timeout_and_connection_refused_are_wire_errors() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request_head(reader)
        await asyncio.sleep(5)

    async def slow(pool: WirePool, base: str) -> object:
        with pytest.raises(WireError) as info:
            await pool.request("GET", base)
        return info.value.kind

    kind, _pool = _run(handler, slow, read_timeout=0.3)
    assert kind == "read_timeout"

    async def refused(pool: WirePool, base: str) -> object:
        with pytest.raises(WireError) as info:
            await pool.request("GET", "http://127.0.0.1:9/")  # discard port: nobody listens
        return info.value.kind

    kind, _pool = _run(handler, refused)
    assert kind == "connect"
