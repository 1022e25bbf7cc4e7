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


EXTRACT = """
kind: object
name: Email
fields:
  subject: {type: string, required: true}
  body:    {type: text}
---
kind: orchestration
name: t_ai_extract
trigger: {type: record, object: Email}
stages:
  - name: read
    steps:
      - name: fields
        type: ai
        task: extract
        text: '=record.subject + "\\n" + record.body'
        patterns: {order: 'ORD-\\d{4}-\\d{4}'}
        fields:
          order: {required: true, pattern: order}
          placed: {type: date}
          amount: {type: decimal}
          email: {type: email, required: true}
          customer: {labels: [Kundennummer, customer no], type: int}
    next:
      - {when: '=steps.fields.output.outcome == "missing_information"', goto: ask}
      - {goto: end}
  - name: ask
    steps: [{name: ask_customer, type: interactive, assign: {queue: triage}}]
"""


def test_extract_finds_typed_fields_and_routes_missing_information(harness: Any) -> None:
    harness.deploy_text(EXTRACT)
    eng = harness.engine
    full = eng.create_record("Email", {
        "subject": "Order ORD-2024-0042 not delivered",
        "body": "Ordered on 3. Juni 2024 for 1.299,00 €. Kundennummer: 4711\n"
                "-- \nJan, jan@example.org"})
    eng.create_record("Email", {"subject": "where is my parcel", "body": "no number, sorry"})
    harness.work()
    by_record = {r["record_id"]: eng.get_run(r["id"]) for r in runs(harness)}
    run = by_record[full["id"]]
    out = run.steps["fields"].output
    assert out["fields"] == {"order": "ORD-2024-0042", "placed": "2024-06-03",
                             "amount": "1299.00", "email": "jan@example.org", "customer": 4711}
    assert out["outcome"] == "extracted" and out["missing"] == [] and out["confidence"] == 1.0
    assert "order: 'ORD-2024-0042' at 6 (pattern)" in out["rationale"]
    assert out["ai"]["model"].startswith("baton-offline-patterns")
    assert run.status.value == "completed"
    (other,) = [r for rid, r in by_record.items() if rid != full["id"]]
    out = other.steps["fields"].output
    assert out["outcome"] == "missing_information" and out["missing"] == ["order", "email"]
    assert out["fields"]["order"] is None and "order: not found (required)" in out["rationale"]
    assert other.current_stage == "ask"


MATCH = """
kind: object
name: Account
fields:
  name: {type: string, required: true}
  domain: {type: string}
  website: {type: string}
---
kind: object
name: Email
fields:
  subject: {type: string, required: true}
  body:    {type: text}
---
kind: orchestration
name: t_ai_match
trigger: {type: record, object: Email}
stages:
  - name: read
    steps:
      - name: account
        type: ai
        task: match
        text: '=record.subject + "\\n" + record.body'
        match: {object: Account, fields: [domain, name, website], min_score: 85, many: {many}}
    next:
      - {when: '=steps.account.output.outcome != "matched"', goto: review}
      - {goto: end}
  - name: review
    steps: [{name: pick, type: interactive, assign: {queue: triage}}]
"""


def _accounts(eng: Any) -> dict[str, str]:
    out = {}
    for name, domain, site in [("Autohaus Schmidt GmbH", "autohaus-schmidt.de", None),
                               ("Bayview Cars Inc.", "bayviewcars.com",
                                "https://www.bayviewcars.com"),
                               ("Lisboa Motors", "lisboamotors.pt", None),
                               ("Dealer Support Desk", "support-desk.example", None)]:
        out[name] = eng.create_record("Account", {"name": name, "domain": domain,
                                                  "website": site})["id"]
    return out


def test_match_finds_the_account_not_the_signature(harness: Any) -> None:
    harness.deploy_text(MATCH.replace("{many}", "false"))
    eng = harness.engine
    ids = _accounts(eng)
    one = eng.create_record("Email", {
        "subject": "Login problem",
        "body": "Our dealer portal https://bayviewcars.com/portal rejects passwords.\n\n"
                "Best regards\nAnna\nDealer Support Desk | support-desk.example"})
    none = eng.create_record("Email", {"subject": "hello", "body": "a general question\n"
                                       "-- \nDealer Support Desk, support-desk.example"})
    harness.work()
    by_record = {r["record_id"]: eng.get_run(r["id"]) for r in runs(harness)
                 if r["record_id"] in (one["id"], none["id"])}
    out = by_record[one["id"]].steps["account"].output
    assert out["outcome"] == "matched" and out["record_id"] == ids["Bayview Cars Inc."]
    assert out["score"] == 100.0 and out["matched_on"] in ("domain", "website")
    assert [c["record_id"] for c in out["candidates"]] == [ids["Bayview Cars Inc."]]
    assert "bayviewcars.com" in out["rationale"][0]
    # nothing in the new text: only then is the signature searched (the sender's own)
    out = by_record[none["id"]].steps["account"].output
    assert out["record_id"] == ids["Dealer Support Desk"] and out["outcome"] == "matched"
    assert by_record[one["id"]].status.value == "completed"


def test_match_many_returns_every_account(harness: Any) -> None:
    harness.deploy_text(MATCH.replace("{many}", "true"))
    eng = harness.engine
    ids = _accounts(eng)
    rec = eng.create_record("Email", {
        "subject": "Two dealers", "body": "Please reset the logins of Autohaus Schmidt and "
                                          "of joao@lisboamotors.pt. Thanks"})
    harness.work()
    (run,) = [eng.get_run(r["id"]) for r in runs(harness) if r["record_id"] == rec["id"]]
    out = run.steps["account"].output
    assert out["outcome"] == "matched"
    assert sorted(out["record_ids"]) == sorted([ids["Autohaus Schmidt GmbH"],
                                                ids["Lisboa Motors"]])
    assert {c["matched_on"] for c in out["candidates"]} == {"name", "domain"}


@pytest.mark.parametrize(("text", "message"), [
    (EXTRACT.replace("type: date", "type: datetime"), "unknown field type 'datetime'"),
    (EXTRACT.replace("pattern: order}", "pattern: 'ORD-(\\d'}"), "bad regular expression"),
    (EXTRACT.replace("type: int}", "type: int, colour: red}"), "colour"),
    (MATCH.replace("{many}", "false").replace("fields: [domain, name, website]",
                                              "fields: [domain, phone]"),
     "Account has no field 'phone'"),
    (MATCH.replace("{many}", "false").replace("object: Account", "object: Acount"),
     "Acount"),
    (MATCH.replace("{many}", "false").replace("min_score: 85", "min_score: 185"),
     "expected a score from 1 to 100"),
    (EXTRACT.replace("task: extract", "task: extract\n        provider: gpt"),
     "unknown ai provider 'gpt'"),
    (EXTRACT.replace("task: extract", "task: extract\n        match: {object: Email, "
                                      "fields: [subject]}"),
     "'match' is not an option of task: extract"),
])
def test_bad_extract_and_match_steps_are_located(harness: Any, text: str, message: str
                                                 ) -> None:
    with pytest.raises(DefinitionError) as exc:
        harness.deploy_text(text)
    assert message in str(exc.value) and "steps[0]" in str(exc.value), str(exc.value)
