"""Running ``baton serve`` and ``baton worker`` as an operator does, as subprocesses: SIGTERM
stops ``serve`` gracefully (its workers' jobs released, the worker unregistered, exit 0);
load balancers' HEAD probes; and the mistakes an operator meets get one clear line, never
a traceback (a read-only database, a PostgreSQL server that is down, out-of-range options).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from baton.runtime.engine import Engine
from tests.api.test_db_errors import read_only
from tests.e2e.test_cli import baton, copy_example, ok, one_line_error
from tests.net import free_port
from tests.procs import BatonProcess, baton_env, eventually

SLOW_YAML = """\
kind: orchestration
name: slow_sync
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: sync
    steps:
      - {name: push, type: background, flow: slow.push}
"""

SLOW_FLOWS = """\
import time
from pathlib import Path

from baton import flow

STARTED = Path(__file__).with_name("started.txt")


@flow("slow.push")
def push(ctx):
    with STARTED.open("a") as f:
        f.write("started\\n")
    time.sleep(1.0)  # a call to another system
    return {"pushed": True}
"""

CASES = 6


def _project(tmp_path: Path) -> tuple[Path, str]:
    proj = copy_example(tmp_path)
    (proj / "definitions" / "slow.yaml").write_text(SLOW_YAML)
    (proj / "slow.py").write_text(SLOW_FLOWS)
    toml = proj / "baton.toml"
    toml.write_text(toml.read_text().replace('flows = ["flows"]', 'flows = ["flows", "slow"]'))
    db = f"sqlite:///{tmp_path / 'baton.db'}"
    ok(baton("--db", db, "deploy", cwd=proj))
    return proj, db


def _status(url: str, method: str = "GET") -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("content-type", "")


def _left_behind(db: str) -> tuple[int, int]:
    """(workers registered, jobs claimed) in the database."""
    con = sqlite3.connect(db.removeprefix("sqlite:///"))
    try:
        workers = con.execute("SELECT count(*) FROM baton_workers").fetchone()[0]
        claimed = con.execute("SELECT count(*) FROM baton_jobs WHERE claimed_by IS NOT NULL"
                              ).fetchone()[0]
        return int(workers), int(claimed)
    finally:
        con.close()


def test_sigterm_stops_serve_gracefully_releasing_its_jobs(tmp_path: Path) -> None:
    proj, db = _project(tmp_path)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    serve = BatonProcess("serve", proj, db, ["serve", "--port", str(port)], tmp_path,
                         env=baton_env(COLUMNS="400"))
    serve.start()
    try:
        def up() -> bool:
            assert serve.alive(), f"baton serve exited:\n{serve.tail()}"
            try:
                return _status(f"{base}/healthz")[0] == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False
        eventually(up, timeout=90, what=f"baton serve at {base}")

        # Load balancers probe with HEAD: the GET's status and headers, no body.
        eventually(lambda: _status(f"{base}/readyz")[0] == 200, timeout=30,
                   what="/readyz to answer 200 (a worker heartbeating)")
        for path in ("/healthz", "/readyz"):
            status, body, kind = _status(base + path, "HEAD")
            assert (status, body) == (200, b"") and kind == "application/json", (path, status)

        # Each starts a slow_sync run (and a case_triage run): seconds of work for the
        # server's worker, created at once.
        engine = Engine(db, migrate=False)
        try:
            engine.create_records("Case", [{"subject": f"slow {n}", "origin": "Web"}
                                           for n in range(CASES)])
        finally:
            engine.close()
        started = proj / "started.txt"
        eventually(lambda: started.exists(), timeout=60, what="the worker to be in a slow step")
        sent = time.monotonic()
        status = serve.stop(timeout=45, sig=signal.SIGTERM)
        took = time.monotonic() - sent
    finally:
        serve.stop(timeout=10, sig=signal.SIGKILL)
    log = serve.tail(20000)
    assert status == 0, f"exit status {status} after SIGTERM:\n{log}"
    assert took < 30, f"{took:.1f} s to stop"
    assert "Traceback" not in log, log
    assert "stopping: the workers finish the job in hand and release the rest" in log
    assert _left_behind(db) == (0, 0), log
    assert _slow_runs(db).get("completed", 0) < CASES  # it was stopped while it worked

    # The jobs it handed back are anyone's: a worker finishes every run.
    ok(baton("--db", db, "worker", "--until-idle", cwd=proj))
    assert _slow_runs(db) == {"completed": CASES}


def _slow_runs(db: str) -> dict[str, int]:
    con = sqlite3.connect(db.removeprefix("sqlite:///"))
    try:
        return dict(con.execute("SELECT status, count(*) FROM baton_runs WHERE orchestration "
                                "= 'slow_sync' GROUP BY status").fetchall())
    finally:
        con.close()


def test_a_write_to_a_read_only_database_is_one_line(tmp_path: Path) -> None:
    proj, db = _project(tmp_path)
    path = Path(db.removeprefix("sqlite:///"))
    with read_only(path):
        p = baton("--db", db, "records", "create", "Case", "--data",
                  json.dumps({"subject": "secret-subject-xyz", "origin": "Web"}), cwd=proj)
        line = one_line_error(p, f"database {path} is read-only")
        assert "secret-subject-xyz" not in line and "INSERT" not in line
        # Reading still works.
        ok(baton("--db", db, "records", "list", cwd=proj))


def test_serve_on_a_postgresql_server_that_is_down_is_one_line(tmp_path: Path) -> None:
    proj = copy_example(tmp_path)
    port = free_port()  # nothing listens there
    p = baton("--db", f"postgresql://postgres@127.0.0.1:{port}/baton", "serve", "--no-migrate",
              "--port", str(free_port()), cwd=proj, timeout=60)
    one_line_error(p, f"cannot connect to PostgreSQL at 127.0.0.1:{port}")


@pytest.mark.parametrize(("args", "says"), [
    (["serve", "--port", "99999"], "'--port': a port is between 1 and 65535, got 99999"),
    (["serve", "--port", "0"], "'--port': a port is between 1 and 65535, got 0"),
    (["serve", "--workers", "-1"], "must be at least 0, got -1"),
    (["worker", "--batch", "0"], "'--batch': must be at least 1, got 0"),
    (["worker", "--batch", "-5"], "'--batch': must be at least 1, got -5"),
    (["worker", "--concurrency", "0"], "must be at least 1, got 0"),
    (["worker", "--heartbeat-timeout", "0"], "'--heartbeat-timeout': must be more than 0, got 0"),
    (["worker", "--heartbeat-timeout", "-1.5"], "must be more than 0, got -1.5"),
    (["worker", "--metrics-port", "70000"], "'--metrics-port': a port is between 1 and 65535"),
])
def test_out_of_range_options_are_usage_errors(tmp_path: Path, args: list[str],
                                               says: str) -> None:
    proj = copy_example(tmp_path)
    p = baton(*args, cwd=proj, timeout=60)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr and says in " ".join(p.stderr.split()), p.stderr
    assert not (proj / "baton.db").exists()  # refused before anything started


def test_an_smtp_port_out_of_range_is_one_line(tmp_path: Path) -> None:
    proj = copy_example(tmp_path)
    p = baton("serve", "--port", str(free_port()), "--smtp", "127.0.0.1:99999", cwd=proj,
              timeout=60)
    one_line_error(p, "--smtp: a port is between 0 and 65535, got 99999")
