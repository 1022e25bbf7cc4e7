"""Routing's offer mode (issue 15 item 2): what an offer's answer costs — a decline (the
offer passes to the next candidate: the load given back, the decliner kept out, a new
decision over the queue, a new offer and its timer), an accept, and an expiry (the durable
``route`` job firing) — and a capacity check.

Setup (not measured): one queue of ``--agents`` agents (capacity ``--capacity`` each, all
available), ``--items`` records whose interactive step routes with ``offer: {timeout:
2m}``: each item is offered when it is made. On virtual time.

Measured, each on its own: a third of the items declined by their offeree (one
``decline`` each), a third accepted, and the last third left to expire (the clock moved
past the timeout, the workers run until idle: one job per offer, each passing the item on).
Reported per phase: wall-clock and **CPU** time per answer (CPU of this process: the host
may be loaded), and the load average; how many offers expired (the last third, and the
declined items' second offers: each expiry offers the item to the next person again);
then a check that nobody is above capacity and that each person's load equals the items
routed or offered to them.

    PYTHONPATH=src python bench/offers.py --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from baton.clock import VirtualClock
from baton.runtime.engine import Engine
from baton.runtime.worker import run_workers
from baton.store import schema as s
from baton.work.team import ProfileChange

DEFS = """
kind: object
name: Ticket
fields:
  title: {type: string, required: true}
---
kind: routing
name: offers
from: {queue: desk}
offer: {timeout: 2m}
---
kind: orchestration
name: offered
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: s
    steps:
      - {name: answer, type: interactive, assign: {routing: offers},
         form: [{name: done, type: bool}]}
"""


def _phase(fn: Any, n: int) -> dict[str, Any]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"n": n, "wall_ms_each": round(wall / max(n, 1) * 1000, 2),
            "cpu_ms_each": round(cpu / max(n, 1) * 1000, 2),
            "load_avg": " ".join(f"{x:.2f}" for x in os.getloadavg())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--capacity", type=int, default=40)
    ap.add_argument("--items", type=int, default=1500)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="baton-bench-offers-"))
    clock = VirtualClock()
    engine = Engine(f"sqlite:///{tmp / 'baton.db'}", clock=clock)
    (tmp / "defs.yaml").write_text(DEFS)
    engine.deploy([tmp / "defs.yaml"], known_flows=None)
    for i in range(args.agents):
        name = f"agent{i:03d}"
        engine.directory.add_user(name, roles=["agent"], queues=["desk"])
        engine.team.update(name, ProfileChange(capacity=args.capacity), "bench")
    for i in range(args.items):
        engine.create_record("Ticket", {"title": f"t{i}"})
    run_workers(engine, 1, until_idle=True)  # (the re-check jobs of the setup)
    offered = [(i["id"], i["assignee"]) for i in
               engine.list_work(statuses=["open"], limit=args.items)]
    third = len(offered) // 3
    declines, accepts, left = offered[:third], offered[third:2 * third], offered[2 * third:]

    def decline_all() -> None:
        for item_id, user in declines:
            engine.decline(item_id, user)

    def accept_all() -> None:
        for item_id, user in accepts:
            engine.accept(item_id, user)

    def expire_all() -> None:
        clock.advance(timedelta(minutes=2))
        run_workers(engine, 1, until_idle=True)

    result: dict[str, Any] = {"agents": args.agents, "capacity": args.capacity,
                              "offered": len(offered)}
    result["decline"] = _phase(decline_all, len(declines))
    result["accept"] = _phase(accept_all, len(accepts))
    with engine.store.read() as tx:
        before = len(tx.events_txn(types=["offer_expired"], limit=10 * args.items))
    result["expire"] = _phase(expire_all, len(left) + len(declines))
    with engine.store.read() as tx:
        expired = len(tx.events_txn(types=["offer_expired"], limit=10 * args.items)) - before
        loads = {r.user_name: (r.load, r.capacity) for r in tx.conn.execute(select(s.agents))}
        held = dict(tx.conn.execute(select(s.work_items.c.routed_to, func.count())
                                    .where(s.work_items.c.routed_to.isnot(None))
                                    .group_by(s.work_items.c.routed_to)).all())
    over = [n for n, (load, cap) in loads.items() if cap is not None and load > cap]
    mismatched = [n for n, (load, _) in loads.items() if load != held.get(n, 0)]
    result.update(expired=expired, over_capacity=over, load_mismatch=mismatched,
                  capacity_ok=not over and not mismatched)
    engine.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>14}: {v}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["capacity_ok"] else 1)
