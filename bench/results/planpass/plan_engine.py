"""The pure engine's cost of one plan-sized run (issue 13 item 9; helper `planpass`): no
store, no worker, one process, so that valgrind's instruction count is a figure the host's
load does not move.

The run's one stage has ``--lines`` lines of two steps each, ``reserve_i`` then
``ship_i`` (with an SLA, as the fulfillment's callouts have), and an ``invoice`` step after
every ``ship`` (2 * lines + 1 steps: 1,501 for 750 lines). Each step scheduled is completed
in the order it was scheduled, one ``decide(..., consume=True)`` apiece (as the worker
applies a batch's results to the run it keeps); after every ``--batch`` decisions the run is
written as the store writes it: ``run_row`` (its document, ``sla_at``, ``attention``) and
``split_row`` (the rows of the steps changed). ``--lines 0`` makes the imports and the
definitions alone: the instructions of ``--lines N`` less those of ``--lines 0`` are the
run's.

    PYTHONPATH=src valgrind --tool=callgrind --callgrind-out-file=/tmp/cg.%p \\
        python bench/results/planpass/plan_engine.py --lines 750 --plain
"""

from __future__ import annotations

import argparse
import json
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

from baton.definitions.loader import load_text
from baton.definitions.model import OrchestrationDefinition
from baton.engine.decide import decide
from baton.engine.events import RunStarted, ScheduleStep, StepCompleted
from baton.engine.state import Run
from baton.engine.status import RunStatus
from baton.runtime.apply import run_row
from baton.store.sql import runsteps

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
OBJECT = "kind: object\nname: Order\nfields:\n  number: {type: string}\n"


def definition(lines: int) -> OrchestrationDefinition:
    steps = []
    for i in range(lines):
        steps.append(f"      - {{name: reserve_{i}, type: background, flow: f.reserve}}")
        steps.append(f"      - {{name: ship_{i}, type: background, flow: f.ship, "
                     f"after: [reserve_{i}], sla: {{duration: 48h, jeopardy: 4h}}}}")
    after = ", ".join(f"ship_{i}" for i in range(lines))
    steps.append(f"      - {{name: invoice, type: background, flow: f.invoice, after: [{after}]}}")
    text = (OBJECT + "---\nkind: orchestration\nname: plan\n"
            "trigger: {type: record, object: Order, on: [create]}\n"
            "stages:\n  - name: fulfil\n    steps:\n" + "\n".join(steps) + "\n")
    (defn,) = [d.definition for d in load_text(text) if d.kind == "orchestration"]
    assert isinstance(defn, OrchestrationDefinition)
    return defn


def drive(defn: OrchestrationDefinition, batch: int) -> dict[str, Any]:
    record = {"id": "rec-1", "number": "BIG", "version": 1}
    run = Run(id="run-1", orchestration=defn.name, version=1, record_id="rec-1")
    now = "2026-01-05T09:00:00.000Z"
    ready: deque[tuple[str, int]] = deque()
    decisions = writes = rows = 0
    base = None

    def take(commands: list[Any]) -> None:
        ready.extend((c.step, c.iteration) for c in commands if isinstance(c, ScheduleStep))

    def write(insert: bool) -> None:
        nonlocal base, writes, rows
        expected = run.seq
        run.seq += 1
        row = run_row(run, now)
        split = runsteps.split_row(row, base, insert=insert, expected=expected)
        if split is not None:
            base = split[1].stored()
            rows += len(split[1].upserts)
        writes += 1

    d = decide(defn, run, RunStarted(), NOW, record, consume=True)
    take(d.commands)
    write(True)
    while ready:
        step, iteration = ready.popleft()
        d = decide(defn, run, StepCompleted(step, iteration, {"ok": True}), NOW, record,
                   consume=True)
        assert not d.stale
        take(d.commands)
        decisions += 1
        if decisions % batch == 0 or not ready:
            write(False)
    assert run.status is RunStatus.COMPLETED, run.status
    return {"steps": len(run.steps), "decisions": decisions, "writes": writes,
            "step_rows_written": rows}


def _count_checks(checks: dict[str, int]) -> None:
    from baton.engine import sla

    runsteps.VERIFY_CHANGED = True
    sla.VERIFY_INDEX = True  # type: ignore[attr-defined]  # (not there before planpass)
    real_write = runsteps._verify
    real_index = getattr(sla, "_verify", None)

    def write_check(*a: Any) -> None:
        checks["write_checks"] += 1
        real_write(*a)

    runsteps._verify = write_check  # type: ignore[assignment]
    if real_index is not None:
        def index_check(*a: Any) -> None:
            checks["index_checks"] += 1
            real_index(*a)

        sla._verify = index_check


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=750)
    ap.add_argument("--batch", type=int, default=45, help="decisions per write (the worker's "
                    "batch: ~45 on the 1,503-step plan of worker_counts.py)")
    ap.add_argument("--plain", action="store_true", help="no timing, no output: for valgrind")
    ap.add_argument("--no-drive", action="store_true", help="load the definition alone: "
                    "for valgrind, the instructions of the run less this are the drive's")
    ap.add_argument("--verify", action="store_true", help="with the test suite's checks on "
                    "(runsteps.VERIFY_CHANGED, sla.VERIFY_INDEX): count what they encode")
    args = ap.parse_args()
    checks = {"write_checks": 0, "index_checks": 0}
    if args.verify:
        _count_checks(checks)
    defn = definition(args.lines) if args.lines else None
    if defn is None or args.no_drive:
        return
    t0 = time.process_time()
    out = drive(defn, args.batch)
    if args.verify:
        out.update(checks)
    if not args.plain:
        out["cpu_ms_per_step"] = round((time.process_time() - t0) * 1000 / out["decisions"], 4)
        print(json.dumps(out))


if __name__ == "__main__":
    main()
