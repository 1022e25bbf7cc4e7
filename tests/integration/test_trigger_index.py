"""The record triggers a write fires are kept per index of active versions: a deploy, an
activation or a deactivation is seen by the next write, as when every write walked the
active definitions."""

from __future__ import annotations

from typing import Any

FLOW = """
kind: object
name: Ticket
fields:
  subject: {type: string, required: true}
---
kind: orchestration
name: handle
trigger: {type: record, object: Ticket, on: [%s]}
stages:
  - name: work
    steps:
      - {name: answer, type: interactive, assign: {queue: support}, form: [{name: reply, type: text}]}
"""


def _runs(e: Any) -> int:
    return int(e.count_runs(orchestration="handle"))


def test_a_deploy_changes_what_the_next_write_triggers(harness: Any) -> None:
    e = harness.engine
    harness.deploy_text(FLOW % "create")
    rec = e.create_record("Ticket", {"subject": "a"})
    e.update_record(rec["id"], {"subject": "b"})
    assert _runs(e) == 1  # created: started; updated: not
    harness.deploy_text(FLOW % "update", name="v2.yaml")  # version 2, active
    e.create_record("Ticket", {"subject": "c"})
    assert _runs(e) == 1
    e.update_record(rec["id"], {"subject": "d"})
    assert _runs(e) == 2
    e.definitions.set_active("orchestration", "handle", None, "test")
    e.update_record(rec["id"], {"subject": "e"})
    assert _runs(e) == 2
    e.definitions.set_active("orchestration", "handle", 1, "test")
    e.create_record("Ticket", {"subject": "f"})
    assert _runs(e) == 3


def test_another_processs_deploy_is_seen_once_the_definitions_look_again(
        harness: Any, db_url: str) -> None:
    from baton.runtime.engine import Engine

    e = harness.engine
    harness.deploy_text(FLOW % "create")
    e.create_record("Ticket", {"subject": "a"})
    assert _runs(e) == 1
    other = Engine(db_url, migrate=False)  # (another process, as far as `e` knows)
    try:
        path = harness.tmp / "v2.yaml"
        path.write_text(FLOW % "update")
        other.deploy([path], known_flows=None)
    finally:
        other.close()
    e.definitions.forget()  # (what the next refresh after its interval does)
    e.create_record("Ticket", {"subject": "b"})
    assert _runs(e) == 1
