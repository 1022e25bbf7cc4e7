"""Failed logins are throttled per account from one client address, per account and per
client address (the UI login form and API tokens alike; who may lock out whom is
test_lockout_targeting.py), the login form needs its CSRF token, and cookies are Secure
behind a trusted TLS proxy."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from baton.runtime.engine import Engine
from baton.settings import Settings
from baton.web.app import create_app
from tests.api.conftest import Api, assert_problem

PASSWORD = "correct-horse-battery"
WRONG = "wrong-password"


def browser(app: Any, address: str = "198.51.100.1") -> TestClient:
    """A browser at ``address`` (its own cookie jar), not following redirects."""
    return TestClient(app, client=(address, 50000), follow_redirects=False)


def form_token(c: TestClient) -> str:
    r = c.get("/login")
    assert r.status_code == 200, r.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
    assert found, r.text
    return found.group(1)


def log_in(c: TestClient, name: str, password: str, token: str | None = None,
           **kw: Any) -> Any:
    data = {"username": name, "password": password, "next": "/work",
            "csrf_token": form_token(c) if token is None else token}
    return c.post("/login", data=data, **kw)


def events(api: Api, type_: str) -> list[dict[str, Any]]:
    with api.engine.store.read() as tx:
        return tx.events_txn(types=[type_])


def with_password(api: Api, name: str = "ann") -> None:
    api.engine.directory.update_user(name, password=PASSWORD)


def test_five_wrong_passwords_lock_the_account_from_that_address_even_for_the_right_one(
        api: Api) -> None:
    with_password(api)
    c = browser(api.app)
    for _ in range(5):
        assert log_in(c, "ann", WRONG).status_code == 401
    r = log_in(c, "ann", PASSWORD)
    assert r.status_code == 429 and r.headers["retry-after"] == "60", r.text
    assert "Too many failed attempts for this account from your address" in r.text
    assert "baton_session" not in r.headers.get("set-cookie", "")
    # from there only: another address is not locked out of the account
    assert log_in(browser(api.app, "198.51.100.2"), "ann", PASSWORD).status_code == 303
    locked = events(api, "login_locked")
    assert [(e["data"]["kind"], e["data"]["name"], e["actor"]) for e in locked] == [
        ("pair", "ann", "198.51.100.1")]
    api.clock.advance(timedelta(seconds=61))
    r = log_in(c, "ann", PASSWORD)
    assert r.status_code == 303 and r.headers["location"] == "/work", r.text
    assert "baton_session=" in r.headers["set-cookie"]


def test_lockouts_double_and_a_success_forgets_them(sqlite_api: Api) -> None:
    api = sqlite_api
    with_password(api)
    c = browser(api.app)
    waits = []
    for _ in range(3):
        for _ in range(5):
            log_in(c, "ann", WRONG)
        r = log_in(c, "ann", PASSWORD)
        assert r.status_code == 429
        waits.append(int(r.headers["retry-after"]))
        api.clock.advance(timedelta(seconds=waits[-1]))
    assert waits == [60, 120, 240]
    assert log_in(c, "ann", PASSWORD).status_code == 303
    c = browser(api.app)  # logged out
    for _ in range(4):  # the count starts again from nothing
        log_in(c, "ann", WRONG)
    assert log_in(c, "ann", PASSWORD).status_code == 303
    c = browser(api.app)
    for _ in range(5):
        log_in(c, "ann", WRONG)
    assert log_in(c, "ann", PASSWORD).headers["retry-after"] == "60"  # and so do lockouts


def test_bad_api_tokens_lock_the_client_address(api: Api) -> None:
    attacker = browser(api.app, "203.0.113.66")
    for _ in range(20):
        r = attacker.get("/api/me", headers={"Authorization": "Bearer baton_guess"})
        assert_problem(r, 401)
    r = attacker.get("/api/me", headers=api.auth("ann"))  # even a real token, from there
    body = assert_problem(r, 429)
    assert r.headers["retry-after"] == "60" and "try again" in body["detail"]
    assert api.get("ann", "/api/me").status_code == 200  # another address is not locked
    assert_problem(api.post("ann", "/api/addresses/203.0.113.66/unlock"), 403)
    r = api.post("root", "/api/addresses/203.0.113.66/unlock")
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "address" and r.json()["was_locked_until"]
    assert attacker.get("/api/me", headers=api.auth("ann")).status_code == 200
    assert [e["data"]["kind"] for e in events(api, "login_locked")] == ["address"]
    assert [(e["actor"], e["data"]["name"]) for e in events(api, "login_unlocked")] == [
        ("root", "203.0.113.66")]


def test_an_admin_unlocks_an_account(api: Api) -> None:
    with_password(api)
    c = browser(api.app)
    for _ in range(5):
        log_in(c, "ann", WRONG)
    assert log_in(c, "ann", PASSWORD).status_code == 429
    for who in ("opal", "ann"):  # the operator and the user herself may not
        assert_problem(api.post(who, "/api/users/ann/unlock"), 403)
    r = api.post("root", "/api/users/ann/unlock")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "ann" and r.json()["was_locked_until"]
    assert log_in(c, "ann", PASSWORD).status_code == 303
    again = api.post("root", "/api/users/ann/unlock").json()
    assert again["was_locked_until"] is None  # nothing was locked any more: harmless


def test_the_login_form_needs_its_csrf_token(sqlite_api: Api) -> None:
    api = sqlite_api
    with_password(api)
    c = browser(api.app)
    token = form_token(c)
    for sent in ("", "forged"):
        r = log_in(c, "ann", PASSWORD, token=sent)
        assert r.status_code == 403 and "baton_session" not in r.headers.get("set-cookie", "")
        assert "log in again" in r.text
    # a token from someone else's form (a login CSRF page's own) with no matching cookie
    assert log_in(browser(api.app, "198.51.100.9"), "ann", PASSWORD, token=token).status_code == 403
    r = log_in(c, "ann", PASSWORD, token=token)
    assert r.status_code == 303 and "baton_session=" in r.headers["set-cookie"]
    assert not events(api, "login_locked")  # refused forms count as no attempt at all


def _cookie(r: Any, name: str) -> str:
    found = [h for h in r.headers.get_list("set-cookie") if h.startswith(name + "=")]
    assert found, r.headers
    return found[0]


def test_cookies_are_secure_behind_a_trusted_tls_proxy(sqlite_api: Api) -> None:
    api = sqlite_api
    with_password(api)
    engine = Engine(api.db_url, clock=api.clock, settings=Settings(trusted_proxies=("10.0.0.5",)))
    try:
        app = create_app(engine)
        https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"}
        for peer, secure in (("10.0.0.5", True), ("203.0.113.9", False)):  # trusted or not
            c = browser(app, peer)
            form = c.get("/login", headers=https)
            assert ("Secure" in _cookie(form, "baton_login_csrf")) is secure
            token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
            jar = {"Cookie": f"baton_login_csrf={token}"}  # a Secure cookie is not sent over http
            r = c.post("/login", data={"username": "ann", "password": PASSWORD, "csrf_token": token},
                       headers=https | jar)
            assert r.status_code == 303, r.text
            assert ("Secure" in _cookie(r, "baton_session")) is secure
        # the failed attempt counts against the client the trusted proxy names
        c = browser(app, "10.0.0.5")
        token = form_token(c)
        log_in(c, "ann", WRONG, token=token, headers={"X-Forwarded-For": "198.51.100.7"})
        with engine.store.read() as tx:
            rows = tx.throttle_rows_txn([("address", "198.51.100.7"), ("address", "10.0.0.5")])
        assert [(r["name"], r["failures"]) for r in rows] == [("198.51.100.7", 1)]
        forced = Engine(api.db_url, clock=api.clock, settings=Settings(cookie_secure=True))
        try:
            assert "Secure" in _cookie(browser(create_app(forced)).get("/login"), "baton_login_csrf")
        finally:
            forced.close()
    finally:
        engine.close()
