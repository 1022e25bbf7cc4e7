"""The child-run step on the pure core (``steps/orchestration.py`` through ``decide``):
what starting it asks for, which child ends count (each once, only the current runs'),
when it completes or fails, what a retry and a cancel ask for, and what a child run
tells its parent when it ends. No database."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from typing import Any

from baton.definitions.loader import load_text
from baton.definitions.model import OrchestrationDefinition
from baton.engine.decide import decide
from baton.engine.events import (
    CancelChildRuns,
    CancelRequested,
    ChildRunFinished,
    FalloutAction,
    NotifyParent,
    RunStarted,
    StartChildRuns,
    StepCompleted,
)
from baton.engine.state import ParentLink, Run
from baton.engine.status import RunStatus, StepStatus

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)

PARENT = """
kind: orchestration
name: p
trigger:
  type: autolaunched
  input: {names: {type: json}}
stages:
  - name: s
    steps:
      - {name: kids, type: orchestration, orchestration: c, for_each: '=input.names',
         input: {who: '=item', pos: '=index * 10'}}
"""

CHILD = """
kind: orchestration
name: c
trigger: {type: autolaunched}
variables: {score: 1}
stages:
  - name: s
    steps:
      - {name: w, type: background, flow: x.y}
"""


def _defn(text: str) -> OrchestrationDefinition:
    (doc,) = load_text(textwrap.dedent(text))
    assert isinstance(doc.definition, OrchestrationDefinition)
    return doc.definition


def _started(names: list[str]) -> tuple[OrchestrationDefinition, Run, list[Any]]:
    defn = _defn(PARENT)
    run = Run(id="run_p", orchestration="p", version=1, record_id=None, input={"names": names})
    d = decide(defn, run, RunStarted(), NOW)
    run = d.run
    # what the runtime does with StartChildRuns: the run ids go into the step's children
    for c in run.steps["kids"].children or []:
        c["run_id"] = f"run_c{c['index']}"
    return defn, run, d.commands


def _end(defn: OrchestrationDefinition, run: Run, index: int, status: str,
         run_id: str | None = None, iteration: int = 1) -> Any:
    ev = ChildRunFinished("kids", iteration, index, run_id or f"run_c{index}", status,
                          {"vars": {"score": index}} if status == "completed" else None,
                          None if status == "completed" else {"message": f"#{index} broke"})
    return decide(defn, run, ev, NOW)


def test_starting_asks_for_one_child_per_element_with_item_and_index() -> None:
    _, run, commands = _started(["ann", "bob"])
    [start] = [c for c in commands if isinstance(c, StartChildRuns)]
    assert start.orchestration == "c" and start.step == "kids" and start.iteration == 1
    assert [(c.index, c.input) for c in start.children] == [
        (0, {"who": "ann", "pos": 0}), (1, {"who": "bob", "pos": 10})]
    assert run.steps["kids"].status is StepStatus.RUNNING


def test_each_end_counts_once_and_the_step_completes_in_element_order() -> None:
    defn, run, _ = _started(["a", "b", "c"])
    d = _end(defn, run, 2, "completed")
    assert not d.stale and d.run.steps["kids"].status is StepStatus.RUNNING
    assert _end(defn, d.run, 2, "completed").stale  # delivered again: no change
    assert _end(defn, d.run, 1, "completed", run_id="run_other").stale  # not its run
    assert _end(defn, d.run, 7, "completed").stale  # no such element
    assert _end(defn, d.run, 0, "completed", iteration=2).stale  # another iteration
    d = _end(defn, d.run, 0, "completed")
    d = _end(defn, d.run, 1, "completed")
    sr = d.run.steps["kids"]
    assert sr.status is StepStatus.COMPLETED
    assert sr.output == {"count": 3, "children": [
        {"run_id": f"run_c{i}", "record_id": None, "vars": {"score": i}} for i in range(3)]}


def test_a_failure_waits_for_the_others_then_fallout_and_retry_restarts_only_it() -> None:
    defn, run, _ = _started(["a", "b"])
    d = _end(defn, run, 0, "failed")
    assert d.run.steps["kids"].status is StepStatus.RUNNING  # b is still running
    d = _end(defn, d.run, 1, "completed")
    sr = d.run.steps["kids"]
    assert sr.status is StepStatus.FALLOUT and sr.error is not None
    assert sr.error["type"] == "ChildRunsFailed" and "#0 (run_c0) failed: #0 broke" in sr.error["message"]
    d = decide(defn, d.run, FalloutAction("kids", "retry", "op", "fixed"), NOW)
    [start] = [c for c in d.commands if isinstance(c, StartChildRuns)]
    assert [(c.index, c.input) for c in start.children] == [(0, {"who": "a", "pos": 0})]
    sr = d.run.steps["kids"]
    assert sr.status is StepStatus.RUNNING
    assert sr.children is not None and sr.children[0]["previous_run_ids"] == ["run_c0"]
    sr.children[0]["run_id"] = "run_c0b"
    assert _end(defn, d.run, 0, "completed").stale  # the old run's end: not counted
    d = _end(defn, d.run, 0, "completed", run_id="run_c0b")
    assert d.run.steps["kids"].status is StepStatus.COMPLETED


def test_canceling_the_run_cancels_running_and_failed_children() -> None:
    defn, run, _ = _started(["a", "b", "c"])
    d = _end(defn, run, 0, "completed")
    d = _end(defn, d.run, 1, "failed")
    d = decide(defn, d.run, CancelRequested("stop", "op"), NOW)
    [cancel] = [c for c in d.commands if isinstance(c, CancelChildRuns)]
    assert cancel.run_ids == ("run_c1", "run_c2")
    assert _end(defn, d.run, 2, "canceled").stale  # the parent is over: harmless


def test_the_cap_and_a_value_that_is_not_a_list_fail_the_step() -> None:
    defn = _defn(PARENT.replace("input: {who:", "max_children: 2, input: {who:"))
    run = Run(id="r", orchestration="p", version=1, record_id=None, input={"names": [1, 2, 3]})
    sr = decide(defn, run, RunStarted(), NOW).run.steps["kids"]
    assert sr.status is StepStatus.FALLOUT and sr.error is not None
    assert sr.error["type"] == "LimitExceeded" and "3 elements" in sr.error["message"]
    run = Run(id="r", orchestration="p", version=1, record_id=None, input={"names": "abc"})
    sr = decide(defn, run, RunStarted(), NOW).run.steps["kids"]
    assert sr.status is StepStatus.FALLOUT and sr.error is not None
    assert "not a list" in sr.error["message"]


def test_a_child_run_tells_its_parent_when_it_ends_and_only_then() -> None:
    defn = _defn(CHILD)
    link = ParentLink("run_p", "kids", 1, 4)
    run = Run(id="run_c4", orchestration="c", version=1, record_id=None, vars={"score": 1},
              parent=link)
    d = decide(defn, run, RunStarted(), NOW)
    assert not [c for c in d.commands if isinstance(c, NotifyParent)]
    done = decide(defn, d.run, StepCompleted("w", 1, {}, vars={"score": 9}, attempt=1), NOW)
    assert done.run.status is RunStatus.COMPLETED
    [note] = [c for c in done.commands if isinstance(c, NotifyParent)]
    assert (note.parent_run_id, note.step, note.iteration, note.index, note.status) == (
        "run_p", "kids", 1, 4, "completed")
    assert note.output == {"vars": {"score": 9}}
    canceled = decide(defn, d.run, CancelRequested("stop", "op"), NOW)
    [note] = [c for c in canceled.commands if isinstance(c, NotifyParent)]
    assert note.status == "canceled" and note.error is not None
    # the link survives the stored form
    assert Run.from_json(done.run.to_json()).parent == link
