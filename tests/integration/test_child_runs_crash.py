"""Child runs survive workers SIGKILLed anywhere (DESIGN §3), on both databases.

Real ``baton worker --until-idle`` processes with ``BATON_FAULT=<point>@<k>`` run a parent
whose step starts one child run per element; the k-th time a worker reaches
``after_claim`` / ``after_flow`` / ``after_commit`` it kills itself. Among those deaths are
workers killed after committing a child's completion and before its parent heard of it
(the parent's ``child`` job is then waiting): the test checks that this window was hit.
When the parent has completed, every child must have completed exactly once, the parent
must have counted each child's end exactly once, and no job may be left behind.

The worker lives are forked from one Python that imported Baton once (``BatonForks``, as in
test_crash_durability): each is its own ``baton worker`` process, killed by its own fault
point, without a fresh interpreter's ~0.5 s of imports. The deploy and the last worker are
fresh processes.
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
from sqlalchemy import func, select

from baton.engine.status import RunStatus
from baton.runtime.engine import Engine
from baton.store import schema as s
from tests.integration.test_crash_durability import BatonForks

REPO = Path(__file__).resolve().parents[2]
N = 12
POINTS = ("after_commit", "after_claim", "after_flow")
MAX_LIVES = 120

# A long durability test: CI runs it; ./scripts/test locally leaves it out (README).
pytestmark = pytest.mark.slow

FLOWS = '''
from baton import flow


@flow("crash_child.work")
def work(ctx):
    ctx.vars["result"] = ctx.input["n"] * 10
    return {"n": ctx.input["n"]}


@flow("crash_child.sum")
def total(ctx):
    children = ctx.steps["per_item"].output["children"]
    ctx.vars["total"] = sum(c["vars"]["result"] for c in children)
    return {"total": ctx.vars["total"]}
'''

DEFS = f'''
kind: orchestration
name: crash_child
trigger:
  type: autolaunched
  input: {{n: {{type: int, required: true}}}}
variables: {{result: 0}}
stages:
  - name: work
    steps:
      - {{name: work, type: background, flow: crash_child.work}}
---
kind: orchestration
name: crash_parent
trigger: {{type: autolaunched}}
variables: {{total: 0}}
stages:
  - name: split
    steps:
      - {{name: per_item, type: orchestration, orchestration: crash_child,
         for_each: '=[{", ".join(str(i) for i in range(N))}]', input: {{n: '=item'}}}}
      - {{name: sum, type: background, flow: crash_child.sum, after: [per_item]}}
'''


def _baton(project: Path, db_url: str, *args: str, fault: str | None = None
           ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_FAULT", "BATON_DB")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    if fault is not None:
        env["BATON_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "baton.cli.main", "--project", str(project), "--db", db_url, *args],
        env=env, capture_output=True, text=True, timeout=120, cwd=project, check=False)


def _jobs(engine: Engine, kind: str | None = None) -> int:
    with engine.store.read() as tx:
        q = select(func.count()).select_from(s.jobs)
        if kind is not None:
            q = q.where(s.jobs.c.kind == kind)
        return int(tx.conn.execute(q).scalar_one())


def test_killed_workers_lose_no_child_and_count_none_twice(tmp_path: Path, db_url: str) -> None:
    project = tmp_path / "proj"
    (project / "definitions").mkdir(parents=True)
    (project / "baton.toml").write_text('flows = ["flows"]\n')
    (project / "flows.py").write_text(FLOWS)
    (project / "definitions" / "defs.yaml").write_text(textwrap.dedent(DEFS))
    deployed = _baton(project, db_url, "deploy")
    assert deployed.returncode == 0, deployed.stderr

    engine = Engine(db_url)
    forks = BatonForks(project, db_url, tmp_path / "lives")
    try:
        parent = engine.start("crash_parent", {}, actor="test")
        kills: Counter[str] = Counter()
        child_pending_at_death = 0
        for life in range(MAX_LIVES):
            if engine.get_run(parent.id).status is not RunStatus.IN_PROGRESS:
                break
            point = POINTS[life % len(POINTS)]
            k = 1 + (life // len(POINTS)) % 3
            proc = forks.run("worker", "--until-idle", "--batch", "2", fault=f"{point}@{k}")
            assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
            assert "Traceback" not in proc.stderr, proc.stderr
            if proc.returncode == -signal.SIGKILL:
                kills[point] += 1
                child_pending_at_death += _jobs(engine, "child") > 0
        else:
            raise AssertionError(f"not done in {MAX_LIVES} worker lives: {kills}")
        assert all(kills[p] >= 2 for p in POINTS), kills
        # Killed between a child's committed end and its parent hearing of it, at least once.
        assert child_pending_at_death >= 1, kills

        last = _baton(project, db_url, "worker", "--until-idle")
        assert last.returncode == 0, last.stderr

        run = engine.get_run(parent.id)
        assert run.status is RunStatus.COMPLETED, run.error
        out = run.steps["per_item"].output
        assert out is not None and out["count"] == N
        assert [c["vars"]["result"] for c in out["children"]] == [i * 10 for i in range(N)]
        assert run.vars["total"] == sum(i * 10 for i in range(N))

        with engine.store.read() as tx:
            children = tx.child_runs_txn(parent.id, 1000)
            assert len(children) == N  # each child started once
            events = tx.events_txn(run_id=parent.id)
            for c in children:
                assert c["status"] == "completed"
                done = [e for e in tx.events_txn(run_id=c["id"], types=["step_completed"])]
                assert len(done) == 1, (c["id"], done)
        counted = Counter(e["data"]["index"] for e in events if e["type"] == "child_run_finished")
        assert counted == Counter(range(N)), counted  # each end counted exactly once
        started = [e for e in events if e["type"] == "step_started"
                   and e["data"]["step"] == "per_item"]
        assert len(started) == 1
        assert _jobs(engine) == 0
    finally:
        forks.close()
        engine.close()
