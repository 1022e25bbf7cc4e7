"""A plan's compensation survives workers SIGKILLed in the middle of it (issue 13 item 6).

An order with three laptops and a broadband line is planned and run up to its manual installation steps, then
canceled before the point of no return: a compensation run rolls back six completed
steps. Real ``baton worker --until-idle`` processes with ``BATON_FAULT=<point>@1`` kill
themselves after a flow, after a commit and after a claim, one each, then a worker
finishes: each rollback step completed exactly once, in reverse dependency order, and no
job is left. (Six worker processes, a few seconds each on a busy machine: > 10 s, as a
SIGKILL needs real processes.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from baton.engine.status import RunStatus
from baton.runtime.engine import Engine
from baton.store import schema as s

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "order_fulfillment" / "definitions"
POINTS = ("after_flow", "after_commit", "after_claim")
MAX_LIVES = 12

# A long durability test: CI runs it; ./scripts/test locally leaves it out (README).
pytestmark = pytest.mark.slow

FLOWS = '''
from baton import flow

for _n in ("credit_check", "reserve", "release", "ship", "recall", "provision", "bill",
           "activate", "deactivate"):
    flow(f"orders.{_n}")(lambda ctx, _n=_n: {"done": _n})
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


def _jobs(engine: Engine) -> int:
    with engine.store.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(s.jobs)).scalar_one())


def test_killed_workers_finish_the_compensation_once(tmp_path: Path) -> None:
    # SQLite only: the default backend; a SIGKILL needs real worker processes, which cost
    # seconds each on a loaded machine (the child-run and callout crash tests cover both).
    db_url = f"sqlite:///{tmp_path / 'baton.db'}"
    project = tmp_path / "proj"
    shutil.copytree(EXAMPLE, project / "definitions")
    (project / "baton.toml").write_text('flows = ["flows"]\n')
    (project / "flows.py").write_text(FLOWS)
    assert _baton(project, db_url, "deploy").returncode == 0
    engine = Engine(db_url)
    try:
        laptops = [{"product": "LAPTOP-PRO", "attributes": {"color": c}}
                   for c in ("red", "blue", "grey")]
        # broadband waits for a manual installation, so billing (the PONR) is not reached
        laptops.append({"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}})
        order = engine.create_record("Order", {"number": "O-9", "status": "Submitted"},
                                     children={"OrderLine": laptops})["id"]
        done = _baton(project, db_url, "worker", "--until-idle")
        assert done.returncode == 0, done.stderr
        out = engine.plans.cancel(order, "customer canceled", "test")
        assert len(out["rollbacks"]) == 6
        comp_id = out["compensation_run_id"]
        kills: Counter[str] = Counter()
        for life in range(MAX_LIVES):
            if engine.get_run(comp_id).status is not RunStatus.IN_PROGRESS:
                break
            # a worker killed at each point in turn, then one left to finish
            point = POINTS[life] if life < len(POINTS) else None
            proc = _baton(project, db_url, "worker", "--until-idle", "--batch", "1",
                          fault=f"{point}@1" if point else None)
            assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
            assert "Traceback" not in proc.stderr, proc.stderr
            if proc.returncode == -signal.SIGKILL and point:
                kills[point] += 1
        else:
            raise AssertionError(f"compensation not done in {MAX_LIVES} worker lives: {kills}")
        assert all(kills[p] >= 1 for p in POINTS), kills
        comp = engine.get_run(comp_id)
        assert comp.status is RunStatus.COMPLETED, comp.error
        with engine.store.read() as tx:
            completed = [e["data"]["step"] for e in
                         tx.events_txn(run_id=comp_id, types=["step_completed"])]
        assert Counter(completed) == Counter(out["rollbacks"])  # each exactly once
        for line in ("L1.1", "L2.1", "L3.1"):  # ship undone before its reserve
            assert completed.index(f"rollback_ship[{line}]") < \
                completed.index(f"rollback_reserve[{line}]")
        assert engine.plans.show(order)["status"] == "canceled"
        assert _jobs(engine) == 0
    finally:
        engine.close()
