"""Work-item rows and their transitions: the one place a work item is made, reassigned or
canceled, whether a decision asks for it (``runtime/apply.py``) or a person does
(``work/service.py``).

Each function runs inside the caller's transaction (``*_txn``), writes with a
compare-and-set on the item's status (and version, when the caller read it), and returns
the audit event to append, or None when the item was not in a state to change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from baton.engine.events import CreateWorkItem
from baton.engine.state import Run
from baton.engine.status import WORK_ITEM_OPEN, WorkItemStatus
from baton.rows import AuditEvent, WorkItem, audit_event

if TYPE_CHECKING:
    from baton.store.ports import Transaction as _Tx
    from baton.store.ports import WorkItems

ROUTE_JOB = "route"  # (baton.work.router.ROUTE_JOB: a person has room again)

ASSIGNEE_KINDS = ("user", "group", "queue")
OPEN_STATUSES = [s.value for s in WORK_ITEM_OPEN]
_OPEN = WorkItemStatus.OPEN.value  # (``.value`` is a property: a Python call per use)


def new_item(item_id: str, run: Run, cmd: CreateWorkItem, now: str) -> WorkItem:
    """The row of a work item a decision creates: open, assigned as its step says."""
    return {
        "id": item_id, "run_id": run.id, "record_id": run.record_id,
        "orchestration": run.orchestration, "stage": cmd.stage, "step": cmd.step,
        "iteration": cmd.iteration, "title": cmd.title,
        "instructions": cmd.instructions, "form": list(cmd.form),  # type: ignore[arg-type]
        "status": _OPEN, "assignee_kind": cmd.assignee_kind,
        "assignee": cmd.assignee, "claimed_by": None, "data": None, "version": 1,
        "created_at": now, "updated_at": now, "completed_at": None,
        "completed_by": None, "priority": cmd.priority, "due_at": cmd.due_at,
        "summary": cmd.summary, "jeopardy_at": cmd.jeopardy_at,
        "input": cmd.input, "step_type": cmd.step_type,
        "routing": cmd.routing,
        "routing_status": "waiting" if cmd.routing is not None else None,
        "routed_to": None, "routed_at": None,
    }


def create_txn(tx: WorkItems, item: WorkItem) -> AuditEvent:
    """Insert a new item; the ``work_item_assigned`` event to append."""
    tx.insert_work_item_txn(cast(dict[str, Any], item))
    return audit_event("work_item_assigned", "system", item["created_at"], item["record_id"],
                       item["run_id"], {"work_item": item["id"], "step": item["step"],
                                        "iteration": item["iteration"],
                                        "assignee": f"{item['assignee_kind']}:{item['assignee']}"})


def reassign_txn(tx: _Tx, item: WorkItem, to: str, now: str, *, actor: str,
                 reason: str | None = None, expected_version: int | None = None,
                 ) -> tuple[WorkItem, AuditEvent] | None:
    """Give ``item`` to ``to`` (``KIND:NAME``), releasing a claim: the item as it now is
    and its ``work_item_reassigned`` event, or None when it was no longer open.

    With ``expected_version`` the write also requires the version (and status) the caller
    read; without, any open status will do (a decision's escalation, under the run lock).
    """
    kind, _, name = to.partition(":")
    changes: dict[str, Any] = {"status": _OPEN, "claimed_by": None,
                               "assignee_kind": kind, "assignee": name, "updated_at": now}
    if item.get("routing"):  # given by hand: routing is done with it
        changes["routing_status"] = None
    statuses = OPEN_STATUSES if expected_version is None else [item["status"]]
    if not tx.update_work_item_txn(item["id"], statuses, expected_version, changes):
        return None
    freed_txn(tx, item, now)
    data: dict[str, Any] = {"work_item": item["id"], "step": item["step"]}
    if reason is not None:
        data["reason"] = reason
    data.update({"from": f"{item['assignee_kind']}:{item['assignee']}", "to": to})
    new: WorkItem = {**item, **changes}  # type: ignore[typeddict-item]
    return new, audit_event("work_item_reassigned", actor, now, item["record_id"],
                            item["run_id"], data)


def cancel_txn(tx: _Tx, item: WorkItem, reason: str, now: str) -> AuditEvent | None:
    """Cancel an open item (its step no longer waits for it). One that waited for routing
    waits no more (it left the routing's index of waiting items)."""
    changes: dict[str, Any] = {"status": WorkItemStatus.CANCELED.value, "updated_at": now}
    if item.get("routing_status") == "waiting":
        changes["routing_status"] = None
    if not tx.update_work_item_txn(item["id"], OPEN_STATUSES, None, changes):
        return None
    freed_txn(tx, item, now)
    return audit_event("work_item_canceled", "system", now, item["record_id"], item["run_id"],
                       {"work_item": item["id"], "step": item["step"], "reason": reason})


def freed_txn(tx: _Tx, item: WorkItem, now: str) -> None:
    """A routed item left its person (canceled, given to someone by hand): it no longer
    counts in their load, and what waits for them is routed by a ``route`` job."""
    if not item.get("routing"):  # never routed: nothing to free (and no write to make)
        return
    freed = tx.release_load_txn(item["id"], now)
    if freed is not None:
        tx.enqueue_job_txn(ROUTE_JOB, None, {"user": freed[0]}, now, now)
