"""Instructions a triage worker executes per run, counted by valgrind (callgrind's ``Ir``):
a figure that does not move with the host's load, for comparing two versions of the worker
on a shared machine where CPU seconds swing by ±30 %.

The driver's part runs natively in this process: N cases are created (100 per transaction),
then each phase runs one worker process under callgrind (``Worker(engine, batch=256)
.run(until_idle=True)``, what ``baton worker`` runs until nothing is ready), then every open
triage item is completed (the bench's resolutions: 20 % escalated once), and so on until no
item is open. A worker process that only starts up (no jobs) is counted once and subtracted
from each phase. In the worker processes the time-bounded parts are made deterministic, so
both versions do exactly the same work: chaining is bounded by ``CHAIN_LIMIT`` only (not
``CHAIN_SECONDS``), definitions are not refreshed, no heartbeat is sent.

    python bench/worker_ir.py --runs 1000 > after.json
    PYTHONPATH=/tmp/before/src python bench/worker_ir.py --runs 1000 > before.json  # older code

``--steady`` counts the steady state instead, as ``bench/driver_ir.py`` does: each phase
process runs the worker once (imports, compiled statements, caches warm), puts the
database back as it was (SQLite's backup API), then runs it again inside
``operator.call``, the one function callgrind collects in; no startup is subtracted. The
two passes must do the same jobs (checked). A one-off cost (a statement compiled once per
process) shows in the default count and not in this one.

    python bench/worker_ir.py --runs 300 --steady > after.json

Slow: about 50 times native speed (N = 1,000: ~15 minutes on a busy 2-core host). The
counts include each phase's first-time costs (lazy imports, statement compilation), the same
in both versions; compare the totals of two versions, not one total with a CPU time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _phase(url: str, empty: bool, steady: bool = False) -> None:
    """In the process valgrind runs: one worker until idle (``steady``: twice, the database
    put back as it was in between, the second time alone counted; see ``--steady``)."""
    import operator
    import sqlite3

    import baton.runtime.definitions as defs
    import baton.runtime.worker as wm
    from baton.project import load_project
    from baton.runtime import heap
    from baton.runtime.engine import Engine

    wm.CHAIN_SECONDS = 1e9  # chaining bounded by CHAIN_LIMIT only: the same in every version
    defs.REFRESH_INTERVAL_S = 1e9
    load_project(ROOT / "examples" / "case_triage").import_flows()
    engine = Engine(url, migrate=False)
    worker = wm.Worker(engine, batch=256, heartbeat_interval=1e9)
    heap.settle()  # as a serving worker does
    if empty:
        return
    if steady:
        path = url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db, sqlite3.connect(path + ".snap") as snap:
            db.backup(snap)
        worker.run(until_idle=True)  # warm: imports, compiled statements, caches
        s = worker.stats
        print(f"WARM {s.jobs} {s.chained} {s.planned_commits} {s.unplanned_commits}",
              file=sys.stderr)
        with sqlite3.connect(path + ".snap") as snap, sqlite3.connect(path) as db:
            snap.backup(db)  # as it was before
        worker.stats = type(s)()
        operator.call(worker.run, until_idle=True)  # counted
    else:
        worker.run(until_idle=True)
    s = worker.stats
    print(f"JOBS {s.jobs} {s.chained} {s.planned_commits} {s.unplanned_commits}", file=sys.stderr)


def _valgrind(url: str, folder: str, empty: bool, steady: bool = False) -> tuple[int, str]:
    counted = ["--collect-atstart=no", "--toggle-collect=*_operator_call*"] if steady else []
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/cg.%p", *counted,
           sys.executable, __file__, "--phase", url, *(["--empty"] if empty else []),
           *(["--steady"] if steady else [])]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"valgrind did not report a count:\n{done.stderr[-3000:]}")
    jobs = re.search(r"JOBS .*", done.stderr)
    warm = re.search(r"WARM (.*)", done.stderr)
    if steady and (warm is None or jobs is None or warm.group(1) != jobs.group(0)[5:]):
        raise SystemExit(f"the counted pass did other work than the warm one:\n{done.stderr[-3000:]}")
    return int(found.group(1)), jobs.group(0) if jobs else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--empty", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--steady", action="store_true",
                    help="count only the steady state: each phase runs the worker once to "
                         "warm it, puts the database back (SQLite's backup API) and counts "
                         "a second pass alone (operator.call, as bench/driver_ir.py does)")
    args = ap.parse_args()
    if args.phase:
        _phase(args.phase, args.empty, args.steady)
        return
    sys.path.insert(0, str(ROOT))
    from baton.project import load_project
    from baton.runtime.engine import Engine
    from bench import triage as bt

    folder = tempfile.mkdtemp(prefix="worker_ir")
    url = f"sqlite:///{folder}/bench.db"
    project = load_project(ROOT / "examples" / "case_triage")
    project.import_flows()
    engine = Engine(url)
    engine.deploy([project.definitions_dir], actor="bench")
    startup = 0 if args.steady else _valgrind(url, folder, empty=True)[0]
    n = args.runs
    for i in range(1, n + 1, 100):
        engine.create_records("Case", [bt.case_fields(j) for j in range(i, min(n, i + 99) + 1)],
                              actor="bench")
    phases: list[dict[str, Any]] = []
    while True:
        ir, jobs = _valgrind(url, folder, empty=False, steady=args.steady)
        phases.append({"ir": ir, "net_ir": ir - startup, "jobs_chained_planned_unplanned": jobs})
        items: list[dict[str, Any]] = [dict(it) for q in bt.QUEUES
                                       for it in engine.list_work(queue=q, limit=100_000)]
        if not items:
            break
        bt._complete_items(engine, items)
    with engine.store.read() as tx:
        left = tx.count_in_progress_runs_txn()
    if left:
        raise SystemExit(f"{left} runs did not finish")
    total = sum(p["net_ir"] for p in phases)
    print(json.dumps({"runs": n, "steady": args.steady, "startup_ir": startup, "phases": phases, "worker_ir": total,
                      "worker_ir_per_run": total // n}, indent=1))


if __name__ == "__main__":
    main()
