"""Hardening regressions (issue 17): what a clumsy designer writes cannot break a write."""

from __future__ import annotations

from typing import Any

from baton.engine.status import RunStatus

TEN = "[1,2,3,4,5,6,7,8,9,10]"
# Six nested comprehensions over ten elements: a million iterations, past CEL's budget.
COSTLY = "=" + "".join(f"{TEN}.all({v}, " for v in "abcdef") + "true" + ")" * 6

CASE = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
  origin:  {type: choice, choices: [Web, Internal], default: Web}
"""


def test_a_trigger_condition_over_cels_budget_never_fails_the_record_write(harness: Any) -> None:
    """It was a RuntimeError, so every matching record create answered 500."""
    harness.deploy_text(CASE + f"""---
kind: orchestration
name: costly_trigger
trigger: {{type: record, object: Case, on: [create], when: '{COSTLY}'}}
stages:
  - name: only
    steps: [{{name: look, type: interactive, assign: {{queue: tier1}}}}]
""")
    rec = harness.engine.create_record("Case", {"subject": "Printer on fire"}, actor="user:ann")
    assert harness.engine.get_record(rec["id"])["subject"] == "Printer on fire"
    assert harness.engine.list_runs(record_id=rec["id"]) == []
    (failed,) = [e for e in harness.engine.timeline(rec["id"]) if e["type"] == "trigger_failed"]
    assert failed["data"]["orchestration"] == "costly_trigger"
    assert "too costly to evaluate" in failed["data"]["error"]


def test_an_assignment_over_cels_budget_fails_its_step_not_the_write(harness: Any) -> None:
    harness.deploy_text(CASE + f"""---
kind: orchestration
name: costly_assign
trigger: {{type: record, object: Case, on: [create]}}
stages:
  - name: only
    steps:
      - {{name: look, type: interactive, assign: {{queue: '={COSTLY[1:]} ? "tier1" : "tier2"'}}}}
""")
    rec = harness.engine.create_record("Case", {"subject": "Printer on fire"})
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    assert run.status is RunStatus.IN_PROGRESS
    step = run.steps["look"]
    assert step.status.value == "fallout"
    assert "too costly to evaluate" in str(step.error)
