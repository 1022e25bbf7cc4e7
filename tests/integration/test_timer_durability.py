"""Durable timers survive SIGKILL: a worker killed while firing timers, restarted after
their due time, fires each timer exactly once.

Real ``baton worker --until-idle`` processes (``BATON_FAULT`` kills them at a named point)
on one SQLite file. A virtual clock cannot cross processes, so the workers run on the
wall clock shifted by ``BATON_CLOCK_OFFSET`` (seconds): the runs are started at real
"now" with pause timers due in 1 h and SLA timers at 30 min (jeopardy) / 45 min (overdue),
then the workers live 2 h ahead — the restarts span the due time. The SLA falls due before
the pause ends, so its outcome is pinned: every run goes in jeopardy once, then overdue once,
then its pause ends. Workers die at each of the three points several times.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from baton.runtime.engine import Engine
from baton.store import schema as s

REPO = Path(__file__).resolve().parents[2]
N_RUNS = 40
POINTS = ("after_claim", "after_flow", "after_commit")
MIN_KILLS = 3  # per point

# A long durability test: CI runs it; ./scripts/test locally leaves it out (README).
pytestmark = pytest.mark.slow

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
        sla: {duration: 45m, jeopardy: 15m}
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
            # SLA instants are kept on the run (its next one in sla_at), not as timer jobs.
            sla_due = [r.sla_at for r in tx.conn.execute(select(s.runs.c.sla_at))]
        assert kinds == {"timer": N_RUNS}
        assert len(sla_due) == N_RUNS and all(sla_due), sla_due
        # After the due time: workers die at every point, again and again, until all is done.
        lives = []
        for life in range(120):
            if not _open_runs(engine):
                break
            point = POINTS[life % len(POINTS)]
            proc = _baton(project, db_url, "worker", "--until-idle", "--batch", "4",
                          fault=f"{point}@{1 + life // len(POINTS) % 3}", offset=7200)
            lives.append((point, proc.returncode))
            assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
        assert not _open_runs(engine), lives
        kills = Counter(point for point, rc in lives if rc == -signal.SIGKILL)
        assert all(kills[p] >= MIN_KILLS for p in POINTS), (kills, lives)
        with engine.store.read() as tx:
            assert list(tx.conn.execute(select(s.jobs))) == []  # every timer fired, none left
            assert [r.sla_at for r in tx.conn.execute(select(s.runs.c.sla_at))] == [None] * N_RUNS
            runs = engine.list_runs(limit=1000)
            assert len(runs) == N_RUNS
            for run in runs:
                # each SLA instant fired once, in order, while the pause still held the step
                timeline = [(e["type"], e["data"].get("step")) for e in tx.events_txn(
                    run_id=run.id, types=["sla_in_jeopardy", "sla_overdue", "step_completed"])]
                assert timeline == [("sla_in_jeopardy", "cool_off"), ("sla_overdue", "cool_off"),
                                    ("step_completed", "cool_off"),
                                    ("step_completed", "after_pause")], (run.id, timeline)
                assert run.steps["cool_off"].sla["status"] == "overdue", run.steps["cool_off"]
    finally:
        engine.close()


def _open_runs(engine: Engine) -> int:
    return len(engine.list_runs(status="in_progress", limit=10_000))
