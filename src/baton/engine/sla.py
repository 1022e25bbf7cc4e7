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

A plan's run (a split run: more than ``SPLIT_STEPS`` steps, whose steps mark themselves
changed, :class:`~baton.engine.state.StepMarks`) keeps what these passes over every step
find in a :class:`StepIndex`, brought up to date from the steps marked changed since it
last looked: ``sla_at``, ``due_timer`` and ``attention`` (engine/attention.py) then cost
O(what changed) + O(log n) per write, not O(steps). A triage run's few steps are looped
over as before.
"""

from __future__ import annotations

import heapq

from baton.engine.events import TimerFired
from baton.engine.state import Run, StepRun, _Steps
from baton.engine.status import RUN_IN_PROGRESS, STEP_FALLOUT, STEP_OPEN

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


VERIFY_INDEX = False
"""Check a sample of the index's answers against the pass over every step (an
AssertionError when they differ): the test suite sets it, so a change made in place that
no one marked (:meth:`~baton.engine.state.StepRun.touch`) fails a test. Checked: the first
``VERIFY_FIRST`` looks of each index, then one in ``VERIFY_EVERY`` (a missed mark stays
wrong until the step changes again, so a later look still finds it)."""
VERIFY_FIRST = 4
VERIFY_EVERY = 8


class StepIndex:
    """What :func:`sla_at`, :func:`due_timer` and :func:`attention` find over every step of
    a split run, kept per step: the steps in fallout, the open steps past their SLA, and
    each open step's next SLA instant (``inst``) with a heap of them, ordered as the pass
    over the steps picks (instant, then the step's position); an entry whose step's
    instant has moved since is dropped when it comes to the top (lazy deletion). No step
    is removed from a run whose marks hold (one removed drops the index)."""

    __slots__ = ("fallout", "heap", "inst", "looks", "overdue", "pos")

    def __init__(self, steps: dict[str, StepRun]) -> None:
        self.fallout: set[str] = set()
        self.overdue: set[str] = set()
        self.inst: dict[str, tuple[str, str]] = {}
        self.pos = {name: i for i, name in enumerate(steps)}
        self.heap: list[tuple[str, int, str, str]] = []
        self.looks = 0
        for name, sr in steps.items():
            self.put(name, sr)

    def put(self, name: str, sr: StepRun) -> None:
        """Step ``name`` as it is now."""
        if sr.status is STEP_FALLOUT:
            self.fallout.add(name)
        else:
            self.fallout.discard(name)
        sla = sr.sla
        if sla is None:
            self.overdue.discard(name)
            nxt = None
        else:
            if sla.get("status") == "overdue" and sr.status in STEP_OPEN:
                self.overdue.add(name)
            else:
                self.overdue.discard(name)
            nxt = next_instant(sr)
        inst = self.inst
        if nxt != inst.get(name):
            if nxt is None:
                del inst[name]
            else:
                inst[name] = nxt
                heapq.heappush(self.heap, (nxt[0], self.pos[name], name, nxt[1]))

    def top(self) -> tuple[str, int, str, str] | None:
        """The earliest instant (first by position among equal ones), stale entries gone."""
        heap, inst = self.heap, self.inst
        if len(heap) > 2 * len(inst) + 64:  # (mostly stale: made again from ``inst``)
            heap[:] = [(at, self.pos[n], n, kind) for n, (at, kind) in inst.items()]
            heapq.heapify(heap)
        while heap:
            at, _pos, name, kind = heap[0]
            if inst.get(name) == (at, kind):
                return heap[0]
            heapq.heappop(heap)
        return None


def index_of(run: Run) -> StepIndex | None:
    """The run's :class:`StepIndex` brought up to date, or None when the run's steps do not
    mark their changes (a run of few steps; one whose marks cannot say what changed, until
    its next write): then the passes look at every step."""
    m = run.step_marks
    if m is None or m.steps is not run.steps or type(run.steps) is not _Steps:
        return None
    if m.lost or m.seq is None:
        m.index = None
        m.pending.clear()
        return None
    idx: StepIndex | None = m.index
    steps = run.steps
    if idx is None:
        idx = m.index = StepIndex(steps)
        m.pending.clear()
    else:
        pos = idx.pos
        for names in (m.pending, m.changed):
            for name in names:
                sr = steps.get(name)
                if sr is None:  # (not without a step removed: the marks say lost)
                    raise AssertionError(f"run {run.id}: step {name!r} marked, not there")
                if name not in pos:  # a step added: positions as the run's order is
                    idx.pos = pos = {n: i for i, n in enumerate(steps)}
                idx.put(name, sr)
        m.pending.clear()  # (``changed`` stays: the write takes it; looked at again then)
    if VERIFY_INDEX and (idx.looks < VERIFY_FIRST or idx.looks % VERIFY_EVERY == 0):
        _verify(run, idx)
    idx.looks += 1
    return idx


def _verify(run: Run, idx: StepIndex) -> None:
    """The index says what the pass over every step finds."""
    full = StepIndex(run.steps)
    got = (idx.fallout, idx.overdue, idx.inst, idx.top())
    want = (full.fallout, full.overdue, full.inst, full.top())
    if got != want:
        wrong = sorted(n for n in run.steps
                       if (n in idx.fallout, n in idx.overdue, idx.inst.get(n))
                       != (n in full.fallout, n in full.overdue, full.inst.get(n)))
        raise AssertionError(f"run {run.id}: the step index differs from a pass over every "
                             f"step at {wrong[:5]}; a change made in place needs "
                             "StepRun.touch()")


def sla_at(run: Run) -> str | None:
    """The earliest SLA instant still to come over the run's open steps (the ``sla_at``
    column); None for a run that is not in progress."""
    if run.status is not RUN_IN_PROGRESS:
        return None
    if run.step_marks is not None and (idx := index_of(run)) is not None:
        top = idx.top()
        return top[0] if top is not None else None
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
    if run.status is not RUN_IN_PROGRESS:
        return None
    if run.step_marks is not None and (idx := index_of(run)) is not None:
        top = idx.top()
        if top is None or top[0] > now:
            return None
        found = run.steps[top[2]]
        assert found.sla is not None
        return TimerFired(top[3], found.name, found.iteration, {"due_at": found.sla["due_at"]})
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
