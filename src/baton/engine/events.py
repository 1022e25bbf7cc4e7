"""Events fed into :func:`baton.engine.decide.decide` and commands it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


# ---- events -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunStarted:
    pass


@dataclass(frozen=True)
class StepCompleted:
    """A background flow returned, or a person submitted the form, or an operator completed it."""

    step: str
    iteration: int
    output: dict[str, Any]
    vars: dict[str, Any] | None = None  # variables the flow set or changed (None: none)
    actor: str = "system"
    ran_at: str | None = None  # when the worker started running the flow


@dataclass(frozen=True)
class StepFailed:
    step: str
    iteration: int
    error: dict[str, Any]  # {"type", "message", "traceback"}
    actor: str = "system"


@dataclass(frozen=True)
class RecordChanged:
    """The run's record was written; conditions are evaluated again."""


@dataclass(frozen=True)
class CancelRequested:
    reason: str
    actor: str


@dataclass(frozen=True)
class ConditionEvaluated:
    """A worker ran an evaluation flow named by a condition."""

    flow: str
    value: bool


Event = ConditionEvaluated | RunStarted | StepCompleted | StepFailed | RecordChanged | CancelRequested


# ---- commands -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ScheduleStep:
    """Run a background step's flow (a job for the workers)."""

    step: str
    iteration: int
    flow: str


@dataclass(frozen=True)
class CreateWorkItem:
    step: str
    stage: str
    iteration: int
    assignee_kind: str  # user | group | queue
    assignee: str
    title: str
    instructions: str | None
    form: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class CancelWorkItem:
    step: str
    iteration: int
    reason: str


@dataclass(frozen=True)
class Audit:
    """An audit/timeline event to append in the same transaction."""

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    actor: str = "system"


@dataclass(frozen=True)
class EvaluateCondition:
    """Run an evaluation flow (``exit_when: {flow: ...}``) and report its answer."""

    flow: str


Command = EvaluateCondition | ScheduleStep | CreateWorkItem | CancelWorkItem | Audit
