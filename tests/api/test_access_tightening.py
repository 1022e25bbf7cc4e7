"""Access weaknesses closed: ``/readyz`` tells who is not known the database error's class
only; a new password or a deactivation ends the user's other UI sessions (tokens stay);
the delegate field tells no one who may not list users which names exist; ``/metrics``
serves the process's metrics through a database outage to a token it verified lately.

Real databases throughout: a SQLite file, and PostgreSQL (a closed port on 127.0.0.1; a
database that stops accepting connections)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from baton import logs
from baton.clock import VirtualClock
from baton.runtime.engine import Engine
from baton.runtime.metrics import server_registry
from baton.web.app import create_app
from baton.web.security import VERIFIED_TOKEN_TTL_S
from tests.api.conftest import Api, assert_problem
from tests.net import free_port

PASSWORD = "pw-tightening-1"
NEW_PASSWORD = "pw-tightening-2"
ANONYMOUS_DETAIL = "OperationalError: database unavailable (see the server log)"


def _browser(app: Any, who: str, password: str = PASSWORD) -> tuple[TestClient, str]:
    """A browser of its own (cookie jar) signed in through the login form, and its CSRF
    token."""
    browser = TestClient(app)
    form = browser.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, form[:300]
    r = browser.post("/login", data={"username": who, "password": password,
                                     "csrf_token": token[1]}, follow_redirects=False)
    assert r.status_code == 303, (who, r.status_code, r.text[:300])
    csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', browser.get("/settings").text)
    assert csrf
    return browser, csrf[1]


def _signed_in_as(browser: TestClient) -> str | None:
    r = browser.get("/api/me")
    return str(r.json()["name"]) if r.status_code == 200 else None


def _logs_in(app: Any, who: str, password: str) -> bool:
    browser = TestClient(app)
    token = re.search(r'name="csrf_token" value="([^"]+)"', browser.get("/login").text)
    assert token
    r = browser.post("/login", data={"username": who, "password": password,
                                     "csrf_token": token[1]}, follow_redirects=False)
    browser.close()
    return r.status_code == 303


# ---- 1. /readyz: the driver's words for the log and for who reads runs --------------------
def test_readyz_tells_an_anonymous_caller_only_the_class_and_logs_the_driver_line(
        caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()  # nothing listens there: every connection is refused
    engine = Engine(f"postgresql://postgres@127.0.0.1:{port}/baton", migrate=False)
    client = TestClient(create_app(engine))
    try:
        with caplog.at_level(logging.WARNING, logger="baton.web.health"):
            r = client.get("/readyz")
            # a credential nobody can check now changes nothing: no 401, the same answer
            with_token = client.get("/readyz", headers={"Authorization": "Bearer baton_nope"})
        for answer in (r, with_token):
            assert answer.status_code == 503, answer.text
            assert answer.json()["checks"]["database"] == {"ok": False,
                                                            "detail": ANONYMOUS_DETAIL}
            assert str(port) not in answer.text and "127.0.0.1" not in answer.text
        said = [rec.getMessage() for rec in caplog.records if rec.name == "baton.web.health"]
        assert said and all(f"port {port} failed" in s and "Connection refused" in s
                            for s in said), caplog.text
        # word for word the same at every probe: ``baton serve``'s log writes it once a minute
        repeats = logs.Repeats()
        assert [repeats.filter(rec) for rec in caplog.records
                if rec.name == "baton.web.health"] == [True] + [False] * (len(said) - 1)
        head = client.head("/readyz")
        assert head.status_code == 503 and not head.content
    finally:
        client.close()
        engine.close()


# ---- 4 (and 1). /metrics and /readyz while PostgreSQL refuses connections ----------------
class Outage:
    """Users and tokens on a real PostgreSQL database, the app over it, and a switch that
    makes the database refuse every connection (``ALLOW_CONNECTIONS false``, its sessions
    ended) as a server that is away does."""

    def __init__(self, url: str, clock: VirtualClock) -> None:
        from tests.conftest import _pg_admin

        self.admin = _pg_admin
        self.dbname = make_url(url).database
        self.engine = Engine(url, clock=clock)
        d = self.engine.directory
        self.tokens: dict[str, str] = {}
        for name, role in (("opal", "operator"), ("dee", "designer"), ("ann", "agent")):
            d.add_user(name, roles=[role])
            self.tokens[name] = d.create_token(name, "tests")[1]
        self.app = create_app(self.engine)
        # the database's counts read at every scrape (not kept 5 s): up or down, as it is now
        self.app.state.metrics = server_registry(self.engine, ttl=0)
        self.client = TestClient(self.app)

    def get(self, url: str, who: str | None = None, token: str | None = None) -> Any:
        secret = token or (self.tokens[who] if who else None)
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        return self.client.get(url, headers=headers)

    def away(self, away: bool) -> None:
        with self.admin() as admin:  # type: ignore[attr-defined]
            admin.execute(f"ALTER DATABASE {self.dbname} ALLOW_CONNECTIONS "
                          f"{'false' if away else 'true'}")
            if away:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = %s AND pid <> pg_backend_pid()", (self.dbname,))

    def close(self) -> None:
        self.away(False)
        self.client.close()
        self.engine.close()


@pytest.fixture
def outage(pg_url: str, clock: VirtualClock) -> Iterator[Outage]:
    o = Outage(pg_url, clock)
    yield o
    o.close()


def _database_up(r: Any) -> float:
    assert r.status_code == 200, r.text
    found = re.search(r"^baton_database_up ([0-9.]+)$", r.text, re.MULTILINE)
    assert found, r.text[:500]
    return float(found[1])


def test_metrics_serve_the_process_through_an_outage_to_a_token_verified_lately(
        outage: Outage, clock: VirtualClock) -> None:
    o = outage
    assert _database_up(o.get("/metrics", "opal")) == 1  # verified by the database
    assert o.get("/metrics", "ann").status_code == 403  # verified, but reads no runs
    # a token verified, then revoked while the database answers: forgotten at once
    _, revoked = o.engine.directory.create_token("opal", "revoked")
    assert o.get("/metrics", token=revoked).status_code == 200
    token_id = next(t.id for t in o.engine.directory.list_tokens("opal") if t.label == "revoked")
    o.engine.directory.revoke_token(token_id)
    assert_problem(o.get("/metrics", token=revoked), 401)

    o.away(True)
    r = o.get("/metrics", "opal")
    assert _database_up(r) == 0
    assert "baton_runs_in_progress" not in r.text  # the database's counts are left out
    assert re.search(r"^# TYPE baton_\w+ counter$", r.text, re.MULTILINE)  # the process's own
    assert o.get("/metrics", "ann").status_code == 403  # remembered: still no runs:read
    # runs:read, but not verified lately: the database decides, and cannot
    assert_problem(o.get("/metrics", "dee"), 503)
    assert_problem(o.get("/metrics", token=revoked), 503)
    assert_problem(o.get("/metrics", token="baton_unknown_token"), 503)
    assert_problem(o.get("/metrics"), 401)

    # /readyz: the driver's line (it names the server and the database) only to opal
    anonymous = o.get("/readyz")
    assert anonymous.status_code == 503
    assert anonymous.json()["checks"]["database"] == {"ok": False, "detail": ANONYMOUS_DETAIL}
    assert o.dbname not in anonymous.text and "5432" not in anonymous.text
    for who in ("ann", "dee"):  # no runs:read; not verified lately
        assert o.get("/readyz", who).json()["checks"]["database"]["detail"] == ANONYMOUS_DETAIL
    told = o.get("/readyz", "opal")
    assert told.status_code == 503
    detail = told.json()["checks"]["database"]["detail"]
    assert detail.startswith("OperationalError: ") and detail != ANONYMOUS_DETAIL, detail
    assert "5432" in detail and o.dbname in detail, detail

    # past the TTL since opal's token was last verified: the outage is a 503 for it too
    clock.advance(timedelta(seconds=VERIFIED_TOKEN_TTL_S + 1))
    assert_problem(o.get("/metrics", "opal"), 503)
    assert o.get("/readyz", "opal").json()["checks"]["database"]["detail"] == ANONYMOUS_DETAIL

    o.away(False)
    assert _database_up(o.get("/metrics", "opal")) == 1


# ---- 2. a new password or a deactivation ends the user's other sessions -----------------
def test_a_password_changed_in_one_session_ends_the_others_and_tokens_stay(
        sqlite_api: Api) -> None:
    api = sqlite_api
    d = api.engine.directory
    d.update_user("root", password=PASSWORD)
    here, csrf = _browser(api.app, "root")
    there, _ = _browser(api.app, "root")
    with here, there:
        assert _signed_in_as(here) == _signed_in_as(there) == "root"
        r = here.patch("/api/users/root", json={"password": NEW_PASSWORD},
                       headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        assert _signed_in_as(here) == "root"  # the session that changed it goes on
        assert here.get("/settings").status_code == 200
        assert _signed_in_as(there) is None  # the other one is logged out
        assert there.get("/settings", follow_redirects=False).status_code in (302, 303)
        # the kept session's CSRF token still works for the next change
        r = here.patch("/api/me", json={"delegate": "opal"}, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
    assert api.get("root", "/api/me").status_code == 200  # the API token is its own credential
    assert not _logs_in(api.app, "root", PASSWORD) and _logs_in(api.app, "root", NEW_PASSWORD)


def test_an_admin_reset_or_a_deactivation_ends_all_of_the_users_sessions(
        sqlite_api: Api) -> None:
    api = sqlite_api
    d = api.engine.directory
    d.update_user("ann", password=PASSWORD)
    one, _ = _browser(api.app, "ann")
    two, _ = _browser(api.app, "ann")
    with one, two:
        r = api.patch("root", "/api/users/ann", {"password": NEW_PASSWORD})  # an admin's token
        assert r.status_code == 200, r.text
        assert _signed_in_as(one) is None and _signed_in_as(two) is None
    assert api.get("ann", "/api/me").status_code == 200  # ann's token stays valid

    again, _ = _browser(api.app, "ann", NEW_PASSWORD)
    with again:
        assert api.patch("root", "/api/users/ann", {"active": False}).status_code == 200
        assert _signed_in_as(again) is None
        assert_problem(api.get("ann", "/api/me"), 401)  # refused while she is inactive
        assert api.patch("root", "/api/users/ann", {"active": True}).status_code == 200
        assert _signed_in_as(again) is None  # reactivation brings no session back
    assert api.get("ann", "/api/me").status_code == 200  # the token was not revoked

    # ``baton users update ann --password``'s path (the directory, no session to keep)
    last, _ = _browser(api.app, "ann", NEW_PASSWORD)
    with last:
        d.update_user("ann", password=PASSWORD)
        assert _signed_in_as(last) is None


def test_a_deactivation_written_by_any_path_ends_the_sessions(sqlite_api: Api) -> None:
    """The store ends them with the deactivation itself (``baton import`` of people writes
    ``active`` straight through it)."""
    api = sqlite_api
    api.engine.directory.update_user("bob", password=PASSWORD)
    browser, _ = _browser(api.app, "bob")
    with browser:
        with api.engine.store.write() as tx:
            tx.update_user_txn("bob", {"active": False})
        with api.engine.store.write() as tx:
            tx.update_user_txn("bob", {"active": True})
        assert _signed_in_as(browser) is None


# ---- 3. the delegate field tells no one who may not list users which names exist --------
def _me_without_name(r: Any) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    return {k: v for k, v in r.json().items() if k != "delegate"}


def test_naming_a_delegate_tells_an_agent_or_a_designer_nothing_of_which_names_exist(
        sqlite_api: Api) -> None:
    api = sqlite_api
    for who in ("ann", "dee"):  # neither may list users (nor see the Team)
        known = api.patch(who, "/api/me", {"delegate": "cyd", "delegate_until": "2026-12-24"})
        unknown = api.patch(who, "/api/me", {"delegate": "no-such-person",
                                             "delegate_until": "2026-12-24"})
        assert _me_without_name(known) == _me_without_name(unknown)
        assert unknown.json()["delegate"] == "no-such-person"
        assert api.get(who, "/api/me").json()["delegate"] == "no-such-person"
    # such a delegation acts for no one, and a user added later under that name does not
    # inherit it (it meant someone else)
    added = api.post("root", "/api/users", {"name": "no-such-person", "roles": ["agent"]})
    assert added.status_code == 201, added.text
    assert added.json()["acting_for"] == []
    assert api.get("ann", "/api/me").json()["delegate"] is None
    # what is not a name at all is still refused, naming the field
    assert_problem(api.patch("ann", "/api/me", {"delegate": "two words"}), 422, "delegate")


def test_who_may_list_users_is_still_told_a_delegate_is_not_a_user(sqlite_api: Api) -> None:
    for who in ("opal", "root"):  # team (the Team lists everyone), users
        body = assert_problem(sqlite_api.patch(who, "/api/me", {"delegate": "nobody"}), 422,
                              "delegate")
        assert "no user 'nobody'" in str(body)
    body = assert_problem(sqlite_api.patch("root", "/api/users/ann", {"delegate": "nobody"}),
                          422, "delegate")
    assert "no user 'nobody'" in str(body)


def test_the_settings_page_answers_alike_for_any_name(sqlite_api: Api) -> None:
    api = sqlite_api
    api.engine.directory.update_user("ann", password=PASSWORD)
    browser, csrf = _browser(api.app, "ann")
    with browser:
        pages = []
        for name in ("bob", "nobody-here"):
            r = browser.post("/settings", data={"csrf_token": csrf, "delegate": name})
            assert r.status_code == 200 and "Saved." in r.text, r.text[:500]
            assert f"Now: {name}." in r.text
            pages.append(r.text.replace(name, "NAME"))
        assert pages[0] == pages[1]
        assert "Check the name with your delegate" in pages[0]
        r = browser.post("/settings", data={"csrf_token": csrf, "delegate": "no body"})
        assert r.status_code == 422 and "invalid user name" in r.text
        delegation = api.engine.directory.get_user("ann").delegation
        assert delegation is not None and delegation.to == "nobody-here"


def test_the_directory_keeps_only_a_live_session_of_the_user_themself(
        tmp_path: Path, clock: VirtualClock) -> None:
    engine = Engine(f"sqlite:///{tmp_path / 'baton.db'}", clock=clock)
    try:
        d = engine.directory
        d.add_user("ann", roles=["agent"], password=PASSWORD)
        d.add_user("bob", roles=["agent"], password=PASSWORD)
        ann_1, _ = d.create_session("ann")
        ann_2, _ = d.create_session("ann")
        bob_1, bob_csrf = d.create_session("bob")
        d.update_user("ann", password=NEW_PASSWORD, keep_session=bob_1)  # not hers: not kept
        assert d.session(ann_1) is None and d.session(ann_2) is None
        assert d.session(bob_1) == (d.get_user("bob"), bob_csrf)
        kept, kept_csrf = d.create_session("ann")
        other, _ = d.create_session("ann")
        d.update_user("ann", password=NEW_PASSWORD, keep_session=kept)
        found = d.session(kept)
        assert found is not None and found[1] == kept_csrf and d.session(other) is None
    finally:
        engine.close()
