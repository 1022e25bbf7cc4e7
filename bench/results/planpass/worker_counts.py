"""Deterministic counts of a worker running one 1,503-step plan (issue 13 item 9; helper
`dirtysteps`, extended by `planpass`: ``--top N`` functions by own time and by calls, and
the calls of the passes over every step it watches, ``WATCH``): function calls (cProfile of the worker's thread), step entries built
(``state._step_doc``) and encoded (``runsteps.json_dumps``), and what its commits write of
the run's step rows (rows, bytes). Runs against whichever ``src/`` is on PYTHONPATH:

    PYTHONPATH=/tmp/before-dirtysteps/src python bench/results/planpass/worker_counts.py
    PYTHONPATH=src python bench/results/planpass/worker_counts.py

One order of ``--lines`` lines without broadband, as ``bench/plan_rate.py`` makes them
(1,500 -> 1,000 lines, 1,503 steps, ~500 of them callouts booked at the
demo carrier on loopback, in this process: its thread is not profiled) is submitted, then
``Worker(engine).run(until_idle=True)`` runs it to the end under cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # the repo (bench.plans)
from baton.engine import state as state_mod
from baton.runtime.worker import Worker
from baton.store.sql import runsteps
from baton.store.sql.tx import SqlTx
from bench.plans import _engine, _lines

WATCH = frozenset({"sla_at", "attention", "due_timer", "next_instant", "_progress",
                   "all_steps_done", "from_json", "to_json", "_split_steps", "_track",
                   "split_row", "_changed_rows", "_verify", "docs", "copy"})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=1500)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    counts = {"step_docs": 0, "step_texts_encoded": 0, "step_text_bytes_encoded": 0, "commits_with_step_rows": 0,
              "step_rows_written": 0, "step_row_bytes": 0}
    real_doc, real_dumps, real_write = state_mod._step_doc, runsteps.json_dumps, SqlTx._write_steps

    def step_doc(v: Any, copy: bool) -> Any:
        counts["step_docs"] += 1
        return real_doc(v, copy)

    def dumps(v: Any) -> Any:
        counts["step_texts_encoded"] += 1
        text = real_dumps(v)
        counts["step_text_bytes_encoded"] += len(text)
        return text

    def write_steps(self: SqlTx, writes: Any) -> None:
        counts["commits_with_step_rows"] += 1
        for w in writes:
            counts["step_rows_written"] += len(w.upserts)
            counts["step_row_bytes"] += sum(len(u[3]) for u in w.upserts)
        real_write(self, writes)

    with tempfile.TemporaryDirectory() as tmp:
        eng = _engine(Path(tmp))
        try:
            order = eng.create_record("Order", {"number": "BIG", "status": "Draft"},
                                      children={"OrderLine": [
                                          ln for ln in _lines(args.lines)
                                          if ln["product"] != "BROADBAND"]})["id"]
            eng.update_record(order, {"status": "Submitted"})
            steps = len(eng.plans.revision(order)["graph"]["steps"])
            state_mod._step_doc = step_doc  # type: ignore[assignment]
            runsteps.json_dumps = dumps  # type: ignore[assignment]
            SqlTx._write_steps = write_steps  # type: ignore[method-assign]
            worker = Worker(eng)
            prof = cProfile.Profile()
            t0 = time.process_time()
            prof.enable()
            worker.run(until_idle=True)
            prof.disable()
            cpu = time.process_time() - t0
            shown = eng.plans.show(order)
            assert shown["status"] == "completed", shown["status"]
        finally:
            eng.close()
    st = pstats.Stats(prof)
    out = {"steps": steps, "function_calls": st.total_calls,  # type: ignore[attr-defined]
           "worker_jobs": worker.stats.jobs, "chained": worker.stats.chained,
           "planned_commits": worker.stats.planned_commits, **counts,
           "cpu_s_profiled_process": round(cpu, 2)}
    stats = st.stats  # type: ignore[attr-defined]
    top = sorted(stats.items(), key=lambda kv: -kv[1][2])[:args.top]
    out["top_tottime"] = [f"{Path(k[0]).name}:{k[1]}({k[2]}) {v[2]:.3f}s {v[1]} calls"
                          for k, v in top]
    top = sorted(stats.items(), key=lambda kv: -kv[1][1])[:args.top]
    out["top_calls"] = [f"{Path(k[0]).name}:{k[1]}({k[2]}) {v[1]} calls {v[2]:.3f}s"
                        for k, v in top]
    out["watched_calls"] = {f"{Path(k[0]).name}:{k[2]}": v[1] for k, v in stats.items()
                            if k[2] in WATCH and "baton" in k[0]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
