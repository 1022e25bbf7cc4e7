"""The one read model: what the API returns and the CLI prints with ``--json``.

A run, a work item, a record, an audit event or a step in fallout has the same fields in
both, built here. The API's response models (``baton.web.api``) document these shapes in
OpenAPI; they are the contract.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from baton.clock import parse_iso
from baton.engine.attention import attention
from baton.engine.attention import kinds as attention_kinds
from baton.engine.state import Run, StepRun
from baton.engine.status import StageStatus, StepStatus
from baton.rows import CALL_EVENT, AuditEvent

if TYPE_CHECKING:  # (the CLI's lean read path prints these views without the definitions)
    from baton.definitions.model import OrchestrationDefinition

RECORD_SYSTEM_FIELDS = ("id", "object_type", "version", "created_at", "updated_at")

WORK_ITEM_FIELDS = (
    "id", "status", "title", "summary", "instructions", "run_id", "record_id", "orchestration", "stage",
    "step", "iteration", "assignee_kind", "assignee", "claimed_by", "form", "data", "priority",
    "sla_status", "due_at", "created_at", "updated_at", "completed_at", "completed_by", "version",
    "input", "step_type", "routing_status",
)
_STEP_FIELDS = ("name", "stage", "iteration", "status", "attempts", "started_at",
                "completed_at", "output", "error", "work_item_id")
CHILD_FIELDS = ("id", "orchestration", "version", "status", "record_id", "current_stage",
                "created_at", "completed_at")
MAX_CHILDREN_SHOWN = 1000
"""A run's children listed with it (a for_each step starts at most this many by default)."""


def starts_children(defn: OrchestrationDefinition) -> bool:
    """Has the orchestration a step that starts child runs (so its runs may have some)?"""
    return any(step.type == "orchestration" for stage in defn.stages for step in stage.steps)


def child_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A child run as its parent lists it: its summary and the parent's step."""
    return {k: row[k] for k in CHILD_FIELDS} | {"step": row["parent_step"]}


def run_summary(run: Run) -> dict[str, Any]:
    return {"id": run.id, "orchestration": run.orchestration, "version": run.version,
            "status": run.status.value, "record_id": run.record_id,
            "current_stage": run.current_stage, "created_at": run.created_at,
            "completed_at": run.completed_at, "attention": attention_kinds(attention(run))}


def run_summary_row(row: Mapping[str, Any], now: str) -> dict[str, Any]:
    """A runs list's row from a run's columns (a list reads those, not its state): the
    summary, the record's ``title`` (when the page read it), and how long the run has
    taken (until ``now`` while it is not finished)."""
    out = {k: row[k] for k in ("id", "orchestration", "version", "status", "record_id",
                               "current_stage", "created_at", "completed_at")}
    out["attention"] = attention_kinds(row.get("attention"))
    out["title"] = row.get("title")
    out["duration_seconds"] = duration_seconds(row["created_at"], row["completed_at"] or now)
    return out


def duration_seconds(start: str | None, end: str | None) -> float | None:
    """Seconds from ``start`` to ``end`` (ISO times), to the millisecond; None if either
    is missing."""
    if not start or not end:
        return None
    return round(max(0.0, (parse_iso(end) - parse_iso(start)).total_seconds()), 3)


def human_duration(seconds: float | None) -> str | None:
    """"4 min 10 s", "3 h 5 min", "2 d 4 h": how the UI and the CLI show a duration."""
    if seconds is None:
        return None
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def run_detail(run: Run, defn: OrchestrationDefinition, *, reached_only: bool = False,
               children: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The run with its stages and steps in the definition's order (stored JSON keeps no
    order on PostgreSQL); those not reached yet are listed as ``not_started``, or left
    out with ``reached_only`` (what ``baton runs show --json`` has always printed).
    ``parent`` is the run and step that started it (a child run), ``children`` the runs
    its steps started (rows of ``child_runs_txn``), oldest first."""
    state = run.as_dict()
    stages, steps = [], []
    for stage_def in defn.stages:
        if reached_only and stage_def.name not in state["stages"]:
            continue
        st = state["stages"].get(stage_def.name) or {
            "name": stage_def.name, "status": StageStatus.NOT_STARTED.value, "iteration": 0,
            "started_at": None, "completed_at": None}
        stages.append(st)
        for step_def in stage_def.steps:
            sr = state["steps"].get(step_def.name)
            if reached_only and (sr is None or sr["stage"] != stage_def.name):
                continue
            if sr is None or sr["stage"] != stage_def.name:
                sr = {"name": step_def.name, "stage": stage_def.name, "iteration": 0,
                      "status": StepStatus.NOT_STARTED.value, "attempts": 0}
            sla = sr.get("sla")
            steps.append({k: sr.get(k) for k in _STEP_FIELDS} | {
                "type": step_def.type, "children": sr.get("children"),
                "waiting": None,  # (baton.runtime.waiting.fill_waits: a running step's)
                "sla": {"status": sla.get("status"), "due_at": sla.get("due_at"),
                        "jeopardy_at": sla.get("jeopardy_at")} if sla else None})
    return run_summary(run) | {
        "stages": stages, "steps": steps, "decisions": state["decisions"],
        "vars": state["vars"], "input": state["input"], "error": state["error"],
        "parent": state["parent"], "children": [child_view(c) for c in children]}


def work_item_view(item: Mapping[str, Any]) -> dict[str, Any]:
    """A work item with ``assigned_to`` (``KIND:NAME``) and its form as plain fields."""
    out = {k: item.get(k) for k in WORK_ITEM_FIELDS}
    out["assigned_to"] = f"{item['assignee_kind']}:{item['assignee']}"
    out["form"] = [dict(f) for f in item.get("form") or []]
    # whether its claim no longer stands (a delegate's, once they no longer act for the
    # assignee): the caller that read it says so (the API: WorkService.stale_claims)
    out["claim_stale"] = bool(item.get("claim_stale"))
    return out


def completed_view(result: Mapping[str, Any]) -> dict[str, Any]:
    """What completing a work item answers: the item, and the run it moved on."""
    return work_item_view(result) | {"run": run_summary(result["run"])}


def record_json(view: Mapping[str, Any], object_type: str | None = None) -> dict[str, Any]:
    """A record as ``{id, object_type, version, created_at, updated_at, data}`` from the
    engine's flat view (its fields beside the system fields)."""
    return {"id": view["id"], "object_type": object_type or view["object_type"],
            "version": view["version"], "created_at": view["created_at"],
            "updated_at": view["updated_at"],
            "data": {k: v for k, v in view.items() if k not in RECORD_SYSTEM_FIELDS}}


def event_view(e: AuditEvent | Mapping[str, Any]) -> dict[str, Any]:
    return {k: e.get(k) for k in ("id", "at", "type", "actor", "record_id", "run_id")} | {
        "data": e.get("data") or {}}


INCIDENT_FIELDS = ("id", "kind", "status", "orchestration", "version", "record_id", "run_id",
                "expression", "error", "attempts", "created_at", "updated_at", "resolved_at",
                "resolved_by", "reason")


def incident_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """An incident as the API returns it and the CLI prints it; ``note``: why a retry
    resolved it without evaluating it (a later write of the record superseded it), or None."""
    superseded = (row.get("detail") or {}).get("superseded_by") or {}
    return {**{k: row.get(k) for k in INCIDENT_FIELDS}, "note": superseded.get("note")}


def fallout_view(run: Run, sr: StepRun) -> dict[str, Any]:
    """A step in fallout; its ``id``, ``RUN_ID:STEP``, is what the fallout actions take."""
    return {"id": f"{run.id}:{sr.name}", "run_id": run.id, "orchestration": run.orchestration,
            "record_id": run.record_id, "step": sr.name, "stage": sr.stage,
            "iteration": sr.iteration, "attempts": sr.attempts, "error": sr.error,
            "since": sr.completed_at}


def call_views(events: list[Any]) -> list[dict[str, Any]]:
    """The calls a run made over connections (its ``http_call`` audit events), oldest
    first: what the run page and ``baton runs show`` list (secrets are never in them)."""
    return [{"at": e["at"], **(e.get("data") or {})} for e in events
            if e.get("type") == CALL_EVENT]


_PAST = {"approve": "approved", "reject": "rejected"}


def approval_history_line(type_: str, actor: str, data: Mapping[str, Any]) -> str | None:
    """An approval event as the timelines say it ("manager: approved by bob on behalf of
    ann: fine"), or None for any other event (the web UI and the CLI both use it)."""
    step = data.get("step")
    if type_ == "approval_requested":
        return f"{step}: approval requested"
    if type_ != "approval_decided":
        return None
    who = actor.split(":", 1)[1] if actor.startswith("user:") else actor
    text = f"{step}: {_PAST.get(str(data.get('decision')), data.get('decision'))} by {who}"
    if data.get("on_behalf_of"):
        text += f" on behalf of {data['on_behalf_of']}"
    return text + (f": {data['comments']}" if data.get("comments") else "")
