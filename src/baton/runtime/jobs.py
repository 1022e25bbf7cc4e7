"""The job kinds the runtime queues itself, and the payload each carries.

A job row's ``payload`` is JSON; these ``TypedDict``s are its shape per kind, written where
the job is queued (``runtime/apply.py``, the records service, ``work/emails.py``) and read
where it runs (``runtime/worker.py``), so both ends are checked against one definition.
A step type's own job kind (``"step"`` for background steps) carries a
:class:`StepPayload`; its type reads it in ``StepType.run_job``.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from baton.store.base import SLA_JOB

EVALUATE = "evaluate"
TIMER = "timer"
EMAIL = "email"
CONDITION = "condition"
ESCALATION = "escalation"
SCHEDULE = "schedule"
SLA = SLA_JOB
"""Never a row: a run whose ``sla_at`` has come, handed out by the claim like a job."""
CHILD = "child"
"""A child run ended (or could not start): its parent's step hears of it."""
CANCEL = "cancel"
"""Cancel a run (a child run whose parent's step was canceled)."""
ROUTE = "route"
"""Route the items waiting in a queue or group (a calendar opened; a re-check after a new
item waited), or in a person's queues (they have room again), or pass an offer that was
not accepted in time to the next candidate (offer mode): :mod:`baton.work.router`."""
RUNTIME_KINDS = (EVALUATE, TIMER, EMAIL, CONDITION, ESCALATION, SCHEDULE, SLA, CHILD, CANCEL,
                 ROUTE)
"""Reserved: no step type may take one of these names as its job kind."""


class StepPayload(TypedDict):
    """An attempt of a step (``ScheduleStep``), under its step type's job kind."""

    step: str
    iteration: int
    flow: str | None
    attempt: int
    timeout_ms: int | None
    input: NotRequired[dict[str, Any]]  # the step's ``input``, evaluated (only when it has one)


class TimerPayload(TypedDict):
    """A durable timer (``StartTimer``): due at the job's ``run_after``, fired once."""

    kind: str
    step: str
    iteration: int
    data: dict[str, Any] | None


class EscalationPayload(TypedDict):
    """An SLA escalation flow to run (``RunFlow``); what it returns is audited."""

    flow: str
    step: str
    iteration: int
    reason: str


class ConditionPayload(TypedDict):
    """An evaluation flow that decides a condition (``EvaluateCondition``): for the
    condition at ``site`` with its evaluated ``input``, or, with ``error``, an input that
    could not be evaluated (an incident). A job queued before sites has the flow alone."""

    flow: str
    site: NotRequired[str]
    input: NotRequired[dict[str, Any]]
    error: NotRequired[str]


class SchedulePayload(TypedDict):
    """A cron tick of a scheduled orchestration (:mod:`baton.runtime.schedules`); stale
    unless ``token`` is still its schedule's."""

    orchestration: str
    token: str
    at: str


class ChildPayload(TypedDict):
    """A child run of the job's run (its parent) ended: ``ChildRunFinished``."""

    step: str
    iteration: int
    index: int
    run_id: str | None
    status: str  # completed | failed | canceled
    output: dict[str, Any] | None
    error: dict[str, Any] | None


class CancelPayload(TypedDict):
    """Cancel the job's run: its parent's step that started it was canceled."""

    reason: str
    parent_run_id: str


class EvaluatePayload(TypedDict):
    """Evaluate the run's conditions again (its record changed)."""

    reason: str


class EmailPayload(TypedDict):
    """An e-mail to send outside the transaction (an outbox row)."""

    recipients: list[str]
    subject: str
    text: str
    record_id: str | None
    step: NotRequired[str | None]
    work_item: NotRequired[str]
    assignee: NotRequired[str]  # an assignment's KIND:NAME: not sent once it is not theirs
    link: NotRequired[str | None]
    html: NotRequired[str]
