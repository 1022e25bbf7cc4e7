"""``type: milestone``: a named point of the stage, reached when its ``after`` steps are done.

It does no work: starting it completes it (with an empty output) and audits
``milestone_reached``, so a timeline and ``steps.NAME.status`` show that point.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baton.definitions.checks import Checker, Scope, join
from baton.definitions.model import StepDefinition
from baton.engine.state import StepRun
from baton.engine.status import STEP_COMPLETED
from baton.steps.base import DecideContext, StepTypeBase


class Milestone(StepTypeBase):
    name = "milestone"

    def validate(self, ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        if not step.get("after"):
            ck.add(join(path, "after"), "a milestone step needs at least one step in after")

    def start(self, d: DecideContext, sr: StepRun, step: StepDefinition) -> None:
        d.set_step(sr, STEP_COMPLETED)
        sr.output, sr.completed_at = {}, d.now
        d.audit("milestone_reached", step=sr.name, stage=sr.stage, iteration=sr.iteration)


MILESTONE = Milestone()
