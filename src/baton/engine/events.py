"""Events fed into :func:`baton.engine.decide.decide` and commands it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


# ---- events -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunStarted:
    actor: str = "system"  # who started it: the API's user, or whoever wrote the record


@dataclass(frozen=True)
class StepCompleted:
    """A background flow returned, or a person submitted the form, or an operator completed it."""

    step: str
    iteration: int
    output: dict[str, Any]
    vars: dict[str, Any] | None = None  # variables the flow set or changed (None: none)
    actor: str = "system"
    ran_at: str | None = None  # when the worker started running the flow
    attempt: int | None = None  # the attempt that produced it (None: not a worker's result)


@dataclass(frozen=True)
class StepFailed:
    step: str
    iteration: int
    error: dict[str, Any]  # {"type", "message", "retryable", "traceback"}
    actor: str = "system"
    attempt: int | None = None  # the attempt that failed (None: not a worker's result)


@dataclass(frozen=True)
class RecordChanged:
    """The run's record was written; conditions are evaluated again."""


@dataclass(frozen=True)
class CancelRequested:
    reason: str
    actor: str


@dataclass(frozen=True)
class PlanAmended:
    """A plan run moves to a new revision of its generated graph (an amended order):
    ``removed`` steps stop (open ones are canceled) and leave the run, ``added`` ones start
    when their ``after`` steps are done; the others keep their state."""

    revision: int
    removed: tuple[str, ...]
    added: tuple[str, ...]
    actor: str


@dataclass(frozen=True)
class ConditionEvaluated:
    """A worker ran an evaluation flow named by a condition: its answer for the condition at
    ``site`` (``Condition.site``), or ``None`` when it gave none (it raised: an incident is
    open, and the condition has no answer until it is asked again). Without a site (a job
    queued before answers were kept per site) it answers every condition of the current
    stage that names the flow."""

    flow: str
    value: bool | None
    site: str | None = None


@dataclass(frozen=True)
class FalloutAction:
    """An operator resolves a step in fallout: ``retry``, ``complete`` (with output) or ``skip``."""

    step: str
    action: str  # retry | complete | skip
    actor: str
    reason: str
    output: dict[str, Any] | None = None


@dataclass(frozen=True)
class ResumeRequested:
    """An operator resumes a failed run after fixing the cause."""

    actor: str
    reason: str


@dataclass(frozen=True)
class TimerFired:
    """A durable timer (a job whose ``run_after`` was in the future) came due."""

    kind: str  # pause | sla_jeopardy | sla_overdue
    step: str
    iteration: int
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SignalReceived:
    """``baton runs signal RUN NAME --data JSON``: completes pause steps waiting for NAME."""

    name: str
    data: dict[str, Any]
    actor: str


@dataclass(frozen=True)
class ChildRunFinished:
    """A child run started by a step of this run completed, failed or was canceled (or
    could not be started: ``run_id`` None, ``status`` failed)."""

    step: str
    iteration: int
    index: int  # the element of the step's children
    run_id: str | None
    status: str  # completed | failed | canceled
    output: dict[str, Any] | None = None  # a completed child's result
    error: dict[str, Any] | None = None  # why it failed or was canceled


Event = (ConditionEvaluated | RunStarted | StepCompleted | StepFailed | RecordChanged
         | CancelRequested | FalloutAction | ResumeRequested | TimerFired | SignalReceived
         | ChildRunFinished | PlanAmended)


# ---- commands -----------------------------------------------------------------------------
class ScheduleStep(NamedTuple):
    """Run an attempt of a step in a worker: a job of the kind its step type enqueues.

    A named tuple (like :class:`Audit`): made at every background step's start, in one C
    call. ``kind`` is given by name (it was a keyword-only field)."""

    step: str
    iteration: int
    flow: str | None  # the flow a background step runs (None for types that run none)
    kind: str  # the job kind: the step type's (``baton.steps``)
    attempt: int = 1
    not_before: str | None = None  # ISO time; None: now (a retry waits for its backoff)
    timeout_ms: int | None = None  # the attempt fails when the flow overruns this
    input: dict[str, Any] | None = None  # the step's ``input``, evaluated


@dataclass(frozen=True)
class StartTimer:
    """A durable timer: a job that becomes due at ``at`` and comes back as TimerFired."""

    kind: str
    step: str
    iteration: int
    at: str  # ISO time
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CancelTimers:
    """The step iteration closed: its timers that have not fired are deleted."""

    step: str
    iteration: int


@dataclass(frozen=True)
class ReassignWorkItem:
    """Give a step's open work item to someone else (an SLA action)."""

    step: str
    iteration: int
    to: str  # queue:NAME | user:NAME | group:NAME
    reason: str
    # An SLA action naming a routing rule: the rule as the item keeps it (skills evaluated),
    # the item routed again with it in ``to`` (its queue or group); and whether its current
    # assignee is kept out.
    routing: dict[str, Any] | None = None
    exclude_assignee: bool = False


@dataclass(frozen=True)
class RunFlow:
    """Run a flow for its side effects (an SLA escalation); its output is only audited."""

    flow: str
    step: str
    iteration: int
    reason: str


class CreateWorkItem(NamedTuple):
    """Create a person's work item for a step (a named tuple, like :class:`Audit`: one C
    call for its fifteen fields at every interactive start)."""

    step: str
    stage: str
    iteration: int
    assignee_kind: str  # user | group | queue
    assignee: str
    title: str
    instructions: str | None
    form: tuple[dict[str, Any], ...] = ()
    priority: int = 1  # index into definitions.model.PRIORITIES (0 low … 3 urgent)
    due_at: str | None = None  # the step's SLA due time (ISO), if it has an SLA
    summary: str | None = None  # a line about its record, under the title
    jeopardy_at: str | None = None  # when the step's SLA turns in_jeopardy (ISO), if ever
    input: dict[str, Any] | None = None  # the step's ``input``, evaluated when it started
    step_type: str | None = None  # the step's type: a delegate may act on approvals only
    # A routing rule picks the person (baton.work.router): the rule with its skills
    # evaluated now; the item waits in ``assignee`` (the rule's queue or group) meanwhile.
    routing: dict[str, Any] | None = None


@dataclass(frozen=True)
class CancelWorkItem:
    step: str
    iteration: int
    reason: str


class Audit(NamedTuple):
    """An audit/timeline event to append in the same transaction.

    A named tuple, not a frozen dataclass like the other commands: as immutable, but made
    in one C call instead of one ``object.__setattr__`` per field, and a run makes ~20 of
    them per triage case (``decide()`` in both processes)."""

    type: str
    data: dict[str, Any]
    actor: str = "system"


@dataclass(frozen=True)
class SendEmail:
    """E-mail the named recipients (an SLA ``notify``): queued as a job in the same
    transaction (an outbox) and sent by a worker outside any transaction."""

    to: tuple[str, ...]  # names as written: addresses, ``assignee`` or mapped names
    subject: str
    step: str
    iteration: int
    sla_status: str  # in_jeopardy | overdue
    due_at: str | None
    record_id: str | None
    run_id: str


@dataclass(frozen=True)
class EvaluateCondition:
    """Run an evaluation flow (``exit_when: {flow: ...}``) for the condition at ``site`` and
    report its answer. ``input`` is the condition's ``input`` evaluated now (the flow's
    ``ctx.input``); ``error`` says why it could not be, and the worker then opens an
    incident instead of asking the flow."""

    flow: str
    site: str = ""
    input: dict[str, Any] | None = None
    error: str | None = None


@dataclass(frozen=True)
class ChildStart:
    """One child run to start: its input, and its record (the one named, a new one of
    ``create`` with ``fields``, or none)."""

    index: int
    input: dict[str, Any]
    record_id: str | None = None
    create: str | None = None  # object type of a record to create for the child
    fields: dict[str, Any] | None = None


@dataclass(frozen=True)
class StartChildRuns:
    """Start child runs of ``orchestration`` (its active version) for a step iteration,
    in this transaction; their ids are written into the step's ``children``."""

    step: str
    iteration: int
    orchestration: str
    children: tuple[ChildStart, ...]


@dataclass(frozen=True)
class CancelChildRuns:
    """Cancel these child runs (each by a job of its own: they cancel theirs in turn)."""

    step: str
    iteration: int
    run_ids: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class NotifyParent:
    """This run (a child) ended: tell its parent's step, in this transaction (a job)."""

    parent_run_id: str
    step: str
    iteration: int
    index: int
    status: str
    output: dict[str, Any] | None
    error: dict[str, Any] | None


Command = (EvaluateCondition | ScheduleStep | CreateWorkItem | CancelWorkItem | Audit
           | StartTimer | CancelTimers | ReassignWorkItem | RunFlow | SendEmail
           | StartChildRuns | CancelChildRuns | NotifyParent)
