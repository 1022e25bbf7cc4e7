"""A plan-sized stage is looked at through its readiness (engine/decide.py,
``start_ready_steps_of``): only the steps whose readiness may have changed. It must decide
exactly what looking at every step decides: the same commands, in the same order, and the
same run state, whatever the dependency graph, the ``when`` conditions, the failures, the
record changes and the order in which the steps finish.

Each case drives two copies of one run with the same random events, one as the engine
does and one with every stage looked at whole (``_LOOK_AT_ALL`` raised), and compares
every decision. Operators act on steps in fallout (retry, complete, skip) and resume a
failed run on the way.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from baton.engine import decide as decide_module
from baton.engine.events import (
    FalloutAction,
    RecordChanged,
    ResumeRequested,
    StepCompleted,
    StepFailed,
)
from baton.engine.status import RunStatus, StepStatus
from tests.unit.test_engine_rules import Sim, orchestration


def _stage(rng: random.Random, n: int) -> str:
    """One stage of ``n`` steps, in a random order of a random DAG: some steps wait for
    several others (listed before or after them), some have a ``when`` on the record,
    some fail without stopping the stage (``on_failure: continue``), a few are milestones
    (done when they start: what they unblock is looked at in the same pass); then a
    second stage."""
    names = [f"s{i:03d}" for i in range(n)]
    rank = {name: i for i, name in enumerate(names)}  # the DAG's order
    listed = names[:]
    rng.shuffle(listed)  # the stage's order is not the DAG's
    lines = ["stages:", "  - name: plan", "    steps:"]
    for name in listed:
        before = names[:rank[name]]
        after = rng.sample(before, k=min(len(before), rng.choice((0, 1, 1, 2, 3))))
        kind = "milestone" if after and rng.random() < 0.3 else "background"
        step = f"name: {name}, type: {kind}"
        if kind == "background":
            step += f", flow: f.{name}"
            if rng.random() < 0.15:
                step += ", on_failure: continue"
        if after:
            step += f", after: [{', '.join(after)}]"
        if rng.random() < 0.1:
            step += f", when: '=record.priority > {rng.randint(0, 3)}'"
        lines.append(f"      - {{{step}}}")
    lines += ["  - name: done", "    steps: [{name: last, type: background, flow: f.last}]"]
    return "\n".join(lines) + "\n"


def _drive(defn: Any, seed: int, whole: bool, monkeypatch: pytest.MonkeyPatch
           ) -> list[Any]:
    rng = random.Random(seed)
    monkeypatch.setattr(decide_module, "_LOOK_AT_ALL", 10**9 if whole else 64)
    sim = Sim(defn, priority=0)
    seen = [sim.start()]
    idle, resumed = 0, 0
    for _ in range(2000):
        if sim.run.status is RunStatus.FAILED and resumed < 2:
            resumed += 1  # failed and canceled steps start afresh: looked at whole
            seen.append(sim.send(ResumeRequested("ops", "fixed")))
            continue
        running = sorted(n for n, sr in sim.run.steps.items()
                         if sr.status is StepStatus.RUNNING)
        fallout = sorted(n for n, sr in sim.run.steps.items()
                         if sr.status is StepStatus.FALLOUT)
        if fallout and rng.random() < 0.5:  # an operator retries, completes or skips it
            seen.append(sim.send(FalloutAction(rng.choice(fallout), rng.choice(
                ("retry", "complete", "skip")), "ops", "handled", {"by": "hand"})))
            continue
        idle = 0 if running else idle + 1
        if sim.run.status is not RunStatus.IN_PROGRESS or idle > 5:
            break  # (ended, or stuck: `when`s that no priority meets)
        roll = rng.random()
        if roll < 0.07 or not running:
            sim.record["priority"] = rng.randint(0, 4)
            sim.record["version"] += 1
            seen.append(sim.send(RecordChanged()))
            continue
        name = rng.choice(running)
        sr = sim.run.steps[name]
        if roll < 0.2:
            seen.append(sim.send(StepFailed(name, sr.iteration, {
                "type": "RuntimeError", "message": "boom", "retryable": False},
                attempt=sr.attempts)))
        else:
            seen.append(sim.send(StepCompleted(name, sr.iteration, {"n": name},
                                               attempt=sr.attempts)))
    return [(d.stale, d.commands, d.run.to_json()) for d in seen]


@pytest.mark.parametrize("seed", range(16))
def test_looking_at_what_changed_decides_as_looking_at_everything(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    defn = orchestration(_stage(rng, rng.choice((70, 100, 130))))
    assert len(defn.stages[0].steps) > 64  # the stage is looked at through its readiness
    fast = _drive(defn, seed, False, monkeypatch)
    whole = _drive(defn, seed, True, monkeypatch)
    assert len(fast) == len(whole) > 10
    for i, (a, b) in enumerate(zip(fast, whole, strict=True)):
        assert a == b, f"decision {i} differs"
