"""``changed_to_meet``: a record trigger that starts a run only when a write makes its
condition hold (Salesforce's "only when a record is updated to meet the condition
requirements"), on both databases (``harness`` is parametrised by ``db_url``)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from baton.errors import DefinitionError
from baton.store import schema

CASE = """
kind: object
name: Case
fields:
  subject:  {type: string, required: true}
  priority: {type: int}
  status:   {type: choice, choices: [New, Submitted, Closed], default: New}
---
kind: orchestration
name: t_ctm_escalate
trigger: {type: record, object: Case, on: [create, update], changed_to_meet: true,
          when: '=record.status == "Submitted" && record.priority > 2'}
stages:
  - name: s
    steps: [{name: a, type: interactive, assign: {queue: q}}]
"""


def runs_of(harness: Any, record_id: str) -> int:
    with harness.engine.store.read() as tx:
        rows = tx.conn.execute(select(schema.runs.c.id).where(
            schema.runs.c.record_id == record_id)).all()
    return len(rows)


def test_starts_only_when_the_write_makes_the_condition_hold(harness: Any) -> None:
    harness.deploy_text(CASE, "defs.yaml")
    eng = harness.engine
    # on create: when it holds (the record did not exist before)
    met = eng.create_record("Case", {"subject": "a", "status": "Submitted", "priority": 5})
    assert runs_of(harness, met["id"]) == 1
    # an update that keeps it holding starts nothing more
    eng.update_record(met["id"], {"priority": 7})
    assert runs_of(harness, met["id"]) == 1
    # on create, not holding (priority empty: the comparison cannot hold) -> nothing
    rec = eng.create_record("Case", {"subject": "b"})
    assert runs_of(harness, rec["id"]) == 0
    eng.update_record(rec["id"], {"status": "Submitted"})  # priority still empty
    assert runs_of(harness, rec["id"]) == 0
    eng.update_record(rec["id"], {"priority": 3})  # now it changed to meet it
    assert runs_of(harness, rec["id"]) == 1
    eng.update_record(rec["id"], {"subject": "b2"})  # still meets it: no new run
    assert runs_of(harness, rec["id"]) == 1
    eng.update_record(rec["id"], {"status": "New"})  # stops meeting it
    eng.update_record(rec["id"], {"status": "Submitted"})  # meets it again: a second run
    assert runs_of(harness, rec["id"]) == 2


def test_without_the_flag_every_write_that_holds_starts_a_run(harness: Any) -> None:
    harness.deploy_text(CASE.replace(" changed_to_meet: true,", ""), "defs.yaml")
    eng = harness.engine
    rec = eng.create_record("Case", {"subject": "a", "status": "Submitted", "priority": 5})
    eng.update_record(rec["id"], {"subject": "again"})
    assert runs_of(harness, rec["id"]) == 2


@pytest.mark.parametrize(("trigger", "message"), [
    ("{type: record, object: Case, changed_to_meet: true}", "needs a 'when' condition"),
    ("{type: record, object: Case, changed_to_meet: 'yes', when: '=true'}", "expected true or false"),
    ("{type: autolaunched, changed_to_meet: true}", "changed_to_meet"),
])
def test_bad_flags_are_located(harness: Any, trigger: str, message: str) -> None:
    text = CASE.split("---")[0] + """---
kind: orchestration
name: t_ctm_bad
trigger: """ + trigger + """
stages:
  - name: s
    steps: [{name: a, type: interactive, assign: {queue: q}}]
"""
    with pytest.raises(DefinitionError) as exc:
        harness.deploy_text(text, "bad.yaml")
    assert message in str(exc.value) and "trigger" in str(exc.value)
