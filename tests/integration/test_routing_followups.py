"""Routing, found by an audit (brief "routing"): an item left waiting is routed at the next
opening of a calendar that keeps someone out, also when the job that armed an earlier
opening is spent, when the person came back (available again) outside their hours, and
when their calendar is closed for longer than two weeks; equals take turns
(``least_loaded`` and ``most_skilled`` break a tie by who has been idle longest, not by
name); a person's load gives back what completion, reassignment, cancellation and an
expired offer take off them. Both backends, virtual time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from baton.work.team import ProfileChange

DEFS = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
---
kind: calendar
name: lisbon
timezone: Europe/Lisbon
hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"],
        thu: ["09:00-17:00"], fri: ["09:00-17:00"]}
---
kind: calendar
name: sao_paulo
timezone: America/Sao_Paulo
hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"],
        thu: ["09:00-17:00"], fri: ["09:00-17:00"]}
---
kind: calendar
name: shutdown
timezone: Europe/Lisbon
hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"],
        thu: ["09:00-17:00"], fri: ["09:00-17:00"]}
extra_dates: [DATES]
---
kind: routing
name: dealer
from: {queue: dealers}
required_skills: [brand:ford]
strategy: STRATEGY
OFFER
---
kind: orchestration
name: support
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - name: handle
        type: interactive
        assign: {routing: dealer}
        form: [{name: done, type: bool}]
"""
FORD = {"brand:ford": 3}
MON_07Z = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)  # 07:00 in Lisbon, 04:00 in São Paulo


def setup(h: Any, agents: dict[str, dict[str, Any]], strategy: str = "least_loaded",
          offer: str = "") -> None:
    # The shutdown calendar is closed from Mon 2026-01-05 for three weeks (to Fri 23rd).
    dates = ", ".join(f"2026-01-{d:02d}" for d in range(5, 24))
    h.deploy_text(DEFS.replace("STRATEGY", strategy).replace("OFFER", offer)
                  .replace("DATES", dates))
    for name, profile in agents.items():
        h.engine.directory.add_user(name, roles=["agent"], queues=["dealers"])
        h.engine.team.update(name, ProfileChange(add_skills=FORD, **profile), "admin")


def case(h: Any, subject: str = "s") -> str:
    return str(h.engine.create_record("Case", {"subject": subject})["id"])


def holder(h: Any, record_id: str) -> tuple[str, str]:
    (item,) = h.engine.list_work(record_id=record_id, statuses=["open", "claimed"])
    return item["assignee"], item["routing_status"]


def at(h: Any, clock: Any, when: datetime) -> None:
    """Move the virtual clock to ``when`` and run what became due."""
    clock.advance(when - clock.now())
    h.work()


def loads(h: Any) -> dict[str, int]:
    return {p.name: p.load for p in h.engine.team.everyone()}


def test_the_next_opening_is_armed_again_after_a_pass_at_an_earlier_one(
        harness: Any, clock: Any) -> None:
    """Bob (Lisbon, room for one) opens at 09:00Z, Ann (São Paulo) at 12:00Z. The job at
    Bob's opening routes one item to him; the other still waits, and is Ann's at hers."""
    at(harness, clock, MON_07Z)
    setup(harness, {"ann": {"calendar": "sao_paulo"},
                    "bob": {"calendar": "lisbon", "capacity": 1}})
    first, second = case(harness, "one"), case(harness, "two")
    harness.work()
    assert holder(harness, first) == holder(harness, second) == ("dealers", "waiting")
    at(harness, clock, datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    assert holder(harness, first) == ("bob", "routed")
    assert holder(harness, second) == ("dealers", "waiting")
    at(harness, clock, datetime(2026, 1, 5, 11, 59, tzinfo=UTC))
    assert holder(harness, second) == ("dealers", "waiting")
    at(harness, clock, datetime(2026, 1, 5, 12, 0, tzinfo=UTC))  # 09:00 in São Paulo
    assert holder(harness, second) == ("ann", "routed")
    assert loads(harness) == {"ann": 1, "bob": 1}


def test_back_available_outside_hours_gets_the_item_at_the_next_opening(
        harness: Any, clock: Any) -> None:
    at(harness, clock, datetime(2026, 1, 5, 14, 0, tzinfo=UTC))  # Monday afternoon
    setup(harness, {"ann": {"calendar": "lisbon", "availability": "away"}})
    rec = case(harness)
    harness.work()
    assert holder(harness, rec) == ("dealers", "waiting")
    at(harness, clock, datetime(2026, 1, 5, 18, 0, tzinfo=UTC))  # after hours
    harness.engine.team.update("ann", ProfileChange(availability="available"), "ann")
    harness.work()
    assert holder(harness, rec) == ("dealers", "waiting")
    at(harness, clock, datetime(2026, 1, 6, 8, 59, tzinfo=UTC))
    assert holder(harness, rec) == ("dealers", "waiting")
    at(harness, clock, datetime(2026, 1, 6, 9, 0, tzinfo=UTC))  # Tuesday 09:00 in Lisbon
    assert holder(harness, rec) == ("ann", "routed")


def test_a_calendar_closed_for_three_weeks_is_looked_at_again(harness: Any,
                                                             clock: Any) -> None:
    """No opening within the two weeks looked ahead: a re-check is armed at their end,
    which arms the real opening (Monday 2026-01-26, 09:00 in Lisbon)."""
    at(harness, clock, datetime(2026, 1, 5, 10, 0, tzinfo=UTC))
    setup(harness, {"ann": {"calendar": "shutdown"}})
    rec = case(harness)
    harness.work()
    assert holder(harness, rec) == ("dealers", "waiting")
    at(harness, clock, datetime(2026, 1, 20, 0, 0, tzinfo=UTC))  # the re-check: still shut
    assert holder(harness, rec) == ("dealers", "waiting")
    at(harness, clock, datetime(2026, 1, 26, 8, 59, tzinfo=UTC))
    assert holder(harness, rec) == ("dealers", "waiting")
    at(harness, clock, datetime(2026, 1, 26, 9, 0, tzinfo=UTC))
    assert holder(harness, rec) == ("ann", "routed")


@pytest.mark.parametrize("strategy", ["least_loaded", "most_skilled"])
def test_equals_take_turns(harness: Any, clock: Any, strategy: str) -> None:
    """Items finished as fast as they come: everyone's load is 0 at each decision, so the
    tie is broken by who has been idle longest — not always the first name."""
    setup(harness, {"ann": {"capacity": 2}, "bob": {"capacity": 2}, "cy": {"capacity": 2}},
          strategy)
    got = []
    for k in range(6):
        clock.advance(timedelta(minutes=1))
        rec = case(harness, f"c{k}")
        (item,) = harness.engine.list_work(record_id=rec, statuses=["open"])
        got.append(item["assignee"])
        clock.advance(timedelta(minutes=1))
        harness.engine.complete(item["id"], item["assignee"], {"done": True})
        harness.work()
    assert got == ["ann", "bob", "cy", "ann", "bob", "cy"]
    assert loads(harness) == {"ann": 0, "bob": 0, "cy": 0}


def test_loads_follow_completion_reassignment_cancellation_and_expired_offers(
        harness: Any, clock: Any) -> None:
    setup(harness, {"ann": {"capacity": 1}, "bob": {"capacity": 1}},
          offer="offer: {timeout: 2m}")
    work = harness.engine.work
    first = case(harness, "one")
    assert holder(harness, first) == ("ann", "offered")
    assert loads(harness) == {"ann": 1, "bob": 0}
    clock.advance(timedelta(minutes=2))  # ann lets it expire: bob's, once
    harness.work()
    assert holder(harness, first) == ("bob", "offered")
    assert loads(harness) == {"ann": 0, "bob": 1}
    clock.advance(timedelta(minutes=1))
    harness.work()  # (ann's timer does not fire a second time)
    (item,) = harness.engine.list_work(record_id=first, statuses=["open"])
    work.accept(item["id"], "bob", None)
    expired = [e for e in harness.engine.timeline(first) if e["type"] == "offer_expired"]
    assert [e["data"]["user"] for e in expired] == ["ann"]
    second = case(harness, "two")  # ann has room: offered to her
    assert holder(harness, second) == ("ann", "offered")
    work.reassign(item["id"], "user:ann", "admin")  # by hand: bob's unit comes back
    harness.work()
    assert loads(harness) == {"ann": 1, "bob": 0}
    third = case(harness, "three")
    assert holder(harness, third) == ("bob", "offered")
    (run,) = harness.engine.list_runs(record_id=third)
    harness.engine.cancel_run(run.id, "withdrawn", actor="admin")
    harness.work()
    assert loads(harness) == {"ann": 1, "bob": 0}
    (offer,) = harness.engine.list_work(record_id=second, statuses=["open"])
    work.accept(offer["id"], "ann", None)
    harness.engine.complete(offer["id"], "ann", {"done": True})
    harness.work()
    assert loads(harness) == {"ann": 0, "bob": 0}
    clock.advance(timedelta(minutes=10))  # every offer's timer is spent: nothing moves
    harness.work()
    assert loads(harness) == {"ann": 0, "bob": 0}
