"""``baton ai test STEP --text``: a designer tries a step's task on a text, from the project's
definition files (or the deployed version); a match reads the records of the database, on
both databases."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_cli import baton, ok, ok_json

DEFS = """
kind: object
name: Account
fields:
  name: {type: string, required: true}
  domain: {type: string}
---
kind: object
name: Email
fields:
  subject: {type: string, required: true}
  body: {type: text}
---
kind: orchestration
name: support
trigger: {type: record, object: Email}
stages:
  - name: read
    steps:
      - name: intent
        type: ai
        task: classify
        text: '=record.subject + " " + record.body'
        min_confidence: 0.3
        categories:
          - name: billing
            description: invoices, charges and payments
            examples: ["I was charged twice", "refund the extra charge on my bill"]
          - name: cancellation
            description: the customer wants to end the contract
            examples: ["please cancel my subscription", "terminate my contract"]
      - name: facts
        type: ai
        task: extract
        text: '=record.body'
        fields:
          invoice: {required: true, labels: [invoice, Rechnung]}
          amount: {type: decimal}
      - name: account
        type: ai
        task: match
        text: '=record.body'
        match: {object: Account, fields: [domain, name]}
"""


def project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    (proj / "definitions").mkdir(parents=True)
    (proj / "definitions" / "support.yaml").write_text(DEFS)
    return proj


def test_ai_test_runs_each_task_and_shows_its_rationale(tmp_path: Path, db_url: str) -> None:
    proj = project(tmp_path)
    db = ("--db", db_url)
    text = "Rechnung: R-2024-77 — you charged me 49,90 € twice, please refund"
    shown = ok(baton(*db, "ai", "test", "intent", "--text", text, cwd=proj)).stdout
    assert "category: billing" in shown and "rationale:" in shown and "charge" in shown
    out = ok_json(baton(*db, "ai", "test", "facts", "--text", text, "--json", cwd=proj))
    assert out["fields"] == {"invoice": "R-2024-77", "amount": "49.90"}
    assert out["outcome"] == "extracted" and out["ai"]["provider"] == "offline"
    out = ok_json(baton(*db, "ai", "test", "facts", "--text", "hello", "--json", cwd=proj))
    assert out["outcome"] == "missing_information" and out["missing"] == ["invoice"]
    shown = ok(baton(*db, "ai", "test", "facts", "--text", "hello", cwd=proj)).stdout
    assert "missing: invoice" in shown and "invoice: not found (required)" in shown

    # match: candidates come from the database (deployed definitions, real records)
    ok(baton(*db, "deploy", cwd=proj))
    acme = ok_json(baton(*db, "records", "create", "Account", "--data",
                         '{"name": "Acme Motors", "domain": "acme-motors.de"}', "--json",
                         cwd=proj))
    ok(baton(*db, "records", "create", "Account", "--data",
             '{"name": "Bayview Cars", "domain": "bayviewcars.com"}', cwd=proj))
    body = ("Our portal www.acme-motors.de/login is down since Monday.\n\nBest regards\n"
            "Sam\nBayview Cars")
    out = ok_json(baton(*db, "ai", "test", "account", "--text", body, "--json", "--deployed",
                        cwd=proj))
    assert out["record_id"] == acme["id"] and out["outcome"] == "matched"
    assert [c["record_id"] for c in out["candidates"]] == [acme["id"]]  # not the signature's
    shown = ok(baton(*db, "ai", "test", "account", "--text", body, "-o", "support",
                     cwd=proj)).stdout
    assert acme["id"] in shown and "acme-motors.de" in shown

    # mistakes say what is wrong
    p = baton(*db, "ai", "test", "nope", "--text", "x", cwd=proj)
    assert p.returncode == 1 and "no ai step 'nope'" in p.stderr
    assert "support/intent, support/facts, support/account" in p.stderr
    p = baton(*db, "ai", "test", "intent", cwd=proj)
    assert p.returncode == 1 and "--text" in p.stderr
