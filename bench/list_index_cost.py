"""What the list indexes cost the writers: CPU per run and work-item row written.

Migration 8 adds indexes on runs and work items (bench/lists.py measures what they buy).
This measures what they cost, in one process and without the workers' waiting (which a
loaded host inflates): on a fresh SQLite file migrated by the code on PYTHONPATH, it
inserts N runs (a 2.4 KB state, as the triage runs have) and N open work items through the
store's own statements, 256 per transaction, then updates every run as the engine does (the
whole row, compare-and-set on ``seq``, twice: stage then completion) and completes every
item (compare-and-set on status and version). Prints the process CPU time per row for
each phase. The run rows carry ``sla_at`` and ``attention`` (migration 13) when the tree has
them, as the engine's do. Run it with the old tree on PYTHONPATH for the before figures.

    PYTHONPATH=src python bench/list_index_cost.py --rows 20000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from baton.store import schema
from baton.store.sql import SqlStore

BATCH = 256


def _timed(store: SqlStore, rows: list[Any], write: Any) -> float:
    t0 = time.process_time()
    for i in range(0, len(rows), BATCH):
        with store.write() as tx:
            for row in rows[i:i + BATCH]:
                write(tx, row)
    return (time.process_time() - t0) / len(rows) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=20_000)
    args = p.parse_args()
    n = args.rows
    state = {"steps": {f"s{i}": {"status": "completed", "output": {"x": "y" * 40}}
                       for i in range(12)}, "vars": {"level": 1}, "decisions": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = SqlStore(f"sqlite:///{Path(tmp) / 'cost.db'}")
        store.migrate()
        at = "2026-01-01T00:00:00.000Z"
        runs = [{"id": f"run_{i:08d}", "orchestration": "case_triage", "version": 1,
                 "record_id": f"rec_{i:08d}", "status": "in_progress", "current_stage": "triage",
                 "state": state, "seq": 1, "created_at": at, "updated_at": at,
                 "completed_at": None} for i in range(n)]
        # the columns the engine writes with every state (whole row), where the tree on
        # PYTHONPATH has them: the SLA instant and what needs attention (none, here: the
        # partial index of migration 13 is not touched, as for most runs)
        for column in ("sla_at", "attention"):
            if column in schema.runs.c:
                for r in runs:
                    r[column] = None
        items = [{"id": f"wi_{i:08d}", "run_id": f"run_{i:08d}", "record_id": f"rec_{i:08d}",
                  "orchestration": "case_triage", "stage": "triage", "step": "triage",
                  "iteration": 1, "title": "Triage", "instructions": None, "form": [],
                  "status": "open", "assignee_kind": "queue", "assignee": f"tier{1 + i % 2}",
                  "claimed_by": None, "data": None, "version": 1, "created_at": at,
                  "updated_at": at, "completed_at": None, "completed_by": None,
                  "priority": 1, "due_at": "2026-01-01T04:00:00.000Z"} for i in range(n)]
        cost = {
            "insert run": _timed(store, runs, lambda tx, r: tx.insert_run_txn(r)),
            "insert work item": _timed(store, items, lambda tx, r: tx.insert_work_item_txn(r)),
            "update run (stage)": _timed(store, runs, lambda tx, r: tx.update_run_txn(
                {**r, "current_stage": "close", "seq": 2}, 1)),
            "update run (completed)": _timed(store, runs, lambda tx, r: tx.update_run_txn(
                {**r, "status": "completed", "current_stage": None, "seq": 3,
                 "completed_at": at}, 2)),
            "complete work item": _timed(store, items, lambda tx, r: tx.update_work_item_txn(
                r["id"], ["open"], 1, {"status": "completed", "completed_at": at,
                                       "completed_by": "ann", "data": {"resolution": "close"},
                                       "updated_at": at})),
        }
        store.close()
    print(f"load {os.getloadavg()[0]:.2f}, {n:,} rows each, process CPU per row:")
    for name, us in cost.items():
        print(f"  {name:<24} {us:7.1f} us")
    print(f"  {'total per run':<24} {sum(cost.values()):7.1f} us")


if __name__ == "__main__":
    main()
