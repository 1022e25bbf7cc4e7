"""Plan steps/s measured like the triage benchmark (issue 13 item 9), and triage beside it.

``bench/plans.py`` runs plans with one worker inside the bench process, which also made
the orders: not the shape of ``baton bench triage`` (a driver process, worker processes).
Here a plan repetition has triage's shape:

1. a fresh SQLite file; examples/order_fulfillment deployed, its ``carrier`` connection
   pointed at the demo carrier, which runs in a process of its own (an outside system:
   its CPU is not counted);
2. ``--orders`` orders of ``--order-lines`` lines are created as drafts (not measured:
   making records is not running plans);
3. one worker process is started — triage's (``bench.triage._Workers``: its own Engine and
   ``Worker(engine, batch=B).run()``, what ``baton worker`` runs) — and waited for;
4. the clock starts; this process (the driver) submits the orders (``status: Submitted``,
   one transaction each: the order is decomposed, planned, its run started) and waits
   until no run is in progress; the clock stops there;
5. every plan is verified (its run and every step completed); steps/s is the plans'
   steps over the clock, CPU per step the driver's CPU over the clock plus the worker's.

``--triage N`` runs ``baton bench triage -n N`` (``bench.triage.run_benchmark``, the same
function) before each plan repetition, so both are measured in one sitting, alternating.

The split, beside triage's (printed as a table without ``--json``): a plan's driver CPU is
its **planning** (the submits: decompose, match, expand, persist the graph, start the run;
``planning_cpu_ms_per_order``) plus its waiting for the runs to finish; the worker's CPU
over the plan steps is the **execution** (``worker_cpu_ms_per_step``). Triage's driver
creates the Cases and completes their triage work items (``driver_cpu_ms_per_run``); its
worker runs the steps (``worker_cpu_ms_per_step``, over the counted steps, as its steps/s).

``--warmup K``: K orders submitted and run by the worker before the measured phases and
reported apart (``warmup``): what a worker does once in its life — importing the HTTP
client at its first callout, building its caches — is then not spread over the steps
measured. Default 0 (as before: the worker's first-use costs are in the ``plans`` phase).

``--callouts-as-flows`` (a diagnostic, not the workload): every ``callout`` step template of
the fulfillment (the ``ship`` booking) becomes a ``background`` step running a trivial
flow (``orders.recall``), the plans otherwise the same: what a plan step costs when none is
an HTTP call, beside triage, which makes none.

``BATON_BENCH_PROFILE=DIR`` (as for ``baton bench triage``): a cProfile of the worker
process over its life (``worker-*.prof``, warm-up and every phase) and of this process's
submits, one per phase (``driver-submit-PHASE-*.prof``), into DIR.

    PYTHONPATH=src python bench/plan_rate.py --orders 300 --big-run-lines 300 --triage 300 \\
        --repeat 2 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo
from baton.cli.demo_carrier import pointed_at
from baton.project import load_project
from baton.runtime.engine import Engine
from baton.settings import Settings
from bench.plans import EXAMPLE, _lines
from bench.triage import (
    STALL_SECONDS,
    BenchConfig,
    BenchError,
    _cpu_of,
    _dump_profile,
    _profiler,
    _Workers,
    run_benchmark,
)

REPO = Path(__file__).resolve().parents[1]
CARRIER = ("import sys, time\n"
           "from baton.cli.demo_carrier import DemoCarrier\n"
           "c = DemoCarrier(busy_first=False).start()\n"
           "print(c.url, c.token, flush=True)\n"
           "sys.stdin.read()\n")  # until the bench closes our stdin


class Carrier:
    """The demo carrier in a process of its own (stopped when its stdin closes)."""

    def __enter__(self) -> Self:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        self.proc = subprocess.Popen([sys.executable, "-c", CARRIER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout is not None
        self.url, self.token = self.proc.stdout.readline().split()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def _without_callouts(texts: dict[str, str]) -> dict[str, str]:
    """The fulfillment with each callout step template a background step (a trivial flow)."""
    import yaml

    out = dict(texts)
    for name, text in texts.items():
        docs = list(yaml.safe_load_all(text))
        if not any(isinstance(d, dict) and d.get("kind") == "fulfillment" for d in docs):
            continue
        for doc in docs:
            if isinstance(doc, dict) and doc.get("kind") == "fulfillment":
                _flows_for_callouts(doc)
        out[name] = yaml.safe_dump_all(docs, sort_keys=False)
    return out


def _flows_for_callouts(doc: dict[str, Any]) -> None:
    trigger = doc.get("trigger") or {}
    if True in trigger:  # YAML 1.1 reads the key `on` as true: written back as 'on'
        trigger["on"] = trigger.pop(True)
    templates = [t for g in (doc.get("groups") or {}).values() for t in g]
    templates += [t for sc in doc.get("scenarios") or () for t in sc.get("steps") or ()]
    for t in templates:
        if t.get("type") == "callout":
            keep = {k: t[k] for k in ("name", "lane", "after", "scope", "rollback", "ponr")
                    if k in t}
            t.clear()
            t.update(keep, type="background", flow="orders.recall")


def plan_once(phases: list[tuple[str, int, int]], batch: int,
              callouts_as_flows: bool = False) -> dict[str, Any]:
    """Each phase ``(label, orders, lines each)`` in turn, by the same worker process (warm
    after the first, as triage's worker is for most of its runs): measured apart, the
    worker's CPU read from /proc before and after each."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, Carrier() as carrier:
        url = f"sqlite:///{Path(tmp) / 'baton.db'}"
        settings = dataclasses.replace(Settings.from_environment(os.environ),
                                       secrets_env={"CARRIER_TOKEN": carrier.token})
        load_project(EXAMPLE).import_flows()  # the deploy checks the flows it names
        eng = Engine(url, settings=settings)
        try:
            texts = pointed_at(EXAMPLE / "definitions", carrier.url)
            eng.deploy(texts=_without_callouts(texts) if callouts_as_flows else texts,
                       known_flows=None)
            orders = {label: _orders(eng, label, n, lines) for label, n, lines in phases}
            workers = _Workers(url, EXAMPLE, 1, batch, settings)
            try:
                workers.start()
                pid = workers.procs[0].pid
                assert pid is not None
                for label, ids in orders.items():
                    before = _cpu_of(pid) or 0.0
                    drive = _drive(eng, ids, workers, label)
                    worker_cpu = (_cpu_of(pid) or 0.0) - before
                    steps = _verify(eng, ids)
                    cpu = drive["cpu_s_driver"] + worker_cpu
                    out[label] = {
                        "orders": len(ids), "steps": steps,
                        "seconds": round(drive["seconds"], 3),
                        "steps_per_s": round(steps / drive["seconds"], 1),
                        "cpu_s_driver": round(drive["cpu_s_driver"], 2),
                        "cpu_s_worker": round(worker_cpu, 2),
                        "cpu_ms_per_step": round(cpu * 1000 / steps, 3),
                        "worker_cpu_ms_per_step": round(worker_cpu * 1000 / steps, 3),
                        # the driver's CPU apart: its submits (planning), then its waiting
                        "planning_cpu_ms_per_order": round(drive["cpu_s_submit"] * 1000
                                                           / len(ids), 3),
                        "driver_wait_cpu_ms_per_step": round(
                            (drive["cpu_s_driver"] - drive["cpu_s_submit"]) * 1000 / steps, 3),
                        "load_average": [round(x, 2) for x in os.getloadavg()]}
            finally:
                workers.stop()
            for label in orders:
                out[label]["peak_rss_worker_mib"] = max(workers.rss.values(), default=None)
        finally:
            eng.close()
    return out


def _orders(eng: Engine, label: str, n: int, order_lines: int) -> list[str]:
    """``n`` draft orders (submitting them is measured, making them is not)."""
    lines = [ln for ln in _lines(order_lines) if ln["product"] != "BROADBAND"]
    return [eng.create_record("Order", {"number": f"{label}-{i}", "status": "Draft"},
                              children={"OrderLine": lines})["id"] for i in range(n)]


def _verify(eng: Engine, ids: list[str]) -> int:
    """Every plan, and every step of it, completed; returns the plans' steps."""
    steps = 0
    for o in ids:
        shown = eng.plans.show(o)
        bad = [s["name"] for s in shown["steps"] if s["status"] != "completed"]
        if shown["status"] != "completed" or bad:
            raise BenchError(f"plan of order {o} is {shown['status']}; steps not "
                             f"completed: {bad[:5]}")
        steps += len(shown["steps"])
    return steps


def _drive(eng: Engine, ids: list[str], workers: _Workers, label: str) -> dict[str, float]:
    cpu = time.process_time()
    start = time.perf_counter()
    prof = _profiler()
    try:
        for o in ids:  # one transaction each: decomposed, planned, its run started
            eng.update_record(o, {"status": "Submitted"}, actor="bench")
    finally:
        _dump_profile(prof, f"driver-submit-{label}")
    submit_cpu = time.process_time() - cpu
    last, left = time.perf_counter(), len(ids)
    never = threading.Event()
    while True:
        seen = eng.store.arm_wakeup()
        with eng.store.read() as tx:
            now_left = tx.count_in_progress_runs_txn()
        if now_left == 0:
            return {"seconds": time.perf_counter() - start,
                    "cpu_s_driver": time.process_time() - cpu, "cpu_s_submit": submit_cpu}
        if now_left != left:
            left, last = now_left, time.perf_counter()
        elif time.perf_counter() - last > STALL_SECONDS:
            raise BenchError(f"no plan finished for {STALL_SECONDS:.0f} s; {left} in progress")
        workers.check_alive()
        eng.store.wait_for_change(seen, 0.05, never)


def triage_once(n: int) -> dict[str, Any]:
    out = run_benchmark(BenchConfig(runs=n, examples=REPO / "examples",
                                    settings=Settings.from_environment(os.environ)))
    rep = out["repetitions"][0]  # one repetition: its driver's and worker's CPU apart
    worker_cpu = sum(rep["cpu_s_workers"])
    return {"runs": n, "steps": out["steps"], "steps_per_s": out["steps_per_s"],
            "runs_per_s": out["runs_per_s"], "cpu_ms_per_run": out["cpu_ms_per_run"],
            "cpu_ms_per_step": round(out["cpu_ms_per_run"] * n / out["steps"], 3)
            if out.get("steps") else None,
            "cpu_s_driver": rep["cpu_s_driver"], "cpu_s_worker": round(worker_cpu, 2),
            # the driver creates the Cases and completes their triage items
            "driver_cpu_ms_per_run": round(rep["cpu_s_driver"] * 1000 / n, 3),
            "worker_cpu_ms_per_step": round(worker_cpu * 1000 / out["steps"], 3)
            if out.get("steps") else None,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


SPLIT = ("steps_per_s", "cpu_ms_per_step", "worker_cpu_ms_per_step",
         "planning_cpu_ms_per_order", "driver_wait_cpu_ms_per_step", "driver_cpu_ms_per_run")


def _median(reps: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {k: {m: statistics.median(r[k][m] for r in reps) for m in SPLIT if m in reps[0][k]}
            for k in ("triage", "plans", "big_plan") if k in reps[0]}


def _table(median: dict[str, dict[str, float]]) -> str:
    """The like-for-like split as a table: medians over the repetitions."""
    rows = [("", "steps/s", "CPU ms/step", "worker ms/step", "driver")]
    for k, m in median.items():
        driver = (f"{m['driver_cpu_ms_per_run']:.3f} ms/run (create + triage items)"
                  if "driver_cpu_ms_per_run" in m else
                  f"{m['planning_cpu_ms_per_order']:.3f} ms/order planning + "
                  f"{m['driver_wait_cpu_ms_per_step']:.3f} ms/step waiting")
        rows.append((k, f"{m['steps_per_s']:.1f}", f"{m['cpu_ms_per_step']:.3f}",
                     f"{m['worker_cpu_ms_per_step']:.3f}", driver))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=300)
    ap.add_argument("--order-lines", type=int, default=6)
    ap.add_argument("--big-run-lines", type=int, default=0,
                    help="also one order of this many lines (one plan, one run)")
    ap.add_argument("--triage", type=int, default=0,
                    help="also `baton bench triage -n N` before each plan repetition")
    ap.add_argument("--warmup", type=int, default=0,
                    help="orders run before the measured phases, reported apart")
    ap.add_argument("--callouts-as-flows", action="store_true",
                    help="diagnostic: the callout steps as background flows (no HTTP)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256, help="the worker's batch (as triage's)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    reps: list[dict[str, Any]] = []
    for _ in range(args.repeat):
        rep: dict[str, Any] = {}
        if args.triage:
            rep["triage"] = triage_once(args.triage)
        phases = [("warmup", args.warmup, args.order_lines)] if args.warmup else []
        phases.append(("plans", args.orders, args.order_lines))
        if args.big_run_lines:
            phases.append(("big_plan", 1, args.big_run_lines))
        rep.update(plan_once(phases, args.batch, args.callouts_as_flows))
        reps.append(rep)
        if not args.json:
            print(json.dumps(rep), flush=True)
    summary = _median(reps)
    print(json.dumps({"repetitions": reps, "median": summary}, indent=2) if args.json
          else _table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
