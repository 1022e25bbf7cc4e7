"""What a flow and a callout see of a run's steps is made when read, but as the steps were
when the context was made (issue 13 item 9: a plan's run has hundreds of steps and making
every view for every step cost more than the step); and decide() rechecks only the steps
whose type rechecks anything."""

from __future__ import annotations

import pickle
from typing import Any

from baton.engine import decide as decide_mod
from baton.engine.state import Run, StepRun
from baton.engine.status import StepStatus
from baton.flows import StepView
from baton.steps import registry
from baton.steps.base import JobStepType, StepWork
from baton.steps.callout import request_scope
from baton.steps.flowrun import flow_context


def _run() -> Run:
    run = Run("run_1", "o", 1, None, input={"n": 1})
    run.steps = {
        "a": StepRun("a", "s", 1, StepStatus.COMPLETED, output={"x": {"y": 1}}),
        "b": StepRun("b", "s", 1, StepStatus.RUNNING),
        "c": StepRun("c", "s", 1, StepStatus.FAILED, error={"message": "no"}),
    }
    return run


def _mutate(run: Run) -> None:
    """What decide() does to the batch's run after a context was made from it."""
    run.steps["a"].output = {"x": {"y": 2}}
    run.steps["b"].status = StepStatus.COMPLETED
    run.steps["b"].output = {"done": True}
    run.steps["d"] = StepRun("d", "s", 1)


def test_ctx_steps_are_the_steps_as_they_were_when_the_context_was_made() -> None:
    run = _run()
    ctx = flow_context(run, "b", 1, None)
    _mutate(run)
    assert list(ctx.steps) == ["a", "b", "c"] and len(ctx.steps) == 3
    assert "a" in ctx.steps and "d" not in ctx.steps and ctx.steps.get("d") is None
    assert ctx.steps["a"] == StepView("a", "completed", {"x": {"y": 1}})
    assert ctx.steps["b"] == StepView("b", "running", {})
    assert ctx.steps["c"].status == "failed"
    # a copy: what the flow does to it does not reach the run
    ctx.steps["a"].output["x"]["y"] = 99  # type: ignore[index]
    assert run.steps["a"].output == {"x": {"y": 2}}
    assert ctx.steps["a"] is ctx.steps["a"]  # made once, then kept
    # a flow process reads views over its pipe: one view, or all of them as a plain dict
    # (flowpool's answer to the child's ("all",) request is dict(ctx.steps))
    sent = pickle.loads(pickle.dumps(dict(ctx.steps)))
    assert sent["a"].output == {"x": {"y": 99}} and sent["b"].status == "running"


def test_ctx_steps_are_read_only() -> None:
    ctx = flow_context(_run(), "b", 1, None)
    try:
        ctx.steps["z"] = StepView("z", "running", {})  # type: ignore[index]
    except TypeError:
        pass
    else:
        raise AssertionError("ctx.steps took an assignment")


def _flows(name: str, fn: Any, ctx: Any, timeout_ms: int | None) -> Any:
    return fn(ctx)


def test_a_callout_request_sees_the_steps_as_they_were_when_it_was_built() -> None:
    run = _run()
    work = StepWork(run=run, record={"id": "r1"}, step=None, iteration=1,  # type: ignore[arg-type]
                    attempt=1, payload={}, flows=_flows)
    scope = request_scope(work)
    _mutate(run)
    steps = scope["steps"]
    assert sorted(steps) == ["a", "b", "c"] and len(steps) == 3 and "d" not in steps
    assert steps["a"] == {"status": "completed", "iteration": 1, "output": {"x": {"y": 1}}}
    assert steps["b"] == {"status": "running", "iteration": 1}
    assert steps["c"] == {"status": "failed", "iteration": 1, "error": {"message": "no"}}


class _Rechecking(JobStepType):
    name, job_kind = "probe_recheck", None

    def recheck(self, d: Any, sr: Any, step: Any) -> bool:
        return False


def test_only_types_that_recheck_are_rechecked_and_a_new_one_is_seen() -> None:
    names = decide_mod._rechecking()
    assert {"interactive", "pause"} <= names
    assert "background" not in names and "milestone" not in names
    registry.register(_Rechecking())
    try:
        assert "probe_recheck" in decide_mod._rechecking()
    finally:
        registry.unregister("probe_recheck")
    assert "probe_recheck" not in decide_mod._rechecking()
