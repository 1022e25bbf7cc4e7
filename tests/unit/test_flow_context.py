"""What a flow call costs and what it may touch (issue 19 target 1, issue 13 item 9).

A background step's flow reads the run's steps when it reads them (not a snapshot of every
step made first); whatever the flow does to what it was given — the record, the input,
the steps' outputs, nested values — reaches neither the run, the record, the job's input
nor another flow's context; a context that outlives its call shows the steps as they were
during it; a flow process gets the same. A step's literal ``input`` is made plain once per
definition."""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from baton.engine import inputs as inputs_mod
from baton.engine.inputs import evaluate_input
from baton.engine.state import Run, StepRun
from baton.engine.status import StepStatus
from baton.flows import FlowContext, StepView, flow
from baton.runtime.flowpool import FlowPool
from baton.steps import flowrun
from baton.steps.background import BACKGROUND
from baton.steps.base import StepWork
from baton.steps.flowrun import run_flow

# ---- helpers ------------------------------------------------------------------------------


class _CountingStep(StepRun):
    """A step that counts how often the engine's view of it is read (status, output)."""

    reads = 0

    def __getattribute__(self, name: str) -> Any:
        if name in ("status", "output"):
            type(self).reads += 1
        return super().__getattribute__(name)


def _big_run(n: int = 1_500) -> Run:
    run = Run("run_big", "plan", 1, "rec_1", vars={"level": 1, "seen": {"a": [1]}},
              input={"order": {"lines": [1, 2]}})
    run.steps = {f"s{i}": _CountingStep(f"s{i}", "plan", 1, StepStatus.COMPLETED,
                                        output={"n": i, "nested": {"v": [i]}})
                 for i in range(n)}
    run.steps["me"] = _CountingStep("me", "plan", 1, StepStatus.RUNNING)
    return run


RECORD = {"id": "rec_1", "subject": "invoice", "tags": ["a", "b"], "meta": {"k": {"v": 1}},
          "version": 3}


def _direct(name: str, fn: Any, ctx: FlowContext, timeout_ms: int | None) -> Any:
    return fn(ctx)  # the worker's in-thread runner


def _work(run: Run, flow_name: str, step_input: dict[str, Any] | None = None,
          record: dict[str, Any] | None = None, flows: Any = _direct) -> StepWork:
    payload: dict[str, Any] = {"flow": flow_name, "step": "me", "iteration": 1, "attempt": 1}
    if step_input is not None:
        payload["input"] = step_input
    return StepWork(run, record if record is not None else RECORD,
                    SimpleNamespace(name="me"),  # type: ignore[arg-type]
                    1, 1, payload, flows)


_KEPT: list[Any] = []


@flow("t_ctx.read_one")
def _read_one(ctx: FlowContext) -> dict[str, Any]:
    return {"n": ctx.steps["s7"].output["n"], "has": "s9" in ctx.steps, "len": len(ctx.steps)}


@flow("t_ctx.vandal")
def _vandal(ctx: FlowContext) -> dict[str, Any]:
    """Changes everything it can reach in place."""
    ctx.steps["s1"].output["nested"]["v"].append(99)  # type: ignore[index]
    ctx.steps["s1"].output["n"] = -1  # type: ignore[index]
    ctx.record["tags"].append("x")
    ctx.record["meta"]["k"]["v"] = 2
    ctx.input["order"]["lines"].append(3)
    ctx.input["extra"]["deep"].append("x")
    ctx.vars["seen"]["a"].append(2)
    with pytest.raises(TypeError):
        ctx.record["subject"] = "changed"  # type: ignore[index]
    with pytest.raises(TypeError):
        ctx.input["order"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        ctx.steps["s1"] = StepView("s1", "failed", {})  # type: ignore[index]
    return {"ok": True}


@flow("t_ctx.look")
def _look(ctx: FlowContext) -> dict[str, Any]:
    """What a second flow of the same run sees, after the vandal ran."""
    return {"s1": ctx.steps["s1"].output, "tags": list(ctx.record["tags"]),
            "meta": ctx.record["meta"], "order": ctx.input["order"],
            "extra": ctx.input.get("extra"), "seen": ctx.vars["seen"]}


@flow("t_ctx.keep")
def _keep(ctx: FlowContext) -> dict[str, Any]:
    """Keeps its context, its steps mapping and a view of its items beyond the call."""
    _KEPT.extend([ctx, ctx.steps, ctx.steps.items()])
    return {"read": ctx.steps["s2"].output["n"]}


@flow("t_ctx.keep_and_raise")
def _keep_and_raise(ctx: FlowContext) -> dict[str, Any]:
    ctx.steps["s3"]
    raise RuntimeError("no")


@flow("t_ctx.child")
def _child(ctx: FlowContext) -> dict[str, Any]:
    import os
    ctx.steps["s1"].output["n"] = -1  # type: ignore[index]
    ctx.vars["level"] = ctx.vars["level"] + 1
    ctx.update_record({"subject": "done"})
    return {"pid": os.getpid(), "s7": ctx.steps["s7"].output["n"],
            "status": ctx.steps["me"].status, "len": len(ctx.steps),
            "order": ctx.input["order"]}


def _decide_moves_on(run: Run) -> None:
    """What decide() does to the batch's run once the flows have returned."""
    run.steps["s2"].output = {"n": "new"}
    run.steps["s4"].status = StepStatus.FAILED
    run.steps["me"].status = StepStatus.COMPLETED
    run.steps["added"] = StepRun("added", "plan", 1)
    del run.steps["s5"]


# ---- laziness -----------------------------------------------------------------------------


def test_a_flow_reading_one_step_of_1500_reads_only_that_step(monkeypatch: Any) -> None:
    run = _big_run()
    snapshots: list[int] = []
    real = flowrun.StepSnapshot._taken
    monkeypatch.setattr(flowrun.StepSnapshot, "_taken",
                        lambda self, steps: snapshots.append(1) or real(self, steps))
    _CountingStep.reads = 0
    out = BACKGROUND.run_job(_work(run, "t_ctx.read_one"))
    assert out.output == {"n": 7, "has": True, "len": 1_501}
    # s7's status and output, once: no snapshot of the other 1,500 steps, then or after
    assert _CountingStep.reads == 2
    assert snapshots == []


# ---- isolation ----------------------------------------------------------------------------


def test_what_a_flow_changes_in_place_reaches_nothing_else() -> None:
    run = _big_run(10)
    record = {k: (v.copy() if isinstance(v, list) else v) for k, v in RECORD.items()}
    record["meta"] = {"k": {"v": 1}}
    step_input = {"extra": {"deep": ["a"]}}
    before_run = run.to_json()
    BACKGROUND.run_job(_work(run, "t_ctx.vandal", step_input, record))
    assert run.to_json() == before_run  # the run: steps' outputs, input, vars
    assert record == {**RECORD, "meta": {"k": {"v": 1}}}  # the batch's record view
    assert step_input == {"extra": {"deep": ["a"]}}  # the job's input
    seen = BACKGROUND.run_job(_work(run, "t_ctx.look", step_input, record)).output
    assert seen == {"s1": {"n": 1, "nested": {"v": [1]}}, "tags": ["a", "b"],
                    "meta": {"k": {"v": 1}}, "order": {"lines": [1, 2]},
                    "extra": {"deep": ["a"]}, "seen": {"a": [1]}}


def test_only_the_vars_a_flow_changed_are_its_result() -> None:
    run = _big_run(3)

    @flow("t_ctx.bump")
    def bump(ctx: FlowContext) -> dict[str, Any]:
        ctx.vars["level"] += 1
        ctx.update_record({"subject": "x"})
        return {}

    out = BACKGROUND.run_job(_work(run, "t_ctx.bump"))
    assert out.vars == {"level": 2} and dict(out.record_updates) == {"subject": "x"}
    assert run.vars["level"] == 1


# ---- a context that outlives its call -----------------------------------------------------


def test_a_kept_context_shows_the_steps_as_they_were_during_its_call() -> None:
    run = _big_run(10)
    _KEPT.clear()
    out = run_flow(_direct, "t_ctx.keep", _keep, None, run, "me", 1, RECORD)
    assert out.output == {"read": 2}
    _decide_moves_on(run)
    ctx, steps, items = _KEPT
    _KEPT.clear()
    assert ctx.steps["s2"].output == {"n": 2, "nested": {"v": [2]}}  # read during the call
    assert ctx.steps["s4"].status == "completed" and ctx.steps["me"].status == "running"
    assert "s5" in ctx.steps and "added" not in ctx.steps and len(ctx.steps) == 11
    assert steps["s5"].output == {"n": 5, "nested": {"v": [5]}}
    assert sorted(n for n, _ in items) == sorted([f"s{i}" for i in range(10)] + ["me"])


def test_a_context_kept_by_a_raising_flow_shows_the_steps_as_they_were() -> None:
    run = _big_run(10)
    with pytest.raises(RuntimeError) as raised:
        run_flow(_direct, "t_ctx.keep_and_raise", _keep_and_raise, None, run, "me", 1, RECORD)
    _decide_moves_on(run)
    frame = raised.value.__traceback__
    while frame.tb_next is not None:  # the flow's frame: its ctx
        frame = frame.tb_next
    ctx = frame.tb_frame.f_locals["ctx"]
    assert ctx.steps["s4"].status == "completed" and "added" not in ctx.steps
    assert ctx.steps["s2"].output == {"n": 2, "nested": {"v": [2]}}


def test_a_live_context_reads_the_run_as_it_is_during_the_call() -> None:
    run = _big_run(4)
    views = flowrun.StepViews(run, None, live=True)
    assert list(views) == ["s0", "s1", "s2", "s3", "me"] and len(views) == 5
    assert "s3" in views and "zz" not in views and views.get("zz") is None
    it = iter(views)
    run.steps["added"] = StepRun("added", "plan", 1)  # (never during a call: see run_flow)
    assert list(it) == ["s0", "s1", "s2", "s3", "me"]  # names as they were at iter()
    views.freeze()
    run.steps["s0"].output = {"n": "new"}
    assert views["s0"].output == {"n": 0, "nested": {"v": [0]}}
    assert len(views) == 6 and "added" in views


# ---- process isolation --------------------------------------------------------------------


def test_a_flow_process_gets_the_same_context_and_changes_nothing_here() -> None:
    import os
    run = _big_run(10)
    before = run.to_json()
    pool = FlowPool(1)
    try:
        out = BACKGROUND.run_job(_work(run, "t_ctx.child", {"order": {"lines": [9]}},
                                       flows=lambda name, fn, ctx, ms: pool.call(name, ctx, ms)))
    finally:
        pool.close()
    assert out.output["pid"] != os.getpid()
    assert {k: v for k, v in out.output.items() if k != "pid"} == {
        "s7": 7, "status": "running", "len": 11, "order": {"lines": [9]}}
    assert out.vars == {"level": 2} and dict(out.record_updates) == {"subject": "done"}
    assert run.to_json() == before


# ---- literal inputs -----------------------------------------------------------------------


def _reference_plain(value: Any) -> Any:
    """The rule as it was written before the fast paths (engine/inputs.py at f459567)."""
    if isinstance(value, dict):
        return {str(k): _reference_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reference_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


class _Color(str, enum.Enum):
    RED = "red"


class _Dict(dict):  # type: ignore[type-arg]
    pass


def test_plain_follows_the_rule_for_every_kind_of_value() -> None:
    values = [None, True, 1, 1.5, "s", Decimal("1.10"), dt.date(2026, 1, 2), _Color.RED,
              (1, (2, Decimal(3))), [{"a": [Decimal(1)]}], {1: "x", _Color.RED: [None]},
              _Dict(a=_Dict(b=(1,))), {"k": {"deep": [dt.datetime(2026, 1, 1, 12, 0)]}},
              {_Color.RED: _Color.RED}, [True, 2, [3.5, ["s"]]]]
    for v in values:
        got, want = inputs_mod._plain(v), _reference_plain(v)
        assert got == want and type(got) is type(want), v
        assert repr(got) == repr(want), v


def test_a_specs_literals_are_made_plain_once() -> None:
    spec = {"plan": {"scope": "line_item", "lines": [{"key": "L1", "qty": Decimal(2)}]},
            "n": 3, "when": dt.date(2026, 1, 2), "who": "=record.subject"}
    scope = {"record": {"subject": "hi"}}
    first = evaluate_input(spec, scope)
    second = evaluate_input(spec, scope)
    assert first == second == {"plan": {"scope": "line_item",
                                         "lines": [{"key": "L1", "qty": "2"}]},
                               "n": 3, "when": "2026-01-02", "who": "hi"}
    assert first is not second
    assert first["plan"] is second["plan"]  # made once for this spec
    assert spec["plan"]["lines"][0]["qty"] == Decimal(2)  # the definition: untouched
    other = evaluate_input(dict(spec), scope)  # another spec, equal: its own
    assert other == first and other["plan"] is not first["plan"]


def test_a_flow_changing_its_input_does_not_change_the_next_steps() -> None:
    spec = {"order": {"lines": [1, 2]}, "extra": {"deep": ["a"]}}
    run = _big_run(3)
    record = {**RECORD, "tags": ["a", "b"], "meta": {"k": {"v": 1}}}
    BACKGROUND.run_job(_work(run, "t_ctx.vandal", evaluate_input(spec, {}), record))
    assert evaluate_input(spec, {}) == {"order": {"lines": [1, 2]}, "extra": {"deep": ["a"]}}


_CHILD_KEPT: list[Any] = []


@flow("t_ctx.child_keep")
def _child_keep(ctx: FlowContext) -> dict[str, Any]:
    """In a flow process: keeps this call's context; reports on the one kept before."""
    earlier = _CHILD_KEPT[0] if _CHILD_KEPT else None
    _CHILD_KEPT.append(ctx)
    if earlier is None:
        return {"s7": ctx.steps["s7"].output["n"]}
    return {"s2": earlier.steps["s2"].output, "s4": earlier.steps["s4"].status,
            "added": "added" in earlier.steps, "len": len(earlier.steps)}


def test_a_flow_process_asks_for_the_steps_its_flow_reads() -> None:
    run = _big_run()
    pool = FlowPool(1)
    try:
        _CountingStep.reads = 0
        out = BACKGROUND.run_job(_work(run, "t_ctx.read_one",
                                       flows=lambda name, fn, ctx, ms: pool.call(name, ctx, ms)))
        assert out.output == {"n": 7, "has": True, "len": 1_501}
        assert _CountingStep.reads == 2  # s7's status and output, read here for the child
    finally:
        pool.close()


def test_a_context_kept_in_a_flow_process_shows_the_steps_as_they_were() -> None:
    run = _big_run(10)
    pool = FlowPool(1)

    def flows(name: str, fn: Any, ctx: FlowContext, ms: int | None) -> Any:
        return pool.call(name, ctx, ms)

    try:
        first = BACKGROUND.run_job(_work(run, "t_ctx.child_keep", flows=flows))
        assert first.output == {"s7": 7}
        _decide_moves_on(run)
        second = BACKGROUND.run_job(_work(run, "t_ctx.child_keep", flows=flows))
    finally:
        pool.close()
    assert second.output == {"s2": {"n": 2, "nested": {"v": [2]}}, "s4": "completed",
                             "added": False, "len": 11}


# ---- StepWork ------------------------------------------------------------------------------


def test_step_work_takes_its_fields_in_order_and_stays_frozen() -> None:
    import dataclasses
    import inspect

    params = list(inspect.signature(StepWork.__init__).parameters.values())[1:]
    fields = dataclasses.fields(StepWork)
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        assert p.default == (f.default if f.default is not dataclasses.MISSING
                             else inspect.Parameter.empty), p.name
    work = _work(_big_run(1), "t_ctx.read_one")
    with pytest.raises(dataclasses.FrozenInstanceError):
        work.iteration = 2  # type: ignore[misc]
    again = dataclasses.replace(work, iteration=2)
    assert again.iteration == 2 and again.run is work.run and again != work
    assert dataclasses.replace(again, iteration=1) == work
