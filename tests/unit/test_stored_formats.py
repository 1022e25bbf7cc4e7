"""Stored formats of migration 10: the run state (format 3 since issue 18; 2 and 1 still read), the SLA
instant kept on the run (``sla_at``), and audit events packed one row per transition."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from baton.engine import sla
from baton.engine.state import Run, StageRun, StepRun
from baton.engine.status import RunStatus, StageStatus, StepStatus
from baton.store.sql.tx import EVENT_ID_SPAN, PACKED, pack_events, unpack_event_row


def _run() -> Run:
    run = Run(id="run_1", orchestration="o", version=3, record_id="rec_1",
              current_stage="triage", vars={"level": 2}, input={"a": [1, 2]},
              created_at="2026-01-05T09:00:00.000Z", seq=4)
    run.stages["triage"] = StageRun("triage", StageStatus.IN_PROGRESS, 1,
                                    "2026-01-05T09:00:00.000Z")
    run.steps["classify"] = StepRun("classify", "triage", 1, StepStatus.COMPLETED,
                                    output={"category": "billing", "tags": ["x"]}, attempts=1,
                                    started_at="2026-01-05T09:00:00.000Z",
                                    completed_at="2026-01-05T09:00:01.000Z")
    run.steps["triage"] = StepRun("triage", "triage", 1, StepStatus.WAITING_FOR_PERSON,
                                  work_item_id="wi_1", started_at="2026-01-05T09:00:01.000Z",
                                  sla={"status": "on_track", "due_at": "2026-01-05T13:00:01.000Z",
                                       "jeopardy_at": "2026-01-05T12:00:01.000Z"})
    run.steps["later"] = StepRun("later", "triage", 1)
    run.decisions.append({"stage": "s0", "iteration": 1, "goto": "triage", "rule": None,
                          "at": "2026-01-05T09:00:00.000Z"})
    return run


def _fields(run: Run) -> dict[str, Any]:
    return run.as_dict()


def test_format_3_round_trips_and_leaves_defaults_out() -> None:
    run = _run()
    run.flow_conditions["stages.triage.exit_when"] = True
    doc = run.to_json()
    assert doc["format"] == 3
    assert doc["steps"]["later"] == {"stage": "triage", "iteration": 1}  # all else default
    assert "name" not in doc["steps"]["classify"] and "error" not in doc
    again = Run.from_json(orjson.loads(orjson.dumps(doc)))
    assert _fields(again) == _fields(run)
    # Smaller than the same run spelled out (format 1).
    full = {"format": 1, **run.as_dict()}
    assert len(orjson.dumps(doc)) < 0.8 * len(orjson.dumps(full))


def test_format_2_is_read_with_its_answers_per_flow_name() -> None:
    # Format 2 is format 3's shape, but kept an evaluation flow's answer per flow name
    # (issue 18): read under flow:NAME, which the engine uses where a site has no answer.
    run = _run()
    doc = {**run.to_json(), "format": 2, "flow_conditions": {"cases.vip": True}}
    again = Run.from_json(orjson.loads(orjson.dumps(doc)))
    assert again.flow_conditions == {"flow:cases.vip": True}
    assert {k: v for k, v in _fields(again).items() if k != "flow_conditions"} == {
        k: v for k, v in _fields(run).items() if k != "flow_conditions"}
    assert again.to_json()["format"] == 3  # written in format 3 the next time it moves


def test_format_1_as_stored_before_migration_10_is_still_read() -> None:
    run = _run()
    stored = {"format": 1, **run.as_dict()}
    assert _fields(Run.from_json(orjson.loads(orjson.dumps(stored)))) == _fields(run)
    with pytest.raises(ValueError, match="format 9"):
        Run.from_json({**stored, "format": 9})


def test_sla_at_is_the_next_instant_of_an_open_step() -> None:
    run = _run()
    triage = run.steps["triage"]
    assert triage.sla is not None
    assert sla.sla_at(run) == triage.sla["jeopardy_at"]
    assert sla.due_timer(run, "2026-01-05T12:00:00.999Z") is None
    fired = sla.due_timer(run, "2026-01-05T12:00:01.000Z")
    assert fired is not None and (fired.kind, fired.step, fired.iteration) == (
        "sla_jeopardy", "triage", 1)
    assert fired.data == {"due_at": triage.sla["due_at"]}
    triage.sla["status"] = "in_jeopardy"
    assert sla.sla_at(run) == triage.sla["due_at"]
    triage.sla["status"] = "overdue"
    assert sla.sla_at(run) is None
    triage.sla["status"] = "on_track"
    triage.status = StepStatus.COMPLETED  # a closed step's SLA no longer counts
    assert sla.sla_at(run) is None and sla.due_timer(run, "2027-01-01T00:00:00.000Z") is None
    triage.status = StepStatus.WAITING_FOR_PERSON
    run.status = RunStatus.CANCELED
    assert sla.sla_at(run) is None


def _event(type_: str, run_id: str | None, actor: str = "system", at: str = "T1") -> dict[str, Any]:
    return {"at": at, "type": type_, "actor": actor, "record_id": "rec_1", "run_id": run_id,
            "data": {"t": type_}}


def test_events_pack_one_row_per_transition_and_unpack_as_appended() -> None:
    events = [_event("record_updated", None, "flow:x"), _event("step_completed", "run_1"),
              _event("stage_completed", "run_1"), _event("work_item_completed", "run_1", "ann"),
              _event("step_completed", "run_2"), _event("step_completed", "run_1", at="T2")]
    rows = pack_events(events)
    assert [len(r["data"]["e"]) for r in rows] == [1, 3, 1, 1]
    assert {r["type"] for r in rows} == {PACKED}
    out = []
    for row_id, row in enumerate(rows, start=7):
        out += unpack_event_row({**row, "id": row_id})
    assert [{k: v for k, v in e.items() if k != "id"} for e in out] == events
    ids = [e["id"] for e in out]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert ids[:2] == [7 * EVENT_ID_SPAN, 8 * EVENT_ID_SPAN]
    # A row stored before migration 10 is read as it was, with its own id.
    old = {"id": 5, **_event("run_started", "run_1")}
    assert unpack_event_row(old) == [old]


def test_a_transition_with_more_events_than_the_id_span_takes_several_rows() -> None:
    rows = pack_events([_event(f"e{i}", "run_1") for i in range(EVENT_ID_SPAN + 3)])
    assert [len(r["data"]["e"]) for r in rows] == [EVENT_ID_SPAN, 3]
