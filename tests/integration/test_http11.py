"""Callouts' HTTP/1.1 connections (``baton.connections.http11``: h11 over
``baton.connections.streams``) against real loopback servers that answer with raw bytes:
keep-alive reuse, the request in one write, chunked and piecemeal bodies, a server that
closes (before answering, mid-body, with Connection: close, idle), timeouts, TLS with a
self-signed certificate, and a close while an exchange or a connect is under way."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpcore2
import pytest

from baton.connections.http11 import Http11Connection, Timeouts
from baton.connections.streams import AsyncioBackend

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
T = Timeouts(connect=5, read=5, write=5)
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}"


def _conn(port: int, scheme: bytes = b"http", tls: ssl.SSLContext | None = None,
          keepalive: float | None = 5.0) -> Http11Connection:
    return Http11Connection((scheme, b"127.0.0.1", port), AsyncioBackend(), tls, keepalive)


def _head(port: int, body: bytes = b"") -> list[tuple[bytes, bytes]]:
    head = [(b"Host", b"127.0.0.1:%d" % port)]
    if body:
        head.append((b"Content-Length", b"%d" % len(body)))
    return head


async def _request(reader: asyncio.StreamReader) -> bytes:
    """One request read whole (head and Content-Length body); b"" at the end."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + (await reader.readexactly(length) if length else b"")


def _run(handler: Handler, test: Callable[[int], Awaitable[None]],
         tls: ssl.SSLContext | None = None) -> None:
    async def main() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
        async with server:
            await test(int(server.sockets[0].getsockname()[1]))

    asyncio.run(main())


def test_keep_alive_reuse_and_the_request_in_one_write() -> None:
    connections: list[list[bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reads: list[bytes] = []
        connections.append(reads)
        while data := await reader.read(65536):  # each read as the server saw it
            reads.append(data)
            writer.write(OK)
        writer.close()

    async def test(port: int) -> None:
        conn = _conn(port)
        body = b'{"n": 1, "name": "Ping"}'
        for i in range(3):
            answer = await conn.exchange(b"POST", b"/ping?i=%d" % i, _head(port, body), body, T)
            assert (answer.status, answer.content) == (200, b'{"ok":true}')
            assert (b"Content-Type", b"application/json") in answer.headers
            assert conn.is_available() and not conn.has_expired()
        await conn.aclose()
        assert not conn.is_available()

    _run(handler, test)
    assert len(connections) == 1, "one connection for the three requests"
    reads = connections[0]
    assert len(reads) == 3, "each request (head and body) came in one piece"
    assert reads[0].startswith(b"POST /ping?i=0 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert reads[0].endswith(b'\r\n\r\n{"n": 1, "name": "Ping"}')


def test_chunked_and_piecemeal_bodies_are_read_whole() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nX-A: 2\r\n\r\n")
        for part in (b"5\r\nhello\r\n", b"6\r\n wor", b"ld\r\n", b"0\r\n\r\n"):
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(part)
        await _request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(10):
            writer.write(b"x" * 10000)
            await writer.drain()
            await asyncio.sleep(0.01)
        await reader.read()
        writer.close()

    async def test(port: int) -> None:
        conn = _conn(port)
        answer = await conn.exchange(b"GET", b"/", _head(port), b"", T)
        assert answer.content == b"hello world"
        assert [v for k, v in answer.headers if k == b"X-A"] == [b"1", b"2"]
        assert conn.is_available()
        answer = await conn.exchange(b"GET", b"/big", _head(port), b"", T)
        assert answer.content == b"x" * 100000
        await conn.aclose()

    _run(handler, test)


def test_a_body_that_ends_with_the_connection_and_connection_close() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _request(reader)
        if b"/close" in request:
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        else:  # no length: the body is what comes until the server closes
            writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
        await writer.drain()
        writer.close()

    async def test(port: int) -> None:
        conn = _conn(port)
        answer = await conn.exchange(b"GET", b"/close", _head(port), b"", T)
        assert answer.content == b"ok" and not conn.is_available()
        conn = _conn(port)
        answer = await conn.exchange(b"GET", b"/eof", _head(port), b"", T)
        assert answer.content == b"until the end" and not conn.is_available()
        with pytest.raises(httpcore2.ConnectionNotAvailable):
            await conn.exchange(b"GET", b"/", _head(port), b"", T)

    _run(handler, test)


def test_a_server_that_hangs_up_early_is_a_remote_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await _request(reader)
        if b"/mid" in request:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nonly part")
            await writer.drain()
        writer.close()

    async def test(port: int) -> None:
        conn = _conn(port)
        with pytest.raises(httpcore2.RemoteProtocolError,
                           match="Server disconnected without sending a response."):
            await conn.exchange(b"GET", b"/none", _head(port), b"", T)
        assert not conn.is_available()
        with pytest.raises(httpcore2.RemoteProtocolError, match="peer closed connection"):
            await _conn(port).exchange(b"GET", b"/mid", _head(port), b"", T)

    _run(handler, test)


def test_an_idle_connection_the_server_closed_has_expired() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        writer.write(OK)
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()  # the keep-alive connection, idle

    async def test(port: int) -> None:
        conn = _conn(port)
        await conn.exchange(b"GET", b"/", _head(port), b"", T)
        assert not conn.has_expired()
        await asyncio.sleep(0.5)
        assert conn.has_expired()
        short = _conn(port, keepalive=0.05)
        await short.exchange(b"GET", b"/", _head(port), b"", T)
        await asyncio.sleep(0.08)
        assert short.has_expired()
        await conn.aclose()
        await short.aclose()

    _run(handler, test)


def test_a_read_timeout_closes_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        await asyncio.sleep(2)
        writer.close()

    async def test(port: int) -> None:
        conn = _conn(port)
        with pytest.raises(httpcore2.ReadTimeout):
            await conn.exchange(b"GET", b"/", _head(port), b"", Timeouts(5, 0.2, 5))
        assert not conn.is_available() and not conn.has_expired()

    _run(handler, test)


def test_a_header_h11_refuses_is_a_local_protocol_error() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    async def test(port: int) -> None:
        conn = _conn(port)
        with pytest.raises(httpcore2.LocalProtocolError, match="Illegal header value"):
            await conn.exchange(b"GET", b"/", [*_head(port), (b"X-Bad", b"a\r\nInjected: 1")],
                                b"", T)
        assert not conn.is_available()

    _run(handler, test)


def test_close_during_an_exchange_fails_it_and_never_revives_the_connection() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _request(reader)
        await asyncio.sleep(0.3)
        writer.write(OK)
        await writer.drain()
        await reader.read()
        writer.close()

    async def test(port: int) -> None:
        conn = _conn(port)
        call = asyncio.ensure_future(conn.exchange(b"GET", b"/", _head(port), b"", T))
        await asyncio.sleep(0.1)  # the request is sent, the answer not yet
        await conn.aclose()
        with pytest.raises((httpcore2.RemoteProtocolError, httpcore2.ReadError)):
            await call
        await conn.aclose()  # again: harmless
        assert not conn.is_available()
        with pytest.raises(httpcore2.ConnectionNotAvailable):
            await conn.exchange(b"GET", b"/", _head(port), b"", T)

        connecting = _conn(port)  # closed while it connects
        call = asyncio.ensure_future(connecting.exchange(b"GET", b"/", _head(port), b"", T))
        await asyncio.sleep(0)
        await connecting.aclose()
        with pytest.raises(httpcore2.ConnectError):
            await call
        assert not connecting.is_available()

    _run(handler, test)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("selfsigned")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    "key.pem", "-out", "cert.pem", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   cwd=d, check=True, capture_output=True, timeout=60)
    return d


def test_https_with_a_self_signed_certificate(cert: Path) -> None:
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert / "cert.pem", cert / "key.pem")
    seen: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(1)
        while await _request(reader):
            writer.write(OK)
        writer.close()

    async def test(port: int) -> None:
        trusted = ssl.create_default_context(cafile=str(cert / "cert.pem"))
        conn = _conn(port, b"https", trusted)
        for _ in range(2):
            answer = await conn.exchange(b"POST", b"/x", _head(port, b"{}"), b"{}", T)
            assert answer.content == b'{"ok":true}'
        await conn.aclose()
        with pytest.raises(httpcore2.ConnectError) as failed:
            await _conn(port, b"https", ssl.create_default_context()).exchange(
                b"GET", b"/", _head(port), b"", T)
        assert isinstance(failed.value.__cause__, ssl.SSLCertVerificationError)

    _run(handler, test, server_tls)
    assert len(seen) == 1, "the two requests shared one TLS connection (the untrusted one " \
        "never got past its handshake)"
