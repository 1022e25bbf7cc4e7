"""``type: background``: run a registered flow in a worker job.

The flow runs outside any transaction, at least once; its output, the run variables it
changed and its record updates commit with the step's completion, exactly once. A failed
attempt is retried per the step's ``retry`` policy (``decide()``), then ``on_failure``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baton.definitions.checks import Checker, Scope, check_flow, check_input, join
from baton.definitions.model import StepDefinition
from baton.errors import StepFailure
from baton.flows import get_flow
from baton.steps.base import JobStepType, StepOutput, StepWork
from baton.steps.flowrun import run_flow

_UNSET = object()


class Background(JobStepType):
    name = "background"
    keys = ("flow", "input", "timeout")
    job_kind = "step"  # the jobs table's kind for these attempts (a durable format)

    def validate(self, ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        if "flow" in step:
            check_flow(ck, join(path, "flow"), step["flow"], scope.known_flows)
        else:
            ck.add(join(path, "flow"),
                   "required key 'flow' is missing (a background step runs a flow)")
        if "input" in step:
            check_input(ck, join(path, "input"), step["input"], scope)

    def chainable(self, step: StepDefinition) -> bool:
        # A flow this worker has: it runs in the batch that made the step ready.
        return step.flow is not None and get_flow(step.flow) is not None

    def run_job(self, work: StepWork) -> StepOutput:
        name = work.payload["flow"]
        fn = get_flow(name)
        if fn is None:
            raise StepFailure(f"flow {name!r} is not registered in this worker "
                              "(is its module listed under flows in baton.toml?)", retryable=False)
        done = run_flow(work.flows, name, fn, work.payload.get("timeout_ms"), work.run,
                        work.step.name, work.iteration, work.record, work.orchestration,
                        work.payload.get("input"), work.records)
        output = done.output
        if output is None:
            output = {}
        if not isinstance(output, dict):
            raise StepFailure(f"flow {name!r} returned {type(output).__name__}, not a dict",
                              retryable=False)
        before = work.run.vars
        changed = {k: v for k, v in done.vars.items() if before.get(k, _UNSET) != v}
        return StepOutput(output, changed or None, done.record_updates)

BACKGROUND = Background()
