"""Two agents press "Next item" at the same moment: they get different items, and every
item goes to exactly one of them.

Each agent has its own Engine (its own connections) on the same database, as two API
processes would; a barrier releases both requests together, round after round. On
PostgreSQL a test hook between "next"'s read of its candidates and its compare-and-set
(``WorkService.claim_hook``) holds each agent's first attempt until the other one has
read the same candidate too, so every round the two race for the same item: the loser's
compare-and-set waits on the winner's row lock, finds the item claimed, and goes on to
the next candidate. On SQLite the write lock taken at BEGIN serializes the two the same
way (the second reads after the first committed).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from baton.clock import VirtualClock
from baton.runtime.engine import Engine

ROUNDS = 12

DEFS = """
kind: object
name: Ticket
fields:
  title: {type: string, required: true}
---
kind: orchestration
name: t_next
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: s
    steps: [{name: pick_up, type: interactive, assign: {queue: support},
             priority: '=record.title.startsWith("urgent") ? "urgent" : "normal"'}]
"""


def test_two_agents_pressing_next_get_different_items(harness: Any) -> None:
    harness.deploy_text(DEFS)
    for n in range(2 * ROUNDS):
        harness.engine.create_record("Ticket", {"title": f"{'urgent' if n % 3 == 0 else 'ticket'} {n}"})
    for name in ("ann", "bob"):
        harness.engine.directory.add_user(name, roles=["agent"], queues=["support"])
    items = harness.engine.list_work(queue="support", limit=100)
    assert len(items) == 2 * ROUNDS
    urgent = {i["id"] for i in items if i["priority"] == 3}

    users = ("ann", "bob")
    engines = [Engine(harness.db_url, clock=VirtualClock(harness.clock.now())) for _ in users]
    barrier = threading.Barrier(len(users), timeout=30)
    postgres = harness.db_url.startswith("postgresql")
    lock = threading.Lock()
    first_reads: dict[int, dict[str, str]] = {}  # round -> user -> first candidate tried
    state = threading.local()

    def hook_for(user: str) -> Any:
        def between_read_and_write(item_id: str) -> None:
            if getattr(state, "tried", True):
                return  # only each round's first candidate is held
            state.tried = True
            with lock:
                first_reads.setdefault(state.round, {})[user] = item_id
            if postgres:  # hold it until the other agent has read its candidates too
                deadline = time.monotonic() + 10
                while len(first_reads[state.round]) < len(users):
                    assert time.monotonic() < deadline, "the other agent never overlapped"
                    time.sleep(0.005)
        return between_read_and_write

    for engine, user in zip(engines, users, strict=True):
        engine.work.claim_hook = hook_for(user)
    got: dict[str, list[str | None]] = {u: [] for u in users}
    errors: list[BaseException] = []

    def agent(engine: Engine, user: str) -> None:
        me = engine.directory.find_user(user)
        assert me is not None
        try:
            for r in range(ROUNDS + 1):
                state.round, state.tried = r, False
                barrier.wait()
                item = engine.claim_next(me)
                got[user].append(item["id"] if item else None)
        except BaseException as exc:  # noqa: BLE001 - reported below; break the barrier
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=agent, args=(engine, user))
               for engine, user in zip(engines, users, strict=True)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for e in engines:
            e.close()
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors

    for r in range(ROUNDS):
        assert got["ann"][r] != got["bob"][r], (r, got)
        if postgres:  # both went for the same item first: one of them lost it and went on
            assert first_reads[r]["ann"] == first_reads[r]["bob"], first_reads[r]
    assert got["ann"][ROUNDS] is None and got["bob"][ROUNDS] is None  # nothing left
    taken = [i for u in users for i in got[u][:ROUNDS]]
    assert sorted(taken) == sorted(i["id"] for i in items)  # each item exactly once
    # the urgent ones went first (rounds 0..3 take the 8 urgent items)
    first = {i for u in users for i in got[u][:len(urgent) // 2]}
    assert first == urgent
    for item_id, user in ((i, u) for u in users for i in got[u][:ROUNDS]):
        row = harness.engine.get_work_item(item_id)
        assert (row["status"], row["claimed_by"]) == ("claimed", user)
