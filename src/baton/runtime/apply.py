"""Carry out a Decision inside the caller's transaction.

The new run state, its audit events, the work items it creates or cancels and
the jobs it enqueues are written together: one transaction, all or nothing.

Each command type has ONE handler in :data:`HANDLERS` (a dict lookup on the command's
type, so the hot path pays no ``isinstance`` chain); a new command is one function and one
entry there. Work-item rows, their reassignment and the e-mails are not written here but
in ``baton.work.items`` and ``baton.work.emails``, the one place each lives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from baton.clock import iso
from baton.engine.attention import attention
from baton.engine.decide import Decision
from baton.engine.events import (
    Audit,
    CancelChildRuns,
    CancelTimers,
    CancelWorkItem,
    CreateWorkItem,
    EvaluateCondition,
    NotifyParent,
    ReassignWorkItem,
    RunFlow,
    ScheduleStep,
    SendEmail,
    StartChildRuns,
    StartTimer,
)
from baton.engine.sla import sla_at
from baton.engine.state import Run
from baton.ids import IdGenerator
from baton.rows import AuditEvent, WorkItem, audit_event
from baton.runtime import jobs
from baton.settings import Settings
from baton.store.ports import Transaction
from baton.work import items
from baton.work.emails import assignment_email_txn, step_email_txn

if TYPE_CHECKING:
    from baton.auth.directory import Directory
    from baton.runtime.children import ChildRuns
    from baton.work.router import Router

def event_row(type_: str, actor: str, now: str, record_id: str | None, run_id: str | None,
              data: dict[str, Any]) -> dict[str, Any]:
    """:func:`baton.rows.audit_event` for code that keeps events as plain dicts (the worker)."""
    return cast(dict[str, Any], audit_event(type_, actor, now, record_id, run_id, data))


def run_row(run: Run, now: str) -> dict[str, Any]:
    return {
        "id": run.id,
        "orchestration": run.orchestration,
        "version": run.version,
        "record_id": run.record_id,
        "status": run.status._value_,  # (``.value`` is a property: a Python call)
        "current_stage": run.current_stage,
        "state": run.to_json(copy=False),  # encoded, not kept
        "seq": run.seq,
        "created_at": run.created_at or now,
        "updated_at": now,
        "completed_at": run.completed_at,
        "sla_at": sla_at(run),
        "attention": attention(run),
    }


@dataclass
class _Writes:
    """What one decision's commands add up to, written after the last command."""

    tx: Transaction
    run: Run
    now: str
    now_dt: Any = None
    events: list[AuditEvent] = field(default_factory=list)
    jobs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class Applier:
    """Applies decisions; one per engine (the id generator, the wake-up, the directory).

    ``notify_assignments``: queue an e-mail to the assignee(s) whenever a work item is
    assigned or reassigned. Off, assignment costs nothing extra (no directory read, no
    job); the Engine sets it from its settings. ``settings`` resolve notify names to
    addresses (``notify_addresses``, ``user_emails``).
    """

    def __init__(self, ids: IdGenerator, wake: Any = None, *,
                 directory: Directory | None = None, notify_assignments: bool = False,
                 settings: Settings | None = None) -> None:
        self.ids = ids
        self.wake = wake  # callable to wake in-process workers after commit
        self.directory = directory
        self.notify_assignments = notify_assignments
        self.settings = settings or Settings()
        self.children: ChildRuns | None = None  # starts child runs (set by the Engine)
        self.router: Router | None = None  # routes work items (set by the Engine)

    def apply_txn(self, tx: Transaction, expected_seq: int, decision: Decision, now_dt: Any, *,
                  insert: bool = False) -> None:
        """Write ``decision``: its commands, then the run (compare-and-set on ``seq``)."""
        run = decision.run
        w = _Writes(tx, run, iso(now_dt), now_dt)
        for cmd in decision.commands:
            HANDLERS[type(cmd)](self, w, cmd)
        run.seq = expected_seq + 1
        if insert:
            row = run_row(run, w.now)
            if run.parent is not None:  # (only written once: a run's parent never changes)
                row["parent_run_id"], row["parent_step"] = run.parent.run_id, run.parent.step
            tx.insert_run_txn(row)
        else:  # a batch's later decisions on this run change `run` itself: its last row wins
            # (The builder holds the run and the time, not `w`: `w` holds the transaction,
            # which holds the builder until it writes; a cycle through them would keep a
            # whole batch's plan for the garbage collector instead of freeing it at once.)
            now = w.now
            tx.update_run_lazy_txn(run.id, lambda: run_row(run, now), expected_seq)
        tx.append_events_txn(w.events)  # type: ignore[arg-type]
        if w.jobs:
            tx.enqueue_jobs_txn([(kind, run.id, payload) for kind, payload in w.jobs], w.now, w.now)
            if self.wake is not None:
                self.wake()

    def notify_assignment_txn(self, tx: Transaction, item: WorkItem, now: str,
                              previous: str | None = None) -> list[AuditEvent]:
        """For a work item just given to someone outside a decision (a person's reassign):
        queue its e-mail (when assignment e-mails are on); returns the events to append."""
        if not self.notify_assignments:
            return []
        ev, email = assignment_email_txn(tx, self.directory, item, now, previous)
        if email is not None:
            tx.enqueue_job_txn(jobs.EMAIL, item["run_id"], dict(email), now, now)
            if self.wake is not None:
                self.wake()
        return [ev]

    def notify_txn(self, w: _Writes, item: WorkItem, previous: str | None = None) -> None:
        """Within a decision: the assignment e-mail joins the decision's events and jobs."""
        if self.notify_assignments:
            ev, email = assignment_email_txn(w.tx, self.directory, item, w.now, previous)
            w.events.append(ev)
            if email is not None:
                w.jobs.append((jobs.EMAIL, dict(email)))


# ---- one handler per command type ---------------------------------------------------------
def _audit(a: Applier, w: _Writes, cmd: Audit) -> None:
    w.events.append(audit_event(cmd.type, cmd.actor, w.now, w.run.record_id, w.run.id, cmd.data))


def _schedule_step(a: Applier, w: _Writes, cmd: ScheduleStep) -> None:
    payload = jobs.StepPayload(step=cmd.step, iteration=cmd.iteration, flow=cmd.flow,
                               attempt=cmd.attempt, timeout_ms=cmd.timeout_ms)
    if cmd.input is not None:
        payload["input"] = cmd.input
    if cmd.not_before is None:
        w.jobs.append((cmd.kind, dict(payload)))  # the step type's job kind
    else:  # a retry: a job that is not due before its backoff has passed
        w.tx.enqueue_job_txn(cmd.kind, w.run.id, dict(payload), cmd.not_before, w.now)


def _start_timer(a: Applier, w: _Writes, cmd: StartTimer) -> None:
    # The jobs table is the durable timer store: due at ``at``, fired once.
    payload = jobs.TimerPayload(kind=cmd.kind, step=cmd.step, iteration=cmd.iteration,
                                data=cmd.data)
    w.tx.enqueue_job_txn(jobs.TIMER, w.run.id, dict(payload), cmd.at, w.now)


def _cancel_timers(a: Applier, w: _Writes, cmd: CancelTimers) -> None:
    w.tx.cancel_timers_txn(w.run.id, cmd.step, cmd.iteration)


def _run_flow(a: Applier, w: _Writes, cmd: RunFlow) -> None:
    payload = jobs.EscalationPayload(flow=cmd.flow, step=cmd.step, iteration=cmd.iteration,
                                     reason=cmd.reason)
    w.jobs.append((jobs.ESCALATION, dict(payload)))


def _evaluate_condition(a: Applier, w: _Writes, cmd: EvaluateCondition) -> None:
    w.jobs.append((jobs.CONDITION, dict(condition_payload(cmd))))


def condition_payload(cmd: EvaluateCondition) -> jobs.ConditionPayload:
    payload = jobs.ConditionPayload(flow=cmd.flow, site=cmd.site)
    if cmd.input is not None:
        payload["input"] = cmd.input
    if cmd.error is not None:
        payload["error"] = cmd.error
    return payload


def _send_email(a: Applier, w: _Writes, cmd: SendEmail) -> None:
    ev, email = step_email_txn(w.tx, a.directory, w.run, cmd, w.now, a.settings)
    w.events.append(ev)
    if email is not None:
        w.jobs.append((jobs.EMAIL, dict(email)))


def _create_work_item(a: Applier, w: _Writes, cmd: CreateWorkItem) -> None:
    item = items.new_item(a.ids.new("wi"), w.run, cmd, w.now)
    w.events.append(items.create_txn(w.tx, item))
    w.run.steps[cmd.step].work_item_id = item["id"]
    if cmd.routing is not None and a.router is not None:
        # Routed now if someone is eligible (the winner hears of it), else it waits.
        w.events.extend(a.router.route_new_txn(w.tx, item, w.now_dt))
        return
    a.notify_txn(w, item)


def _reassign_work_item(a: Applier, w: _Writes, cmd: ReassignWorkItem) -> None:
    item = w.tx.find_work_item_txn(w.run.id, cmd.step, cmd.iteration)
    if item is None:
        return
    if cmd.routing is not None and a.router is not None:  # an SLA action's routing rule
        exclude = None
        if cmd.exclude_assignee:
            exclude = item.get("claimed_by") or (
                item["assignee"] if item["assignee_kind"] == "user" else None)
        w.events.extend(a.router.reroute_txn(w.tx, item, cmd.routing, w.now_dt,  # type: ignore[arg-type]
                                             reason=cmd.reason, exclude=exclude))
        return
    done = items.reassign_txn(w.tx, item, cmd.to, w.now, actor="system",  # type: ignore[arg-type]
                              reason=cmd.reason)
    if done is not None:
        new, ev = done
        w.events.append(ev)
        a.notify_txn(w, new, ev["data"]["from"])


def _cancel_work_item(a: Applier, w: _Writes, cmd: CancelWorkItem) -> None:
    item = w.tx.find_work_item_txn(w.run.id, cmd.step, cmd.iteration)
    if item is not None:
        ev = items.cancel_txn(w.tx, item, cmd.reason, w.now)  # type: ignore[arg-type]
        if ev is not None:
            w.events.append(ev)


def _start_child_runs(a: Applier, w: _Writes, cmd: StartChildRuns) -> None:
    if a.children is None:
        raise RuntimeError("this Applier cannot start child runs (no ChildRuns given)")
    w.events.extend(a.children.start_txn(w.tx, w.run, cmd, w.now_dt))
    if a.wake is not None:
        a.wake()


def _cancel_child_runs(a: Applier, w: _Writes, cmd: CancelChildRuns) -> None:
    # A job per child, not a cascade inside this transaction: each child is canceled (and
    # cancels its own children) in a transaction of its own, however many there are.
    payload = dict(jobs.CancelPayload(reason=f"parent run {w.run.id} step {cmd.step}: "
                                             f"{cmd.reason}", parent_run_id=w.run.id))
    for run_id in cmd.run_ids:
        w.tx.enqueue_job_txn(jobs.CANCEL, run_id, payload, w.now, w.now)
    w.events.append(audit_event("child_runs_canceled", "system", w.now, w.run.record_id,
                                w.run.id, {"step": cmd.step, "iteration": cmd.iteration,
                                           "run_ids": list(cmd.run_ids)}))
    if a.wake is not None:
        a.wake()


def _notify_parent(a: Applier, w: _Writes, cmd: NotifyParent) -> None:
    payload = jobs.ChildPayload(step=cmd.step, iteration=cmd.iteration, index=cmd.index,
                                run_id=w.run.id, status=cmd.status, output=cmd.output,
                                error=cmd.error)
    w.tx.enqueue_job_txn(jobs.CHILD, cmd.parent_run_id, dict(payload), w.now, w.now)
    if a.wake is not None:
        a.wake()


Handler = Callable[[Applier, _Writes, Any], None]

HANDLERS: dict[type, Handler] = {
    Audit: _audit,
    ScheduleStep: _schedule_step,
    StartTimer: _start_timer,
    CancelTimers: _cancel_timers,
    RunFlow: _run_flow,
    EvaluateCondition: _evaluate_condition,
    SendEmail: _send_email,
    CreateWorkItem: _create_work_item,
    ReassignWorkItem: _reassign_work_item,
    CancelWorkItem: _cancel_work_item,
    StartChildRuns: _start_child_runs,
    CancelChildRuns: _cancel_child_runs,
    NotifyParent: _notify_parent,
}
