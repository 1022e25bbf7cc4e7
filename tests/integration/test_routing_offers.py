"""Routing's offer mode (DESIGN §2.2, issue 15): a rule with ``offer: {timeout: ...}``
offers each item to the person it picks, who accepts or declines; an offer not accepted in
time goes to the next candidate through a durable timer; with nobody left the item waits
for routing. An offered item counts against its offeree's capacity. Both backends,
virtual time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from baton.errors import PermissionDenied, TransitionConflict
from baton.work.team import ProfileChange
from tests.integration.test_routing import DEFS, FORD, case, events


def offers(h: Any, agents: dict[str, dict[str, Any]], timeout: str = "2m") -> None:
    h.deploy_text(DEFS.replace("STRATEGY", "least_loaded").replace("STICKY", "false")
                  .replace("sticky: false", f"sticky: false\noffer: {{timeout: {timeout}}}"))
    for name, profile in agents.items():
        h.engine.directory.add_user(name, roles=["agent"], queues=["dealers"])
        h.engine.team.update(name, ProfileChange(**profile), "admin")


def item_of(h: Any, record_id: str) -> dict[str, Any]:
    (it,) = h.engine.list_work(record_id=record_id, statuses=["open", "claimed"])
    return dict(it)


def loads(h: Any) -> dict[str, int]:
    return {p.name: p.load for p in h.engine.team.everyone()}


TWO = {"ann": {"add_skills": FORD, "capacity": 1}, "bob": {"add_skills": FORD, "capacity": 1}}


def test_an_accepted_offer_is_the_offerees_and_its_timer_then_does_nothing(
        harness: Any, clock: Any) -> None:
    offers(harness, TWO)
    rec, item = case(harness)
    assert (item["assignee"], item["routing_status"]) == ("ann", "offered")
    (offer,) = events(harness, rec, "offered")
    assert offer["winner"] == "ann" and offer["expires_at"].startswith("2026-01-05T09:02:00")
    assert loads(harness) == {"ann": 1, "bob": 0}  # an offer counts against capacity
    with pytest.raises(TransitionConflict, match="offered to ann"):
        harness.engine.claim(item["id"], "ann")
    with pytest.raises(TransitionConflict, match="offered to ann"):
        harness.engine.complete(item["id"], "ann", {"done": True})
    with pytest.raises(PermissionDenied, match="offered to ann, not bob"):
        harness.engine.accept(item["id"], "bob")
    accepted = harness.engine.accept(item["id"], "ann")
    assert (accepted["assignee"], accepted["routing_status"]) == ("ann", "routed")
    (ev,) = events(harness, rec, "offer_accepted")
    assert ev["user"] == "ann"
    with pytest.raises(TransitionConflict, match="not offered"):
        harness.engine.decline(item["id"], "ann")
    clock.advance(timedelta(minutes=5))
    harness.work()  # the offer's timer comes: the offer was accepted, nothing changes
    assert item_of(harness, rec)["assignee"] == "ann"
    assert events(harness, rec, "offer_expired") == []
    harness.engine.claim(item["id"], "ann")
    harness.engine.complete(item["id"], "ann", {"done": True})
    assert loads(harness) == {"ann": 0, "bob": 0}


def test_a_declined_offer_goes_to_the_next_candidate(harness: Any) -> None:
    offers(harness, TWO)
    rec, item = case(harness)
    harness.engine.decline(item["id"], "ann")
    now = item_of(harness, rec)
    assert (now["assignee"], now["routing_status"]) == ("bob", "offered")
    assert loads(harness) == {"ann": 0, "bob": 1}
    (declined,) = events(harness, rec, "offer_declined")
    assert declined["user"] == "ann" and declined["reason"] == "declined"
    second = events(harness, rec, "offered")[-1]
    assert second["winner"] == "bob"
    assert second["excluded"] == [{"user": "ann", "reason": "declined"}]
    kinds = [e["type"] for e in harness.engine.timeline(rec)]
    assert kinds.index("offer_declined") < len(kinds) - 1 - kinds[::-1].index("offered")
    # a new item may go to ann again: only this one is kept from her
    assert case(harness)[1]["assignee"] == "ann"


def test_an_offer_not_accepted_in_time_expires_and_then_the_item_waits(
        harness: Any, clock: Any) -> None:
    offers(harness, TWO)
    rec, item = case(harness)
    clock.advance(timedelta(minutes=1, seconds=59))
    harness.work()
    assert item_of(harness, rec)["assignee"] == "ann"
    clock.advance(timedelta(seconds=1))  # 2m: ann's offer expires, bob is offered it
    harness.work()
    now = item_of(harness, rec)
    assert (now["assignee"], now["routing_status"]) == ("bob", "offered")
    (expired,) = events(harness, rec, "offer_expired")
    assert expired["user"] == "ann" and expired["reason"] == "offer expired"
    clock.advance(timedelta(minutes=2))  # bob's expires too: nobody is left, it waits
    harness.work()
    now = item_of(harness, rec)
    assert (now["assignee_kind"], now["assignee"], now["routing_status"]) == \
        ("queue", "dealers", "waiting")
    wait = events(harness, rec, "waiting_for_routing")[-1]
    assert wait["reasons"] == {"offer expired": 2}
    assert loads(harness) == {"ann": 0, "bob": 0}
    with pytest.raises(TransitionConflict, match="not offered"):
        harness.engine.accept(item["id"], "bob")


def test_declined_by_everyone_it_waits_until_someone_new_is_eligible(harness: Any) -> None:
    offers(harness, TWO)
    rec, item = case(harness)
    harness.engine.decline(item["id"], "ann")
    harness.engine.decline(item["id"], "bob")
    now = item_of(harness, rec)
    assert (now["assignee"], now["routing_status"]) == ("dealers", "waiting")
    assert events(harness, rec, "waiting_for_routing")[-1]["reasons"] == {"declined": 2}
    # ann becoming available again changes nothing for this item: she declined it
    harness.engine.team.update("ann", ProfileChange(availability="away"), "ann")
    harness.engine.team.update("ann", ProfileChange(availability="available"), "ann")
    assert item_of(harness, rec)["routing_status"] == "waiting"
    harness.engine.directory.add_user("cy", roles=["agent"], queues=["dealers"])
    harness.engine.team.update("cy", ProfileChange(add_skills=FORD), "admin")
    now = item_of(harness, rec)
    assert (now["assignee"], now["routing_status"]) == ("cy", "offered")
    harness.engine.accept(item["id"], "cy")
    assert loads(harness) == {"ann": 0, "bob": 0, "cy": 1}


def test_an_offered_item_reassigned_by_hand_frees_the_offerees_capacity(
        harness: Any, clock: Any) -> None:
    offers(harness, TWO)
    rec, item = case(harness)
    harness.engine.reassign(item["id"], "user:bob", actor="admin")
    assert loads(harness) == {"ann": 0, "bob": 0}
    clock.advance(timedelta(minutes=3))
    harness.work()  # the old offer's timer: no longer that offer
    assert item_of(harness, rec)["assignee"] == "bob"
    assert events(harness, rec, "offer_expired") == []
