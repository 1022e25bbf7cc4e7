"""Work items carry their step's priority and SLA due time in their own columns, so
``list_work(order="due" | "priority")`` sorts in the database (both backends)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from baton.store import schema

DEFS = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
  level:   {type: int, default: 1}
---
kind: orchestration
name: t_prio
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - {name: plain, type: interactive, assign: {queue: q}}
      - {name: low_soon, type: interactive, assign: {queue: q}, priority: low,
         sla: {duration: 1h}}
      - {name: urgent_late, type: interactive, assign: {queue: q}, priority: urgent,
         sla: {duration: 8h}}
      - {name: by_level, type: interactive, assign: {queue: q},
         priority: '=record.level >= 2 ? "high" : "nonsense"', sla: {duration: 2h}}
"""


def columns(harness: Any, run_id: str) -> dict[str, tuple[int, str | None]]:
    """What is stored: step -> (priority, due_at), read from the table itself."""
    t = schema.work_items
    with harness.engine.store.read() as tx:
        rows = tx.conn.execute(select(t.c.step, t.c.priority, t.c.due_at)
                               .where(t.c.run_id == run_id)).all()
    return {r.step: (r.priority, r.due_at) for r in rows}


def test_priority_and_due_at_are_stored_and_sort_the_work_list(harness: Any) -> None:
    harness.deploy_text(DEFS)
    rec = harness.engine.create_record("Case", {"subject": "a", "level": 2})
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    assert columns(harness, run.id) == {
        "plain": (1, None),
        "low_soon": (0, "2026-01-05T10:00:00.000Z"),
        "urgent_late": (3, "2026-01-05T17:00:00.000Z"),
        "by_level": (2, "2026-01-05T11:00:00.000Z"),
    }
    by_priority = [i["step"] for i in harness.engine.list_work(queue="q", order="priority")]
    assert by_priority == ["urgent_late", "by_level", "plain", "low_soon"]
    by_due = [i["step"] for i in harness.engine.list_work(queue="q", order="due")]
    assert by_due == ["low_soon", "by_level", "urgent_late", "plain"]  # no due date last


def test_a_priority_expression_outside_the_words_gives_normal_and_says_so(harness: Any) -> None:
    harness.deploy_text(DEFS)
    rec = harness.engine.create_record("Case", {"subject": "a", "level": 1})
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    assert columns(harness, run.id)["by_level"][0] == 1
    (ev,) = [e for e in harness.engine.run_events(run.id)
             if e["type"] == "work_item_priority_invalid"]
    assert ev["data"]["step"] == "by_level" and ev["data"]["value"] == "nonsense"
    assert ev["data"]["used"] == "normal"


RETRY_DEFS = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
  level:   {type: int, default: 1}
---
kind: orchestration
name: t_due
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - name: look
        type: interactive
        assign: {queue: q}
        priority: high
        # fails (division by zero) when level becomes 5: the step goes to fallout
        complete_when: '=record.level == 5 && 10 / (record.level - 5) > 1'
        sla: {duration: 4h}
"""


def test_due_at_follows_the_sla_when_it_restarts(harness: Any) -> None:
    """An operator's retry restarts the step's SLA: its new work item is due 4 h after it."""
    harness.deploy_text(RETRY_DEFS)
    rec = harness.engine.create_record("Case", {"subject": "a"})
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    harness.clock.advance(timedelta(hours=1))
    harness.engine.update_record(rec["id"], {"level": 5})
    harness.work()
    assert harness.step_status(run.id) == {"look": "fallout"}
    assert harness.engine.list_work(queue="q") == []  # its item was canceled
    harness.engine.update_record(rec["id"], {"level": 1})
    harness.work()
    harness.clock.advance(timedelta(hours=1))
    harness.engine.resolve_fallout(f"{run.id}:look", "retry", reason="fixed the level")
    (item,) = harness.engine.list_work(queue="q")
    t = schema.work_items
    with harness.engine.store.read() as tx:
        stored = tx.conn.execute(select(t.c.due_at, t.c.priority).where(t.c.id == item["id"])).one()
    assert stored.due_at == "2026-01-05T15:00:00.000Z" == item["due_at"]
    assert stored.priority == 2
