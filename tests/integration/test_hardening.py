"""Hardening regressions (issue 17): what a clumsy designer writes cannot break a write."""

from __future__ import annotations

from typing import Any

import pytest

from baton import flow
from baton.engine.status import RunStatus
from baton.errors import ValidationError
from tests.costly import COSTLY as COSTLY_BODY

COSTLY = "=" + COSTLY_BODY

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


# ---- numbers and dates (hardening #6) --------------------------------------------------------

NUMBERS = """
kind: object
name: Meter
fields:
  reading: {type: int}
  seen_at: {type: datetime}
  extra:   {type: json}
---
kind: orchestration
name: meter_bump
trigger: {type: record, object: Meter, on: [create]}
stages:
  - name: only
    steps:
      - {name: bump, type: background, flow: t_hardening.bump}
      - {name: widen, type: background, flow: t_hardening.widen, after: [bump]}
"""


@flow("t_hardening.bump")
def _bump(ctx: Any) -> dict[str, Any]:
    big = ctx.record["reading"]
    ctx.update_record({"reading": big - 1, "extra": {"also": big, "list": [big, -big - 1]}})
    return {"was": big}


@flow("t_hardening.widen")
def _widen(ctx: Any) -> dict[str, Any]:
    return {"wide": 2**64 + 1}


def test_whole_numbers_stay_exact_through_a_flow_and_beyond_64_bits_are_refused(
        harness: Any) -> None:
    """A 30-digit int was accepted, then stored as 1.2345678901234568e+29 after a flow."""
    harness.deploy_text(NUMBERS)
    with pytest.raises(ValidationError, match="out of range"):
        harness.engine.create_record("Meter", {"reading": 123456789012345678901234567890})
    with pytest.raises(ValidationError, match="out of range"):
        harness.engine.create_record("Meter", {"extra": {"deep": [1, 2**70]}})
    with pytest.raises(ValidationError, match="out of range"):
        harness.engine.create_record("Meter", {"seen_at": "0001-01-01T00:00:00+05:00"})
    top = 2**63 - 1
    rec = harness.engine.create_record("Meter", {"reading": top})
    harness.work()
    after = harness.engine.get_record(rec["id"])
    assert after["reading"] == top - 1 and isinstance(after["reading"], int)
    assert after["extra"] == {"also": top, "list": [top, -top - 1]}
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    run = harness.engine.get_run(run.id)
    assert run.steps["bump"].output == {"was": top}
    # A flow that returns a wider number fails its step, saying why, instead of storing
    # a float that is not what it returned.
    widen = run.steps["widen"]
    assert widen.status.value == "fallout"
    assert "whole numbers must fit in 64 bits" in str(widen.error)


# ---- sizes (hardening #3) ----------------------------------------------------------------------

SIZES = """
kind: object
name: Note
fields:
  title: {type: string}
  body:  {type: text}
  long:  {type: text, max_length: 200000}
  short: {type: string, max_length: 10}
  meta:  {type: json, max_length: 50}
"""


def test_fields_have_a_size_limit_that_each_object_type_may_set(harness: Any) -> None:
    """A 50 MB text field was stored, and every later list of records carried it."""
    harness.deploy_text(SIZES)
    create = harness.engine.create_record
    with pytest.raises(ValidationError, match="too long: at most 100,000"):
        create("Note", {"body": "x" * 100_001})
    with pytest.raises(ValidationError, match="too long: at most 1,000"):
        create("Note", {"title": "x" * 1001})
    with pytest.raises(ValidationError, match="too long: at most 10"):
        create("Note", {"short": "eleven char"})
    with pytest.raises(ValidationError, match="JSON is too long: at most 50"):
        create("Note", {"meta": {"k": "v" * 60}})
    ok = create("Note", {"body": "x" * 100_000, "long": "y" * 150_000, "short": "ten chars!",
                         "meta": {"k": 1}})
    assert len(harness.engine.get_record(ok["id"])["long"]) == 150_000


def test_max_length_is_checked_where_it_is_declared() -> None:
    from baton.definitions.loader import check_texts

    _, issues = check_texts({"f.yaml": """\
kind: object
name: Bad
fields:
  n: {type: int, max_length: 5}
  t: {type: text, max_length: 0}
  s: {type: string, max_length: 2000000}
"""})
    found = {(i.line, i.path): i.message for i in issues}
    assert found[(4, "fields.n.max_length")].startswith("max_length only applies to")
    assert "from 1 to 1,000,000" in found[(5, "fields.t.max_length")]
    assert "from 1 to 1,000,000" in found[(6, "fields.s.max_length")]


# ---- references (hardening #7) ------------------------------------------------------------------

REFS = """
kind: object
name: Account
fields:
  name: {type: string}
---
kind: object
name: Contact
fields:
  name: {type: string}
---
kind: object
name: Ticket
fields:
  account: {type: ref, object: Account}
  later:   {type: ref, object: Account, check: false}
"""


def test_a_ref_must_name_an_existing_record_of_its_type_unless_unchecked(harness: Any) -> None:
    """A ref field accepted an id that did not exist (201)."""
    harness.deploy_text(REFS)
    create = harness.engine.create_record
    acme = create("Account", {"name": "Acme"})
    bob = create("Contact", {"name": "Bob"})
    with pytest.raises(ValidationError, match="no Account record 'rec_nope'"):
        create("Ticket", {"account": "rec_nope"})
    with pytest.raises(ValidationError, match="is a Contact record, not a Account"):
        create("Ticket", {"account": bob["id"]})
    ticket = create("Ticket", {"account": acme["id"], "later": "rec_from_the_next_import"})
    with pytest.raises(ValidationError, match="no Account record"):
        harness.engine.update_record(ticket["id"], {"account": "rec_gone"})
    assert harness.engine.get_record(ticket["id"])["account"] == acme["id"]


def test_max_length_and_check_are_located_where_they_do_not_apply() -> None:
    from baton.definitions.loader import check_texts

    _, issues = check_texts({"f.yaml": "kind: object\nname: X\nfields:\n"
                                       "  s: {type: string, check: false}\n"
                                       "  r: {type: ref, object: X, check: maybe}\n"})
    found = {(i.line, i.path): i.message for i in issues}
    assert found[(4, "fields.s.check")] == "check only applies to ref fields"
    assert (5, "fields.r.check") in found


@flow("hardening.pdf_text")
def _pdf_text(ctx: Any) -> dict[str, Any]:
    subject = ctx.record["subject"]
    return {"text": "page 1\x00page 2" if "scan" in subject else "page 1"}


def test_text_no_store_keeps_fails_its_step_or_its_write_the_same_on_both_stores(
        harness: Any) -> None:
    """PostgreSQL refuses NUL in jsonb: a flow returning one made the worker's commit fail
    (DataError) on every retry, and `baton records create` printed the driver's error.
    Now the step falls out saying where, the worker goes on, and a record write is refused
    naming the field, on SQLite as on PostgreSQL."""
    harness.deploy_text(CASE + """---
kind: orchestration
name: extract
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: only
    steps:
      - {name: read, type: background, flow: hardening.pdf_text}
      - {name: file, type: background, flow: hardening.pdf_text, after: [read]}
""")
    bad = harness.engine.create_record("Case", {"subject": "scan of the contract"})
    good = harness.engine.create_record("Case", {"subject": "typed letter"})
    harness.work()
    (run,) = harness.engine.list_runs(record_id=bad["id"])
    step = run.steps["read"]
    assert step.status.value == "fallout", step
    assert "output.text: must not contain NUL characters" in str(step.error)
    (ok,) = harness.engine.list_runs(record_id=good["id"])
    assert ok.status is RunStatus.COMPLETED
    assert ok.steps["read"].output == {"text": "page 1"}
    with pytest.raises(ValidationError, match="subject: must not contain NUL"):
        harness.engine.create_record("Case", {"subject": "a\x00b"})
    with pytest.raises(ValidationError, match="lone surrogate"):
        harness.engine.update_record(good["id"], {"subject": "a\udc80"})
    assert harness.engine.get_record(good["id"])["subject"] == "typed letter"


@flow("hardening.bad_update")
def _bad_update(ctx: Any) -> dict[str, Any]:
    ctx.update_record({"subject": "scanned\x00"})
    return {}


def test_a_flow_updating_its_record_with_a_nul_fails_its_step(harness: Any) -> None:
    harness.deploy_text(CASE + """---
kind: orchestration
name: upd
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: only
    steps: [{name: touch, type: background, flow: hardening.bad_update}]
""")
    rec = harness.engine.create_record("Case", {"subject": "letter"})
    harness.work()
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    assert run.steps["touch"].status.value == "fallout"
    assert "subject: must not contain NUL" in str(run.steps["touch"].error)
    assert harness.engine.get_record(rec["id"])["subject"] == "letter"
