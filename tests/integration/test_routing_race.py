"""Capacity is never exceeded when several workers route at once on PostgreSQL: four
worker processes route the same 16 waiting items to 4 people of capacity 2 at the same
moment (a barrier), for 50 rounds. The capacity check and the assignment are one
compare-and-set each, so every round ends with exactly 8 items routed, nobody above
their capacity, and each person's load equal to the items routed to them.

Over 10 s because it is 50 rounds of four processes meeting at a barrier (the issue asks
for at least 50): ~20 s on an idle 2-core machine, ~95 s at a load average of 15. The
processes start once; each round is small (4 x 16 routing decisions).
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import pytest
from sqlalchemy import func, select, update

from baton.store import schema as s
from baton.work.team import ProfileChange

# A long durability test: CI runs it; ./scripts/test locally leaves it out (README).
pytestmark = pytest.mark.slow

ROUNDS, WORKERS, AGENTS, CAPACITY, ITEMS = 50, 4, 4, 2, 16

DEFS = """
kind: object
name: Ticket
fields:
  title: {type: string, required: true}
---
kind: routing
name: pool
from: {queue: q}
strategy: least_loaded
---
kind: orchestration
name: t_route_race
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: s
    steps: [{name: pick_up, type: interactive, assign: {routing: pool}}]
"""


def _router(url: str, start: Any, done: Any, rounds: int, routed: Any) -> None:
    from baton.clock import VirtualClock
    from baton.runtime.engine import Engine

    engine = Engine(url, clock=VirtualClock(), migrate=False)
    try:
        for _ in range(rounds):
            start.wait(timeout=60)
            with engine.store.write() as tx:
                n = engine.router.route_pool_txn(tx, "queue", "q", engine.clock.now())
            with routed.get_lock():
                routed.value += n
            done.wait(timeout=60)
    finally:
        engine.close()


@pytest.fixture
def harness_pg(tmp_path: Any, pg_url: str) -> Any:
    from baton.clock import VirtualClock
    from tests.conftest import Harness

    h = Harness(tmp_path, VirtualClock(), pg_url)
    yield h
    h.engine.close()


def test_capacity_holds_under_four_routing_processes(harness_pg: Any) -> None:
    h = harness_pg
    h.deploy_text(DEFS)
    names = [f"agent{i}" for i in range(AGENTS)]
    for name in names:
        h.engine.directory.add_user(name, roles=["agent"], queues=["q"])
        h.engine.team.update(name, ProfileChange(capacity=CAPACITY, availability="offline"),
                             "admin")
    for n in range(ITEMS):
        h.engine.create_record("Ticket", {"title": f"t{n}"})
    ctx = mp.get_context("spawn")
    start, done = ctx.Barrier(WORKERS + 1), ctx.Barrier(WORKERS + 1)
    routed = ctx.Value("i", 0)
    procs = [ctx.Process(target=_router, args=(h.db_url, start, done, ROUNDS, routed))
             for _ in range(WORKERS)]
    for p in procs:
        p.start()
    w, a, q = s.work_items, s.agents, s.agent_queues
    try:
        for round_ in range(ROUNDS):
            with h.engine.store.write() as tx:  # every item waiting again, everyone free
                tx.conn.execute(update(w).values(assignee_kind="queue", assignee="q",
                                                 routing_status="waiting", routed_to=None))
                tx.conn.execute(update(a).values(load=0, availability="available"))
                tx.conn.execute(update(q).values(load=0))
            routed.value = 0
            start.wait(timeout=60)
            done.wait(timeout=60)
            with h.engine.store.read() as tx:
                loads = {r.user_name: (r.load, r.capacity) for r in tx.conn.execute(select(a))}
                held = dict(tx.conn.execute(
                    select(w.c.routed_to, func.count()).where(w.c.routed_to.isnot(None))
                    .group_by(w.c.routed_to)).all())
            assert all(load <= cap for load, cap in loads.values()), (round_, loads)
            assert {n: loads[n][0] for n in names} == {n: held.get(n, 0) for n in names}, round_
            assert sum(held.values()) == AGENTS * CAPACITY == routed.value, (round_, held)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)
