"""An SLA's ``on_jeopardy`` naming a routing rule (issue 15): at jeopardy the item is routed
again with that rule — its assignee kept out when the action says ``exclude_assignee`` —
logged as ``routed`` with reason ``jeopardy``. Both backends, virtual time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from baton.work.team import ProfileChange
from tests.integration.test_routing import FORD, case, events

DEFS = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
  brand:   {type: string, default: ford}
---
kind: routing
name: dealer
from: {queue: dealers}
required_skills: ['="brand:" + record.brand']
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
        sla:
          duration: 4h
          jeopardy: 1h
          on_jeopardy: ACTION
        form: [{name: done, type: bool}]
"""


def setup_sla(h: Any, action: str, agents: tuple[str, ...] = ("ann", "bob"),
              more: str = "") -> None:
    h.deploy_text(DEFS.replace("ACTION", action) + more)
    for name in agents:
        h.engine.directory.add_user(name, roles=["agent"], queues=["dealers"])
        h.engine.team.update(name, ProfileChange(add_skills=FORD), "admin")


def at_jeopardy(h: Any) -> None:
    h.clock.advance(timedelta(hours=3))
    h.work()


def loads(h: Any) -> dict[str, int]:
    return {p.name: p.load for p in h.engine.team.everyone()}


def test_at_jeopardy_the_rule_routes_the_item_away_from_its_assignee(harness: Any) -> None:
    setup_sla(harness, "{routing: dealer, exclude_assignee: true}")
    rec, item = case(harness)
    assert item["assignee"] == "ann"
    harness.engine.claim(item["id"], "ann")
    at_jeopardy(harness)
    (now,) = harness.engine.list_work(record_id=rec, statuses=["open", "claimed"])
    assert (now["status"], now["assignee"], now["routing_status"]) == ("open", "bob", "routed")
    assert now["claimed_by"] is None
    routed = events(harness, rec, "routed")
    assert len(routed) == 2 and routed[-1]["reason"] == "jeopardy"
    assert routed[-1]["excluded"] == [{"user": "ann", "reason": "assignee at jeopardy"}]
    (moved,) = events(harness, rec, "work_item_reassigned")
    assert moved["reason"] == "jeopardy" and moved["from"] == "user:ann"
    assert moved["to"] == "queue:dealers"
    assert loads(harness) == {"ann": 0, "bob": 1}
    harness.engine.complete(now["id"], "bob", {"done": True})
    assert loads(harness) == {"ann": 0, "bob": 0}


def test_with_nobody_else_eligible_it_waits_for_routing(harness: Any) -> None:
    setup_sla(harness, "{routing: dealer, exclude_assignee: true}", ("ann",))
    rec, _item = case(harness)
    at_jeopardy(harness)
    (now,) = harness.engine.list_work(record_id=rec, statuses=["open"])
    assert (now["assignee"], now["routing_status"]) == ("dealers", "waiting")
    wait = events(harness, rec, "waiting_for_routing")[-1]
    assert wait["reasons"] == {"assignee at jeopardy": 1}
    assert loads(harness) == {"ann": 0}


def test_without_exclude_the_rule_may_pick_the_same_person(harness: Any) -> None:
    setup_sla(harness, "{routing: dealer}")
    rec, _item = case(harness)
    case(harness)  # bob has one too
    at_jeopardy(harness)
    routed = [e for e in events(harness, rec, "routed") if e.get("reason") == "jeopardy"]
    assert routed and routed[-1]["winner"] == "ann"  # least loaded again, by name


def test_a_rule_not_deployed_is_said_and_the_item_stays(harness: Any) -> None:
    """A deploy naming a rule that is not active is refused (tests/integration/
    test_checks_followups.py); a rule gone from under an active orchestration all the same
    (deactivated in a database from before that check: here, by the store itself) has its
    SLA action say so at jeopardy, and leave the item where it is."""
    nowhere = "---\nkind: routing\nname: nowhere\nfrom: {queue: elsewhere}\n"
    setup_sla(harness, "{routing: nowhere, notify: supervisor}", more=nowhere)
    with harness.engine.store.write() as tx:
        tx.set_active_txn("routing", "nowhere", -1)
    rec, _item = case(harness)
    at_jeopardy(harness)
    (now,) = harness.engine.list_work(record_id=rec, statuses=["open"])
    assert now["assignee"] == "ann"
    (failed,) = events(harness, rec, "sla_routing_failed")
    assert "routing rule 'nowhere' is not deployed" in failed["error"]["message"]
