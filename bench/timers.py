"""Timer benchmark: 100,000 pending durable timers on SQLite, fired by workers on real time.

Setup (virtual time, fast): N records start N runs of an orchestration whose only step is
``pause: {for: 1h}``, started in batches over a virtual window, so N timers (jobs with
``run_after`` in the future) are pending, due at instants spread evenly over ``--window``
seconds.

Measure (real time): the same database is opened with the wall clock shifted
(``SystemClock.offset``) so that the first timer comes due ``--lead`` seconds from now;
``--workers`` worker threads run as in production (not ``--until-idle``). Every timer's
lateness is the time from its due instant to the commit of its effect (the pause step's
``step_completed`` event is stamped with the clock at the commit of the worker's batch).

Then it verifies that every timer fired exactly once: each run's pause step completed
once (one ``step_completed`` event per run, step and iteration), every run completed, and
no timer is left; otherwise it fails (exit status 1) saying which runs were wrong.

Prints: timers fired, fired per second over the window, worst and p99 lateness.

    PYTHONPATH=src python bench/timers.py --timers 100000 --window 120
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlalchemy import func, select

from baton.clock import SystemClock, VirtualClock, iso, parse_iso
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.settings import Settings
from baton.store import schema

DEFS = """
kind: object
name: Ticket
fields:
  n: {type: int}
---
kind: orchestration
name: bench_timer
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: wait
    steps:
      - {name: cool_off, type: pause, for: 1h}
"""
BATCH = 1000


def setup(db_url: str, folder: Path, n: int, window: float) -> VirtualClock:
    clock = VirtualClock()
    engine = Engine(db_url, clock=clock, settings=Settings.from_environment())  # an entry point
    (folder / "defs.yaml").write_text(DEFS)
    engine.deploy([folder / "defs.yaml"], known_flows=())
    batches = max(1, n // BATCH)
    step = timedelta(seconds=window / batches)
    made = 0
    for b in range(batches):
        size = BATCH if b < batches - 1 else n - made
        engine.create_records("Ticket", [{"n": made + i} for i in range(size)])
        made += size
        clock.advance(step)
    engine.close()
    return clock


def pending_timers(engine: Engine) -> int:
    with engine.store.read() as tx:
        t = schema.jobs
        return int(tx.conn.execute(select(func.count()).select_from(t)
                                   .where(t.c.kind == "timer")).scalar_one())


def measure(db_url: str, first_due: str, workers: int, lead: float) -> dict[str, float]:
    clock = SystemClock()
    clock.offset = parse_iso(first_due) - clock.now() - timedelta(seconds=lead)
    engine = Engine(db_url, clock=clock, settings=Settings.from_environment())  # an entry point
    n = pending_timers(engine)
    pool = [Worker(engine, batch=64, poll_interval=0.05) for _ in range(workers)]
    threads = [threading.Thread(target=w.run, daemon=True) for w in pool]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    while pending_timers(engine):
        time.sleep(0.5)
    elapsed = time.monotonic() - t0
    for w in pool:
        w.stop()
    for t in threads:
        t.join()
    late = lateness(engine)
    check_exactly_once(engine, n)
    engine.close()
    late.sort()
    return {"timers": n, "fired": len(late), "elapsed_s": round(elapsed, 2),
            "fired_per_s": round(len(late) / max(elapsed - lead, 1e-9), 1),
            "worst_lateness_s": round(late[-1], 3) if late else 0.0,
            "p99_lateness_s": round(late[int(len(late) * 0.99) - 1], 3) if late else 0.0,
            "median_lateness_s": round(late[len(late) // 2], 3) if late else 0.0}


class NotExactlyOnce(Exception):
    """A timer fired twice, or never."""


def check_exactly_once(engine: Engine, timers: int) -> None:
    """Every one of the ``timers`` runs fired its pause timer exactly once: its step
    completed once, the run completed, and no timer job is left."""
    with engine.store.read() as tx:
        fired = Counter((e["run_id"], e["data"]["step"], e["data"]["iteration"])
                        for e in tx.events_txn(types=["step_completed"], limit=10**9))
    runs = engine.list_runs(limit=10**9)
    twice = {k: c for k, c in fired.items() if c != 1}
    never = {r.id for r in runs} - {run_id for run_id, _s, _i in fired}
    open_runs = [r.id for r in runs if r.status.value != "completed"]
    left = pending_timers(engine)
    if twice or never or open_runs or left or len(runs) != timers or len(fired) != timers:
        raise NotExactlyOnce(
            f"timers not fired exactly once: {len(runs)} runs for {timers} timers, "
            f"{len(fired)} fired; fired more than once {dict(list(twice.items())[:10])}; "
            f"never fired {sorted(never)[:10]}; runs not completed {open_runs[:10]}; "
            f"timers left {left}")


def lateness(engine: Engine) -> list[float]:
    """Seconds from each timer's due instant (step start + 1 h) to the commit that fired it."""
    with engine.store.read() as tx:
        done = tx.events_txn(types=["step_completed"], limit=10**9)
        starts = {e["run_id"]: e["at"] for e in tx.events_txn(types=["step_started"], limit=10**9)}
    return [(parse_iso(e["at"]) - parse_iso(starts[e["run_id"]]) - timedelta(hours=1)).total_seconds()
            for e in done]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timers", type=int, default=100_000)
    ap.add_argument("--window", type=float, default=120.0, help="seconds over which timers come due")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--lead", type=float, default=3.0, help="seconds before the first timer is due")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db_url = f"sqlite:///{Path(tmp) / 'timers.db'}"
        t0 = time.monotonic()
        start = VirtualClock().now()
        setup(db_url, Path(tmp), args.timers, args.window)
        setup_s = time.monotonic() - t0
        first_due = iso(start + timedelta(hours=1))
        try:
            measured = measure(db_url, first_due, args.workers, args.lead)
        except NotExactlyOnce as exc:
            raise SystemExit(f"FAILED: {exc}") from exc
        result = {"setup_s": round(setup_s, 1), **measured, "exactly_once": True}
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>20}: {v}")


if __name__ == "__main__":
    main()
