"""Deterministic counts behind the `tdriver` section of bench/RESULTS.md: Python function
calls and SQLite statements per ``list_work(queue=...)`` (500 and 10 open items) and per
record write nothing triggers on. Run with a checkout's src/ on PYTHONPATH:

    PYTHONPATH=CHECKOUT/src python bench/results/tdriver/calls.py CHECKOUT/examples/case_triage
"""

from __future__ import annotations

import cProfile
import itertools
import json
import pstats
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from baton.project import load_project
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker

EXECUTE = "<method 'execute' of 'sqlite3.Cursor' objects>"


def measure(label: str, fn: Callable[[], Any], n: int) -> dict[str, float]:
    fn()  # warm: statements compiled, definitions parsed
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(n):
        fn()
    pr.disable()
    st = pstats.Stats(pr)
    execs = sum(v[1] for k, v in st.stats.items() if k[2] == EXECUTE)  # type: ignore[attr-defined]
    return {f"{label}_calls": round(st.total_calls / n),  # type: ignore[attr-defined]
            f"{label}_sqlite_executes": round(execs / n, 2)}


def main() -> None:
    eng = Engine(f"sqlite:///{tempfile.mkdtemp()}/m.db")
    proj = load_project(Path(sys.argv[1]))
    proj.import_flows()
    eng.deploy([proj.definitions_dir], actor="bench")
    worker = Worker(eng)
    for k in range(5):
        eng.create_records("Case", [{"subject": f"invoice question {i}", "number": i,
                                     "origin": "Web", "level": 1}
                                    for i in range(100 * k + 1, 100 * k + 101)], actor="bench")
    while worker.run_once():
        pass
    out = measure("list500", lambda: eng.list_work(queue="tier1", limit=1000), 10)
    items = eng.list_work(queue="tier1", limit=1000)
    eng.complete_many([(it["id"], "bench", {"resolution": "close"}) for it in items[:490]])
    out |= measure("list10", lambda: eng.list_work(queue="tier1", limit=1000), 50)
    # a record write nothing triggers on (a Case update: what the triage flows make)
    rid = eng.create_records("Case", [{"subject": "x", "number": 9999, "origin": "Web",
                                       "level": 1}], actor="b")[0]["id"]
    n = itertools.count()

    def update() -> None:
        with eng.store.write() as tx:
            row = eng.records.get_row_txn(tx, rid)
            eng.records.update_txn(tx, row, {"subject": f"y{next(n)}"}, "b", eng.clock.now(),
                                   exclude_run=None)
    out |= measure("update_txn", update, 50)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
