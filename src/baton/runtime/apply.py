"""Carry out a Decision inside the caller's transaction.

The new run state, its audit events, the work items it creates or cancels and
the jobs it enqueues are written together: one transaction, all or nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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
from baton.settings import Settings
from baton.store.sql import SqlTx
from baton.work.notify import assignment_message, resolve_recipients

if TYPE_CHECKING:
    from baton.auth.directory import Directory


def run_row(run: Run, now: str) -> dict[str, Any]:
    return {
        "id": run.id,
        "orchestration": run.orchestration,
        "version": run.version,
        "record_id": run.record_id,
        "status": run.status.value,
        "current_stage": run.current_stage,
        "state": run.to_json(copy=False),  # encoded, not kept
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
    """Applies decisions; one per engine (the id generator, the wake-up, the directory).

    ``notify_assignments``: queue an e-mail to the assignee(s) whenever a work item is
    assigned or reassigned. Off, assignment costs nothing extra (no directory read, no
    job); the Engine sets it from its settings. ``settings`` resolve notify names to
    addresses.
    """

    def __init__(self, ids: IdGenerator, wake: Any = None, *,
                 directory: Directory | None = None, notify_assignments: bool = False,
                 settings: Settings | None = None) -> None:
        self.ids = ids
        self.wake = wake  # callable to wake in-process workers after commit
        self.directory = directory
        self.notify_assignments = notify_assignments
        self.settings = settings or Settings()

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
                    jobs.append((cmd.kind, payload))
                else:  # a retry: a job that is not due before its backoff has passed
                    tx.enqueue_job_txn(cmd.kind, run.id, payload, cmd.not_before, now)
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
                events.extend(self._reassign_txn(tx, run, cmd, now, jobs))
            elif isinstance(cmd, SendEmail):
                ev, email = self._email_txn(tx, run, cmd, now)
                events.append(ev)
                if email is not None:
                    jobs.append(("email", email))
            elif isinstance(cmd, EvaluateCondition):
                jobs.append(("condition", {"flow": cmd.flow}))
            elif isinstance(cmd, CreateWorkItem):
                item_id = self.ids.new("wi")
                new_item: dict[str, Any] = {
                    "id": item_id, "run_id": run.id, "record_id": run.record_id,
                    "orchestration": run.orchestration, "stage": cmd.stage, "step": cmd.step,
                    "iteration": cmd.iteration, "title": cmd.title,
                    "instructions": cmd.instructions, "form": list(cmd.form),
                    "status": WorkItemStatus.OPEN.value, "assignee_kind": cmd.assignee_kind,
                    "assignee": cmd.assignee, "claimed_by": None, "data": None, "version": 1,
                    "created_at": now, "updated_at": now, "completed_at": None,
                    "completed_by": None, "priority": cmd.priority, "due_at": cmd.due_at,
                }
                tx.insert_work_item_txn(new_item)
                run.steps[cmd.step].work_item_id = item_id
                events.append(event_row("work_item_assigned", "system", now, run.record_id, run.id, {
                    "work_item": item_id, "step": cmd.step, "iteration": cmd.iteration,
                    "assignee": f"{cmd.assignee_kind}:{cmd.assignee}"}))
                if self.notify_assignments:
                    ev, email = self._assignment_email_txn(tx, new_item, now)
                    events.append(ev)
                    if email is not None:
                        jobs.append(("email", email))
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

    def _email_txn(self, tx: SqlTx, run: Run, cmd: SendEmail, now: str,
                   ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Resolve the recipients and queue an ``email`` job (an outbox row: it commits or
        rolls back with the rest). Never fails: names that resolve to nothing are audited."""
        assignee = None
        if "assignee" in cmd.to:
            item = tx.find_work_item_txn(run.id, cmd.step, cmd.iteration)
            if item is not None and item["assignee_kind"] == "user":
                assignee = item["assignee"]
                # The directory's address first; settings.user_emails is the fallback.
                users = self.directory.members_txn(tx, "user", assignee) \
                    if self.directory is not None and "@" not in assignee else []
                if users and users[0].email:
                    assignee = users[0].email
        recipients, unresolved = resolve_recipients(cmd.to, assignee, self.settings)
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

    def _reassign_txn(self, tx: SqlTx, run: Run, cmd: ReassignWorkItem, now: str,
                      jobs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Give the step's open work item to ``cmd.to`` (a claim is released)."""
        item = tx.find_work_item_txn(run.id, cmd.step, cmd.iteration)
        kind, _, name = cmd.to.partition(":")
        changes = {"status": WorkItemStatus.OPEN.value, "claimed_by": None, "assignee_kind": kind,
                   "assignee": name, "updated_at": now}
        if item is None or not tx.update_work_item_txn(
            item["id"], [s.value for s in WORK_ITEM_OPEN], None, changes,
        ):
            return []
        previous = f"{item['assignee_kind']}:{item['assignee']}"
        events = [event_row("work_item_reassigned", "system", now, run.record_id, run.id, {
            "work_item": item["id"], "step": cmd.step, "reason": cmd.reason,
            "from": previous, "to": cmd.to})]
        if self.notify_assignments:
            ev, email = self._assignment_email_txn(tx, {**item, **changes}, now, previous)
            events.append(ev)
            if email is not None:
                jobs.append(("email", email))
        return events

    def notify_assignment_txn(self, tx: SqlTx, item: dict[str, Any], now: str,
                              previous: str | None = None) -> list[dict[str, Any]]:
        """For a work item just given to someone outside a decision (``Engine.reassign``):
        queue its e-mail (when assignment e-mails are on); returns the events to append."""
        if not self.notify_assignments:
            return []
        ev, email = self._assignment_email_txn(tx, item, now, previous)
        if email is not None:
            tx.enqueue_job_txn("email", item["run_id"], email, now, now)
            if self.wake is not None:
                self.wake()
        return [ev]

    def _assignment_email_txn(self, tx: SqlTx, item: dict[str, Any], now: str,
                              previous: str | None = None,
                              ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Resolve who is told about ``item`` (its user, or every active member of its
        group or queue, with an e-mail address) from the directory, by reading this
        transaction only, and build the ``email`` job; or an ``email_skipped`` event."""
        kind, name = item["assignee_kind"], item["assignee"]
        members = self.directory.members_txn(tx, kind, name) if self.directory else []
        recipients: list[str] = []
        for user in members:
            if user.email and user.email not in recipients:
                recipients.append(user.email)
        data: dict[str, Any] = {"work_item": item["id"], "step": item["step"],
                                "assignee": f"{kind}:{name}", "notification": "assignment"}
        if not recipients:
            if kind == "user":
                why = (f"user {name!r} has no e-mail address" if members
                       else f"user {name!r} is not an active user of the directory")
            elif members:
                why = (f"{kind} {name!r}: none of its {len(members)} active member(s) has an "
                       "e-mail address")
            else:
                why = f"{kind} {name!r} has no active members"
            return event_row("email_skipped", "system", now, item["record_id"], item["run_id"],
                             {**data, "reason": why}), None
        record = tx.get_record_txn(item["record_id"]) if item.get("record_id") else None
        subject, text, html_body = assignment_message(
            item, record["object_type"] if record else None, previous)
        data.update(subject=subject, recipients=recipients)
        job = {"recipients": recipients, "subject": subject, "text": text, "html": html_body,
               "link": f"/work/{item['id']}", "work_item": item["id"],
               "record_id": item["record_id"], "step": item["step"]}
        return event_row("email_queued", "system", now, item["record_id"], item["run_id"],
                         data), job
