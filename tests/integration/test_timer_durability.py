"""Durable timers survive SIGKILL: a worker killed while firing timers, restarted after
their due time, fires each timer exactly once.

Real ``baton worker --until-idle`` processes (``BATON_FAULT`` kills them at a named point)
on one SQLite file. A virtual clock cannot cross processes, so the workers run on the
wall clock shifted by ``BATON_CLOCK_OFFSET`` (seconds): the runs are started at real
"now" with pause timers due in 1 h and SLA timers at 30 min / 1 h, then the workers live
2 h ahead — the restarts span the due time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from baton.runtime.engine import Engine
from baton.store import schema as s

REPO = Path(__file__).resolve().parents[2]
N_RUNS = 40

DEFS = """
kind: object
name: Ticket
fields:
  subject: {type: string, required: true}
---
kind: orchestration
name: t_timer_crash
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: wait
    steps:
      - name: cool_off
        type: pause
        for: 1h
        sla: {duration: 1h, jeopardy: 30m}
      - {name: after_pause, type: background, flow: t_timer.done, after: [cool_off]}
"""

FLOWS = """
from baton import flow


@flow("t_timer.done")
def done(ctx):
    return {"ok": True}
"""


def _baton(project: Path, db_url: str, *args: str, fault: str | None,
           offset: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_FAULT", "BATON_DB")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env["BATON_CLOCK_OFFSET"] = str(offset)
    if fault:
        env["BATON_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "baton.cli.main", "--project", str(project), "--db", db_url, *args],
        env=env, capture_output=True, text=True, timeout=120, cwd=project, check=False)


def test_timers_fire_exactly_once_across_sigkill_and_restart(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "definitions").mkdir(parents=True)
    (project / "definitions" / "defs.yaml").write_text(textwrap.dedent(DEFS))
    (project / "timer_flows.py").write_text(FLOWS)
    (project / "baton.toml").write_text('flows = ["timer_flows"]\n')
    db_url = f"sqlite:///{tmp_path / 'baton.db'}"
    deployed = _baton(project, db_url, "deploy", fault=None, offset=0)
    assert deployed.returncode == 0, deployed.stderr
    engine = Engine(db_url)
    try:
        engine.create_records("Ticket", [{"subject": f"t{i}"} for i in range(N_RUNS)])
        # Before the due time: a worker finds nothing due and leaves every timer alone.
        early = _baton(project, db_url, "worker", "--until-idle", fault=None, offset=0)
        assert early.returncode == 0, early.stderr
        with engine.store.read() as tx:
            kinds = Counter(r.kind for r in tx.conn.execute(select(s.jobs)))
        assert kinds == {"timer": 3 * N_RUNS}
        # After the due time: workers die at every point, again and again, until all is done.
        lives = []
        for life in range(60):
            if not _open_runs(engine):
                break
            point = ("after_claim", "after_commit")[life % 2]
            proc = _baton(project, db_url, "worker", "--until-idle", "--batch", "4",
                          fault=f"{point}@{1 + life % 3}", offset=7200)
            lives.append((point, proc.returncode))
            assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
        assert not _open_runs(engine), lives
        assert any(rc == -signal.SIGKILL for _, rc in lives)
        with engine.store.read() as tx:
            assert list(tx.conn.execute(select(s.jobs))) == []  # every timer fired, none left
            for run in engine.list_runs(limit=1000):
                types = Counter(e["type"] for e in tx.events_txn(run_id=run.id))
                assert types["sla_in_jeopardy"] == 1, (run.id, types)
                done = Counter(e["data"]["step"] for e in tx.events_txn(
                    run_id=run.id, types=["step_completed"]))
                assert done == {"cool_off": 1, "after_pause": 1}, (run.id, done)
                # overdue fires at the same instant as the pause ends: once, or not at all
                assert types["sla_overdue"] <= 1, (run.id, types)
    finally:
        engine.close()


def _open_runs(engine: Engine) -> int:
    return len(engine.list_runs(status="in_progress", limit=10_000))
