"""Two people claim the same work item at the same moment: exactly one wins.

Each claimer has its own Engine (its own connections) on the same database, as two API
processes would; a barrier releases both claims together, for 100 items. A test hook
between each claim's read of the item and its compare-and-set (``WorkService.claim_hook``)
holds the first claimer there until the second is certainly inside its own claim: on
PostgreSQL, waiting on the row lock the first claim's read took (seen in
``pg_stat_activity``). So every pair of claims overlaps, and the test checks the second
reads the item already claimed (no two claimers are ever between read and write at once)
and loses. On SQLite the write lock taken at BEGIN serializes the claims the same way.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from baton.clock import VirtualClock
from baton.errors import TransitionConflict
from baton.runtime.engine import Engine

ITEMS = 100

DEFS = """
kind: object
name: Ticket
fields:
  title: {type: string, required: true}
---
kind: orchestration
name: t_race
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: s
    steps: [{name: pick_up, type: interactive, assign: {queue: support}}]
"""


def test_one_claim_wins(harness: Any) -> None:
    started = time.monotonic()
    harness.deploy_text(DEFS)
    for n in range(ITEMS):
        harness.engine.create_record("Ticket", {"title": f"ticket {n}"})
    items = [i["id"] for i in harness.engine.list_work(queue="support", limit=ITEMS)]
    assert len(items) == ITEMS

    users = ("ann", "bob")
    engines = [Engine(harness.db_url, clock=VirtualClock(harness.clock.now())) for _ in users]
    barrier = threading.Barrier(len(users), timeout=30)
    postgres = harness.db_url.startswith("postgresql")
    inside = {"now": 0, "max": 0, "calls": 0, "waited_for": 0}
    inside_lock = threading.Lock()

    def other_claim_waits() -> bool:
        """The other claimer is inside its claim too: blocked on the row lock, or (were the
        read not locking) between its own read and write."""
        if inside["now"] > 1:
            return True
        with harness.engine.store.read() as tx:
            return bool(tx.conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()").scalar_one())

    def between_read_and_write(item_id: str) -> None:
        with inside_lock:
            inside["now"] += 1
            inside["calls"] += 1
            inside["max"] = max(inside["max"], inside["now"])
        try:
            if postgres:  # hold this claim until the other one certainly overlaps it
                deadline = time.monotonic() + 10
                while not other_claim_waits():
                    assert time.monotonic() < deadline, "the other claim never overlapped"
                inside["waited_for"] += 1
        finally:
            with inside_lock:
                inside["now"] -= 1

    for engine in engines:
        engine.work.claim_hook = between_read_and_write
    results: dict[str, list[tuple[str, str]]] = {u: [] for u in users}  # (item, won|conflict)
    errors: list[BaseException] = []

    def claimer(engine: Engine, user: str) -> None:
        try:
            for item_id in items:
                barrier.wait()
                try:
                    engine.claim(item_id, user)
                    results[user].append((item_id, "won"))
                except TransitionConflict as exc:
                    assert "already claimed" in str(exc), exc
                    results[user].append((item_id, "conflict"))
        except BaseException as exc:  # noqa: BLE001 - reported below; break the barrier so nobody hangs
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=claimer, args=(engine, user))
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
    # Only the winner of each item got between read and write, never two at once: the
    # loser read the item already claimed (and, on PostgreSQL, its claim overlapped).
    assert inside == {"now": 0, "max": 1, "calls": ITEMS,
                      "waited_for": ITEMS if postgres else 0}, inside

    winners: dict[str, str] = {}
    for i, item_id in enumerate(items):
        outcome = {u: results[u][i] for u in users}
        assert all(o[0] == item_id for o in outcome.values())
        won = [u for u, (_, o) in outcome.items() if o == "won"]
        assert len(won) == 1, (item_id, outcome)
        winners[item_id] = won[0]

    # the database agrees: claimed once, by the winner, with one audit event each
    for item_id in items:
        item = harness.engine.get_work_item(item_id)
        assert (item["status"], item["claimed_by"]) == ("claimed", winners[item_id])
    with harness.engine.store.read() as tx:
        claimed = tx.events_txn(types=["work_item_claimed"])
    assert sorted(e["data"]["work_item"] for e in claimed) == sorted(items)
    assert {e["data"]["work_item"]: e["actor"] for e in claimed} == winners
    # who wins each overlap is up to the database, so sides are not asserted; the time is.
    assert time.monotonic() - started < 60
