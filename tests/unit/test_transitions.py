"""Every (from, to) pair of every status enum against its ONE transition table.

The expected tables are written out here on purpose (not read from ``status.py``):
a change to the engine's state machine must be a deliberate change to this file too
(and to ``docs/states.md``).
"""

from __future__ import annotations

from enum import StrEnum
from itertools import product

import pytest

from baton.engine.status import (
    TABLES,
    IncidentStatus,
    RunStatus,
    StageStatus,
    StepStatus,
    WorkItemStatus,
    can_transition,
    check_transition,
)
from baton.errors import TransitionConflict

R, G, S, W = RunStatus, StageStatus, StepStatus, WorkItemStatus
I = IncidentStatus

EXPECTED: dict[type[StrEnum], dict[StrEnum, set[StrEnum]]] = {
    RunStatus: {
        R.IN_PROGRESS: {R.COMPLETED, R.FAILED, R.CANCELED},
        R.FAILED: {R.IN_PROGRESS, R.CANCELED},  # resume after the cause is fixed, or give up
        R.COMPLETED: set(),
        R.CANCELED: set(),
    },
    StageStatus: {
        G.NOT_STARTED: {G.IN_PROGRESS},
        G.IN_PROGRESS: {G.COMPLETED, G.FAILED, G.CANCELED},
        G.FAILED: {G.IN_PROGRESS, G.CANCELED},
        G.COMPLETED: {G.IN_PROGRESS},  # re-entry: a fresh iteration
        G.CANCELED: {G.IN_PROGRESS},
    },
    StepStatus: {
        S.NOT_STARTED: {S.WAITING, S.RUNNING, S.WAITING_FOR_PERSON, S.COMPLETED, S.FAILED,
                        S.FALLOUT, S.CANCELED},
        S.WAITING: {S.RUNNING, S.WAITING_FOR_PERSON, S.COMPLETED, S.FAILED, S.FALLOUT,
                    S.CANCELED},
        S.RUNNING: {S.COMPLETED, S.FAILED, S.FALLOUT, S.CANCELED},
        S.WAITING_FOR_PERSON: {S.COMPLETED, S.FAILED, S.FALLOUT, S.CANCELED},
        S.FALLOUT: {S.RUNNING, S.WAITING_FOR_PERSON, S.COMPLETED, S.SKIPPED, S.CANCELED},  # operator
        S.FAILED: {S.RUNNING},
        S.COMPLETED: set(),
        S.SKIPPED: set(),
        S.CANCELED: set(),
    },
    WorkItemStatus: {
        W.OPEN: {W.CLAIMED, W.COMPLETED, W.CANCELED},
        W.CLAIMED: {W.OPEN, W.COMPLETED, W.CANCELED},  # -> open: released / reassigned
        W.COMPLETED: set(),
        W.CANCELED: set(),
    },
    IncidentStatus: {
        I.OPEN: {I.RESOLVED, I.DISMISSED},  # retry (evaluated: run started, or false), dismiss
        I.RESOLVED: set(),
        I.DISMISSED: set(),
    },
}

ENUMS = (RunStatus, StageStatus, StepStatus, WorkItemStatus, IncidentStatus)
PAIRS = [
    pytest.param(old, new, id=f"{enum.__name__}:{old.value}->{new.value}")
    for enum in ENUMS
    for old, new in product(enum, enum)
]


@pytest.mark.parametrize(("old", "new"), PAIRS)
def test_transition_pair(old: StrEnum, new: StrEnum) -> None:
    allowed = new in EXPECTED[type(old)][old]
    assert can_transition(old, new) is allowed  # type: ignore[arg-type]
    if allowed:
        check_transition("thing", old, new)  # type: ignore[arg-type]
    else:
        with pytest.raises(TransitionConflict) as exc:
            check_transition("thing", old, new)  # type: ignore[arg-type]
        # the message says what and which move, so a user can act on it
        assert "thing" in str(exc.value)
        assert old.value in str(exc.value) and new.value in str(exc.value)


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
def test_table_covers_every_status_as_a_key(enum: type[StrEnum]) -> None:
    table = TABLES[enum]  # type: ignore[index]
    assert set(table) == set(enum)
    for old, targets in table.items():
        assert isinstance(old, enum)
        assert all(isinstance(t, enum) for t in targets), f"{old}: target of another enum"
        assert old not in targets, f"{old} -> {old} is not a transition"


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
def test_table_is_the_expected_one(enum: type[StrEnum]) -> None:
    table = TABLES[enum]  # type: ignore[index]
    assert {k: set(v) for k, v in table.items()} == EXPECTED[enum]


@pytest.mark.parametrize(("old", "new"), [
    (StepStatus.RUNNING, RunStatus.COMPLETED),
    (StageStatus.CANCELED, RunStatus.CANCELED),  # same word, other machine
    (WorkItemStatus.OPEN, StageStatus.IN_PROGRESS),
])
def test_statuses_of_different_kinds_never_transition(old: StrEnum, new: StrEnum) -> None:
    with pytest.raises(TransitionConflict):
        check_transition("mixed", old, new)  # type: ignore[arg-type]


@pytest.mark.parametrize("enum", ENUMS, ids=lambda e: e.__name__)
def test_statuses_are_lowercase_words(enum: type[StrEnum]) -> None:
    for status in enum:
        assert status.value == status.value.lower()
        assert status.value.replace("_", "").isalpha()


@pytest.mark.parametrize(("kind", "old", "new"), [
    (kind, old, new) for kind in (RunStatus, StageStatus, StepStatus)
    for old, new in product(kind, kind)])
def test_the_engine_moves_exactly_what_the_table_allows(kind: type[StrEnum], old: StrEnum,
                                                        new: StrEnum) -> None:
    """decide()'s own moves (``set_run``/``set_stage``/``set_step``, which look the table
    up themselves and call check_transition only for a move it may refuse) refuse exactly
    the pairs the table refuses, with check_transition's message."""
    from datetime import UTC, datetime

    from baton.definitions.model import OrchestrationDefinition, StageDefinition, Trigger
    from baton.engine.decide import _Decider
    from baton.engine.state import Run, StageRun, StepRun

    defn = OrchestrationDefinition("o", Trigger("autolaunched"), (StageDefinition("s", ()),))
    d = _Decider(defn, Run("run_1", "o", 1, None), datetime(2026, 12, 3, tzinfo=UTC), None)
    moves = {
        RunStatus: lambda: (setattr(d.run, "status", old), d.set_run(new)),  # type: ignore[arg-type]
        StageStatus: lambda: d.set_stage(StageRun("s", old), new),  # type: ignore[arg-type]
        StepStatus: lambda: d.set_step(StepRun("x", "s", 1, old), new),  # type: ignore[arg-type]
    }
    if new in EXPECTED[kind][old]:
        moves[kind]()
    else:
        with pytest.raises(TransitionConflict, match=f"cannot go from {old.value} to {new.value}"):
            moves[kind]()
