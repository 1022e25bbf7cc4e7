"""What needs an operator (``baton.engine.attention``), the copy migration 13 keeps of it
for stored states, and the record title the Monitor shows (``record_title``)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from baton.definitions.model import FieldDefinition, ObjectTypeDefinition
from baton.engine.attention import FALLOUT, SLA_BREACHED, attention, kinds
from baton.engine.state import Run, StepRun
from baton.engine.status import RunStatus, StepStatus
from baton.records.model import record_title
from baton.store.migrations import _attention_of_state

SLAS: tuple[dict[str, Any] | None, ...] = (
    None, {"status": "on_track", "due_at": "2026-01-01T04:00:00.000Z"},
    {"status": "in_jeopardy", "due_at": "2026-01-01T04:00:00.000Z"},
    {"status": "overdue", "due_at": "2026-01-01T04:00:00.000Z"})


def _run(status: RunStatus, steps: list[tuple[StepStatus, dict[str, Any] | None]]) -> Run:
    run = Run(id="run_1", orchestration="o", version=1, record_id=None, status=status,
              current_stage="s", created_at="2026-01-01T00:00:00.000Z")
    for i, (st, sla) in enumerate(steps):
        run.steps[f"step{i}"] = StepRun(f"step{i}", "s", 1, st, sla=sla)
    return run


def _expected(status: RunStatus, steps: list[tuple[StepStatus, dict[str, Any] | None]]
              ) -> int | None:
    if status is not RunStatus.IN_PROGRESS:
        return None
    bits = 0
    for st, sla in steps:
        bits |= FALLOUT if st is StepStatus.FALLOUT else 0
        open_ = st not in (StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.FAILED,
                           StepStatus.CANCELED)
        bits |= SLA_BREACHED if open_ and sla and sla["status"] == "overdue" else 0
    return bits or None


CASES = [(status, [one, two]) for status in RunStatus
         for one, two in itertools.combinations_with_replacement(
             list(itertools.product(StepStatus, SLAS)), 2)]


@pytest.mark.parametrize("status", list(RunStatus))
def test_attention_of_every_pair_of_steps_and_the_migrations_copy_agree(status: RunStatus) -> None:
    for run_status, steps in CASES:
        if run_status is not status:
            continue
        run = _run(status, steps)
        want = _expected(status, steps)
        assert attention(run) == want, (status, steps)
        stored = orjson.loads(orjson.dumps(run.to_json()))  # format 2, as the row holds it
        assert _attention_of_state(stored) == want, (status, steps)
        assert _attention_of_state({"format": 1, **run.as_dict()}) == want, (status, steps)


def test_kinds_name_the_bits_in_a_fixed_order() -> None:
    assert kinds(None) == [] and kinds(0) == []
    assert kinds(FALLOUT) == ["fallout"] and kinds(SLA_BREACHED) == ["sla_breached"]
    assert kinds(FALLOUT | SLA_BREACHED) == ["fallout", "sla_breached"]


CASE = ObjectTypeDefinition("Case", (
    FieldDefinition("number", "int"), FieldDefinition("body", "text"),
    FieldDefinition("ref", "string"), FieldDefinition("subject", "string")))


@pytest.mark.parametrize(("otype", "data", "title"), [
    (CASE, {"subject": "Invoice 7", "ref": "C-1"}, "Invoice 7"),  # a name-like field first
    (CASE, {"subject": "   ", "ref": "C-1"}, "C-1"),  # blank is no title
    (CASE, {"ref": "C-1", "body": "long text"}, "C-1"),  # else the first string field
    (CASE, {"number": 7, "body": "text"}, None),  # text fields are bodies, not titles
    (CASE, {"subject": "two\nlines\t here"}, "two lines here"),  # one line
    (None, {"name": "Acme"}, "Acme"),  # an undeployed type: the name-like fields still
    (None, {"ref": "C-1"}, None),
])
def test_record_title(otype: ObjectTypeDefinition | None, data: dict[str, Any],
                      title: str | None) -> None:
    assert record_title(otype, data) == title


def test_a_long_title_is_cut_to_120_characters() -> None:
    title = record_title(CASE, {"subject": "x" * 300})
    assert title is not None and len(title) == 120 and title.endswith("…")
