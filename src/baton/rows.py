"""The rows that cross layers: a stored record, a work item, an audit event.

They are ``TypedDict``s rather than dataclasses on purpose: the store reads them as
mappings, the Engine's public methods have always returned them as mappings (callers and
tests index ``item["status"]``), and the API and the CLI serialise them to JSON. A
TypedDict types every field for mypy at no cost per row, which matters on the hot paths
(``complete_many``, record creation) where a dataclass would add a copy each way.
Statuses inside them are the enums' string values (``WorkItemStatus(...)`` reads one).
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

CALL_EVENT = "http_call"
"""The audit event type of one call over an HTTP connection (``baton.connections.calls``)."""


class Record(TypedDict):
    """A record as stored: its typed fields under ``data``, and the system fields."""

    id: str
    object_type: str
    data: dict[str, Any]
    version: int
    created_at: str
    updated_at: str


class FormFieldRow(TypedDict):
    name: str
    type: str
    required: bool
    choices: NotRequired[list[Any] | None]
    default: NotRequired[Any]
    label: NotRequired[str | None]
    precision: NotRequired[int | None]  # decimal fields: their limits (baton.decimals)
    scale: NotRequired[int | None]
    rounding: NotRequired[str | None]
    help: NotRequired[str]  # the field's description, when it has one


class WorkItem(TypedDict):
    """A work item as stored; reads add ``sla_status`` (from its step's SLA in the run)."""

    id: str
    run_id: str
    record_id: str | None
    orchestration: str
    stage: str
    step: str
    iteration: int
    title: str
    instructions: str | None
    form: list[FormFieldRow]
    status: str  # a WorkItemStatus value
    assignee_kind: str  # user, group or queue
    assignee: str
    claimed_by: str | None
    data: dict[str, Any] | None
    version: int
    created_at: str
    updated_at: str
    completed_at: str | None
    completed_by: str | None
    priority: int | None
    due_at: str | None
    summary: NotRequired[str | None]  # migration 17: a line about the record
    jeopardy_at: NotRequired[str | None]  # migration 17: when the SLA turns in_jeopardy
    input: NotRequired[dict[str, Any] | None]  # the step's input (migration 12)
    step_type: NotRequired[str | None]  # interactive, approval (migration 21)
    routing: NotRequired[dict[str, Any] | None]  # migration 19: its routing rule, evaluated
    routing_status: NotRequired[str | None]  # waiting | routed
    routed_to: NotRequired[str | None]  # whose load it counts in
    routed_at: NotRequired[str | None]
    sla_status: NotRequired[str | None]


class AuditEvent(TypedDict):
    """One line of the audit trail; ``id`` is given by the store when it is appended."""

    id: NotRequired[int]
    at: str
    type: str
    actor: str
    record_id: str | None
    run_id: str | None
    data: dict[str, Any]


def audit_event(type_: str, actor: str, now: str, record_id: str | None, run_id: str | None,
                data: dict[str, Any]) -> AuditEvent:
    """An audit event row, as the store appends it."""
    return {"at": now, "type": type_, "actor": actor, "record_id": record_id, "run_id": run_id,
            "data": data}
