"""SLA instants kept on the run itself, not as timer jobs.

A step's SLA (``sr.sla``: status, ``jeopardy_at``, ``due_at``) says which of its instants
is still to come: ``jeopardy_at`` while on track (if the SLA has a jeopardy threshold), then
``due_at`` until it is overdue. The earliest such instant over the run's open steps is
stored in the run row's indexed ``sla_at`` column, written with every run state (the same
compare-and-set), and the workers' claim finds runs whose instant has come. Firing it is a
``TimerFired`` applied like any event, in one transaction with the new state, so each
instant fires exactly once: a second sweep of the same run finds the next instant (or
none), and a crash before the commit leaves ``sla_at`` where it was.

Nothing is inserted when a step starts its SLA and nothing is deleted when it closes: a
step that leaves the open statuses simply stops counting.
"""

from __future__ import annotations

from baton.engine.events import TimerFired
from baton.engine.state import Run, StepRun
from baton.engine.status import STEP_OPEN, RunStatus

# A step's SLA is on_track, then in_jeopardy (from ``jeopardy_at``), then overdue (from ``due_at``).
SLA_STATES = ("on_track", "in_jeopardy", "overdue")
JEOPARDY = "sla_jeopardy"
OVERDUE = "sla_overdue"
KINDS = frozenset({JEOPARDY, OVERDUE})


def next_instant(sr: StepRun) -> tuple[str, str] | None:
    """The step's next SLA instant and its timer kind, or None (no SLA, closed, overdue)."""
    sla = sr.sla
    if sla is None or sr.status not in STEP_OPEN:
        return None
    status = sla.get("status")
    if status == "on_track" and sla.get("jeopardy_at"):
        return sla["jeopardy_at"], JEOPARDY
    if status in ("on_track", "in_jeopardy") and sla.get("due_at"):
        return sla["due_at"], OVERDUE
    return None


def sla_at(run: Run) -> str | None:
    """The earliest SLA instant still to come over the run's open steps (the ``sla_at``
    column); None for a run that is not in progress."""
    if run.status is not RunStatus.IN_PROGRESS:
        return None
    best: str | None = None
    for sr in run.steps.values():
        if sr.sla is None:
            continue
        nxt = next_instant(sr)
        if nxt is not None and (best is None or nxt[0] < best):
            best = nxt[0]
    return best


def due_timer(run: Run, now: str) -> TimerFired | None:
    """The SLA instant of ``run`` that has come by ``now`` (the earliest, if several), as
    the event that fires it; None when none has."""
    if run.status is not RunStatus.IN_PROGRESS:
        return None
    best: tuple[str, str, StepRun] | None = None
    for sr in run.steps.values():
        if sr.sla is None:
            continue
        nxt = next_instant(sr)
        if nxt is not None and nxt[0] <= now and (best is None or nxt[0] < best[0]):
            best = (nxt[0], nxt[1], sr)
    if best is None:
        return None
    _at, kind, sr = best
    assert sr.sla is not None
    return TimerFired(kind, sr.name, sr.iteration, {"due_at": sr.sla["due_at"]})
