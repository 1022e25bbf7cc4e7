"""A real ``baton worker`` process that sleeps while idle still starts work promptly, on
both databases: runs started by another process's commits, and a pause timer that falls due
with no commit at all to wake the worker (it sleeps until the next job's due time).

No timing is asserted: the deadlines are generous; a worker that missed its wake-up would
still be asleep (its longest idle sleep is a few seconds) and finish late, not fail fast,
so the wake-ups themselves are checked in tests/contract/test_wakeups.py. This test checks
the whole path: idle worker, another process's commit, steps run, timers fire, SIGTERM ends
an idle worker at once (run() returns; the process exits 0).

The pause is 1 s (it was 2 s, and each round waited the extra second out): still long
enough that the worker has committed the first steps and gone idle well before the timer
falls due, so its idle sleep ends at the timer's due time with no commit to wake it; and
still well under its longest idle sleep (5 s).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from baton.runtime.engine import Engine
from baton.store.sql import SqlStore

from ..conftest import REPO

DEFS = """
kind: object
name: Ticket
fields:
  n: {type: int}
---
kind: orchestration
name: idle_wakeup
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: work
    steps:
      - {name: first, type: background, flow: t_idle.first}
      - {name: cool_off, type: pause, for: 1s, after: [first]}
      - {name: last, type: background, flow: t_idle.last, after: [cool_off]}
"""
FLOWS = '''
from baton import flow

@flow("t_idle.first")
def first(ctx):
    return {"n": ctx.record["n"]}

@flow("t_idle.last")
def last(ctx):
    return {"done": True}
'''
DEADLINE_S = 120


def _project(tmp: Path) -> Path:
    proj = tmp / "proj"
    (proj / "definitions").mkdir(parents=True)
    (proj / "definitions" / "defs.yaml").write_text(DEFS)
    (proj / "t_idle_flows.py").write_text(FLOWS)
    (proj / "baton.toml").write_text('flows = ["t_idle_flows"]\n')
    return proj


def _registered(url: str, pid: int) -> bool:
    from sqlalchemy import select

    from baton.store import schema as s

    store = SqlStore(url)
    try:
        with store.read() as tx:
            return pid in {r[0] for r in tx.conn.execute(select(s.workers.c.pid))}
    finally:
        store.close()


def _eventually(check: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    pytest.fail(f"not within {DEADLINE_S} s: {what}")


def test_an_idle_worker_process_starts_work_and_fires_timers(tmp_path: Path, db_url: str) -> None:
    proj = _project(tmp_path)
    sys.path.insert(0, str(proj))
    try:
        import t_idle_flows  # noqa: F401 - registers the flows for deploy's checks
    finally:
        sys.path.remove(str(proj))
    engine = Engine(db_url)
    engine.deploy([proj / "definitions"])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("BATON_DB", None)
    err = (tmp_path / "worker.err").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "baton.cli.main", "--project", str(proj), "--db", db_url,
         "worker", "--no-migrate"], env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        _eventually(lambda: _registered(db_url, proc.pid) or proc.poll() is not None,
                    "the worker registered")
        assert proc.poll() is None, (tmp_path / "worker.err").read_text()
        time.sleep(1.0)  # let it fall idle (asleep in its wait)
        # This process commits the records (and their runs' first jobs): for the worker,
        # another process's commits. Two rounds, the second after it has been idle again.
        for n in (1, 2):
            engine.create_records("Ticket", [{"n": n * 10 + i} for i in range(5)], actor="t")

            def done(n: int = n) -> bool:
                return sum(1 for r in engine.list_runs(limit=100)
                           if r.status.value == "completed") == 5 * n

            _eventually(done, f"round {n}: its 5 runs completed (first step, timer, last step)")
        runs = engine.list_runs(limit=100)
        assert {r.status.value for r in runs} == {"completed"} and len(runs) == 10
        with engine.store.read() as tx:
            assert tx.count_jobs_txn() == {}
        proc.send_signal(signal.SIGTERM)  # idle: it must end its wait and exit
        assert proc.wait(60) == 0, (tmp_path / "worker.err").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()
        engine.close()
