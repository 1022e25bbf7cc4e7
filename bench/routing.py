"""Routing benchmark (issue 15 item 7): 500 agents with mixed skills and calendars, 10,000
items waiting for routing, agents brought online in waves (target: >= 2,000 routing
decisions/s on SQLite).

Setup (not measured): five queues of 100 agents; each agent has one to three brands
(``brand:ford`` …, level 1-5), a language, a capacity of 15 to 30, and a fifth of them a
working-hours calendar (half of those closed now, so they are excluded as outside hours).
10,000 records each start a run whose interactive step routes by ``brand`` (required) and
``lang`` (preferred); every agent is offline, so all 10,000 items wait. The records are
made through the engine's bulk path, ``Engine.create_records`` (``--chunk`` records and
the runs they trigger per transaction; each item's routing decision and its
``waiting_for_routing`` event are made in it, as for one record).

Measured: the agents become available in ``--waves`` waves, one ``team.update`` each (the
availability change and the routing it triggers are one transaction). Reported: routing
decisions per second over the waves (each decision considers the whole queue: 100 agents),
items routed per second, the p50/p99 time from an agent's availability change to their
first assignment (the commit of that transaction), and a capacity check: nobody above
their capacity, each load equal to the items routed to them. Also the CPU time of this
process over the waves (``decisions_per_cpu_s``: the figure to read on a loaded host) and
the 1-minute load average before and after; ``--profile FILE`` writes a cProfile of the
waves.

    PYTHONPATH=src python bench/routing.py --json
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from baton.runtime.engine import Engine
from baton.runtime.worker import run_workers
from baton.store import schema as s
from baton.work.team import ProfileChange

BRANDS = ("ford", "vw", "fiat", "bmw", "kia")
LANGS = ("pt", "en", "es")
QUEUES = 5

DEFS = """
kind: object
name: Ticket
fields:
  brand: {type: string, required: true}
  lang: {type: string, default: en}
  queue: {type: int, default: 0}
---
kind: calendar
name: open_now
timezone: UTC
hours: {mon: ["00:00-23:59"], tue: ["00:00-23:59"], wed: ["00:00-23:59"],
        thu: ["00:00-23:59"], fri: ["00:00-23:59"], sat: ["00:00-23:59"],
        sun: ["00:00-23:59"]}
---
kind: calendar
name: never_now
timezone: Pacific/Kiritimati
hours: {sun: ["03:00-03:01"]}  # (open a minute a week: practically never now)
"""
RULE = """
---
kind: routing
name: q{n}
from: {{queue: q{n}}}
required_skills: ['="brand:" + record.brand']
preferred_skills: ['="lang:" + record.lang']
strategy: least_loaded
"""
ORCH = """
---
kind: orchestration
name: support_q{n}
trigger: {{type: record, object: Ticket, on: [create], when: '=record.queue == {n}'}}
stages:
  - name: s
    steps: [{{name: handle, type: interactive, assign: {{routing: q{n}}}}}]
"""


def definitions() -> str:
    return (DEFS + "".join(RULE.format(n=n) for n in range(QUEUES))
            + "".join(ORCH.format(n=n) for n in range(QUEUES)))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=500)
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--waves", type=int, default=5)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--chunk", type=int, default=500,
                    help="records created (and their runs started) per transaction in setup")
    ap.add_argument("--profile", help="write a cProfile of the waves to this file")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rnd = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="baton-bench-routing-"))
    engine = Engine(f"sqlite:///{tmp / 'baton.db'}")
    (tmp / "defs.yaml").write_text(definitions())
    engine.deploy([tmp / "defs.yaml"], known_flows=None)
    t0, t0_cpu = time.perf_counter(), time.process_time()
    names = []
    for i in range(args.agents):
        name = f"agent{i:03d}"
        names.append(name)
        engine.directory.add_user(name, roles=["agent"], queues=[f"q{i % QUEUES}"])
        brands = rnd.sample(BRANDS, rnd.randint(1, 3))
        skills: dict[str, int | None] = {f"brand:{b}": rnd.randint(1, 5) for b in brands}
        skills[f"lang:{rnd.choice(LANGS)}"] = None
        calendar = rnd.choice(("open_now", "never_now")) if rnd.random() < 0.2 else None
        engine.team.update(name, ProfileChange(
            availability="offline", capacity=rnd.randint(15, 30), skills=skills,
            calendar=calendar), "bench")
    tickets = [{"brand": rnd.choice(BRANDS), "lang": rnd.choice(LANGS), "queue": i % QUEUES}
               for i in range(args.items)]
    for k in range(0, len(tickets), args.chunk):  # the engine's bulk path: one transaction
        engine.create_records("Ticket", tickets[k:k + args.chunk])  # per chunk
    run_workers(engine, 2, until_idle=True)
    with engine.store.read() as tx:
        waiting = tx.conn.execute(select(func.count()).select_from(s.work_items).where(
            s.work_items.c.routing_status == "waiting")).scalar_one()
    setup_s, setup_cpu = time.perf_counter() - t0, time.process_time() - t0_cpu

    rnd.shuffle(names)
    waves = [names[k::args.waves] for k in range(args.waves)]
    latencies: list[float] = []
    engine.router.decisions = 0
    routed_before = 0
    profiler = cProfile.Profile() if args.profile else None
    if profiler is not None:
        profiler.enable()
    load_before = os.getloadavg()[0]
    began, began_cpu = time.perf_counter(), time.process_time()
    per_wave = []
    for wave in waves:
        wave_start = time.perf_counter()
        for name in wave:
            start = time.perf_counter()
            profile = engine.team.update(name, ProfileChange(availability="available"), "bench")
            if profile.load:
                latencies.append(time.perf_counter() - start)
        per_wave.append(round(time.perf_counter() - wave_start, 3))
    elapsed, cpu = time.perf_counter() - began, time.process_time() - began_cpu
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    with engine.store.read() as tx:
        loads = {r.user_name: (r.load, r.capacity) for r in tx.conn.execute(select(s.agents))}
        held = dict(tx.conn.execute(select(s.work_items.c.routed_to, func.count())
                                    .where(s.work_items.c.routed_to.isnot(None))
                                    .group_by(s.work_items.c.routed_to)).all())
        still = tx.conn.execute(select(func.count()).select_from(s.work_items).where(
            s.work_items.c.routing_status == "waiting")).scalar_one()
    routed = sum(held.values()) - routed_before
    over = [n for n, (load, cap) in loads.items() if cap is not None and load > cap]
    mismatched = [n for n, (load, _) in loads.items() if load != held.get(n, 0)]
    latencies.sort()
    result = {
        "agents": args.agents, "items_waiting": waiting, "waves": args.waves,
        "setup_s": round(setup_s, 1), "setup_cpu_s": round(setup_cpu, 1),
        "routing_s": round(elapsed, 3), "routing_cpu_s": round(cpu, 3), "wave_s": per_wave,
        "decisions": engine.router.decisions,
        "decisions_per_s": round(engine.router.decisions / elapsed),
        "decisions_per_cpu_s": round(engine.router.decisions / cpu),
        "routed": routed, "routed_per_s": round(routed / elapsed),
        "still_waiting": still,
        "first_assignment_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "first_assignment_p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 1),
        "over_capacity": over, "load_mismatch": mismatched,
        "capacity_ok": not over and not mismatched,
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    engine.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>26}: {v}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["capacity_ok"] else 1)
