"""Run state: what is persisted for one run (as one JSON document plus indexed columns)."""

from __future__ import annotations

import operator
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from baton.engine.status import (
    RUN_IN_PROGRESS,
    STAGE_NOT_STARTED,
    STEP_NOT_STARTED,
    RunStatus,
    StageStatus,
    StepStatus,
)

STATE_FORMAT = 3
"""Version of the stored JSON shape of :class:`Run`. Format 3 keeps an evaluation flow's
answers (``flow_conditions``) per condition site (``stages.triage.exit_when``); formats 1
and 2 kept them per flow name, and are still read: those answers are kept under
``flow:NAME`` (``LEGACY_ANSWER``), which the engine uses for a site that has no answer of
its own yet, and the run is written in format 3 the next time it moves. Format 1 (every
field written out) is what runs stored before migration 10 have."""

LEGACY_ANSWER = "flow:"

SPLIT_FORMAT = 4
"""The stored shape of a run of more than :data:`SPLIT_STEPS` steps (a plan's): the
document of format 3 without ``steps``, marked ``"split": true``; each step's entry is a
row of its own (``baton_run_steps``), written when it changes. The store merges the rows
back (``steps``) before anything reads the document, so :meth:`Run.from_json` reads a
merged format-4 document as it reads format 3; one read without its steps is refused."""
SPLIT_STEPS = 64
"""Runs of more steps than this are stored split (format 4): a triage run's five steps stay
in its one document, where splitting would cost a second statement per read and write."""
STEP_KEYS = ("stage", "iteration", "status", "output", "error", "attempts", "started_at",
             "completed_at", "work_item_id", "attempt_base", "sla", "children")
"""A step's entry's keys in the order :meth:`Run.to_json` writes them."""


@dataclass(eq=False)
class StepRun:
    """One step's latest iteration in a run.

    A split run (more than :data:`SPLIT_STEPS` steps, a plan's) keeps track of which of its
    steps changed since its step rows were stored (:class:`StepMarks`), so that its write
    encodes those alone: its steps are :class:`_TrackedStepRun`, whose field assignments
    mark them; a change made in place (a key of ``sla``, an entry of ``children``, of
    ``output``) must be marked with :meth:`touch`, or it is not written. (A run of a few
    steps, triage's, is not tracked: its steps' assignments cost nothing more.)"""

    name: str
    stage: str
    iteration: int
    status: StepStatus = STEP_NOT_STARTED
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    started_at: str | None = None
    completed_at: str | None = None
    work_item_id: str | None = None
    attempt_base: int = 0  # attempts made before the current retry series (operator retry)
    sla: dict[str, Any] | None = None  # {"status", "due_at", "jeopardy_at"} when the step has one
    # A child-run step's children, one entry per element in order (steps/orchestration.py):
    # {"index", "status", "run_id", "record_id", "input", "fields", "output", "error"}.
    children: list[dict[str, Any]] | None = None

    def touch(self) -> None:
        """Mark this step changed in place (its ``sla``, ``children`` or ``output`` changed
        without an assignment): its row is written with its run's next write."""
        marks = self.__dict__.get("_m")
        if marks is not None:
            marks.add(self.name)

    # (Equal by fields whether tracked or not: a dataclass's own __eq__ wants one class.)
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StepRun):
            return NotImplemented
        return _fields(self) == _fields(other)

    __hash__ = None  # type: ignore[assignment]  # (mutable, as a dataclass's)


_fields = operator.attrgetter(*(f for f in StepRun.__dataclass_fields__))


class _TrackedStepRun(StepRun):
    """A step of a tracked run (:class:`StepMarks`): an assignment marks it changed."""

    def __setattr__(self, key: str, value: Any) -> None:
        d = self.__dict__
        d[key] = value
        d["_m"].add(d["name"])


def _tracked(sr: StepRun, changed: set[str]) -> None:
    sr.__dict__["_m"] = changed
    if type(sr) is StepRun:
        sr.__class__ = _TrackedStepRun


class StepMarks:
    """Which steps of a split run changed since its step rows were as stored at ``seq``:
    names marked by their steps (``changed``, the set each tracked :class:`StepRun`
    holds), names added (``added``, in order), and whether one was removed (``lost``: the
    positions of the others may have moved, so changes are found by comparison). ``seq``
    None: not known (found by comparison)."""

    __slots__ = ("added", "changed", "index", "lost", "pending", "seq", "steps", "writes")

    def __init__(self, steps: _Steps, seq: int | None) -> None:
        self.steps = steps
        self.seq = seq
        self.changed: set[str] = set()
        self.added: list[str] = []
        self.lost = False
        # What the engine derives from every step and keeps up to date from the marks
        # (engine/sla.py's StepIndex: fallout, overdue steps, SLA instants), None until
        # asked; ``pending``: the steps marked changed that a write took from ``changed``
        # before the index looked at them.
        self.index: Any = None
        self.pending: set[str] = set()
        self.writes = 0  # writes made from these marks (the store checks a sample of them)

    def take_changed(self) -> None:
        """A write takes the marks: what the index has not looked at yet stays pending
        for it (or, when the marks cannot say what changed, the index is dropped)."""
        if self.index is not None:
            if self.lost or self.seq is None:
                self.index = None
                self.pending.clear()
            else:
                self.pending |= self.changed
        self.changed.clear()
        self.added = []
        self.lost = False
        self.writes += 1


class _Steps(dict[str, StepRun]):
    """A tracked run's steps: a step put in (new, or in place of another) is marked changed
    and tracked; one taken out marks the run's positions as lost. Reads are dict's own."""

    __slots__ = ("marks",)
    marks: StepMarks

    def __setitem__(self, name: str, sr: StepRun) -> None:
        m = self.marks
        if name not in self:
            m.added.append(name)
        m.changed.add(name)
        _tracked(sr, m.changed)
        dict.__setitem__(self, name, sr)

    def __delitem__(self, name: str) -> None:
        self.marks.lost = True
        dict.__delitem__(self, name)

    def pop(self, *args: Any) -> Any:
        self.marks.lost = True
        return dict.pop(self, *args)

    def popitem(self) -> tuple[str, StepRun]:
        self.marks.lost = True
        return dict.popitem(self)

    def clear(self) -> None:
        self.marks.lost = True
        dict.clear(self)

    def update(self, *args: Any, **kw: Any) -> None:
        self.marks.seq = None  # (not worth tracking entry by entry: compared instead)
        dict.update(self, *args, **kw)

    def setdefault(self, name: str, default: Any = None) -> Any:
        if name not in self:
            self[name] = default
        return dict.__getitem__(self, name)

    def __ior__(self, other: Any) -> Self:  # type: ignore[override,misc]
        self.update(other)
        return self


class SplitSteps(Mapping[str, dict[str, Any]]):
    """``steps`` of a split run's document as :meth:`Run.to_json` gives it for a write
    (``copy=False``): each step's entry made when read, and what changed since ``seq``
    (``changed``: None when not known), for the store to write those rows alone
    (``store/sql/runsteps.split_row``). The run's steps are read when it is: the store
    encodes the document right away."""

    __slots__ = ("added", "changed", "nth", "seq", "steps")

    def __init__(self, steps: dict[str, StepRun], changed: frozenset[str] | None,
                 added: tuple[str, ...], seq: int | None, nth: int = 0) -> None:
        self.steps, self.changed, self.added, self.seq = steps, changed, added, seq
        self.nth = nth  # which write of the run's marks this is (0: the first)

    def __getitem__(self, name: str) -> dict[str, Any]:
        return _step_doc(self.steps[name], False)

    def __iter__(self) -> Iterator[str]:
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def docs(self) -> dict[str, dict[str, Any]]:
        """Every step's entry."""
        return {k: _step_doc(v, False) for k, v in self.steps.items()}


@dataclass(frozen=True)
class ParentLink:
    """Where a child run was started from: its parent run's step (and which element)."""

    run_id: str
    step: str
    iteration: int
    index: int
    depth: int = 1  # 1: a child of a top-level run

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "step": self.step, "iteration": self.iteration,
                "index": self.index, "depth": self.depth}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ParentLink | None:
        if not data:
            return None
        return cls(data["run_id"], data["step"], data["iteration"], data["index"],
                   data.get("depth", 1))


@dataclass
class StageRun:
    name: str
    status: StageStatus = STAGE_NOT_STARTED
    iteration: int = 0  # how many times the stage has been entered
    started_at: str | None = None
    completed_at: str | None = None


@dataclass
class Run:
    """A run's whole state. Owned by the engine; the store persists it."""

    id: str
    orchestration: str
    version: int
    record_id: str | None
    status: RunStatus = RUN_IN_PROGRESS
    current_stage: str | None = None
    stages: dict[str, StageRun] = field(default_factory=dict)
    steps: dict[str, StepRun] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)
    flow_conditions: dict[str, bool] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    created_at: str = ""
    completed_at: str | None = None
    seq: int = 0  # bumped on every write; compare-and-set guard
    parent: ParentLink | None = None  # a child run: the step that started it
    # A split run's changed steps since its rows were stored (None: not tracked).
    step_marks: StepMarks | None = field(default=None, init=False, repr=False, compare=False)

    def copy(self) -> Run:
        """A deep copy (decide() must not change the run it was given)."""
        return Run.from_json(self.to_json())

    # Written out by hand: dataclasses.asdict and copy.deepcopy recurse generically and were
    # the largest cost per step in the profile.
    def to_json(self, *, copy: bool = True) -> dict[str, Any]:
        """The stored document (format 2: what equals its default is left out, and a step's
        or stage's name is its key; statuses are their enum members, which are strings). ``copy=False`` shares the nested JSON values (outputs,
        vars, …) with this run instead of copying them: for a document that is only
        encoded (the run's row), not kept."""
        doc: dict[str, Any] = {
            "format": STATE_FORMAT,
            "id": self.id, "orchestration": self.orchestration, "version": self.version,
            "status": self.status, "created_at": self.created_at, "seq": self.seq,
        }
        if self.record_id is not None:
            doc["record_id"] = self.record_id
        if self.current_stage is not None:
            doc["current_stage"] = self.current_stage
        if self.stages:
            doc["stages"] = {k: _stage_doc(v) for k, v in self.stages.items()}
        if self.steps:
            if not copy and len(self.steps) > SPLIT_STEPS:
                doc["steps"] = self._split_steps()
            else:
                doc["steps"] = {k: _step_doc(v, copy) for k, v in self.steps.items()}
        if self.vars:
            doc["vars"] = copy_json(self.vars) if copy else self.vars
        if self.input:
            doc["input"] = copy_json(self.input) if copy else self.input
        if self.decisions:
            doc["decisions"] = [dict(d) for d in self.decisions] if copy else self.decisions
        if self.flow_conditions:
            doc["flow_conditions"] = dict(self.flow_conditions) if copy \
                else self.flow_conditions
        if self.error is not None:
            doc["error"] = copy_json(self.error) if copy else self.error
        if self.completed_at is not None:
            doc["completed_at"] = self.completed_at
        if self.parent is not None:
            doc["parent"] = self.parent.to_json()
        return doc

    def _split_steps(self) -> SplitSteps:
        """``steps`` of the document a write stores (the run has more than SPLIT_STEPS
        steps): what changed since the rows the write replaces, and from here on what
        changes after it. (Written at ``self.seq``: apply sets it before the row is made.)"""
        m = self.step_marks
        if m is None or m.steps is not self.steps or type(self.steps) is not _Steps:
            self._track(self.seq)  # from here on; this write compares (or writes) them all
            return SplitSteps(self.steps, None, (), None)
        changed = None if m.lost or m.seq is None else frozenset(m.changed)
        out = SplitSteps(self.steps, changed, tuple(m.added), m.seq, m.writes)
        m.take_changed()
        m.seq = self.seq
        return out

    def _track(self, seq: int | None) -> None:
        """Track which steps change from here on, against the rows stored at ``seq``."""
        steps = _Steps(self.steps)  # (dict's own copy: nothing marked)
        marks = steps.marks = StepMarks(steps, seq)
        changed = marks.changed
        for sr in steps.values():
            _tracked(sr, changed)
        self.steps = steps
        self.step_marks = marks

    def as_dict(self) -> dict[str, Any]:
        """Every field spelled out, names in their entries, nested values copied: what the
        read model shows (not what is stored: that is :meth:`to_json`)."""
        return {
            "id": self.id, "orchestration": self.orchestration, "version": self.version,
            "record_id": self.record_id, "status": self.status.value,
            "current_stage": self.current_stage,
            "stages": {k: {"name": v.name, "status": v.status.value, "iteration": v.iteration,
                           "started_at": v.started_at, "completed_at": v.completed_at}
                       for k, v in self.stages.items()},
            "steps": {k: {"name": v.name, "stage": v.stage, "iteration": v.iteration,
                          "status": v.status.value, "output": copy_json(v.output),
                          "error": copy_json(v.error), "attempts": v.attempts,
                          "started_at": v.started_at, "completed_at": v.completed_at,
                          "work_item_id": v.work_item_id, "attempt_base": v.attempt_base,
                          "sla": copy_json(v.sla), "children": copy_json(v.children)}
                      for k, v in self.steps.items()},
            "vars": copy_json(self.vars), "input": copy_json(self.input),
            "decisions": [dict(d) for d in self.decisions],
            "flow_conditions": dict(self.flow_conditions),
            "error": copy_json(self.error), "created_at": self.created_at,
            "completed_at": self.completed_at, "seq": self.seq,
            "parent": self.parent.to_json() if self.parent is not None else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        """The run stored as ``data`` (format 2 or 3, format 4 with its steps merged back, or
        format 1 as stored before migration 10),
        which it takes over: its nested values (outputs, vars, …) become the run's own, not
        copies (callers pass a freshly decoded document; :meth:`copy` passes one
        :meth:`to_json` copied)."""
        fmt = data.get("format", 1)
        if fmt == 1:
            return cls._from_format_1(data)
        if fmt not in _FORMATS:
            raise ValueError(f"run state format {fmt} is not supported (expected {STATE_FORMAT})")
        if fmt == SPLIT_FORMAT and "steps" not in data:
            raise ValueError(f"run {data.get('id')}: a split state (format 4) read without "
                             "its steps (the store merges them: baton_run_steps)")
        get = data.get
        answers = get("flow_conditions") or {}
        if fmt == 2 and answers:
            answers = _legacy_answers(answers)
        run = cls(
            id=data["id"], orchestration=data["orchestration"], version=data["version"],
            record_id=get("record_id"), status=_RUN[data["status"]],
            current_stage=get("current_stage"),
            stages={k: StageRun(k, _STAGE[v["status"]], v.get("iteration", 0),
                                v.get("started_at"), v.get("completed_at"))
                    for k, v in (get("stages") or {}).items()},
            steps={k: StepRun(k, v["stage"], v["iteration"],
                              _STEP[v.get("status", "not_started")], v.get("output"),
                              v.get("error"), v.get("attempts", 0), v.get("started_at"),
                              v.get("completed_at"), v.get("work_item_id"),
                              v.get("attempt_base", 0), v.get("sla"), v.get("children"))
                   for k, v in (get("steps") or {}).items()},
            vars=get("vars") or {}, input=get("input") or {},
            decisions=get("decisions") or [],
            flow_conditions=answers,
            error=get("error"), created_at=data["created_at"],
            completed_at=get("completed_at"), seq=data["seq"],
            parent=ParentLink.from_json(parent) if (parent := get("parent")) else None,
        )
        if fmt == SPLIT_FORMAT:  # its steps as their rows are stored at its seq
            run._track(run.seq)
        return run

    @classmethod
    def _from_format_1(cls, data: dict[str, Any]) -> Run:
        """Format 1: every field written out, names repeated inside their entries."""
        return cls(
            id=data["id"], orchestration=data["orchestration"], version=data["version"],
            record_id=data["record_id"], status=RunStatus(data["status"]),
            current_stage=data["current_stage"],
            stages={k: StageRun(v["name"], StageStatus(v["status"]), v["iteration"],
                                v["started_at"], v["completed_at"])
                    for k, v in data["stages"].items()},
            steps={k: StepRun(v["name"], v["stage"], v["iteration"], StepStatus(v["status"]),
                              v["output"], v["error"], v["attempts"],
                              v["started_at"], v["completed_at"], v["work_item_id"],
                              v.get("attempt_base", 0), v.get("sla"))
                   for k, v in data["steps"].items()},
            vars=data["vars"], input=data["input"],
            decisions=[dict(d) for d in data["decisions"]],
            flow_conditions=_legacy_answers(data.get("flow_conditions", {})),
            error=data["error"], created_at=data["created_at"],
            completed_at=data["completed_at"], seq=data["seq"],
        )


_FORMATS = frozenset({2, STATE_FORMAT, SPLIT_FORMAT})
# Statuses by value: a dict lookup, where calling the enum runs Enum.__new__ in Python.
_STEP: dict[str, StepStatus] = {m.value: m for m in StepStatus}
_STAGE: dict[str, StageStatus] = {m.value: m for m in StageStatus}
_RUN: dict[str, RunStatus] = {m.value: m for m in RunStatus}


def _stage_doc(v: StageRun) -> dict[str, Any]:
    doc: dict[str, Any] = {"status": v.status}
    if v.iteration:
        doc["iteration"] = v.iteration
    if v.started_at is not None:
        doc["started_at"] = v.started_at
    if v.completed_at is not None:
        doc["completed_at"] = v.completed_at
    return doc


def _step_doc(v: StepRun, copy: bool) -> dict[str, Any]:
    """A step's entry (what equals its default left out); its JSON values copied or, with
    ``copy=False``, shared (no call per value: this runs for every step of every write)."""
    doc: dict[str, Any] = {"stage": v.stage, "iteration": v.iteration}
    if v.status is not STEP_NOT_STARTED:
        doc["status"] = v.status
    if v.output is not None:
        doc["output"] = copy_json(v.output) if copy else v.output
    if v.error is not None:
        doc["error"] = copy_json(v.error) if copy else v.error
    if v.attempts:
        doc["attempts"] = v.attempts
    if v.started_at is not None:
        doc["started_at"] = v.started_at
    if v.completed_at is not None:
        doc["completed_at"] = v.completed_at
    if v.work_item_id is not None:
        doc["work_item_id"] = v.work_item_id
    if v.attempt_base:
        doc["attempt_base"] = v.attempt_base
    if v.sla is not None:
        doc["sla"] = copy_json(v.sla) if copy else v.sla
    if v.children is not None:
        doc["children"] = copy_json(v.children) if copy else v.children
    return doc


def _legacy_answers(answers: dict[str, bool]) -> dict[str, bool]:
    """Answers of formats 1 and 2 (per flow name), under ``flow:NAME``."""
    return {LEGACY_ANSWER + name: value for name, value in answers.items()}


# Values copy_json() returns as they are, tested by exact type: most values of a record, an
# output or the variables are these, and a call apiece for them was most of its cost.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def copy_json(value: Any) -> Any:
    """Copy JSON-shaped data (dicts, lists, scalars) — much cheaper than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: v if type(v) in _SCALARS else copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [v if type(v) in _SCALARS else copy_json(v) for v in value]
    return value


_copy = copy_json
