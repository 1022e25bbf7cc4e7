"""Work-item priority and due date, on the pure core: the ``CreateWorkItem`` command an
interactive step asks for carries the priority its ``priority:`` option gives (a word, or
an expression evaluated when the item is created) and the step's SLA due time."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import Any

import pytest

from baton.definitions.loader import load_text
from baton.definitions.model import OrchestrationDefinition
from baton.engine.decide import decide
from baton.engine.events import Audit, CreateWorkItem, RunStarted
from baton.engine.state import Run

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

CASE = """\
kind: object
name: Case
fields:
  subject: {type: string}
  level:   {type: int}
---
kind: orchestration
name: t_priority
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - name: triage
        type: interactive
        assign: {queue: tier1}
"""


def created(option: str | None, *, sla: str | None = None, **record: Any
            ) -> tuple[CreateWorkItem, list[Audit]]:
    text = CASE + (f"        priority: {option}\n" if option is not None else "")
    text += f"        sla: {sla}\n" if sla else ""
    (defn,) = [d.definition for d in load_text(textwrap.dedent(text))
               if d.kind == "orchestration"]
    assert isinstance(defn, OrchestrationDefinition)
    run = Run(id="run-1", orchestration=defn.name, version=1, record_id="rec-1")
    rec = {"id": "rec-1", "subject": "x", "level": None, "created_at": "t", "updated_at": "t",
           "version": 1, **record}
    decision = decide(defn, run, RunStarted(), NOW, rec)
    (item,) = [c for c in decision.commands if isinstance(c, CreateWorkItem)]
    audits = [c for c in decision.commands
              if isinstance(c, Audit) and c.type == "work_item_priority_invalid"]
    return item, audits


def test_no_priority_is_normal_and_no_sla_no_due_date() -> None:
    item, audits = created(None)
    assert (item.priority, item.due_at, audits) == (1, None, [])


@pytest.mark.parametrize(("word", "value"), [("low", 0), ("normal", 1), ("high", 2),
                                             ("urgent", 3)])
def test_priority_words(word: str, value: int) -> None:
    assert created(word)[0].priority == value


@pytest.mark.parametrize(("level", "value"), [(3, 3), (1, 1)])
def test_priority_expression_is_evaluated_when_the_item_is_created(level: int, value: int) -> None:
    item, audits = created("'=record.level >= 3 ? \"urgent\" : \"normal\"'", level=level)
    assert (item.priority, audits) == (value, [])


def test_expression_result_is_matched_without_case_or_spaces() -> None:
    assert created("'=\" High \"'")[0].priority == 2


@pytest.mark.parametrize(("expr", "error"), [
    ("'=\"asap\"'", "expected one of: low, normal, high, urgent"),
    ("'=record.level'", "expected one of: low, normal, high, urgent"),  # a number: not a word
    ("'=record.level + 1'", None),  # level is empty: the expression cannot be evaluated
])
def test_a_bad_priority_falls_back_to_normal_and_is_audited(expr: str, error: str | None) -> None:
    item, (audit,) = created(expr, level=None if error is None else 2)
    assert item.priority == 1
    assert audit.data["used"] == "normal" and audit.data["step"] == "triage"
    if error:
        assert audit.data["error"] == error


def test_due_at_is_the_sla_due_time() -> None:
    item, _ = created("high", sla="{duration: 4h, jeopardy: 1h}")
    assert item.due_at == "2026-01-05T13:00:00.000Z"
    assert item.priority == 2
