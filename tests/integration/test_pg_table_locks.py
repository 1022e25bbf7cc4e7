"""No step takes a table-level lock (issue 19, target 6): on PostgreSQL, two `baton worker`
processes and a driver run a few dozen case-triage runs while every statement each process
sends is recorded (bench/sqltrace.py wraps psycopg in that process) and pg_locks is sampled.
No statement may be LOCK TABLE or DDL, and no backend may hold or wait for a relation lock
stronger than RowExclusiveLock (what INSERT/UPDATE/DELETE take; SELECT ... FOR UPDATE takes
RowShareLock). Not timed: bench/pg_scale.py measures."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baton.project import Project
from baton.runtime.engine import Engine
from bench import sqltrace
from bench.pg_scale import Sampler

from ..conftest import EXAMPLES, REPO
from ..procs import triage_open_items

RUNS = 40
WORKERS = 2
DEADLINE_S = 180

# A `baton worker` process with its statements recorded, written out when it exits.
TRACED_WORKER = """
import atexit, sys
sys.path.insert(0, sys.argv.pop(1))
from bench import sqltrace
sqltrace.install()
atexit.register(sqltrace.dump, sys.argv.pop(1))
from baton.cli.main import app
app(prog_name="baton")
"""


@pytest.mark.parametrize("statement", [
    "LOCK TABLE baton_jobs IN EXCLUSIVE MODE", "  lock baton_runs", "ALTER TABLE baton_runs ADD x int",
    "CREATE INDEX ix ON baton_runs (id)", "TRUNCATE baton_jobs", "DROP TABLE baton_jobs",
    "VACUUM baton_jobs", "REINDEX TABLE baton_jobs"])
def test_a_table_lock_statement_is_recognised(statement: str) -> None:
    assert sqltrace.table_locks([sqltrace.normalize(statement)])


def test_row_level_statements_are_not_table_locks() -> None:
    assert sqltrace.table_locks([
        "SELECT id FROM baton_jobs WHERE status = ? FOR UPDATE SKIP LOCKED",
        "UPDATE baton_runs SET seq = ? WHERE id = ? AND seq = ?", "NOTIFY baton_jobs",
        "INSERT INTO baton_events (at) VALUES (?)", "DELETE FROM baton_jobs WHERE id = ?",
        "SELECT pg_advisory_xact_lock(1)"]) == []


_DROPPER = re.compile(r"DROP DATABASE IF EXISTS baton_t_\w+ WITH \(FORCE\)$")


def _drive(engine: Engine) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        items = triage_open_items(engine)
        with engine.store.read() as tx:
            if tx.count_in_progress_runs_txn() == 0 and not items:
                return
        if not items:
            time.sleep(0.05)
    pytest.fail(f"runs did not finish within {DEADLINE_S} s")


def test_no_worker_or_driver_statement_takes_a_table_lock(tmp_path: Path, pg_url: str) -> None:
    proj = EXAMPLES / "case_triage"
    Project(proj, "", ("flows",)).import_flows()
    engine = Engine(pg_url)
    engine.deploy([proj / "definitions"])
    dumps = [tmp_path / f"worker-{i}.json" for i in range(WORKERS)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    procs = [subprocess.Popen(
        [sys.executable, "-c", TRACED_WORKER, str(REPO), str(out), "--project", str(proj),
         "--db", pg_url, "worker", "--no-migrate"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"worker-{i}.err", "wb"))  # noqa: SIM115 - the child holds it
        for i, out in enumerate(dumps)]
    roles = {p.pid: "worker" for p in procs}
    sqltrace.install()
    sqltrace.TRACE.reset()
    sampler = Sampler(pg_url, 0.02, roles)
    try:
        sampler.start()
        engine.create_records("Case", [
            {"subject": f"invoice question {i}" if i % 2 else f"login broken {i}", "number": i,
             "level": 1} for i in range(1, RUNS + 1)], actor="test")
        _drive(engine)
        driver = sqltrace.TRACE.snapshot()
    finally:
        sqltrace.uninstall()
        seen = sampler.stop()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(timeout=60)
    for i, p in enumerate(procs):
        assert p.returncode == 0, (tmp_path / f"worker-{i}.err").read_text()[-2000:]
    runs = engine.list_runs(limit=RUNS + 10)
    engine.close()
    assert len(runs) == RUNS and {r.status.value for r in runs} == {"completed"}
    workers = [json.loads(d.read_text()) for d in dumps]
    # The recording saw the workers' work (a claim each, the steps' writes), not nothing.
    for w in workers:
        sqls = [s["sql"] for s in w["statements"]]
        assert any("FOR UPDATE SKIP LOCKED" in q for q in sqls), sqls[:5]
    assert any(q["sql"].startswith("UPDATE baton_runs") for w in workers for q in w["statements"])
    assert driver["executes"] > 0
    for who, trace in [("driver", driver)] + [(f"worker {i}", w) for i, w in enumerate(workers)]:
        # (The tests' own database dropper, a thread of this process, may drop earlier
        # tests' databases meanwhile: psycopg is traced process-wide, those are not Baton's.)
        locks = [q for q in trace["table_locks"] if not _DROPPER.match(q)]
        assert locks == [], f"{who} sent {locks}"
        assert sqltrace.table_locks(s["sql"] for s in trace["statements"]
                                    if not _DROPPER.match(s["sql"])) == []
    assert seen["samples"] > 10
    assert seen["strong_lock_samples"] == {}, seen["strong_lock_samples"]
