"""The status members as module globals (:mod:`baton.engine.status`, for the hot paths)
are the enum members themselves, one global for every member, so ``sr.status is
STEP_RUNNING`` means what ``sr.status is StepStatus.RUNNING`` means."""

from __future__ import annotations

from enum import Enum

from baton.engine import status
from baton.engine.status import RunStatus, StageStatus, StepStatus

PREFIXES: dict[str, type[Enum]] = {"RUN_": RunStatus, "STAGE_": StageStatus, "STEP_": StepStatus}


def test_every_member_has_its_global_and_the_global_is_the_member() -> None:
    for prefix, enum in PREFIXES.items():
        for member in enum:
            assert getattr(status, prefix + member.name) is member, (prefix, member)


def test_the_globals_are_members_of_the_enum_their_prefix_names() -> None:
    globals_ = {n: v for n, v in vars(status).items() if isinstance(v, Enum)
                and n.startswith(tuple(PREFIXES))}
    assert len(globals_) == sum(len(e) for e in PREFIXES.values())
    for name, value in globals_.items():
        enum = next(e for p, e in PREFIXES.items() if name.startswith(p))
        assert type(value) is enum and name == next(p for p in PREFIXES
                                                    if name.startswith(p)) + value.name


def test_a_stored_status_is_the_plain_value() -> None:
    from baton.clock import VirtualClock, iso
    from baton.engine.state import Run
    from baton.runtime.apply import run_row

    now = iso(VirtualClock().now())
    row = run_row(Run(id="r", orchestration="o", version=1, record_id=None, created_at=now), now)
    assert type(row["status"]) is str and row["status"] == "in_progress"
