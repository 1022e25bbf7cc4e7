"""Carry out a Decision inside the caller's transaction.

The new run state, its audit events, the work items it creates or cancels and
the jobs it enqueues are written together: one transaction, all or nothing.
"""

from __future__ import annotations

from typing import Any

from baton.definitions.model import OrchestrationDefinition
from baton.engine.decide import Decision, decide
from baton.engine.events import (
    Audit,
    CancelTimers,
    CancelWorkItem,
    CreateWorkItem,
    EvaluateCondition,
    Event,
    ReassignWorkItem,
    RunFlow,
    ScheduleStep,
    SendEmail,
    StartTimer,
)
from baton.engine.state import Run
from baton.engine.status import WORK_ITEM_OPEN, WorkItemStatus
from baton.ids import IdGenerator
from baton.store.sql import SqlTx
from baton.work.notify import resolve_recipients


def run_row(run: Run, now: str) -> dict[str, Any]:
    return {
        "id": run.id,
        "orchestration": run.orchestration,
        "version": run.version,
        "record_id": run.record_id,
        "status": run.status.value,
        "current_stage": run.current_stage,
        "state": run.to_json(),
        "seq": run.seq,
        "created_at": run.created_at or now,
        "updated_at": now,
        "completed_at": run.completed_at,
    }


def event_row(type_: str, actor: str, now: str, record_id: str | None, run_id: str | None,
              data: dict[str, Any]) -> dict[str, Any]:
    return {"at": now, "type": type_, "actor": actor, "record_id": record_id, "run_id": run_id,
            "data": data}


class Applier:
    """Applies decisions; one per engine (it holds only the id generator)."""

    def __init__(self, ids: IdGenerator, wake: Any = None) -> None:
        self.ids = ids
        self.wake = wake  # callable to wake in-process workers after commit

    def decide_and_apply_txn(
        self,
        tx: SqlTx,
        defn: OrchestrationDefinition,
        run: Run,
        event: Event,
        now: Any,
        record: dict[str, Any] | None,
        *,
        insert: bool = False,
    ) -> Decision:
        """Decide and apply; ``run`` is handed over (callers load it for this call alone)."""
        expected_seq = run.seq
        decision = decide(defn, run, event, now, record, consume=True)
        if decision.stale:
            return decision
        self.apply_txn(tx, expected_seq, decision, now, insert=insert)
        return decision

    def apply_txn(self, tx: SqlTx, expected_seq: int, decision: Decision, now_dt: Any, *,
                  insert: bool = False) -> None:
        from baton.clock import iso

        now = iso(now_dt)
        run = decision.run
        events: list[dict[str, Any]] = []
        jobs: list[tuple[str, dict[str, Any]]] = []
        for cmd in decision.commands:
            if isinstance(cmd, Audit):
                events.append(event_row(cmd.type, cmd.actor, now, run.record_id, run.id, cmd.data))
            elif isinstance(cmd, ScheduleStep):
                payload = {"step": cmd.step, "iteration": cmd.iteration, "flow": cmd.flow,
                           "attempt": cmd.attempt, "timeout_ms": cmd.timeout_ms}
                if cmd.not_before is None:
                    jobs.append(("step", payload))
                else:  # a retry: a job that is not due before its backoff has passed
                    tx.enqueue_job_txn("step", run.id, payload, cmd.not_before, now)
            elif isinstance(cmd, StartTimer):
                # The jobs table is the durable timer store: due at ``at``, fired once.
                tx.enqueue_job_txn("timer", run.id, {"kind": cmd.kind, "step": cmd.step,
                                                     "iteration": cmd.iteration, "data": cmd.data},
                                   cmd.at, now)
            elif isinstance(cmd, CancelTimers):
                tx.cancel_timers_txn(run.id, cmd.step, cmd.iteration)
            elif isinstance(cmd, RunFlow):
                jobs.append(("escalation", {"flow": cmd.flow, "step": cmd.step,
                                            "iteration": cmd.iteration, "reason": cmd.reason}))
            elif isinstance(cmd, ReassignWorkItem):
                events.extend(self._reassign_txn(tx, run, cmd, now))
            elif isinstance(cmd, SendEmail):
                ev, email = self._email_txn(tx, run, cmd, now)
                events.append(ev)
                if email is not None:
                    jobs.append(("email", email))
            elif isinstance(cmd, EvaluateCondition):
                jobs.append(("condition", {"flow": cmd.flow}))
            elif isinstance(cmd, CreateWorkItem):
                item_id = self.ids.new("wi")
                tx.insert_work_item_txn({
                    "id": item_id, "run_id": run.id, "record_id": run.record_id,
                    "orchestration": run.orchestration, "stage": cmd.stage, "step": cmd.step,
                    "iteration": cmd.iteration, "title": cmd.title,
                    "instructions": cmd.instructions, "form": list(cmd.form),
                    "status": WorkItemStatus.OPEN.value, "assignee_kind": cmd.assignee_kind,
                    "assignee": cmd.assignee, "claimed_by": None, "data": None, "version": 1,
                    "created_at": now, "updated_at": now, "completed_at": None,
                    "completed_by": None,
                })
                run.steps[cmd.step].work_item_id = item_id
                events.append(event_row("work_item_assigned", "system", now, run.record_id, run.id, {
                    "work_item": item_id, "step": cmd.step, "iteration": cmd.iteration,
                    "assignee": f"{cmd.assignee_kind}:{cmd.assignee}"}))
            elif isinstance(cmd, CancelWorkItem):
                item = tx.find_work_item_txn(run.id, cmd.step, cmd.iteration)
                if item is not None and tx.update_work_item_txn(
                    item["id"], [s.value for s in WORK_ITEM_OPEN], None,
                    {"status": WorkItemStatus.CANCELED.value, "updated_at": now},
                ):
                    events.append(event_row("work_item_canceled", "system", now, run.record_id,
                                            run.id, {"work_item": item["id"], "step": cmd.step,
                                                     "reason": cmd.reason}))
        run.seq = expected_seq + 1
        row = run_row(run, now)
        if insert:
            tx.insert_run_txn(row)
        else:
            tx.update_run_txn(row, expected_seq)
        tx.append_events_txn(events)
        if jobs:
            tx.enqueue_jobs_txn([(kind, run.id, payload) for kind, payload in jobs], now, now)
            if self.wake is not None:
                self.wake()

    @staticmethod
    def _email_txn(tx: SqlTx, run: Run, cmd: SendEmail, now: str,
                   ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Resolve the recipients and queue an ``email`` job (an outbox row: it commits or
        rolls back with the rest). Never fails: names that resolve to nothing are audited."""
        assignee = None
        if "assignee" in cmd.to:
            item = tx.find_work_item_txn(run.id, cmd.step, cmd.iteration)
            if item is not None and item["assignee_kind"] == "user":
                assignee = item["assignee"]
        recipients, unresolved = resolve_recipients(cmd.to, assignee)
        data: dict[str, Any] = {"step": cmd.step, "subject": cmd.subject,
                                "recipients": recipients, "unresolved": unresolved}
        if not recipients:
            return event_row("email_skipped", "system", now, run.record_id, run.id, data), None
        text = "\n".join([
            cmd.subject, "",
            f"Run:       {cmd.run_id}",
            f"Step:      {cmd.step} (iteration {cmd.iteration})",
            f"SLA:       {cmd.sla_status.replace('_', ' ')}",
            f"Due:       {cmd.due_at or '-'}",
            f"Record:    {cmd.record_id or '-'}",
        ])
        job = {"recipients": recipients, "subject": cmd.subject, "text": text,
               "record_id": run.record_id, "step": cmd.step}
        return event_row("email_queued", "system", now, run.record_id, run.id, data), job

    @staticmethod
    def _reassign_txn(tx: SqlTx, run: Run, cmd: ReassignWorkItem, now: str) -> list[dict[str, Any]]:
        """Give the step's open work item to ``cmd.to`` (a claim is released)."""
        item = tx.find_work_item_txn(run.id, cmd.step, cmd.iteration)
        kind, _, name = cmd.to.partition(":")
        if item is None or not tx.update_work_item_txn(
            item["id"], [s.value for s in WORK_ITEM_OPEN], None,
            {"status": WorkItemStatus.OPEN.value, "claimed_by": None, "assignee_kind": kind,
             "assignee": name, "updated_at": now},
        ):
            return []
        return [event_row("work_item_reassigned", "system", now, run.record_id, run.id, {
            "work_item": item["id"], "step": cmd.step, "reason": cmd.reason,
            "from": f"{item['assignee_kind']}:{item['assignee']}", "to": cmd.to})]
