"""Tokens and session cookies looked up where :mod:`baton.web.lookups` says, on both
backends: on a loop the app's lifespan runs on (a test client entered with ``with``), through
the lookups' own connections (PostgreSQL: async, one round trip; SQLite: a read that never
waits for a lock), answering exactly as the directory does: lockouts first, revoked tokens and
inactive users refused, failed attempts counted, ``last_used_at`` touched, sessions expiring,
CSRF on what a session changes, memberships and delegations as stored."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from baton.web import lookups
from tests.api.conftest import Api, assert_problem

ACCOUNT = {"data": {"name": "Acme Solar"}}


def served(api: Api, address: str = "198.51.100.7") -> TestClient:
    """A client whose requests run on one loop, the lifespan's (enter it with ``with``)."""
    return TestClient(api.app, client=(address, 50000), follow_redirects=False)


def lookup_connections(api: Api) -> int:
    """PostgreSQL: the lookups' connections open to the test's database now."""
    dsn = api.db_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                        "AND datname = current_database()", (lookups.APPLICATION_NAME,)
                        ).fetchone()
    assert row is not None
    return int(row[0])


def on_the_loop(api: Api) -> None:
    """The lookups were made by this module's own connections, not a request thread's."""
    state = api.app.state
    if api.backend == "postgres":
        pools = list(state.pg_lookups.values())
        assert len(pools) == 1 and pools[0].connects >= 1, pools
        assert lookup_connections(api) >= 1
    else:
        assert state.sqlite_lookups is not None


def eventually(check: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def test_a_token_on_the_lifespans_loop_is_looked_up_as_the_directory_says(api: Api) -> None:
    directory = api.engine.directory
    directory.update_user("root", delegate="ann")  # ann acts for root: read with her token
    with served(api) as c:
        r = c.get("/api/me", headers=api.auth("ann"))
        assert r.status_code == 200, r.text
        me = r.json()
        assert (me["name"], me["authenticated_by"]) == ("ann", "token")
        assert (me["groups"], me["queues"], me["acting_for"]) == (["billing"], ["tier1"],
                                                                  ["root"])
        on_the_loop(api)
        # last_used_at is touched through the committer, after the answer
        eventually(lambda: all(t.last_used_at for t in directory.list_tokens("ann")),
                   "the token's last_used_at was not touched")

        directory.update_user("ann", active=False)  # an inactive user's token: 401
        body = assert_problem(c.get("/api/me", headers=api.auth("ann")), 401)
        assert "deactivated" in body["detail"]
        directory.update_user("ann", active=True, groups=["billing", "refunds"])
        me = c.get("/api/me", headers=api.auth("ann")).json()  # read again: as it is now
        assert me["groups"] == ["billing", "refunds"]

        info = directory.list_tokens("bob")[0]
        assert c.get("/api/me", headers=api.auth("bob")).status_code == 200
        directory.revoke_token(info.id)
        body = assert_problem(c.get("/api/me", headers=api.auth("bob")), 401)
        assert "revoked" in body["detail"]
        assert c.get("/api/me", headers={"Authorization": "Bearer not-a-baton-token"}
                     ).status_code == 401


def test_unknown_tokens_lock_the_address_out_before_a_good_token_is_looked_at(api: Api) -> None:
    with served(api, "203.0.113.9") as attacker:
        for _ in range(20):
            assert_problem(attacker.get("/api/me", headers={
                "Authorization": "Bearer baton_guess"}), 401)
        r = attacker.get("/api/me", headers=api.auth("ann"))  # even a real token, from there
        assert_problem(r, 429)
        assert r.headers["retry-after"] == "60"
        on_the_loop(api)
        with served(api, "198.51.100.8") as other:  # (another loop: its own connections)
            assert other.get("/api/me", headers=api.auth("ann")).status_code == 200
        api.clock.advance(timedelta(seconds=61))
        assert attacker.get("/api/me", headers=api.auth("ann")).status_code == 200


def test_a_session_on_the_lifespans_loop_needs_csrf_and_expires(api: Api) -> None:
    directory = api.engine.directory
    cookie, csrf = directory.create_session("opal")
    with served(api) as c:
        c.cookies.set("baton_session", cookie)
        r = c.get("/api/me")
        assert r.status_code == 200 and r.json()["authenticated_by"] == "session", r.text
        on_the_loop(api)
        assert_problem(c.post("/api/objects/Account/records", json=ACCOUNT), 403)
        assert_problem(c.post("/api/objects/Account/records", json=ACCOUNT,
                              headers={"X-CSRF-Token": "wrong"}), 403)
        assert api.engine.count_records("Account") == 0
        r = c.post("/api/objects/Account/records", json=ACCOUNT, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 201, r.text

        api.clock.advance(timedelta(hours=12, seconds=1))  # (SESSION_TTL)
        assert_problem(c.get("/api/me"), 401)

        cookie, _ = directory.create_session("opal")
        c.cookies.set("baton_session", cookie)
        assert c.get("/api/me").status_code == 200
        directory.update_user("opal", active=False)  # ends the user's sessions
        assert_problem(c.get("/api/me"), 401)
        c.cookies.clear()
    if api.backend == "postgres":  # the lifespan is over: its connections are closed
        assert api.app.state.pg_lookups == {}
        eventually(lambda: lookup_connections(api) == 0, "the lookups' connections stayed open")


def test_without_a_lifespan_postgresql_looks_up_in_a_request_thread(api: Api) -> None:
    """A loop no lifespan runs on (a client used without ``with``: each request on a loop of
    its own) gets no connections of its own: the lookup is made as before, in a thread."""
    assert api.client.get("/api/me", headers=api.auth("ann")).status_code == 200
    assert not getattr(api.app.state, "pg_lookups", None)
    if api.backend == "postgres":
        assert lookup_connections(api) == 0
