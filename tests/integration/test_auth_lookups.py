"""Token and session lookups (:mod:`baton.web.lookups`) on a real server (uvicorn on
loopback): they never hold the event loop, and they come back from what a database does to
them.

PostgreSQL: the lookups' own connections, ended by the server (``pg_terminate_backend``), are
replaced without a failed request; a lookup that waits for a lock past its deadline is a 503
while everything else is answered; a server that never answers is given up on without the
loop waiting. (That a lock holds only the requests that wait for it, and ``/metrics``' recall
of verified tokens, is ``test_hung_database_loop.py``.)

SQLite: a file another process holds (``locking_mode=EXCLUSIVE`` and a write) holds the
requests that need it, not the loop: ``/healthz`` answers meanwhile, and the held requests are
answered once the file is let go.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx2 as httpx
import psycopg
import pytest

from baton.clock import VirtualClock
from baton.runtime.engine import Engine
from baton.store.sql import SqlStore
from baton.web import lookups
from tests.conftest import Harness
from tests.integration.test_hung_database_loop import Server

postgres = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


def pg(harness: Harness) -> psycopg.Connection[Any]:
    return psycopg.connect(harness.db_url.replace("postgresql+psycopg://", "postgresql://"),
                           autocommit=True)


def lookup_pids(admin: psycopg.Connection[Any]) -> list[int]:
    return [r[0] for r in admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
        "AND datname = current_database()", (lookups.APPLICATION_NAME,))]


def pools(harness: Harness, server: Server) -> list[lookups.PgLookups]:
    app = server.server.config.app
    return list(app.state.pg_lookups.values())


@pytest.fixture
def served(harness: Harness) -> Iterator[Server]:
    s = Server(harness)
    yield s
    s.close()


@postgres
def test_lookup_connections_the_server_ends_are_replaced_without_a_failed_request(
        harness: Harness, served: Server) -> None:
    directory = harness.engine.directory
    directory.add_user("ops", roles=["admin"])
    _, secret = directory.create_token("ops")
    cookie, _ = directory.create_session("ops")
    auth = {"Authorization": f"Bearer {secret}"}
    with pg(harness) as admin, httpx.Client(base_url=served.url, timeout=60) as c:
        # several at once: the pool opens more than one connection
        with ThreadPoolExecutor(4) as many:
            answers = list(many.map(lambda _: httpx.get(f"{served.url}/api/me", headers=auth,
                                                        timeout=60).status_code, range(8)))
        assert answers == [200] * 8
        (pool,) = pools(harness, served)
        opened = pool.connects
        assert opened >= 1 and len(lookup_pids(admin)) == opened
        for round_ in range(3):
            for pid in lookup_pids(admin):
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            deadline = time.monotonic() + 30
            while lookup_pids(admin):
                assert time.monotonic() < deadline, "the backends were not ended"
                time.sleep(0.02)
            r = c.get("/api/me", headers=auth)  # meets a dropped connection: tries a new one
            assert r.status_code == 200, (round_, r.text)
            assert r.json()["name"] == "ops"
            with httpx.Client(base_url=served.url, timeout=60,
                              cookies={"baton_session": cookie}) as browser:
                r = browser.get("/api/me")
            assert r.status_code == 200 and r.json()["authenticated_by"] == "session", r.text
            assert pool.connects > opened
            opened = pool.connects
        assert c.get("/api/me", headers={"Authorization": "Bearer baton_nope"}
                     ).status_code == 401
    served.close()  # the app's lifespan ends: so do its lookups' connections
    with pg(harness) as admin:
        deadline = time.monotonic() + 30
        while lookup_pids(admin):
            assert time.monotonic() < deadline, "the lookups' connections were left open"
            time.sleep(0.02)


@postgres
def test_a_lookup_held_past_its_deadline_is_a_503_and_holds_nothing_else(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lookups, "LOOKUP_DEADLINE_S", 1.0)  # (read as the pool is made)
    directory = harness.engine.directory
    directory.add_user("ops", roles=["admin"])
    _, secret = directory.create_token("ops")
    cookie, _ = directory.create_session("ops")
    auth = {"Authorization": f"Bearer {secret}"}
    server = Server(harness)
    try:
        with pg(harness) as admin, httpx.Client(base_url=server.url, timeout=60) as c:
            assert c.get("/api/me", headers=auth).status_code == 200
            for table, credentials in (("baton_api_tokens", {"headers": auth}),
                                       ("baton_sessions",
                                        {"cookies": {"baton_session": cookie}})):
                with admin.transaction():
                    admin.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
                    with ThreadPoolExecutor(1) as one:
                        held = one.submit(httpx.get, f"{server.url}/api/me", timeout=60,
                                          **credentials)
                        assert c.get("/healthz", timeout=5).status_code == 200
                        r = held.result(timeout=60)  # while the lock is still held
                    assert r.status_code == 503, r.text
                    assert r.headers["retry-after"]
                r = httpx.get(f"{server.url}/api/me", timeout=60, **credentials)  # answered
                assert r.status_code == 200, r.text
    finally:
        server.close()


def test_a_server_that_never_answers_is_given_up_on_and_the_loop_runs_meanwhile() -> None:
    """A "server" that takes the connection and says nothing (a hung host, a lost network):
    the lookup fails at its deadline with an error the app answers 503 (a transient
    OperationalError), and the loop ran other work all along."""
    from sqlalchemy.exc import OperationalError

    from baton.store.sql.dialects import is_transient

    async def scenario() -> tuple[BaseException | None, int]:
        silent: list[asyncio.StreamWriter] = []

        async def take(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            silent.append(w)  # kept open, never answered

        hole = await asyncio.start_server(take, "127.0.0.1", 0)
        port = hole.sockets[0].getsockname()[1]
        lookup = lookups.PgLookups(f"postgresql://nobody@127.0.0.1:{port}/nothing",
                                   size=1, deadline_s=1.0)
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        error: BaseException | None = None
        try:
            await lookup.token("0" * 64, "127.0.0.1")
        except Exception as exc:  # noqa: BLE001 - looked at below
            error = exc
        ticker.cancel()
        await lookup.close()
        for w in silent:
            w.close()
        hole.close()
        return error, ticks

    # (a loop of its own, in a thread of its own: a test run earlier in this process may
    # have left one running on this thread, as Playwright's sync API does)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        error, ticks = pool.submit(asyncio.run, scenario()).result()
    assert isinstance(error, OperationalError), repr(error)
    assert is_transient(error, "postgresql")
    assert ticks > 0  # the loop was not held while the lookup waited


LOCKER = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
c.execute("PRAGMA locking_mode=EXCLUSIVE")
c.execute("BEGIN IMMEDIATE")
c.execute("UPDATE baton_users SET display_name = 'Held' WHERE name = 'ops'")
c.execute("COMMIT")  # (the exclusive lock stays: locking_mode=EXCLUSIVE)
print("locked", flush=True)
sys.stdin.readline()
c.close()
print("released", flush=True)
"""


def test_a_sqlite_file_another_process_holds_holds_its_requests_not_the_loop(
        tmp_path: Path, sqlite_template: Path) -> None:
    path = tmp_path / "baton.db"
    path.write_bytes(sqlite_template.read_bytes())
    # A store that lets go of the file between transactions (BATON_SQLITE_NULLPOOL), so
    # another process can take it for itself while the server runs.
    engine = Engine(SqlStore(f"sqlite:///{path}", sqlite_nullpool=True), clock=VirtualClock())
    try:
        directory = engine.directory
        directory.add_user("ops", roles=["admin"])
        _, secret = directory.create_token("ops")
        cookie, _ = directory.create_session("ops")
        auth = {"Authorization": f"Bearer {secret}"}
        server = Server(cast(Harness, SimpleNamespace(engine=engine)))
        locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(path)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert locker.stdout is not None and locker.stdin is not None
            assert locker.stdout.readline().strip() == "locked"
            with ThreadPoolExecutor(3) as pool:
                held = [pool.submit(httpx.get, f"{server.url}{path_}", timeout=120, **kw)
                        for path_, kw in (("/api/me", {"headers": auth}),
                                          ("/api/runs", {"headers": auth}),
                                          ("/api/me", {"cookies": {"baton_session": cookie}}))]
                time.sleep(0.5)
                assert not any(f.done() for f in held)  # they wait for the file...
                with httpx.Client(base_url=server.url, timeout=5) as c:  # ...the loop does not
                    assert c.get("/healthz").status_code == 200
                    assert c.get("/login").status_code == 200
                    assert not any(f.done() for f in held)
                locker.stdin.write("\n")
                locker.stdin.flush()
                assert locker.stdout.readline().strip() == "released"
                answers = [f.result(timeout=120) for f in held]
            assert [r.status_code for r in answers] == [200, 200, 200], [r.text for r in answers]
            assert answers[0].json()["display_name"] == "Held"  # (what the other process wrote)
            # and the common case again: on the loop, through the lookups' own connection
            with httpx.Client(base_url=server.url, timeout=30) as c:
                assert c.get("/api/me", headers=auth).status_code == 200
            assert server.server.config.app.state.sqlite_lookups is not None
        finally:
            if locker.poll() is None:
                locker.kill()
            locker.wait(30)
            server.close()
    finally:
        engine.close()


def test_the_lookups_read_ahead_only_what_the_directory_asks_for() -> None:
    """A read the lookup did not make ahead is refused, never answered from another row."""
    ahead = lookups.ReadAhead(secret_hash="h", throttle=(("address", "10.0.0.1"), []),
                              row={"name": "ann"}, user_row=None, memberships=[],
                              delegators=[])
    assert ahead.memberships_txn("ann") == []
    with pytest.raises(RuntimeError, match="memberships of 'bob'"):
        ahead.memberships_txn("bob")
    with pytest.raises(RuntimeError, match="token"):
        ahead.token_user_row_txn("other")
    with pytest.raises(RuntimeError, match="throttle"):
        ahead.throttle_rows_txn([("address", "10.0.0.2")])
