"""A plan's run keeps what ``attention``, ``sla_at`` and ``due_timer`` find over its steps
in a step index (engine/sla.py ``StepIndex``) brought up to date from the steps marked
changed: it must answer exactly as the pass over every step does, whatever the changes
(assignments, changes in place marked with ``touch``, steps added or removed, writes in
between), and it must look at the steps changed alone. A change in place that no one marked
is caught by the suite's check (``sla.VERIFY_INDEX``). Also: the check of a split run's
writes is made on a sample of them (``runsteps.VERIFY_EVERY``), and a step after many others
is not walked from its first dependency on every look (engine/decide.py)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from baton.engine import decide as decide_module
from baton.engine import sla
from baton.engine.attention import attention
from baton.engine.events import StepCompleted
from baton.engine.sla import due_timer, sla_at
from baton.engine.state import SPLIT_STEPS, Run, StepRun
from baton.engine.status import RunStatus, StepStatus
from baton.store.sql import runsteps
from tests.unit.test_engine_rules import NOW, Sim, orchestration

TIMES = [f"2026-01-01T0{h}:00:00.000Z" for h in range(1, 6)]
NOWS = ["2026-01-01T00:30:00.000Z", "2026-01-01T02:30:00.000Z", "2026-01-01T09:00:00.000Z"]


def _plan(n: int) -> Run:
    run = Run(id="run-1", orchestration="o", version=1, record_id=None,
              current_stage="s", created_at="2026-01-01T00:00:00.000Z")
    for i in range(n):
        run.steps[f"s{i:03d}"] = StepRun(f"s{i:03d}", "s", 1)
    run.to_json(copy=False)  # its first write: from here on its steps mark their changes
    assert run.step_marks is not None
    return run


def _answers(run: Run) -> tuple[Any, ...]:
    return (attention(run), sla_at(run), *(due_timer(run, now) for now in NOWS))


def _full(run: Run) -> tuple[Any, ...]:
    """The pass over every step: on an untracked copy of the run (format 3, no marks)."""
    twin = Run.from_json(run.to_json())
    assert twin.step_marks is None
    return _answers(twin)


def _sla(rng: random.Random) -> dict[str, Any] | None:
    if rng.random() < 0.2:
        return None
    return {"status": rng.choice(sla.SLA_STATES), "due_at": rng.choice(TIMES),
            "jeopardy_at": rng.choice([None, *TIMES])}


def _change(run: Run, rng: random.Random, added: list[int]) -> None:
    name = rng.choice(list(run.steps))
    sr = run.steps[name]
    roll = rng.random()
    if roll < 0.35:
        sr.status = rng.choice(list(StepStatus))
    elif roll < 0.6:
        sr.sla = _sla(rng)
    elif roll < 0.8:
        if sr.sla is not None:  # in place, marked
            sr.sla[rng.choice(("status", "due_at", "jeopardy_at"))] = rng.choice(
                [*sla.SLA_STATES, *TIMES])
            sr.touch()
    elif roll < 0.9:
        added[0] += 1
        new = f"x{added[0]:03d}"
        run.steps[new] = StepRun(new, "s", 1, rng.choice(list(StepStatus)), sla=_sla(rng))
    elif roll < 0.93:
        del run.steps[name]  # (its positions may move: the index is dropped until a write)
    else:
        run.steps[name] = StepRun(name, "s", 2, StepStatus.RUNNING, sla=_sla(rng))


@pytest.mark.parametrize("seed", range(12))
def test_the_index_answers_as_the_pass_over_every_step(seed: int) -> None:
    rng = random.Random(seed)
    run = _plan(SPLIT_STEPS + rng.randint(1, 60))
    for sr in run.steps.values():
        sr.status = rng.choice(list(StepStatus))
        sr.sla = _sla(rng)
    added = [0]
    looked = 0
    for _ in range(300):
        roll = rng.random()
        if roll < 0.6:
            _change(run, rng, added)
        elif roll < 0.75:
            run.seq += 1
            run.to_json(copy=False)  # a write takes the marks
        else:
            assert _answers(run) == _full(run)
            m = run.step_marks
            looked += m is not None and m.index is not None
        if rng.random() < 0.02:
            run.status = rng.choice([RunStatus.IN_PROGRESS] * 4 + list(RunStatus))
    assert _answers(run) == _full(run)
    assert looked > 10  # (the index answered, not only the pass)


def test_equal_instants_fire_the_first_step_in_the_runs_order() -> None:
    run = _plan(100)
    for name in ("s090", "s010", "s050"):
        run.steps[name].status = StepStatus.RUNNING
        run.steps[name].sla = {"status": "on_track", "due_at": TIMES[0], "jeopardy_at": None}
    sla_at(run)  # (the index is made)
    assert run.step_marks is not None and run.step_marks.index is not None
    fired = due_timer(run, NOWS[2])
    assert fired is not None and fired.step == "s010"
    run.steps["s010"].status = StepStatus.COMPLETED
    fired = due_timer(run, NOWS[2])
    assert fired is not None and fired.step == "s050" and fired.kind == sla.OVERDUE
    assert _answers(run) == _full(run)


def test_a_look_reads_the_steps_changed_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    run = _plan(1000)
    for sr in run.steps.values():
        sr.status = StepStatus.RUNNING
        sr.sla = {"status": "on_track", "due_at": TIMES[2], "jeopardy_at": TIMES[1]}
    run.seq += 1
    run.to_json(copy=False)
    assert sla_at(run) == TIMES[1]  # (the index is made: a pass over every step, once)
    calls = []
    real = sla.next_instant

    def counted(sr: StepRun) -> Any:
        calls.append(sr.name)
        return real(sr)

    monkeypatch.setattr(sla, "next_instant", counted)
    monkeypatch.setattr(sla, "VERIFY_INDEX", False)  # (the check is a pass over every step)
    for i in range(50):
        sr = run.steps[f"s{i:03d}"]
        sr.status = StepStatus.FALLOUT if i == 7 else StepStatus.COMPLETED
        assert attention(run) in (None, 1)
        assert sla_at(run) == TIMES[1]
        run.seq += 1
        run.to_json(copy=False)
    assert attention(run) == 1 and due_timer(run, NOWS[1]) is not None
    assert len(calls) <= 4 * 50  # each step changed is looked at a few times, not 1,000
    monkeypatch.setattr(sla, "VERIFY_INDEX", True)
    assert _answers(run) == _full(run)


def test_an_unmarked_change_in_place_is_caught_in_the_suite(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setattr(sla, "VERIFY_INDEX", True)
    run = _plan(100)
    run.steps["s003"].status = StepStatus.RUNNING
    run.steps["s003"].sla = {"status": "on_track", "due_at": TIMES[0], "jeopardy_at": None}
    assert attention(run) is None
    run.seq += 1
    run.to_json(copy=False)  # (written: the marks are taken)
    assert attention(run) is None  # (the index has looked at every change marked)
    run.steps["s003"].sla["status"] = "overdue"  # in place, not marked (no touch())
    with pytest.raises(AssertionError, match=r"s003"):
        for _ in range(sla.VERIFY_EVERY):  # (a sample of the looks is checked)
            attention(run)


def test_the_check_of_split_writes_is_made_on_a_sample(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setattr(runsteps, "VERIFY_CHANGED", True)
    checked: list[int] = []
    real = runsteps._verify

    def spy(out: Any, docs: Any, base: Any) -> None:
        checked.append(out.seq)
        real(out, docs, base)

    monkeypatch.setattr(runsteps, "_verify", spy)
    run = _plan(200)  # (its first write was made: seq 0)

    def write(status: str = "in_progress") -> Any:
        expected = run.seq
        run.seq += 1
        row = {"id": run.id, "seq": run.seq, "status": status,
               "state": run.to_json(copy=False)}
        return runsteps.split_row(row, base, expected=expected)

    run.step_marks = None  # (a write with nothing to compare: every row)
    base = None
    for seq in range(1, 26):
        run.steps[f"s{seq:03d}"].status = StepStatus.COMPLETED
        got = write("completed" if seq == 25 else "in_progress")
        assert got is not None
        base = got[1].stored()
    # the first writes of its marks, then one in VERIFY_EVERY, and the last
    assert checked == [2, 3, 4, 5, 10, 18, 25]


def test_a_step_after_many_is_not_walked_from_its_first_on_every_look(
        monkeypatch: pytest.MonkeyPatch) -> None:
    n = 150
    steps = "\n".join(f"      - {{name: d{i:03d}, type: background, flow: f.d{i:03d}}}"
                      for i in range(n))
    after = ", ".join(f"d{i:03d}" for i in range(n))
    defn = orchestration("stages:\n  - name: plan\n    steps:\n" + steps
                         + f"\n      - {{name: join, type: background, flow: f.join, "
                         f"after: [{after}]}}\n")

    def drive(whole: bool) -> tuple[list[Any], int]:
        monkeypatch.setattr(decide_module, "_LOOK_AT_ALL", 10**9 if whole else 64)
        defn.stages[0].readiness.after_hint.clear()
        sim = Sim(defn)
        sim.start()
        run = sim.run
        lookups = 0

        class Counted(dict[str, StepRun]):
            def __getitem__(self, name: str) -> StepRun:
                nonlocal lookups
                lookups += 1
                return dict.__getitem__(self, name)

        run.steps = Counted(run.steps)
        seen = []
        order = [f"d{i:03d}" for i in range(n)]
        random.Random(3).shuffle(order[n // 2:])  # in order, then out of it
        for name in [*order, "join"]:
            d = decide_module.decide(defn, run, StepCompleted(name, 1, {"n": name}), NOW,
                                     sim.record, consume=True)
            seen.append((d.stale, d.commands, d.run.to_json()))
        return seen, lookups

    fast, fast_lookups = drive(False)
    whole, whole_lookups = drive(True)
    assert fast == whole
    assert fast[-1][2]["status"] == RunStatus.COMPLETED
    assert whole_lookups > n * n // 4  # (the whole walk: from the first on every look)
    assert fast_lookups < 12 * n
