"""Plan benchmark (issue 13 item 9): an order of ``--lines`` lines (default 10,000) is
decomposed and planned on SQLite; target < 2 s. Reports the split: decomposition, scenario
matching, scope expansion, dependency resolution (with building the steps), persistence
(storing the graph and starting the run), and the submit's whole transaction.

Then ``--orders`` small orders (``--order-lines`` each) are planned and executed by one
worker in this process: plan steps per second. The lines are created with their order
in one call before the measured submit (creating records is not planning).

    PYTHONPATH=src python bench/plans.py --lines 10000 --orders 50 --json

``--submit-probe 400,12000`` (with ``--lines 0`` alone) measures what submitting one small
order costs as line records pile up in the database: for each size, a fresh database
holding that many line records (other orders' drafts), then ``--orders`` drafts of
``--order-lines`` lines submitted one by one: CPU per submit, and the read of one order's
lines (``find_records_txn(OrderLine, {order: id})``, what the planner runs) timed alone,
with its query plan.

``--open-plans N`` (with ``--lines 0`` alone) measures a worker's memory instead: N orders
whose plans stay open (a broadband installation waits for a person), run by a worker in
this process, then N more (``--batches``); the RSS after each batch (issue 13: flat with
1,000 open plans).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import importlib.util
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from baton.cli.demo_carrier import DemoCarrier, pointed_at
from baton.runtime import heap
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: the repo
from bench.triage import peak_rss_mib

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "order_fulfillment"
PRODUCTS = ("LAPTOP-PRO", "DOCK", "BROADBAND")
SITES = ("PARIS", "LYON", "NANTES", "LILLE")


def _lines(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        p = PRODUCTS[i % len(PRODUCTS)]
        attrs = ({"color": "grey"} if p == "LAPTOP-PRO" else
                 {"site": SITES[i % len(SITES)], "speed": "1G"} if p == "BROADBAND" else {})
        out.append({"product": p, "quantity": 1 + i % 3, "attributes": attrs})
    return out


def _engine(folder: Path) -> Engine:
    spec = importlib.util.spec_from_file_location("bench_plan_flows", EXAMPLE / "flows.py")
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # registers the flows
    # the ship steps are callouts: a real carrier on loopback (baton demo's) books them
    carrier = DemoCarrier(busy_first=False).start()
    settings = dataclasses.replace(Settings.from_environment(os.environ),
                                   secrets_env={"CARRIER_TOKEN": carrier.token})
    eng = Engine(f"sqlite:///{folder / 'baton.db'}", settings=settings)
    eng.deploy(texts=pointed_at(EXAMPLE / "definitions", carrier.url), known_flows=None)
    return eng


def plan_big(eng: Engine, n: int) -> dict[str, Any]:
    order = eng.create_record("Order", {"number": "BIG", "status": "Draft"},
                              children={"OrderLine": _lines(n)})["id"]
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    eng.update_record(order, {"status": "Submitted"})
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    plan = eng.plans.revision(order)
    return {"lines": n, "fulfillment_lines": len(plan["graph"]["lines"]),
            "steps": len(plan["graph"]["steps"]), "submit_s": round(total, 3),
            "submit_cpu_s": round(cpu, 3), "load_average": [round(x, 2) for x in os.getloadavg()],
            "split_s": eng.plans.last_timings.as_dict()}


def run_small(eng: Engine, orders: int, lines: int) -> dict[str, Any]:
    ids = []
    for i in range(orders):
        ids.append(eng.create_record("Order", {"number": f"S-{i}", "status": "Submitted"},
                                     children={"OrderLine": [
                                         ln for ln in _lines(lines)
                                         if ln["product"] != "BROADBAND"]})["id"])
    steps = sum(len(eng.plans.revision(o)["graph"]["steps"]) for o in ids)
    worker = Worker(eng)
    t0 = time.perf_counter()
    worker.run(until_idle=True)
    took = time.perf_counter() - t0
    done = sum(1 for o in ids if eng.plans.show(o)["status"] == "completed")
    return {"orders": orders, "lines_each": lines, "plan_steps": steps,
            "completed_orders": done, "seconds": round(took, 2),
            "steps_per_s": round(steps / took, 1)}


def _rss_mib() -> float:
    """This process's resident memory now (VmRSS on Linux, else its peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def open_plans(eng: Engine, n: int, batches: int = 3) -> dict[str, Any]:
    """``batches`` times: ``n`` orders submitted (each with a broadband line, whose
    installation waits for a person, so the plan stays open) and a worker in this process
    runs them until it is idle; the RSS after each batch. Flat means a later batch, with
    more open plans behind it, adds nothing to the worker's memory once its cache of plan
    definitions is full (``PLAN_CACHE_STEPS``)."""
    heap.settle()  # as a worker process does when it starts
    worker = Worker(eng)
    worker.run(until_idle=True)
    gc.collect()
    out: dict[str, Any] = {"open_plans_per_batch": n, "rss_mib_before": _rss_mib(),
                           "batches": []}
    lines = [ln for ln in _lines(6)]
    cpu = time.process_time()
    for b in range(batches):
        for i in range(n):
            eng.create_record("Order", {"number": f"M-{b}-{i}", "status": "Submitted"},
                              children={"OrderLine": lines})
        worker.run(until_idle=True)
        gc.collect()
        out["batches"].append({"open_plans": n * (b + 1), "rss_mib": _rss_mib()})
    out["cpu_s"] = round(time.process_time() - cpu, 2)
    out["peak_rss_mib"] = peak_rss_mib()
    first, last = out["batches"][0]["rss_mib"], out["batches"][-1]["rss_mib"]
    out["growth_kib_per_plan_after_first_batch"] = (
        round((last - first) * 1024 / (n * (batches - 1)), 2) if batches > 1 else None)
    return out


def submit_probe(eng: Engine, stored: int, orders: int, order_lines: int) -> dict[str, Any]:
    """See the module's doc: ``stored`` line records in all (the submitted orders' too)."""
    small = [ln for ln in _lines(order_lines) if ln["product"] != "BROADBAND"]
    filler, chunk = stored - orders * len(small), _lines(200)
    i = 0
    while filler > 0:
        part = chunk[:min(filler, len(chunk))]
        eng.create_record("Order", {"number": f"F-{i}", "status": "Draft"},
                          children={"OrderLine": part})
        filler -= len(part)
        i += 1
    ids = [eng.create_record("Order", {"number": f"P-{i}", "status": "Draft"},
                             children={"OrderLine": small})["id"] for i in range(orders)]
    with eng.store.read() as tx:
        have = tx.count_records_txn("OrderLine")
    gc.collect()
    cpu, t0 = time.process_time(), time.perf_counter()
    for o in ids:
        eng.update_record(o, {"status": "Submitted"}, actor="bench")
    cpu, wall = time.process_time() - cpu, time.perf_counter() - t0
    reads = []
    with eng.store.read() as tx:
        for o in ids:
            r0 = time.perf_counter()
            found = tx.find_records_txn("OrderLine", {"order": o}, 1_000_000)
            reads.append(time.perf_counter() - r0)
            assert len(found) == len(small), (o, len(found))
        plan = _lines_plan(tx, ids[0])
    reads.sort()
    return {"line_records": have, "submits": orders, "lines_each": len(small),
            "cpu_ms_per_submit": round(cpu * 1000 / orders, 2),
            "wall_ms_per_submit": round(wall * 1000 / orders, 2),
            "read_lines_ms_median": round(reads[len(reads) // 2] * 1000, 3),
            "query_plan": plan, "load_average": [round(x, 2) for x in os.getloadavg()]}


def _lines_plan(tx: Any, order_id: str) -> list[str]:
    """SQLite's plan of the statement find_records_txn runs for one order's lines."""
    from sqlalchemy import text

    captured: list[str] = []
    conn = tx.conn.connection.dbapi_connection
    conn.set_trace_callback(captured.append)
    try:
        tx.find_records_txn("OrderLine", {"order": order_id}, 1_000_000)
    finally:
        conn.set_trace_callback(None)
    sql = next(c for c in captured if "baton_records" in c)
    return [str(r[-1]) for r in tx.conn.execute(text("EXPLAIN QUERY PLAN " + sql))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=10_000)
    ap.add_argument("--orders", type=int, default=50)
    ap.add_argument("--order-lines", type=int, default=6)
    ap.add_argument("--big-run-lines", type=int, default=0,
                    help="also run one plan of this many lines to the end (steps/s)")
    ap.add_argument("--open-plans", type=int, default=0,
                    help="also measure a worker's RSS with this many open plans per batch")
    ap.add_argument("--batches", type=int, default=3, help="batches of --open-plans")
    ap.add_argument("--submit-probe", default="",
                    help="comma-separated numbers of line records: submit cost at each")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    out: dict[str, Any] = {}
    heap.settle()  # as `baton serve` and workers do (an order is submitted in one of them)
    if args.submit_probe:
        out["submit_probe"] = []
        for size in (int(x) for x in args.submit_probe.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                eng = _engine(Path(tmp))
                try:
                    out["submit_probe"].append(
                        submit_probe(eng, size, args.orders, args.order_lines))
                finally:
                    eng.close()
        if args.lines <= 0 and not args.open_plans:
            print(json.dumps(out, indent=2))
            return 0
    if args.open_plans:
        with tempfile.TemporaryDirectory() as tmp:
            eng = _engine(Path(tmp))
            try:
                out["memory"] = open_plans(eng, args.open_plans, args.batches)
            finally:
                eng.close()
        if args.lines <= 0:
            print(json.dumps(out, indent=2))
            return 0
    # Two databases: the big plan is planned, not run (its run is one document of tens of
    # thousands of steps, rewritten at every step: see "execute_big").
    for part in ("plan", "execute", "execute_big"):
        if part == "execute_big" and not args.big_run_lines:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            eng = _engine(Path(tmp))
            try:
                out[part] = (plan_big(eng, args.lines) if part == "plan" else
                             run_small(eng, args.orders, args.order_lines) if part == "execute"
                             else run_small(eng, 1, args.big_run_lines))
            finally:
                eng.close()
    print(json.dumps(out, indent=2) if args.json else
          f"{out['plan']['lines']} lines -> {out['plan']['steps']} steps planned in "
          f"{out['plan']['submit_s']} s {out['plan']['split_s']}; executed "
          f"{out['execute']['steps_per_s']} plan steps/s")
    return 0 if out["plan"]["submit_s"] < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
