"""One description of an audit event for both faces (``baton.runtime.describe``): the web
page's timeline has every line the CLI's has, in the same words, in a page's notation; no
detail is cut on either."""

from __future__ import annotations

from typing import Any

import pytest

from baton.cli.main import describe_event as cli_line
from baton.runtime.describe import PAGE, TERMINAL, describe_event
from baton.web.ui.events import describe_event as page_line

ERROR = {"type": "SMTPRecipientsRefused", "message": "mailbox full " + "x" * 400 + " END"}


def event(t: str, **data: Any) -> dict[str, Any]:
    return {"type": t, "actor": "system", "run_id": "run_1", "at": "2026-12-01T09:30:00Z",
            "data": data}


# (event, the page's line): each fell back to a JSON dump cut at 200 characters before
LINES = [
    (event("email_failed", step="notify", subject="Case 7", recipients=["ann@x.example"],
           attempt=2, error=ERROR, retry_at="2026-12-01T09:35:00Z"),
     (f"notify: e-mail 'Case 7' to ann@x.example failed (attempt 2): "
     f"SMTPRecipientsRefused: {ERROR['message']}; retry at 2026-12-01T09:35:00Z")),
    (event("sla_in_jeopardy", stage="triage", step="look", iteration=2,
           due_at="2026-12-02T09:00:00Z"),
     "triage / look (iteration 2) in jeopardy: due 2026-12-02T09:00:00Z"),
    (event("job_failed", job="deliver", step="ship", error={"type": "KeyError",
                                                            "message": "'sku'"}, incident="inc_1"),
     "deliver job of step ship failed: KeyError: 'sku' (incident inc_1)"),
    (event("step_attempt_failed", stage="bill", step="post", iteration=1,
           error={"type": "StepFailure", "message": "line one\nline two"},
           next_retry_at="2026-12-01T09:31:00Z"),
     "bill / post (iteration 1) StepFailure: line one line two (retry at 2026-12-01T09:31:00Z)"),
    (event("incident_retried", incident="inc_2", kind="trigger", orchestration="triage",
           version=3, outcome="started", reason="flag cleared"),
     "incident inc_2 (trigger, triage v3) retried → started, reason: flag cleared"),
    (event("work_item_reassigned", work_item="wi_1", step="look", reason="on leave",
           **{"from": "user:ann", "to": "queue:tier2"}),
     "wi_1 look from: user:ann to: queue:tier2 reason: on leave"),
    (event("work_item_priority_invalid", step="look", iteration=1, expression="=record.p",
           value="asap", error="expected one of: low, normal, high, urgent", used="normal"),
     ("look expression: =record.p value: asap used: normal error: expected one of: low, "
     "normal, high, urgent")),
    (event("plan_canceled", revision=2, reason="customer", compensation_run="run_9",
           rollbacks=["reserve", "charge"]),
     "plan revision 2 canceled: customer; compensation run run_9 (rollbacks: reserve, charge)"),
]


@pytest.mark.parametrize(("e", "line"), LINES, ids=[e["type"] for e, _ in LINES])
def test_the_page_says_what_the_cli_says_whole(e: dict[str, Any], line: str) -> None:
    assert page_line(e) == line
    assert describe_event(e, PAGE) == line
    # the CLI's line: the same words, in its notation (the same text when none is involved)
    cli = cli_line(e)
    assert cli == describe_event(e, TERMINAL)
    if "stage" not in e["data"] and not e["type"].startswith("work_item_"):
        assert cli == line


def test_the_notations_differ_only_in_how_a_place_and_a_name_read() -> None:
    claimed = event("work_item_claimed", work_item="wi_1", step="manager",
                    taken_back_from="bob", reason="taken back from bob, whose delegation "
                    "from ann ended")
    assert cli_line(claimed) == ("wi_1 manager reason=taken back from bob, whose delegation "
                                 "from ann ended")
    assert page_line(claimed) == ("wi_1 manager reason: taken back from bob, whose delegation "
                                  "from ann ended")
    decided = event("decision_taken", stage="triage", iteration=1, goto="close", label="Done")
    assert cli_line(decided) == "after triage #1 → close (Done)"
    assert page_line(decided) == "after stage triage (iteration 1) → close (Done)"
    updated = event("record_updated", changes={"status": ["new", "closed"], "n": [1, 2]})
    assert cli_line(updated) == "status: 'new' → 'closed', n: 1 → 2"
    assert page_line(updated) == "status: new → closed, n: 1 → 2"
    long = "y" * 5000
    created = event("record_created", fields={"notes": long, "empty": None})
    assert page_line(created) == f"notes={long}"  # (was cut at 300 characters)
