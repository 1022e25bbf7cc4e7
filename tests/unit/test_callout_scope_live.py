"""A callout's request scope reads the run's steps when its expressions read them, not a
snapshot of every step per call (issue 13 item 9: a plan's run has thousands of steps);
what it shows is still the steps as they were when the request was built, whatever
happens to the run once the call is answered."""

from __future__ import annotations

from concurrent.futures import Future
from types import MappingProxyType
from typing import Any

import pytest

from baton.connections.calls import CallSummary, HttpRequest, HttpResponse
from baton.definitions.model import StepDefinition
from baton.engine.state import Run, StepRun
from baton.engine.status import StepStatus
from baton.errors import StepFailure
from baton.steps import callout as callout_mod
from baton.steps.base import StepWork
from baton.steps.callout import CALLOUT, request_scope


class _Counting(dict[str, StepRun]):
    """A run's steps that count the reads of their entries (as a StepRun's attributes)."""

    reads = 0

    def __getitem__(self, name: str) -> StepRun:
        type(self).reads += 1
        return super().__getitem__(name)

    def values(self) -> Any:
        type(self).reads += len(self)
        return super().values()


def _run(n: int = 300) -> Run:
    run = Run("run_1", "o", 1, None, input={"n": 1})
    steps = _Counting()
    for i in range(n):
        steps[f"s{i}"] = StepRun(f"s{i}", "st", 1, StepStatus.COMPLETED, output={"v": i})
    steps["me"] = StepRun("me", "st", 1, StepStatus.RUNNING)
    run.steps = steps
    _Counting.reads = 0
    return run


class _Http:
    def __init__(self) -> None:
        self.sent: list[HttpRequest] = []

    def submit(self, conn: Any, request: HttpRequest) -> Future[HttpResponse]:
        self.sent.append(request)
        f: Future[HttpResponse] = Future()
        f.set_result(HttpResponse(200, {}, {"ok": True},
                                  CallSummary("c", request.method, "http://x" + request.path,
                                              request.idempotency_key, status=200)))
        return f


class _Services:
    def __init__(self) -> None:
        self.http = _Http()
        self.project_dir = None

    def connection(self, name: str) -> Any:
        return object()

    def callback(self, run_id: str, step: str, iteration: int) -> tuple[str, str]:
        return "tok", "http://cb"

    def secret(self, ref: Any) -> str:
        return ""


def _work(run: Run, **options: Any) -> StepWork:
    step = StepDefinition("me", "callout", options=MappingProxyType(
        {"connection": "c", "method": "POST", **options}))
    return StepWork(run, {"id": "r1"}, step, 1, 1, {}, lambda *a: None,
                    services=_Services())  # type: ignore[arg-type]


def test_a_request_reads_the_steps_its_expressions_read() -> None:
    run = _run()
    work = _work(run, path="=steps.s7.output.v", body={"a": "=steps.s8.status"},
                 output={"got": "=response.body.ok", "was": "=steps.s9.output.v"})
    out = CALLOUT.run_job(work)
    assert out.output == {"got": True, "was": 9}
    assert work.services.http.sent[0].path == "7"  # type: ignore[union-attr]
    assert work.services.http.sent[0].body == {"a": "completed"}  # type: ignore[union-attr]
    assert _Counting.reads <= 6  # (three steps read, not 301)


def test_an_eager_scope_still_snapshots_every_step() -> None:
    run = _run()
    request_scope(_work(run))
    assert _Counting.reads >= 301


def test_a_scope_kept_beyond_the_call_shows_the_steps_as_they_were() -> None:
    run = _run(5)
    kept: list[Any] = []
    real = callout_mod.map_output

    def keeping(step: Any, scope: Any, response: Any, callback: Any) -> Any:
        kept.append(scope["steps"])  # what a leaky expression engine could hold on to
        return real(step, scope, response, callback)

    callout_mod.map_output = keeping  # type: ignore[assignment]
    try:
        CALLOUT.run_job(_work(run, path="/x"))
    finally:
        callout_mod.map_output = real  # type: ignore[assignment]
    # decide() moves the run on once the batch's calls are answered
    run.steps["s1"].output = {"v": 100}
    run.steps["me"].status = StepStatus.COMPLETED
    run.steps["new"] = StepRun("new", "st", 1)
    steps = kept[0]
    assert steps["s1"] == {"status": "completed", "iteration": 1, "output": {"v": 1}}
    assert steps["me"] == {"status": "running", "iteration": 1}
    assert "new" not in steps and len(steps) == 6 and list(steps)[-1] == "me"


def test_a_request_that_fails_to_build_freezes_what_its_traceback_holds() -> None:
    run = _run(5)
    real = callout_mod.build_request

    def failing(opts: Any, data: Any, key: str) -> Any:
        steps = data["steps"]  # held by this frame, in the error's traceback
        raise StepFailure(f"no request ({len(steps)} steps)", retryable=False)

    callout_mod.build_request = failing  # type: ignore[assignment]
    try:
        with pytest.raises(StepFailure) as info:
            CALLOUT.begin_job(_work(run, path="/x"))
    finally:
        callout_mod.build_request = real  # type: ignore[assignment]
    run.steps["s1"].output = {"v": 100}
    tb = info.value.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    held = [v for f in frames for v in f.f_locals.values()
            if isinstance(v, callout_mod._StepsSeen)]
    assert held
    for steps in held:
        assert steps["s1"]["output"] == {"v": 1}


def test_freeze_takes_every_step_once() -> None:
    run = _run(3)
    seen = callout_mod._StepsSeen(run, live=True)
    assert _Counting.reads == 0 and len(seen) == 4
    seen.freeze()
    run.steps["s0"].status = StepStatus.FAILED
    del run.steps["s2"]
    assert seen["s0"]["status"] == "completed" and "s2" in seen
    seen.freeze()  # (a no-op once taken)
    assert seen["s2"]["output"] == {"v": 2}
