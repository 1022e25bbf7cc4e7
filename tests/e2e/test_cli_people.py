"""``baton users``, ``baton tokens`` and ``baton serve`` end to end, as subprocesses."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.test_cli import EXAMPLES, _env, baton, ok
from tests.net import free_port


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """case_triage deployed (its baton.toml's SQLite database in the folder), once: each
    test works on a copy of the folder, database included (:func:`proj`)."""
    proj = tmp_path_factory.mktemp("people") / "proj"
    shutil.copytree(EXAMPLES / "case_triage", proj, ignore=shutil.ignore_patterns("*.db*"))
    ok(baton("deploy", cwd=proj))
    return proj


@pytest.fixture
def proj(deployed: Path, tmp_path: Path) -> Path:
    """A copy of ``deployed`` of this test's own, as ``baton deploy`` left it (no process
    has its database open: the copy is whole)."""
    proj = tmp_path / "proj"
    shutil.copytree(deployed, proj, ignore=shutil.ignore_patterns("*.db-shm"))
    return proj


def _run_stdin(args: list[str], cwd: Path, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "baton.cli.main", *args], check=False, cwd=cwd, env=_env("400"),
                          input=stdin, capture_output=True, text=True, timeout=120)


def test_users_and_tokens(proj: Path) -> None:
    p = _run_stdin(["users", "add", "alice", "--role", "agent", "--queue", "tier1", "--queue", "tier2",
                    "--email", "alice@example.com", "--password-stdin"], proj, "correct horse\n")
    ok(p)
    assert "added user alice: roles agent; queues tier1, tier2; e-mail alice@example.com" in p.stdout
    bad = baton("users", "add", "bob", "--role", "boss", cwd=proj)
    assert bad.returncode == 1 and "unknown role(s) 'boss'" in bad.stderr
    dup = baton("users", "add", "alice", "--role", "agent", cwd=proj)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    ok(baton("users", "update", "alice", "--role", "agent", "--role", "operator", cwd=proj))
    users = json.loads(ok(baton("users", "list", "--json", cwd=proj)).stdout)
    assert users == [{"name": "alice", "display_name": "alice", "email": "alice@example.com",
                      "roles": ["agent", "operator"], "groups": [], "queues": ["tier1", "tier2"],
                      "active": True, "delegate": None, "delegate_from": None,
                      "delegate_until": None, "acting_for": []}]
    # a delegate for alice's approvals, between two dates; refused: herself, a bad date
    ok(baton("users", "add", "bob", "--role", "agent", cwd=proj))
    done = ok(baton("users", "update", "alice", "--delegate", "bob", "--from", "2026-12-01",
                    "--until", "2026-12-24", cwd=proj))
    assert "delegate bob (from 2026-12-01 to 2026-12-24)" in done.stdout
    self_ = baton("users", "update", "alice", "--delegate", "alice", cwd=proj)
    assert self_.returncode == 1 and "cannot be their own delegate" in self_.stderr
    late = baton("users", "update", "alice", "--until", "2026-12-32", cwd=proj)
    assert late.returncode == 1 and "not a date" in late.stderr
    both = baton("users", "update", "alice", "--no-delegate", "--until", "2026-12-31", cwd=proj)
    assert both.returncode != 0 and "--no-delegate" in both.stderr
    listed_users = ok(baton("users", "list", cwd=proj)).stdout
    assert "bob (from 2026-12-01 to" in listed_users
    ok(baton("users", "update", "alice", "--no-delegate", cwd=proj))
    assert json.loads(ok(baton("users", "list", "--json", cwd=proj)).stdout)[0]["delegate"] is None
    made = json.loads(ok(baton("tokens", "create", "alice", "--label", "laptop", "--json", cwd=proj)).stdout)
    assert made["token"].startswith("baton_") and made["user"] == "alice"
    listed = json.loads(ok(baton("tokens", "list", "--json", cwd=proj)).stdout)
    assert [t["id"] for t in listed] == [made["id"]] and "token" not in listed[0]
    assert made["token"] not in (proj / "baton.db").read_bytes().decode("latin-1")  # stored hashed
    ok(baton("tokens", "revoke", made["id"], cwd=proj))
    missing = baton("tokens", "create", "ghost", cwd=proj)
    assert missing.returncode == 1 and "user 'ghost' not found" in missing.stderr


def test_users_and_tokens_go_to_the_database_named_with_db(tmp_path: Path) -> None:
    """Found by the chaos test: run as ``python -m baton.cli.main --db URL``, ``users add``
    and ``tokens create`` wrote to baton.toml's database, not URL (people.py read a second
    copy of the CLI's state that never saw --db), so a server on URL had no users."""
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "case_triage", proj, ignore=shutil.ignore_patterns("*.db*"))
    url = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    ok(baton("--db", url, "users", "add", "alice", "--role", "agent", "--queue", "tier1", cwd=proj))
    made = json.loads(ok(baton("--db", url, "tokens", "create", "alice", "--json", cwd=proj)).stdout)
    assert not (proj / "baton.db").exists()  # baton.toml's database was never touched
    from baton.runtime.engine import Engine

    engine = Engine(url, migrate=False)
    try:
        assert [u.name for u in engine.directory.list_users()] == ["alice"]
        assert [t.id for t in engine.directory.list_tokens("alice")] == [made["id"]]
    finally:
        engine.close()


def test_serve_answers_and_says_how_to_create_the_admin(proj: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "baton.cli.main", "serve", "--port", str(port)],
                            cwd=proj, env=_env("400"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        spec = None
        while time.monotonic() < deadline and spec is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=5) as r:
                    spec = json.load(r)
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                time.sleep(0.2)
        assert spec is not None and spec["info"]["title"] == "Baton"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/me", timeout=5)
            raise AssertionError("expected 401")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
            assert exc.headers["content-type"] == "application/problem+json"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert "No users yet" in out and "baton users add admin --role admin" in out
    assert proc.returncode == 0, out


def test_work_claim_checks_the_user_like_the_api_once_there_are_users(proj: Path) -> None:
    """Hardening #7: `work claim --user ann` claimed a queue item for a user who did not
    exist. With people in the directory, --user must be one of them and a member."""
    ok(baton("records", "create", "Case", "--data", '{"subject": "invoice 1", "number": 1}',
             cwd=proj))
    ok(baton("worker", "--until-idle", cwd=proj))
    (item,) = json.loads(ok(baton("work", "list", "--queue", "tier1", "--json", cwd=proj)).stdout)
    ok(baton("users", "add", "alice", "--role", "agent", "--queue", "tier1", cwd=proj))
    ok(baton("users", "add", "bob", "--role", "agent", "--queue", "tier2", cwd=proj))
    ghost = baton("work", "claim", item["id"], "--user", "ann", cwd=proj)
    assert ghost.returncode == 1 and "no user 'ann'" in ghost.stderr
    outsider = baton("work", "claim", item["id"], "--user", "bob", cwd=proj)
    assert outsider.returncode == 1 and "not a member" in outsider.stderr
    ok(baton("work", "claim", item["id"], "--user", "alice", cwd=proj))
    shown = json.loads(ok(baton("work", "show", item["id"], "--json", cwd=proj)).stdout)
    assert shown["claimed_by"] == "alice"


def test_users_unlock_lifts_a_login_lockout(proj: Path) -> None:
    from baton.runtime.engine import Engine

    ok(_run_stdin(["users", "add", "alice", "--role", "agent", "--password-stdin"], proj,
                  "correct horse\n"))
    engine = Engine(f"sqlite:///{proj / 'baton.db'}")  # the web login's bookkeeping, as it does
    try:
        for _ in range(5):
            engine.directory.throttle.failed(account="alice", address="203.0.113.5")
        throttle = engine.directory.throttle  # (locked out of the account from that address)
        assert throttle.locked(account="alice", address="203.0.113.5") is not None
        p = ok(baton("users", "unlock", "alice", cwd=proj))
        assert "account alice unlocked (it was locked until " in p.stdout
        assert throttle.locked(account="alice", address="203.0.113.5") is None
        assert "(it was not locked)" in ok(baton("users", "unlock", "--address", "203.0.113.5",
                                                 cwd=proj)).stdout
        neither = baton("users", "unlock", cwd=proj)
        assert neither.returncode != 0 and "give a user NAME or --address" in neither.stderr
        with engine.store.read() as tx:
            audit = tx.events_txn(types=["login_locked", "login_unlocked"])
        assert [(e["type"], e["actor"], e["data"]["name"]) for e in audit] == [
            ("login_locked", "203.0.113.5", "alice"), ("login_unlocked", "cli", "alice"),
            ("login_unlocked", "cli", "203.0.113.5")]
    finally:
        engine.close()
