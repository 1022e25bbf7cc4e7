"""``bench/timers.py``: it runs, and it verifies that every timer fired exactly once,
failing when one fired twice or never (no time thresholds: the figures depend on the machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, select

from baton.clock import VirtualClock
from baton.rows import audit_event
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.store import schema as s
from bench.timers import NotExactlyOnce, check_exactly_once, setup

REPO = Path(__file__).resolve().parents[2]
N = 30


def test_timers_bench_runs_and_verifies(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_DB", "BATON_FAULT")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "timers.py"), "--timers", "200",
                           "--window", "2", "--lead", "1", "--json"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert (result["timers"], result["fired"], result["exactly_once"]) == (200, 200, True), result


def _fired(tmp_path: Path, *, drop_one_timer: bool = False) -> Engine:
    """N timers set up as the bench does, then fired by a worker on a virtual clock past
    their due time (optionally with one timer job deleted first: it never fires)."""
    db_url = f"sqlite:///{tmp_path / 'timers.db'}"
    clock = setup(db_url, tmp_path, N, window=1.0)
    clock.advance(timedelta(hours=2))
    engine = Engine(db_url, clock=VirtualClock(clock.now()))
    if drop_one_timer:
        with engine.store.write() as tx:
            first = tx.conn.execute(select(s.jobs.c.id).where(s.jobs.c.kind == "timer")
                                    .order_by(s.jobs.c.id).limit(1)).scalar_one()
            tx.conn.execute(delete(s.jobs).where(s.jobs.c.id == first))
    Worker(engine).run(until_idle=True)
    return engine


def test_every_timer_fired_once_passes(tmp_path: Path) -> None:
    engine = _fired(tmp_path)
    try:
        check_exactly_once(engine, N)
    finally:
        engine.close()


def test_a_timer_fired_twice_fails(tmp_path: Path) -> None:
    engine = _fired(tmp_path)
    try:
        with engine.store.write() as tx:  # the same step completion committed a second time
            e = tx.events_txn(types=["step_completed"], limit=1)[0]
            tx.append_events_txn([audit_event(  # type: ignore[list-item]
                "step_completed", e["actor"], e["at"], e["record_id"], e["run_id"], e["data"])])
        with pytest.raises(NotExactlyOnce, match="fired more than once {.+: 2}"):
            check_exactly_once(engine, N)
    finally:
        engine.close()


def test_a_timer_never_fired_fails(tmp_path: Path) -> None:
    engine = _fired(tmp_path, drop_one_timer=True)
    try:
        with pytest.raises(NotExactlyOnce, match=r"never fired \['run_"):
            check_exactly_once(engine, N)
    finally:
        engine.close()
