"""The network layer under callouts (``baton.connections.streams``) against real loopback
servers: bytes both ways over one kept connection, partial reads, a server that closes or
resets the connection, read/write/connect timeouts, a refused port, TLS with a self-signed
certificate (and one that does not verify), each failure as the httpcore2 exception the
callers map to messages."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import struct
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpcore2
import pytest

from baton.connections.streams import CONNECT_FAILED, AsyncioBackend
from tests.net import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler, tls: ssl.SSLContext | None = None) -> asyncio.Server:
    return await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    writer.close()


def test_bytes_go_both_ways_over_one_connection_and_partial_reads_keep_the_rest() -> None:
    async def main() -> None:
        async with await _serve(_echo) as server:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", _port(server), timeout=5)
            for i in range(3):  # one connection, several exchanges
                await stream.write(b"ping %d" % i, timeout=5)
                assert await stream.read(65536, timeout=5) == b"ping %d" % i
            await stream.write(b"abcdefghij", timeout=5)
            got = b""
            while len(got) < 10:
                part = await stream.read(3, timeout=5)
                assert 0 < len(part) <= 3
                got += part
            assert got == b"abcdefghij"
            assert not stream.get_extra_info("is_readable")
            assert stream.get_extra_info("server_addr")[1] == _port(server)
            assert stream.get_extra_info("socket").getsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY)
            await stream.aclose()

    asyncio.run(main())


def test_a_server_that_closes_gives_the_rest_then_end_of_stream() -> None:
    async def answer_and_close(reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        writer.write(b"last words")
        await writer.drain()
        writer.close()

    async def main() -> None:
        async with await _serve(answer_and_close) as server:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", _port(server), timeout=5)
            await stream.write(b"hi", timeout=5)
            await asyncio.sleep(0.2)  # the close arrives with the data
            assert stream.get_extra_info("is_readable"), "an idle connection the peer closed"
            assert await stream.read(4, timeout=5) == b"last"
            assert await stream.read(100, timeout=5) == b" words"
            assert await stream.read(100, timeout=5) == b""
            assert await stream.read(100, timeout=5) == b""
            with pytest.raises(httpcore2.WriteError):
                await stream.write(b"more", timeout=5)
            await stream.aclose()

    asyncio.run(main())


def test_a_reset_connection_is_a_read_error() -> None:
    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def main() -> None:
        async with await _serve(reset) as server:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", _port(server), timeout=5)
            await stream.write(b"hi", timeout=5)
            with pytest.raises(httpcore2.ReadError):
                await stream.read(100, timeout=5)
            await stream.aclose()

    asyncio.run(main())


def test_read_and_write_timeouts() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)  # neither answers nor reads
        writer.close()

    async def main() -> None:
        async with await _serve(silent) as server:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", _port(server), timeout=5)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(httpcore2.ReadTimeout):
                await stream.read(100, timeout=0.2)
            assert 0.15 < loop.time() - started < 2
            with pytest.raises(httpcore2.WriteTimeout):  # the peer reads nothing: buffers fill
                for _ in range(2000):
                    await stream.write(b"x" * 65536, timeout=0.2)
            await stream.aclose()

    asyncio.run(main())


def test_a_read_waits_for_bytes_that_come_later() -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(100)
        await asyncio.sleep(0.2)
        writer.write(b"late")
        await writer.drain()
        await asyncio.sleep(1)
        writer.close()

    async def main() -> None:
        async with await _serve(slow) as server:
            stream = await AsyncioBackend().connect_tcp("127.0.0.1", _port(server), timeout=5)
            await stream.write(b"hi", timeout=5)
            assert await stream.read(100, timeout=5) == b"late"
            await stream.aclose()

    asyncio.run(main())


def test_a_refused_port_and_an_unknown_host_are_connect_errors() -> None:
    async def main() -> None:
        port = free_port()  # nothing listens
        with pytest.raises(httpcore2.ConnectError, match=CONNECT_FAILED):
            await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        with pytest.raises(httpcore2.ConnectError, match="not known|resolution"):
            await AsyncioBackend().connect_tcp("no-such-host.invalid", 80, timeout=5)

    asyncio.run(main())


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


def _server_tls(cert: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert / "cert.pem", cert / "key.pem")
    return ctx


def test_tls_with_a_self_signed_certificate(cert: Path) -> None:
    async def main() -> None:
        async with await _serve(_echo, _server_tls(cert)) as server:
            backend = AsyncioBackend()
            plain = await backend.connect_tcp("127.0.0.1", _port(server), timeout=5)
            client = ssl.create_default_context(cafile=str(cert / "cert.pem"))
            stream = await plain.start_tls(client, server_hostname="localhost", timeout=5)
            assert stream.get_extra_info("ssl_object") is not None
            for i in range(3):
                await stream.write(b"secret %d" % i, timeout=5)
                got = b""
                while len(got) < 8:
                    got += await stream.read(65536, timeout=5)
                assert got == b"secret %d" % i
            await stream.aclose()

            plain = await backend.connect_tcp("127.0.0.1", _port(server), timeout=5)
            with pytest.raises(httpcore2.ConnectError) as failed:  # not the CA: no trust
                await plain.start_tls(ssl.create_default_context(), server_hostname="localhost",
                                      timeout=5)
            assert isinstance(failed.value.__cause__, ssl.SSLCertVerificationError)

    asyncio.run(main())


def test_a_tls_handshake_that_never_ends_is_a_connect_timeout() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    async def main() -> None:
        async with await _serve(mute) as server:
            plain = await AsyncioBackend().connect_tcp("127.0.0.1", _port(server), timeout=5)
            with pytest.raises(httpcore2.ConnectTimeout):
                await plain.start_tls(ssl.create_default_context(), server_hostname="localhost",
                                      timeout=0.3)

    asyncio.run(main())
