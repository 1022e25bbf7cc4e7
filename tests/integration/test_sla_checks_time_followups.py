"""SLA definitions validate and deploy refused, found by an audit (brief "time"):
``on_jeopardy`` without a ``jeopardy`` (its action could never run) and a ``calendar`` that is
neither deployed nor deployed with it (a misspelt name counted wall-clock time, said only in
the audit log). Needs /tmp/diffs/time-checks.diff and /tmp/diffs/time-calendars.diff."""

from __future__ import annotations

import pytest

from baton.errors import DefinitionError
from baton.runtime.bundle import apply_import, plan_import
from tests.conftest import Harness

CALENDAR = """
kind: calendar
name: support_hours
timezone: UTC
hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"]}
"""


def quote(sla: str) -> str:
    return f"""
kind: object
name: Quote
fields: {{amount: {{type: int}}}}
---
kind: orchestration
name: q
trigger: {{type: record, object: Quote, on: [create]}}
stages:
  - name: approve
    steps:
      - name: manager
        type: approval
        assign: {{queue: managers}}
        sla: {sla}
"""


def refused(h: Harness, text: str) -> str:
    with pytest.raises(DefinitionError) as exc:
        h.deploy_text(text)
    return str(exc.value)


def test_on_jeopardy_without_a_jeopardy_is_refused(harness: Harness) -> None:
    h = harness
    text = quote('{duration: 4h, on_jeopardy: {reassign: "queue:seniors"}}')
    said = refused(h, text)
    assert "stages[0].steps[0].sla.on_jeopardy" in said and "without a jeopardy" in said, said
    assert any("without a jeopardy" in i.message
               for i in h.engine.validate_texts({"defs.yaml": text})), "validate says it too"
    h.deploy_text(quote('{duration: 4h, jeopardy: 1h, on_jeopardy: {reassign: "queue:s"}}'))
    h.deploy_text(quote('{duration: 4h, on_overdue: {reassign: "queue:s"}}'), "b.yaml")


def test_a_calendar_not_deployed_is_refused_with_a_suggestion(harness: Harness) -> None:
    h = harness
    h.deploy_text(CALENDAR, "cal.yaml")
    text = quote("{duration: 4h, calendar: support_hour}")
    said = refused(h, text)
    assert "stages[0].steps[0].sla.calendar" in said, said
    assert "unknown calendar 'support_hour' (did you mean 'support_hours'?)" in said, said
    assert any("unknown calendar" in i.message
               for i in h.engine.validate_texts({"defs.yaml": text})), "validate says it too"
    h.deploy_text(quote("{duration: 4h, calendar: support_hours}"))  # deployed: fine


def test_a_calendar_deployed_in_the_same_set_is_known(harness: Harness) -> None:
    h = harness
    h.deploy_text(CALENDAR + "---" + quote("{duration: 4h, calendar: support_hours}"))
    said = refused(h, quote("{duration: 4h, calendar: night_shift}").replace("q\n", "q2\n"))
    assert "unknown calendar 'night_shift' (calendars deployed: support_hours)" in said, said


def test_an_import_naming_a_calendar_it_does_not_bring_is_refused(harness: Harness) -> None:
    h = harness
    source = quote("{duration: 4h, calendar: support_hours}").split("---")[1]
    h.deploy_text(quote("{duration: 4h}"))
    bundle = {"manifest.json": {"format": 1}, "definitions.json": [
        {"kind": "orchestration", "name": "q", "version": 1, "active": True,
         "file": "q.yaml", "source": source}]}
    with pytest.raises(DefinitionError) as exc:
        plan_import(h.engine, bundle)
    assert "unknown calendar 'support_hours'" in str(exc.value), exc.value
    bundle["definitions.json"].insert(0, {"kind": "calendar", "name": "support_hours",
                                          "version": 1, "active": True, "file": "cal.yaml",
                                          "source": CALENDAR})
    apply_import(h.engine, plan_import(h.engine, bundle), "ops")
    assert h.engine.definitions.orchestration("q")[1] == 2
