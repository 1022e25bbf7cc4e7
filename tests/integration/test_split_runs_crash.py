"""A large plan (its run stored split, state format 4) survives workers SIGKILLed at each of
the worker's named fault points (issue 13 item 9).

An order of 200 lines is planned (a run of ~300 steps: its steps in ``baton_run_steps``)
and run by real ``baton worker --until-idle`` processes that kill themselves with
``BATON_FAULT=<point>@N`` after a claim, after a flow and after a commit, in turn, then a
worker finishes. After every life the run row, its step rows and the audit log agree: a
step is completed in the rows exactly when its ``step_completed`` event (a milestone's
``milestone_reached``) was committed: the run row, the step rows and the events of one
commit are all there or none is. At the end every step completed exactly once and no job
is left. (Real processes, a few seconds each on a busy machine: ~60 s, slow.)
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from baton.cli.demo_carrier import DemoCarrier
from baton.engine.state import SPLIT_STEPS, Run
from baton.engine.status import RunStatus, StepStatus
from baton.runtime.engine import Engine
from baton.store import schema as s
from tests.integration.plan_workers import plan_project, run_baton

LIVES = ("after_claim@3", "after_flow@25", "after_commit@2", "after_flow@60",
         "after_commit@4", "after_claim@9")
MAX_LIVES = 16

pytestmark = pytest.mark.slow


def _agree(engine: Engine, run_id: str, *, split: bool = True) -> Run:
    """The run as stored, checked against its step rows and its audit log (``split``: as
    a worker writes it; a new run is one document until its first write)."""
    with engine.store.read() as tx:
        head = tx.conn.execute(select(s.runs.c.state).where(s.runs.c.id == run_id)).scalar_one()
        rows = tx.conn.execute(select(func.count()).select_from(s.run_steps)
                               .where(s.run_steps.c.run_id == run_id)).scalar_one()
        run = Run.from_json(tx.get_run_txn(run_id)["state"])  # type: ignore[index]
        events = Counter(e["data"]["step"] for e in
                         tx.events_txn(run_id=run_id, types=["step_completed", "milestone_reached"]))
    if split:
        assert head["format"] == 4 and "steps" not in head
        assert rows == len(run.steps)
    else:
        assert head["format"] == 3 and rows == 0
    done = {n for n, sr in run.steps.items() if sr.status is StepStatus.COMPLETED}
    assert done == set(events), (sorted(done ^ set(events))[:5])
    assert all(n == 1 for n in events.values()), events.most_common(3)
    return run


def test_killed_workers_run_a_split_plan_once(tmp_path: Path) -> None:
    carrier = DemoCarrier(busy_first=False).start()
    project, db_url = plan_project(tmp_path, carrier)
    engine = Engine(db_url)
    try:
        lines = [{"product": "LAPTOP-PRO" if i % 2 else "DOCK",
                  "attributes": {"color": "grey"} if i % 2 else {}} for i in range(200)]
        order = engine.create_record("Order", {"number": "O-BIG", "status": "Submitted"},
                                     children={"OrderLine": lines})["id"]
        run_id = engine.plans.show(order)["run_id"]
        run = _agree(engine, run_id, split=False)
        assert len(run.steps) > 4 * SPLIT_STEPS  # ~300 steps: split at its first write
        kills: Counter[str] = Counter()
        for life in range(MAX_LIVES):
            if engine.get_run(run_id).status is not RunStatus.IN_PROGRESS:
                break
            fault = LIVES[life] if life < len(LIVES) else None
            proc = run_baton(project, db_url, "worker", "--until-idle", "--batch", "16",
                             fault=fault, carrier=carrier)
            assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
            assert "Traceback" not in proc.stderr, proc.stderr
            if proc.returncode == -signal.SIGKILL and fault:
                kills[fault.partition("@")[0]] += 1
            _agree(engine, run_id)
        else:
            raise AssertionError(f"plan not done in {MAX_LIVES} worker lives: {kills}")
        assert set(kills) == {"after_claim", "after_flow", "after_commit"}, kills
        run = _agree(engine, run_id)
        assert run.status is RunStatus.COMPLETED, run.error
        assert all(sr.status is StepStatus.COMPLETED for sr in run.steps.values())
        with engine.store.read() as tx:
            assert tx.conn.execute(select(func.count()).select_from(s.jobs)).scalar_one() == 0
    finally:
        engine.close()
        carrier.stop()
