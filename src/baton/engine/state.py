"""Run state: what is persisted for one run (as one JSON document plus indexed columns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from baton.engine.status import RunStatus, StageStatus, StepStatus

STATE_FORMAT = 1
"""Version of the stored JSON shape of :class:`Run`; bump with a migration."""


@dataclass
class StepRun:
    """One step's latest iteration in a run."""

    name: str
    stage: str
    iteration: int
    status: StepStatus = StepStatus.NOT_STARTED
    output: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    attempts: int = 0
    started_at: str | None = None
    completed_at: str | None = None
    work_item_id: str | None = None
    attempt_base: int = 0  # attempts made before the current retry series (operator retry)
    sla: dict[str, Any] | None = None  # {"status", "due_at", "jeopardy_at"} when the step has one


@dataclass
class StageRun:
    name: str
    status: StageStatus = StageStatus.NOT_STARTED
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
    status: RunStatus = RunStatus.IN_PROGRESS
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

    def copy(self) -> Run:
        """A deep copy (decide() must not change the run it was given)."""
        return Run.from_json(self.to_json())

    # Written out by hand: dataclasses.asdict and copy.deepcopy recurse generically and were
    # the largest cost per step in the profile.
    def to_json(self, *, copy: bool = True) -> dict[str, Any]:
        """The stored document. ``copy=False`` shares the nested JSON values (outputs,
        vars, …) with this run instead of copying them: for a document that is only
        encoded (the run's row), not kept."""
        _copy = copy_json if copy else _same
        return {
            "format": STATE_FORMAT,
            "id": self.id, "orchestration": self.orchestration, "version": self.version,
            "record_id": self.record_id, "status": self.status.value,
            "current_stage": self.current_stage,
            "stages": {k: {"name": v.name, "status": v.status.value, "iteration": v.iteration,
                           "started_at": v.started_at, "completed_at": v.completed_at}
                       for k, v in self.stages.items()},
            "steps": {k: {"name": v.name, "stage": v.stage, "iteration": v.iteration,
                          "status": v.status.value, "output": _copy(v.output),
                          "error": _copy(v.error), "attempts": v.attempts,
                          "started_at": v.started_at, "completed_at": v.completed_at,
                          "work_item_id": v.work_item_id, "attempt_base": v.attempt_base,
                          "sla": _copy(v.sla)}
                      for k, v in self.steps.items()},
            "vars": _copy(self.vars), "input": _copy(self.input),
            "decisions": [dict(d) for d in self.decisions],
            "flow_conditions": dict(self.flow_conditions),
            "error": _copy(self.error), "created_at": self.created_at,
            "completed_at": self.completed_at, "seq": self.seq,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        """The run stored as ``data``, which it takes over: its nested values (outputs,
        vars, …) become the run's own, not copies (callers pass a freshly decoded
        document; :meth:`copy` passes one :meth:`to_json` copied)."""
        fmt = data.get("format", STATE_FORMAT)
        if fmt != STATE_FORMAT:
            raise ValueError(f"run state format {fmt} is not supported (expected {STATE_FORMAT})")
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
            flow_conditions=dict(data.get("flow_conditions", {})),
            error=data["error"], created_at=data["created_at"],
            completed_at=data["completed_at"], seq=data["seq"],
        )


def copy_json(value: Any) -> Any:
    """Copy JSON-shaped data (dicts, lists, scalars) — much cheaper than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


def _same(value: Any) -> Any:
    return value


_copy = copy_json
