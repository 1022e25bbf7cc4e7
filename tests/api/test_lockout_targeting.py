"""Failed logins lock the (account, client address) pair, not the account: a stranger who
knows a user's name locks that user out of the stranger's own address only, until the much
higher limit of failures for the account from all addresses together; even then the user
gets in from an address they logged in from before. An admin's unlock clears the account's
pairs too; API tokens still count per address only. Both databases, over HTTP (the login
form through TestClient, each "browser" at its own client address)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from baton.auth import throttle as th
from baton.clock import parse_iso
from tests.api.conftest import Api, assert_problem

PASSWORD = "correct-horse-battery"
WRONG = "wrong-password"
STRANGER = "203.0.113.66"
HOME = "198.51.100.1"


def browser(api: Api, address: str) -> TestClient:
    """A browser at ``address`` (its own cookie jar), not following redirects."""
    return TestClient(api.app, client=(address, 50000), follow_redirects=False)


def log_in(api: Api, address: str, name: str, password: str) -> Any:
    c = browser(api, address)
    form = c.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert form.status_code == 200 and token, form.text
    return c.post("/login", data={"username": name, "password": password, "next": "/work",
                                  "csrf_token": token.group(1)})


def got_in(r: Any) -> bool:
    return r.status_code == 303 and "baton_session=" in r.headers.get("set-cookie", "")


def locks(api: Api) -> list[tuple[str, str, str | None]]:
    with api.engine.store.read() as tx:
        found = tx.events_txn(types=["login_locked"])
    return [(e["data"]["kind"], e["data"]["name"], e["data"]["address"]) for e in found]


def account_failures(api: Api, name: str) -> int:
    with api.engine.store.read() as tx:
        rows = tx.throttle_rows_txn([("account", name)])
    return int(rows[0]["failures"]) if rows else 0


def test_a_stranger_s_failures_lock_the_user_out_of_the_stranger_s_address_only(api: Api) -> None:
    api.engine.directory.update_user("ann", password=PASSWORD)
    for _ in range(th.PAIR_LIMIT - 1):
        assert log_in(api, STRANGER, "ann", WRONG).status_code == 401
    r = log_in(api, STRANGER, "ann", WRONG)  # the failure that locks the pair says so
    assert r.status_code == 401 and "this account from your address" in r.text, r.text
    r = log_in(api, STRANGER, "ann", PASSWORD)  # there, not even the right password
    assert r.status_code == 429 and r.headers["retry-after"] == "60", r.text
    assert "Too many failed attempts for this account from your address" in r.text
    assert "baton_session" not in r.headers.get("set-cookie", "")
    assert log_in(api, STRANGER, "ann", WRONG).status_code == 429  # refused, not counted
    assert account_failures(api, "ann") == th.PAIR_LIMIT
    # ann, at her own address, is not locked out: not now, and not while the stranger
    # goes on (every new lockout of the pair is longer, and hers never starts)
    assert got_in(log_in(api, HOME, "ann", PASSWORD))
    api.clock.advance(timedelta(seconds=61))
    for _ in range(th.PAIR_LIMIT):
        assert log_in(api, STRANGER, "ann", WRONG).status_code == 401
    assert got_in(log_in(api, HOME, "ann", PASSWORD))
    assert log_in(api, STRANGER, "ann", PASSWORD).headers["retry-after"] == "120"
    assert locks(api) == [("pair", "ann", STRANGER)] * 2
    # other accounts from the stranger's address are not locked either (only the address
    # limit, 20 failures from there, would lock those)
    api.engine.directory.update_user("bob", password=PASSWORD)
    assert got_in(log_in(api, STRANGER, "bob", PASSWORD))


def test_the_account_locks_after_many_failures_from_many_addresses_but_not_for_a_known_one(
        api: Api) -> None:
    api.engine.directory.update_user("ann", password=PASSWORD)
    assert got_in(log_in(api, HOME, "ann", PASSWORD))  # HOME is known for ann from now on
    throttle = api.engine.directory.throttle
    # a guessing attack spread out: under the pair limit at every address (the login form
    # tells the throttle exactly this for each wrong password; argon2 makes 50 real tries
    # over HTTP too slow for a test)
    attackers = [f"10.9.{i // 250}.{i % 250 + 1}" for i in range(th.ACCOUNT_LIMIT)]
    tried = 0
    for address in attackers:
        for _ in range(th.PAIR_LIMIT - 1):
            if tried == th.ACCOUNT_LIMIT - 1:
                break
            assert throttle.failed(account="ann", address=address) is None
            tried += 1
    assert tried == th.ACCOUNT_LIMIT - 1 and locks(api) == []
    r = log_in(api, attackers[-1], "ann", WRONG)  # the last one over HTTP: the account locks
    assert r.status_code == 401 and "Too many failed attempts for this account:" in r.text
    assert locks(api) == [("account", "ann", attackers[-1])]
    # now a new address is refused even with the right password ...
    r = log_in(api, "198.51.100.2", "ann", PASSWORD)
    assert r.status_code == 429 and r.headers["retry-after"] == "60", r.text
    assert "Too many failed attempts for this account:" in r.text
    # ... but ann's own address lets her in, and that does not open the account elsewhere
    assert got_in(log_in(api, HOME, "ann", PASSWORD))
    assert log_in(api, "198.51.100.2", "ann", PASSWORD).status_code == 429
    # from a known address, the pair's own limit still holds
    for _ in range(th.PAIR_LIMIT):
        assert log_in(api, HOME, "ann", WRONG).status_code == 401
    r = log_in(api, HOME, "ann", PASSWORD)
    assert r.status_code == 429 and "this account from your address" in r.text
    assert locks(api)[-1] == ("pair", "ann", HOME)
    # when the lockouts are over, everyone may try again
    api.clock.advance(timedelta(minutes=1, seconds=1))
    assert got_in(log_in(api, "198.51.100.2", "ann", PASSWORD))


def test_an_address_is_known_for_a_while_only(api: Api) -> None:
    api.engine.directory.update_user("ann", password=PASSWORD)
    assert got_in(log_in(api, HOME, "ann", PASSWORD))
    api.clock.advance(th.KNOWN_FOR + timedelta(minutes=1))
    throttle = api.engine.directory.throttle
    for i in range(th.ACCOUNT_LIMIT):
        throttle.failed(account="ann", address=f"10.8.{i // 4}.1")
    assert locks(api) == [("account", "ann", f"10.8.{(th.ACCOUNT_LIMIT - 1) // 4}.1")]
    r = log_in(api, HOME, "ann", PASSWORD)
    assert r.status_code == 429 and "Too many failed attempts for this account:" in r.text


def test_an_admin_s_unlock_clears_the_account_and_every_pair_of_it(api: Api) -> None:
    api.engine.directory.update_user("ann", password=PASSWORD)
    for _ in range(th.PAIR_LIMIT):
        log_in(api, STRANGER, "ann", WRONG)
    r = log_in(api, STRANGER, "ann", PASSWORD)
    assert r.status_code == 429
    pair_until = api.clock.now() + timedelta(seconds=int(r.headers["retry-after"]))
    r = api.post("root", "/api/users/ann/unlock")  # no lock of the account itself: a pair's
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "account" and r.json()["was_locked_until"]
    assert parse_iso(r.json()["was_locked_until"]) == pair_until
    assert account_failures(api, "ann") == 0
    # the pair is open again, and forgotten: counted from nothing, and its next lockout is
    # a first one again (60 s, not 120 s)
    for _ in range(th.PAIR_LIMIT):
        assert log_in(api, STRANGER, "ann", WRONG).status_code == 401
    assert log_in(api, STRANGER, "ann", PASSWORD).headers["retry-after"] == "60"
    r = api.post("root", "/api/users/ann/unlock")
    assert r.json()["was_locked_until"]
    assert got_in(log_in(api, STRANGER, "ann", PASSWORD))
    assert api.post("root", "/api/users/ann/unlock").json()["was_locked_until"] is None
    with api.engine.store.read() as tx:
        unlocked = tx.events_txn(types=["login_unlocked"])
    assert [(e["actor"], e["data"]["kind"], e["data"]["name"], bool(e["data"]["was_locked_until"]))
            for e in unlocked] == [("root", "account", "ann", True)] * 2 + [
        ("root", "account", "ann", False)]


def test_an_unlock_lifts_an_account_lock_and_the_pair_locks_with_it(api: Api) -> None:
    api.engine.directory.update_user("ann", password=PASSWORD)
    throttle = api.engine.directory.throttle
    for i in range(th.ACCOUNT_LIMIT // th.PAIR_LIMIT):  # every pair locked, then the account
        for _ in range(th.PAIR_LIMIT):
            throttle.failed(account="ann", address=f"10.7.0.{i + 1}")
    assert ("account", "ann", f"10.7.0.{th.ACCOUNT_LIMIT // th.PAIR_LIMIT}") in locks(api)
    assert log_in(api, "10.7.0.1", "ann", PASSWORD).status_code == 429
    assert log_in(api, HOME, "ann", PASSWORD).status_code == 429
    assert api.post("root", "/api/users/ann/unlock").json()["was_locked_until"]
    assert got_in(log_in(api, "10.7.0.1", "ann", PASSWORD))
    assert got_in(log_in(api, HOME, "ann", PASSWORD))


def test_api_tokens_still_count_per_address_only(api: Api) -> None:
    api.engine.directory.update_user("ann", password=PASSWORD)
    for _ in range(th.PAIR_LIMIT):  # ann's password locked at the stranger's address ...
        log_in(api, STRANGER, "ann", WRONG)
    assert log_in(api, STRANGER, "ann", PASSWORD).status_code == 429
    stranger = browser(api, STRANGER)
    assert stranger.get("/api/me", headers=api.auth("ann")).status_code == 200  # ... not her token
    for _ in range(th.ADDRESS_LIMIT - th.PAIR_LIMIT):  # the address counts both kinds
        assert_problem(stranger.get("/api/me", headers={"Authorization": "Bearer baton_guess"}),
                       401)
    r = stranger.get("/api/me", headers=api.auth("ann"))
    body = assert_problem(r, 429)
    assert r.headers["retry-after"] == "60" and "your address" in body["detail"]
    assert log_in(api, STRANGER, "bob", WRONG).status_code == 429  # every account, from there
    assert browser(api, HOME).get("/api/me", headers=api.auth("ann")).status_code == 200
    assert got_in(log_in(api, HOME, "ann", PASSWORD))
    assert locks(api) == [("pair", "ann", STRANGER), ("address", STRANGER, STRANGER)]
    assert api.post("root", f"/api/addresses/{STRANGER}/unlock").json()["was_locked_until"]
    assert stranger.get("/api/me", headers=api.auth("ann")).status_code == 200
    # (the pair is an account's: unlocking the address leaves it locked)
    assert log_in(api, STRANGER, "ann", PASSWORD).status_code == 429


def test_clients_of_unknown_address_share_one_pair(api: Api) -> None:
    """(A server that is not told the peer's address: all such clients are one address.)"""
    throttle = api.engine.directory.throttle
    for _ in range(th.PAIR_LIMIT - 1):
        assert throttle.failed(account="ann", address="") is None
    lock = throttle.failed(account="ann", address="")
    assert lock is not None and lock.kind == "pair"
    again = throttle.locked(account="ann", address="")
    assert again is not None and (again.kind, again.name) == ("pair", "ann")
    assert throttle.locked(account="ann", address=HOME) is None
    assert throttle.locked(address="") is None  # (no address limit for "")
    assert locks(api) == [("pair", "ann", "")]
