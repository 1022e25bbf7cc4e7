"""Instructions the triage driver executes per run, counted by valgrind (callgrind's ``Ir``):
the driver's share of issue 19's CPU per run as a figure the host's load does not move
(the worker's is ``bench/worker_ir.py``).

The driver's two jobs each run in a process of their own under callgrind: creating the N
cases (100 per transaction, as ``baton bench triage`` does), and, after each worker phase
(run natively: ``Worker(engine, batch=256).run(until_idle=True)``), listing the open triage
items of both queues and completing them (250 per transaction, the bench's resolutions: 20 %
escalated once), until no item is open.

Only the phase's steady-state work is counted: each phase process first does the phase
once on the same engine (imports, statement compilation and caches warm, as in a driver
that has been running), puts the database back as it was (SQLite's backup API), then does
it again inside ``operator.call``, the one function callgrind collects in
(``--collect-atstart=no --toggle-collect=*_operator_call*``).

    python bench/driver_ir.py --runs 300 > after.json
    PYTHONPATH=/tmp/before/src python bench/driver_ir.py --runs 300 > before.json  # older code

About 50 times native speed, twice over (N = 300: ~15 minutes on a busy 2-core host).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _engine(url: str) -> Any:
    import baton.runtime.definitions as defs
    from baton.project import load_project
    from baton.runtime.engine import Engine

    defs.REFRESH_INTERVAL_S = 1e9  # no definitions refresh in the middle: the same work always
    load_project(ROOT / "examples" / "case_triage").import_flows()
    return Engine(url, migrate=False)


def _phase(url: str, what: str, n: int) -> None:
    """In the process valgrind runs: one of the driver's phases, warm (see above)."""
    import operator
    import sqlite3

    sys.path.insert(0, str(ROOT))
    from bench import triage as bt

    engine = _engine(url)

    def create() -> int:
        for i in range(1, n + 1, 100):
            engine.create_records("Case", [bt.case_fields(j)
                                           for j in range(i, min(n, i + 99) + 1)], actor="bench")
        return n

    def complete() -> int:
        items = [dict(it) for q in bt.QUEUES for it in engine.list_work(queue=q, limit=100_000)]
        bt._complete_items(engine, items)
        return len(items)

    work = create if what == "create" else complete
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db, sqlite3.connect(path + ".snap") as snap:
        db.backup(snap)
    work()  # warm
    with sqlite3.connect(path + ".snap") as snap, sqlite3.connect(path) as db:
        snap.backup(db)  # as it was before
    done = operator.call(work)  # counted
    print(f"ITEMS {done}", file=sys.stderr)


def _valgrind(url: str, folder: str, what: str, n: int) -> tuple[int, str]:
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/cg.%p",
           "--collect-atstart=no", "--toggle-collect=*_operator_call*",
           sys.executable, __file__, "--phase", what, "--url", url, "--runs", str(n)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"phase {what} failed:\n{done.stderr[-3000:]}")
    irs = [int(m) for m in re.findall(r"Collected : (\d+)", done.stderr)]
    items = re.findall(r"ITEMS (\d+)", done.stderr)
    return sum(irs), (items[0] if items else "")


def _worker(url: str) -> None:
    import baton.runtime.worker as wm

    wm.CHAIN_SECONDS = 1e9
    wm.Worker(_engine(url), batch=256, heartbeat_interval=1e9).run(until_idle=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        _phase(args.url, args.phase, args.runs)
        return
    from baton.project import load_project
    from baton.runtime.engine import Engine

    folder = tempfile.mkdtemp(prefix="driver_ir")
    url = f"sqlite:///{folder}/bench.db"
    project = load_project(ROOT / "examples" / "case_triage")
    project.import_flows()
    Engine(url).deploy([project.definitions_dir], actor="bench")
    n = args.runs
    ir, _ = _valgrind(url, folder, "create", n)
    phases: list[dict[str, Any]] = [{"phase": "create", "ir": ir}]
    while True:
        _worker(url)
        ir, items = _valgrind(url, folder, "complete", n)
        if items == "0":
            break
        phases.append({"phase": "complete", "items": int(items), "ir": ir})
    with Engine(url, migrate=False).store.read() as tx:
        left = tx.count_in_progress_runs_txn()
    if left:
        raise SystemExit(f"{left} runs did not finish")
    total = sum(p["ir"] for p in phases)
    print(json.dumps({"runs": n, "phases": phases, "driver_ir": total,
                      "driver_ir_per_run": total // n}, indent=1))


if __name__ == "__main__":
    main()
