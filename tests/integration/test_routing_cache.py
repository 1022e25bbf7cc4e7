"""Routing keeps each pool's static part per process (members, who is active, skills,
capacities, calendars) and reads it again when the routing generation moved: a change
made by another Engine (another process's cache) is seen by the next decision, so a person
whose skill was removed, who was set away, taken out of the queue, deactivated or given
closed working hours is never routed to afterwards; a change rolled back is not kept.
Both backends, virtual time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import update

from baton.runtime.engine import Engine
from baton.store import schema as s
from baton.work.team import ProfileChange

DEFS = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
---
kind: calendar
name: never
timezone: UTC
hours: {sun: ["00:00-00:01"]}  # one minute a week: never within hours here (a Monday)
---
kind: routing
name: dealer
from: {queue: dealers}
required_skills: [brand:ford]
strategy: most_skilled
---
kind: orchestration
name: support
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps: [{name: handle, type: interactive, assign: {routing: dealer}}]
"""
POOL = ("queue", "dealers")


@pytest.fixture
def two(harness: Any) -> Iterator[tuple[Any, Engine]]:
    """The harness's engine (changes profiles) and a second Engine on the same database
    (routes): two processes' caches."""
    h = harness
    h.deploy_text(DEFS)
    for name, level in (("ann", 5), ("bob", 1)):
        h.engine.directory.add_user(name, roles=["agent"], queues=["dealers"])
        h.engine.team.update(name, ProfileChange(skills={"brand:ford": level}, capacity=10),
                             "admin")
    other = Engine(h.db_url, clock=h.clock, migrate=False)
    yield h, other
    other.close()


def routed_to(engine: Engine) -> tuple[str | None, dict[str, Any]]:
    rec = engine.create_record("Case", {"subject": "s"})
    (event,) = [e["data"] for e in engine.timeline(rec["id"])
                if e["type"] in ("routed", "waiting_for_routing")]
    return event["winner"], event


def kept_generation(engine: Engine) -> int:
    return engine.router._pools[POOL][0]


def stored_generation(engine: Engine) -> int:
    with engine.store.read() as tx:
        n = tx.routing_generation_txn()
    assert n is not None
    return n


def test_a_skill_removed_by_another_engine_is_seen_by_the_next_decision(two: Any) -> None:
    h, other = two
    assert routed_to(other)[0] == "ann"  # the most skilled; the pool is now kept
    kept = kept_generation(other)
    assert kept == stored_generation(other)
    assert routed_to(other)[0] == "ann"  # (kept: read from the cache)
    assert kept_generation(other) == kept
    h.engine.team.update("ann", ProfileChange(remove_skills=("brand:ford",)), "admin")
    assert stored_generation(other) > kept
    winner, event = routed_to(other)
    assert winner == "bob"
    assert event["reasons"] == {"skill missing: brand:ford": 1}
    assert kept_generation(other) == stored_generation(other)


def test_a_person_set_away_by_another_engine_is_not_routed_to(two: Any) -> None:
    h, other = two
    assert routed_to(other)[0] == "ann"
    kept = kept_generation(other)
    h.engine.team.update("ann", ProfileChange(availability="away"), "admin")
    assert stored_generation(other) == kept  # availability is read at every pass
    winner, event = routed_to(other)
    assert (winner, event["reasons"]) == ("bob", {"away": 1})
    h.engine.team.update("bob", ProfileChange(availability="offline"), "admin")
    winner, event = routed_to(other)
    assert (winner, event["reasons"]) == (None, {"away": 1, "offline": 1})


def test_membership_activity_hours_and_capacity_changed_elsewhere(two: Any) -> None:
    h, other = two
    assert routed_to(other)[0] == "ann"
    h.engine.team.update("ann", ProfileChange(calendar="never"), "admin")
    assert routed_to(other)[1]["reasons"] == {"outside hours": 1}
    h.engine.team.update("ann", ProfileChange(calendar=None, capacity=1), "admin")
    assert routed_to(other)[1]["reasons"] == {"at capacity": 1}  # (ann holds one)
    h.engine.team.update("ann", ProfileChange(capacity=10), "admin")
    h.engine.directory.update_user("ann", active=False)
    assert routed_to(other)[1]["reasons"] == {"inactive": 1}
    h.engine.directory.update_user("ann", active=True, queues=["elsewhere"])
    winner, event = routed_to(other)
    assert (winner, event["considered"]) == ("bob", 1)  # ann is no longer in the pool
    h.engine.directory.update_user("ann", queues=["dealers"])
    assert routed_to(other)[0] == "ann"


def test_a_change_rolled_back_is_not_kept(two: Any) -> None:
    h, other = two
    assert routed_to(other)[0] == "ann"
    with pytest.raises(RuntimeError), other.store.write() as tx:  # seen inside, then undone
        tx.update_agent_txn("ann", {"skills": {}})
        agents, _ = other.router._agents_txn(tx, *POOL, "2026-01-01T00:00:00Z")
        assert {a.name: a.skills for a in agents}["ann"] == {}
        raise RuntimeError("rolled back")
    # Another transaction commits the generation the rolled-back one had raised it to.
    h.engine.team.update("bob", ProfileChange(capacity=9), "admin")
    assert routed_to(other)[0] == "ann"  # ann's skill, as committed


def test_a_change_behind_routing_s_back_is_seen_once_the_generation_moves(two: Any) -> None:
    """What the store's methods do not change (a row written by hand) is kept until the
    generation moves: the documented contract is that every change goes through them."""
    h, other = two
    assert routed_to(other)[0] == "ann"
    with h.engine.store.write() as tx:
        tx.conn.execute(update(s.agents).where(s.agents.c.user_name == "ann")
                        .values(skills={}))
        tx.bump_routing_generation_txn()
    assert routed_to(other)[0] == "bob"


def _remove_skill(url: str, name: str) -> None:
    """In another process: its own Engine takes ``name``'s brand:ford away."""
    from baton.clock import VirtualClock

    engine = Engine(url, clock=VirtualClock(), migrate=False)
    try:
        engine.team.update(name, ProfileChange(remove_skills=("brand:ford",)), "admin")
    finally:
        engine.close()


def test_a_skill_removed_by_another_process_is_never_routed_to(two: Any) -> None:
    import multiprocessing as mp

    h, _ = two
    assert routed_to(h.engine)[0] == "ann"  # this process keeps the pool
    kept = kept_generation(h.engine)
    proc = mp.get_context("spawn").Process(target=_remove_skill, args=(h.db_url, "ann"))
    proc.start()
    proc.join(timeout=120)
    assert proc.exitcode == 0
    assert stored_generation(h.engine) > kept
    for _ in range(3):
        winner, event = routed_to(h.engine)
        assert winner == "bob"
        assert event["reasons"] == {"skill missing: brand:ford": 1}
