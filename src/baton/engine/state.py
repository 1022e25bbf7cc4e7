"""Run state: what is persisted for one run (as one JSON document plus indexed columns)."""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
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
        return copy.deepcopy(self)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = STATE_FORMAT
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        data = dict(data)
        fmt = data.pop("format", STATE_FORMAT)
        if fmt != STATE_FORMAT:
            raise ValueError(f"run state format {fmt} is not supported (expected {STATE_FORMAT})")
        data["status"] = RunStatus(data["status"])
        data["stages"] = {
            k: StageRun(**{**v, "status": StageStatus(v["status"])}) for k, v in data["stages"].items()
        }
        data["steps"] = {
            k: StepRun(**{**v, "status": StepStatus(v["status"])}) for k, v in data["steps"].items()
        }
        return cls(**data)
