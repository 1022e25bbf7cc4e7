"""Routing, found by an audit (brief "routing"): what waits in a queue is routed when
someone who may take it joins the queue (a new user, a membership changed, a user
reactivated or given a role that works items), not only on a profile change. Both
backends."""

from __future__ import annotations

from typing import Any

from baton.work.team import ProfileChange

DEFS = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
---
kind: routing
name: dealer
from: {queue: dealers}
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


def waiting_case(h: Any) -> str:
    rec = str(h.engine.create_record("Case", {"subject": "s"})["id"])
    h.work()
    assert holder(h, rec) == ("dealers", "waiting")
    return rec


def holder(h: Any, record_id: str) -> tuple[str, str]:
    (item,) = h.engine.list_work(record_id=record_id, statuses=["open", "claimed"])
    return item["assignee"], item["routing_status"]


def test_joining_the_queue_routes_what_waits_there(harness: Any) -> None:
    harness.deploy_text(DEFS)
    directory = harness.engine.directory
    directory.add_user("ann", roles=["agent"], queues=["dealers"])
    harness.engine.team.update("ann", ProfileChange(availability="away"), "admin")
    first = waiting_case(harness)
    directory.add_user("bob", roles=["agent"], queues=["dealers"])  # a new user in it
    harness.work()
    assert holder(harness, first) == ("bob", "routed")

    directory.update_user("bob", active=False)
    second = waiting_case(harness)
    directory.add_user("cy", roles=["agent"], queues=["support"])
    directory.update_user("cy", queues=["support", "dealers"])  # joins it
    harness.work()
    assert holder(harness, second) == ("cy", "routed")

    directory.update_user("cy", queues=["support"])
    third = waiting_case(harness)
    directory.update_user("bob", active=True)  # back
    harness.work()
    assert holder(harness, third) == ("bob", "routed")

    directory.update_user("bob", roles=["designer"])
    fourth = waiting_case(harness)  # (nobody in it may work items now)
    directory.update_user("bob", roles=["agent"])
    harness.work()
    assert holder(harness, fourth) == ("bob", "routed")
