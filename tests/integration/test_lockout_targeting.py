"""Lockouts per (account, client address) on a real server (uvicorn on loopback behind a
trusted proxy, the client addresses its ``X-Forwarded-For`` names), unlocked by the real
CLI in a process of its own; and failures counted at the same moment from many addresses,
each counted once (the rows are locked as they are counted), on both databases."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from baton.auth import throttle as th
from tests.conftest import Harness
from tests.integration.test_hung_database_loop import Server

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery"
WRONG = "wrong-password"
STRANGER = "203.0.113.66"
HOME = "198.51.100.1"


@pytest.fixture
def served(harness: Harness) -> Iterator[Server]:
    harness.setenv(BATON_TRUSTED_PROXIES="127.0.0.1")  # the test client is the "proxy"
    s = Server(harness)
    yield s
    s.close()


def log_in(server: Server, address: str, name: str, password: str) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=60, follow_redirects=False,
                      headers={"X-Forwarded-For": address}) as c:
        form = c.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
        assert form.status_code == 200 and token, form.text
        return c.post("/login", data={"username": name, "password": password,
                                      "csrf_token": token.group(1)})


def events(harness: Harness, type_: str) -> list[dict[str, Any]]:
    with harness.engine.store.read() as tx:
        return tx.events_txn(types=[type_])


def cli(harness: Harness, *args: str) -> Any:
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_DB", "BATON_FAULT")}
    env["BATON_DB"] = harness.db_url
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    p = subprocess.run([sys.executable, "-m", "baton.cli.main", *args], cwd=harness.tmp, env=env,
                       capture_output=True, text=True, timeout=180, check=False)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_a_stranger_locks_out_only_their_own_address_and_the_cli_unlocks_it(
        harness: Harness, served: Server) -> None:
    harness.engine.directory.add_user("ann", roles=["agent"], password=PASSWORD)
    for _ in range(th.PAIR_LIMIT):
        assert log_in(served, STRANGER, "ann", WRONG).status_code == 401
    r = log_in(served, STRANGER, "ann", PASSWORD)
    assert r.status_code == 429 and r.headers["retry-after"] == "60", r.text
    assert "this account from your address" in r.text
    r = log_in(served, HOME, "ann", PASSWORD)  # ann, at her own address, gets in
    assert r.status_code == 303 and "baton_session=" in r.headers["set-cookie"], r.text
    # counted against the address the proxy named, not the proxy's
    locked = events(harness, "login_locked")
    assert [(e["data"]["kind"], e["data"]["name"], e["data"]["address"]) for e in locked] == [
        ("pair", "ann", STRANGER)]
    assert harness.engine.directory.throttle.locked(account="ann", address="127.0.0.1") is None

    # (the CLI's clock is the real one, the server's a test's: whether it calls the lockout
    # still in force is its clock's business; that the pair is open again is the server's)
    unlocked = cli(harness, "users", "unlock", "ann", "--json")
    assert (unlocked["kind"], unlocked["target"]) == ("account", "ann")
    assert log_in(served, STRANGER, "ann", PASSWORD).status_code == 303
    assert [(e["actor"], e["data"]["name"]) for e in events(harness, "login_unlocked")] == [
        ("cli", "ann")]


def test_failures_at_the_same_moment_from_many_addresses_are_each_counted_once(
        harness: Harness) -> None:
    throttle = harness.engine.directory.throttle
    addresses = [f"10.6.0.{i + 1}" for i in range(th.ACCOUNT_LIMIT // th.PAIR_LIMIT)]

    def attack(address: str) -> list[str | None]:
        return [lock.kind if (lock := throttle.failed(account="ann", address=address)) else None
                for _ in range(th.PAIR_LIMIT)]

    with ThreadPoolExecutor(len(addresses)) as pool:
        caused = list(pool.map(attack, addresses))
    # each address's last failure locked its pair; exactly one of them, the 50th failure of
    # the account, locked the account too (and reports that one: as long, and wider)
    assert all(kinds[:-1] == [None] * (th.PAIR_LIMIT - 1) for kinds in caused), caused
    assert sorted(str(kinds[-1]) for kinds in caused) == ["account"] + ["pair"] * (
        len(addresses) - 1), caused
    locked = events(harness, "login_locked")
    assert sorted(e["data"]["address"] for e in locked if e["data"]["kind"] == "pair") == sorted(
        addresses)
    assert [e["data"]["failures"] for e in locked if e["data"]["kind"] == "account"] == [
        th.ACCOUNT_LIMIT]
    lock = throttle.locked(account="ann", address=HOME)  # a new address: the account's lock
    assert lock is not None and lock.kind == "account"
    with harness.engine.store.read() as tx:
        (row,) = tx.throttle_rows_txn([("account", "ann")])
    assert (row["failures"], row["lockouts"]) == (0, 1)
