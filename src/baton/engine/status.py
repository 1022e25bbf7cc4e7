"""Statuses of runs, stages, steps and work items, each with ONE transition table.

``docs/states.md`` draws these tables; ``tests/unit/test_transitions.py`` checks
every (from, to) pair against them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from baton.errors import TransitionConflict


class RunStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


class StageStatus(StrEnum):
    NOT_STARTED = "not_started"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


class StepStatus(StrEnum):
    NOT_STARTED = "not_started"  # waiting for its `after` steps
    WAITING = "waiting"  # `after` done, its `when` does not hold yet
    RUNNING = "running"  # a background job is queued, executing or waiting to retry; a pause waits
    WAITING_FOR_PERSON = "waiting_for_person"  # a work item is open
    COMPLETED = "completed"
    FAILED = "failed"
    FALLOUT = "fallout"  # failed after its retries; waits for an operator
    SKIPPED = "skipped"
    CANCELED = "canceled"


class WorkItemStatus(StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    COMPLETED = "completed"
    CANCELED = "canceled"


class IncidentStatus(StrEnum):
    """An incident (a trigger's `when` or an evaluation flow that raised) for an operator."""

    OPEN = "open"
    RESOLVED = "resolved"  # a retry evaluated it (and started the run, or found it false)
    DISMISSED = "dismissed"  # an operator said why it needs nothing more


# The members as module globals, for the hot paths (decide, the step types, the worker):
# ``StepStatus.RUNNING`` is an attribute lookup on the enum class through its metaclass
# (~65 ns), a global is a dict lookup (~10 ns); ``tests/unit/test_hot_enums.py`` pins them.
RUN_IN_PROGRESS: Final = RunStatus.IN_PROGRESS
RUN_COMPLETED: Final = RunStatus.COMPLETED
RUN_FAILED: Final = RunStatus.FAILED
RUN_CANCELED: Final = RunStatus.CANCELED
STAGE_NOT_STARTED: Final = StageStatus.NOT_STARTED
STAGE_IN_PROGRESS: Final = StageStatus.IN_PROGRESS
STAGE_COMPLETED: Final = StageStatus.COMPLETED
STAGE_FAILED: Final = StageStatus.FAILED
STAGE_CANCELED: Final = StageStatus.CANCELED
STEP_NOT_STARTED: Final = StepStatus.NOT_STARTED
STEP_WAITING: Final = StepStatus.WAITING
STEP_RUNNING: Final = StepStatus.RUNNING
STEP_WAITING_FOR_PERSON: Final = StepStatus.WAITING_FOR_PERSON
STEP_COMPLETED: Final = StepStatus.COMPLETED
STEP_FAILED: Final = StepStatus.FAILED
STEP_FALLOUT: Final = StepStatus.FALLOUT
STEP_SKIPPED: Final = StepStatus.SKIPPED
STEP_CANCELED: Final = StepStatus.CANCELED

R, G, S, W = RunStatus, StageStatus, StepStatus, WorkItemStatus
I = IncidentStatus

RUN_TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    R.IN_PROGRESS: frozenset({R.COMPLETED, R.FAILED, R.CANCELED}),
    R.FAILED: frozenset({R.IN_PROGRESS, R.CANCELED}),  # resume after the cause is fixed
    R.COMPLETED: frozenset(),
    R.CANCELED: frozenset(),
}

STAGE_TRANSITIONS: dict[StageStatus, frozenset[StageStatus]] = {
    G.NOT_STARTED: frozenset({G.IN_PROGRESS}),
    G.IN_PROGRESS: frozenset({G.COMPLETED, G.FAILED, G.CANCELED}),
    G.FAILED: frozenset({G.IN_PROGRESS, G.CANCELED}),
    G.COMPLETED: frozenset({G.IN_PROGRESS}),  # re-entry starts a fresh iteration
    G.CANCELED: frozenset({G.IN_PROGRESS}),
}

STEP_TRANSITIONS: dict[StepStatus, frozenset[StepStatus]] = {
    S.NOT_STARTED: frozenset(
        {S.WAITING, S.RUNNING, S.WAITING_FOR_PERSON, S.COMPLETED, S.FAILED, S.FALLOUT, S.CANCELED}
    ),
    S.WAITING: frozenset(
        {S.RUNNING, S.WAITING_FOR_PERSON, S.COMPLETED, S.FAILED, S.FALLOUT, S.CANCELED}
    ),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.FALLOUT, S.CANCELED}),
    S.WAITING_FOR_PERSON: frozenset({S.COMPLETED, S.FAILED, S.FALLOUT, S.CANCELED}),
    # operator actions: retry (-> running / waiting_for_person), complete, skip; or run canceled
    S.FALLOUT: frozenset({S.RUNNING, S.WAITING_FOR_PERSON, S.COMPLETED, S.SKIPPED, S.CANCELED}),
    S.FAILED: frozenset({S.RUNNING}),  # resume of a failed run retries its failed step
    S.COMPLETED: frozenset(),
    S.SKIPPED: frozenset(),
    S.CANCELED: frozenset(),
}

WORK_ITEM_TRANSITIONS: dict[WorkItemStatus, frozenset[WorkItemStatus]] = {
    W.OPEN: frozenset({W.CLAIMED, W.COMPLETED, W.CANCELED}),
    W.CLAIMED: frozenset({W.OPEN, W.COMPLETED, W.CANCELED}),  # -> open: released/reassigned
    W.COMPLETED: frozenset(),
    W.CANCELED: frozenset(),
}

# A retry that raises again keeps the incident open (with the new error): not a transition.
INCIDENT_TRANSITIONS: dict[IncidentStatus, frozenset[IncidentStatus]] = {
    I.OPEN: frozenset({I.RESOLVED, I.DISMISSED}),
    I.RESOLVED: frozenset(),
    I.DISMISSED: frozenset(),
}

TABLES = {
    RunStatus: RUN_TRANSITIONS,
    StageStatus: STAGE_TRANSITIONS,
    StepStatus: STEP_TRANSITIONS,
    WorkItemStatus: WORK_ITEM_TRANSITIONS,
    IncidentStatus: INCIDENT_TRANSITIONS,
}

StatusT = RunStatus | StageStatus | StepStatus | WorkItemStatus | IncidentStatus


def can_transition(old: StatusT, new: StatusT) -> bool:
    return new in TABLES[type(old)][old]  # type: ignore[index]


def check_transition(what: str, old: StatusT, new: StatusT) -> None:
    """Raise :class:`TransitionConflict` unless ``old -> new`` is in the table."""
    if type(old) is not type(new) or not can_transition(old, new):
        raise TransitionConflict(f"{what}: cannot go from {old.value} to {new.value}")


# Step statuses that satisfy `after` and count towards "all steps complete".
STEP_DONE = frozenset({S.COMPLETED, S.SKIPPED})
STEP_OPEN = frozenset({S.NOT_STARTED, S.WAITING, S.RUNNING, S.WAITING_FOR_PERSON, S.FALLOUT})
WORK_ITEM_OPEN = frozenset({W.OPEN, W.CLAIMED})
