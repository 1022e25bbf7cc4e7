"""``type: ai`` with ``task: classify`` on the offline provider, on both databases: the
category, its confidence and rationale are on the step's output and on the record's
timeline; low confidence answers ``review``; next rules route on the answer."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from baton.errors import DefinitionError
from baton.store import schema

DEFS = """
kind: object
name: Email
fields:
  subject: {type: string, required: true}
  body:    {type: text}
---
kind: orchestration
name: t_ai_intake
trigger: {type: record, object: Email}
stages:
  - name: read
    steps:
      - name: intent
        type: ai
        task: classify
        text: '=record.subject + " " + record.body'
        min_confidence: {threshold}
        categories:
          - name: billing
            description: questions about invoices, charges and payments
            examples: ["I was charged twice on my invoice", "my payment did not go through",
                       "refund the extra charge on my bill", "why is this invoice so high"]
          - name: technical
            description: something does not work
            examples: ["the app crashes when I log in", "error 500 on the dashboard",
                       "I cannot reset my password, the link is broken", "the page will not load"]
          - name: cancellation
            description: the customer wants to end the contract
            examples: ["please cancel my subscription", "I want to terminate my contract",
                       "close my account at the end of the month", "stop my membership"]
    next:
      - {when: '=steps.intent.output.outcome == "review"', goto: review}
      - {when: '=steps.intent.output.category == "cancellation"', goto: retention}
      - {goto: end}
  - name: review
    steps: [{name: check, type: interactive, assign: {queue: triage}}]
    next: [{goto: end}]
  - name: retention
    steps: [{name: call, type: interactive, assign: {queue: retention}}]
"""


def runs(harness: Any) -> list[dict[str, Any]]:
    with harness.engine.store.read() as tx:
        return [dict(r._mapping) for r in tx.conn.execute(select(schema.runs))]


def test_classify_routes_and_explains(harness: Any) -> None:
    harness.deploy_text(DEFS.replace("{threshold}", "0.3"))
    eng = harness.engine
    rec = eng.create_record("Email", {
        "subject": "Cancel please",
        "body": "Hello, I would like to cancel my subscription and terminate the contract.\n"
                "-- \nJane Doe, ACME Corp"})
    harness.work()
    (run,) = [eng.get_run(r["id"]) for r in runs(harness)]
    out = run.steps["intent"].output
    assert out["category"] == "cancellation" and out["outcome"] == "classified"
    assert 0.3 <= out["confidence"] <= 1 and out["ranking"][0]["category"] == "cancellation"
    assert any("cancel" in w for w in out["rationale"]), out["rationale"]
    ai = out["ai"]
    assert ai["provider"] == "offline" and ai["model"].startswith("baton-offline")
    assert len(ai["prompt_version"]) == 12 and ai["input_chars"] > 20
    assert run.current_stage == "retention"
    # the timeline says what the AI decided and why
    done = [e for e in eng.timeline(rec["id"]) if e["type"] == "step_completed"
            and e["data"]["step"] == "intent"]
    assert done and done[0]["data"]["output"]["rationale"] == out["rationale"]


def test_low_confidence_goes_to_review(harness: Any) -> None:
    harness.deploy_text(DEFS.replace("{threshold}", "0.99"))
    eng = harness.engine
    eng.create_record("Email", {"subject": "hello", "body": "a question about something"})
    harness.work()
    (run,) = [eng.get_run(r["id"]) for r in runs(harness)]
    assert run.steps["intent"].output["outcome"] == "review"
    assert run.current_stage == "review"


@pytest.mark.parametrize(("change", "message"), [
    (("task: classify", "task: summarise"), "unknown ai task 'summarise'"),
    (("min_confidence: {threshold}", "min_confidence: 2"), "expected a number from 0 to 1"),
    (("text: '=record.subject + \" \" + record.body'", "text: '=record.sender'"),
     "unknown record field 'sender'"),
    (("          - name: technical", "          - name: billing"), "duplicate category 'billing'"),
])
def test_bad_ai_steps_are_located(harness: Any, change: tuple[str, str], message: str) -> None:
    text = DEFS.replace(*change).replace("{threshold}", "0.5")
    with pytest.raises(DefinitionError) as exc:
        harness.deploy_text(text)
    assert message in str(exc.value) and "steps[0]" in str(exc.value), str(exc.value)
