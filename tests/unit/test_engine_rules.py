"""The semantic rules of DESIGN §2.1, one test per rule, on the pure core.

``decide(definition, run, event, now, record) -> Decision`` is fed events the way the
runtime would feed them (a worker's step result, a record write, an operator's
cancel) and the tests check what a user sees: statuses, where the run is, and the
commands the engine asks for (jobs, work items). No database is involved.
"""

from __future__ import annotations

import copy
import textwrap
from datetime import UTC, datetime
from typing import Any

import pytest

from baton.definitions.loader import load_text
from baton.definitions.model import OrchestrationDefinition
from baton.engine.decide import Decision, decide
from baton.engine.events import (
    Audit,
    CancelRequested,
    CancelWorkItem,
    ConditionEvaluated,
    CreateWorkItem,
    EvaluateCondition,
    Event,
    RecordChanged,
    RunStarted,
    ScheduleStep,
    StepCompleted,
    StepFailed,
)
from baton.engine.state import Run
from baton.engine.status import RunStatus, StageStatus, StepStatus

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

CASE = """\
kind: object
name: Case
fields:
  subject:  {type: string}
  priority: {type: int}
  status:   {type: choice, choices: [New, Triaged, Closed], default: New}
"""


def orchestration(body: str, *, name: str = "t_rules") -> OrchestrationDefinition:
    """An orchestration on Case records; ``body`` holds ``stages:`` (and ``variables:``)."""
    text = (
        CASE
        + "---\n"
        + f"kind: orchestration\nname: {name}\n"
        + "trigger: {type: record, object: Case, on: [create, update]}\n"
        + textwrap.dedent(body)
    )
    docs = load_text(text)
    (defn,) = [d.definition for d in docs if d.kind == "orchestration"]
    assert isinstance(defn, OrchestrationDefinition)
    return defn


class Sim:
    """One run driven through ``decide``: keeps the state as the store would."""

    def __init__(self, defn: OrchestrationDefinition, **record: Any) -> None:
        self.defn = defn
        self.record: dict[str, Any] = {
            "id": "rec-1", "subject": "Printer on fire", "priority": None, "status": "New",
            "created_at": "2026-01-05T09:00:00.000Z", "updated_at": "2026-01-05T09:00:00.000Z",
            "version": 1, **record,
        }
        self.run = Run(id="run-1", orchestration=defn.name, version=1, record_id="rec-1",
                       vars=dict(defn.variables))
        self.last: Decision | None = None

    def send(self, event: Event) -> Decision:
        decision = decide(self.defn, self.run, event, NOW, self.record)
        if not decision.stale:
            self.run = decision.run
        self.last = decision
        return decision

    def start(self) -> Decision:
        return self.send(RunStarted())

    def complete(self, step: str, output: dict[str, Any] | None = None, **kw: Any) -> Decision:
        return self.send(StepCompleted(step, self.run.steps[step].iteration, output or {}, **kw))

    def fail(self, step: str, message: str = "boom") -> Decision:
        return self.send(StepFailed(step, self.run.steps[step].iteration,
                                    {"type": "RuntimeError", "message": message}))

    def update_record(self, **fields: Any) -> Decision:
        self.record.update(fields)
        self.record["version"] += 1
        return self.send(RecordChanged())

    # ---- what a user looks at -------------------------------------------------------------
    @property
    def steps(self) -> dict[str, str]:
        return {name: sr.status.value for name, sr in self.run.steps.items()}

    @property
    def stages(self) -> dict[str, str]:
        return {name: st.status.value for name, st in self.run.stages.items()}

    def stages_in_progress(self) -> list[str]:
        return [n for n, st in self.run.stages.items() if st.status is StageStatus.IN_PROGRESS]


def scheduled(d: Decision) -> list[tuple[str, int]]:
    return [(c.step, c.iteration) for c in d.commands if isinstance(c, ScheduleStep)]


def work_items(d: Decision) -> list[CreateWorkItem]:
    return [c for c in d.commands if isinstance(c, CreateWorkItem)]


def canceled_items(d: Decision) -> list[tuple[str, int]]:
    return [(c.step, c.iteration) for c in d.commands if isinstance(c, CancelWorkItem)]


def audits(d: Decision, type_: str | None = None) -> list[Audit]:
    return [c for c in d.commands if isinstance(c, Audit) and (type_ is None or c.type == type_)]


def evaluations(d: Decision) -> list[str]:
    return [c.flow for c in d.commands if isinstance(c, EvaluateCondition)]


# ---- stages ---------------------------------------------------------------------------------


def test_run_starts_at_the_first_stage() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: intake
            steps: [{name: a, type: background, flow: f.a}]
          - name: work
            steps: [{name: b, type: background, flow: f.b}]
    """))
    d = sim.start()
    assert sim.run.status is RunStatus.IN_PROGRESS
    assert sim.run.current_stage == "intake"
    assert sim.stages == {"intake": "in_progress"}
    assert sim.run.stages["intake"].iteration == 1
    assert sim.steps == {"a": "running"}
    assert scheduled(d) == [("a", 1)]
    assert [a.type for a in audits(d)][:2] == ["run_started", "stage_started"]


def test_only_one_stage_in_progress() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: one
            steps: [{name: a, type: background, flow: f.a}]
          - name: two
            steps: [{name: b, type: background, flow: f.b}]
          - name: three
            steps: [{name: c, type: background, flow: f.c}]
    """))
    sim.start()
    seen = []
    for step in ("a", "b", "c"):
        assert sim.stages_in_progress() == [sim.run.current_stage]
        seen.append(sim.run.current_stage)
        sim.complete(step)
    assert seen == ["one", "two", "three"]
    assert sim.stages_in_progress() == []
    assert sim.stages == {"one": "completed", "two": "completed", "three": "completed"}
    assert sim.run.status is RunStatus.COMPLETED


# ---- steps: start ----------------------------------------------------------------------------


def test_steps_without_after_start_when_stage_starts() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a}
              - {name: b, type: background, flow: f.b}
              - {name: c, type: background, flow: f.c, after: [a]}
    """))
    d = sim.start()
    assert sim.steps == {"a": "running", "b": "running", "c": "not_started"}
    assert scheduled(d) == [("a", 1), ("b", 1)]


def test_step_starts_when_all_after_steps_complete() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a}
              - {name: b, type: background, flow: f.b}
              - {name: c, type: background, flow: f.c, after: [a, b]}
    """))
    sim.start()
    d = sim.complete("a")
    assert sim.steps["c"] == "not_started"
    assert scheduled(d) == []
    d = sim.complete("b")
    assert sim.steps["c"] == "running"
    assert scheduled(d) == [("c", 1)]


def test_when_waits_until_true_and_is_rechecked_on_record_change() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              - {name: urgent, type: background, flow: f.urgent, when: '=record.priority > 2'}
    """), priority=1)
    d = sim.start()
    assert sim.steps == {"urgent": "waiting"}
    assert scheduled(d) == []
    d = sim.update_record(priority=2)
    assert sim.steps == {"urgent": "waiting"}
    assert scheduled(d) == []
    d = sim.update_record(priority=5)
    assert sim.steps == {"urgent": "running"}
    assert scheduled(d) == [("urgent", 1)]


def test_when_rechecked_when_a_step_changes() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              # listed first on purpose: it must be looked at again after 'a' changes
              - {name: big, type: background, flow: f.big, when: '=steps.a.output.amount > 100'}
              - {name: a, type: background, flow: f.a}
              - {name: watch, type: background, flow: f.watch,
                 when: '=steps.a.status == "completed"'}
    """))
    sim.start()
    assert sim.steps == {"big": "waiting", "a": "running", "watch": "waiting"}
    d = sim.complete("a", {"amount": 250})
    assert sim.steps == {"big": "running", "a": "completed", "watch": "running"}
    assert sorted(scheduled(d)) == [("big", 1), ("watch", 1)]


def test_stage_completes_when_all_steps_complete() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a}
              - {name: b, type: background, flow: f.b}
          - name: t
            steps: [{name: c, type: background, flow: f.c}]
    """))
    sim.start()
    sim.complete("a")
    assert sim.stages == {"s": "in_progress"}
    d = sim.complete("b")
    assert sim.stages == {"s": "completed", "t": "in_progress"}
    (done,) = audits(d, "stage_completed")
    assert done.data["stage"] == "s" and done.data["reason"] == "all_steps_complete"
    assert sim.run.stages["s"].completed_at is not None


def test_exit_when_completes_stage_and_cancels_open_steps_and_work_items() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            exit_when: '=record.status == "Closed"'
            steps:
              - {name: a, type: background, flow: f.a}
              - {name: review, type: interactive, assign: {queue: support}}
              - {name: later, type: background, flow: f.later, after: [a]}
              - {name: done, type: background, flow: f.done}
          - name: wrap_up
            steps: [{name: w, type: background, flow: f.w}]
    """))
    sim.start()
    sim.complete("done")
    assert sim.steps == {"a": "running", "review": "waiting_for_person", "later": "not_started",
                         "done": "completed"}
    d = sim.update_record(status="Closed")
    assert sim.steps == {"a": "canceled", "review": "canceled", "later": "canceled",
                         "done": "completed", "w": "running"}
    assert canceled_items(d) == [("review", 1)]
    assert sim.stages == {"s": "completed", "wrap_up": "in_progress"}
    (done,) = audits(d, "stage_completed")
    assert done.data["reason"] == "exit_when"
    # the canceled background step's late result changes nothing
    late = sim.send(StepCompleted("a", 1, {}))
    assert late.stale and sim.steps["a"] == "canceled"


def test_next_evaluated_in_order_first_match_wins() -> None:
    defn = orchestration("""
        stages:
          - name: route
            steps: [{name: a, type: background, flow: f.a}]
            next:
              - {when: '=record.priority > 5', goto: high}
              - {when: '=record.priority > 1', goto: mid}
              - {goto: low}
          - name: high
            steps: [{name: h, type: background, flow: f.h}]
            next: [{goto: end}]
          - name: mid
            steps: [{name: m, type: background, flow: f.m}]
            next: [{goto: end}]
          - name: low
            steps: [{name: l, type: background, flow: f.l}]
    """)
    outcomes = {}
    for priority in (7, 3, 0):
        sim = Sim(defn, priority=priority)
        sim.start()
        d = sim.complete("a")
        (taken,) = audits(d, "decision_taken")
        outcomes[priority] = (sim.run.current_stage, taken.data["rule"])
        assert sim.run.decisions[-1]["goto"] == sim.run.current_stage
    # 7 matches the first two rules: the first one wins
    assert outcomes == {7: ("high", 0), 3: ("mid", 1), 0: ("low", 2)}


def test_a_decision_keeps_its_outcome_label() -> None:
    """``next[].label`` names the outcome for people: it is on the run's decision and on
    the audit event the timeline shows; a rule without one records no label."""
    defn = orchestration("""
        stages:
          - name: review
            steps: [{name: a, type: background, flow: f.a}]
            next:
              - {when: '=record.priority > 5', goto: end, label: Approved}
              - {goto: rework}
          - name: rework
            steps: [{name: r, type: background, flow: f.r}]
    """)
    sim = Sim(defn, priority=9)
    sim.start()
    (taken,) = audits(sim.complete("a"), "decision_taken")
    assert taken.data["label"] == "Approved" and sim.run.decisions[-1]["label"] == "Approved"
    assert Run.from_json(sim.run.to_json()).decisions[-1]["label"] == "Approved"
    sim = Sim(defn, priority=1)
    sim.start()
    (taken,) = audits(sim.complete("a"), "decision_taken")
    assert "label" not in taken.data and "label" not in sim.run.decisions[-1]


def test_exit_when_condition_waits_for_the_condition_after_every_step_is_done() -> None:
    """``exit: when_condition`` (Salesforce's "conditions met"): the stage stays in progress
    with every step done until ``exit_when`` holds, then routes; the default ends it."""
    body = """
        stages:
          - name: review
            exit: when_condition
            exit_when: '=record.status == "Closed"'
            steps: [{name: a, type: background, flow: f.a}]
          - name: after
            steps: [{name: b, type: background, flow: f.b}]
    """
    sim = Sim(orchestration(body))
    sim.start()
    sim.complete("a")
    assert sim.steps == {"a": "completed"} and sim.stages == {"review": "in_progress"}
    sim.update_record(status="Triaged")
    assert sim.run.current_stage == "review"
    sim.update_record(status="Closed")
    assert sim.run.current_stage == "after" and sim.stages["review"] == "completed"
    default = Sim(orchestration(body.replace("exit: when_condition", "exit: all_steps")))
    default.start()
    default.complete("a")
    assert default.run.current_stage == "after"


def test_goto_end_ends_the_run() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps: [{name: a, type: background, flow: f.a}]
            next:
              - {when: '=steps.a.output.more == true', goto: t}
              - {goto: end}
          - name: t
            steps: [{name: b, type: background, flow: f.b}]
    """))
    sim.start()
    d = sim.complete("a", {"more": False})
    assert sim.run.status is RunStatus.COMPLETED
    assert sim.run.current_stage is None
    assert sim.run.completed_at is not None
    assert sim.stages == {"s": "completed"}  # t never started
    assert scheduled(d) == []
    assert [a.type for a in audits(d)][-1] == "run_completed"


def test_no_matching_next_fails_the_run() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps: [{name: a, type: background, flow: f.a}]
            next:
              - {when: '=record.priority > 5', goto: t}
          - name: t
            steps: [{name: b, type: background, flow: f.b}]
    """), priority=1)
    sim.start()
    d = sim.complete("a")
    assert sim.run.status is RunStatus.FAILED
    assert sim.run.error is not None
    assert "no next rule matched" in sim.run.error["message"]
    assert "'s'" in sim.run.error["message"]
    assert "t" not in sim.stages
    assert audits(d, "run_failed")


def test_stage_without_next_continues_with_following_stage() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: first
            steps: [{name: a, type: background, flow: f.a}]
          - name: second
            steps: [{name: b, type: background, flow: f.b}]
            next:
              - {when: '=steps.b.output.more == true', goto: third}
              - {goto: end}
          - name: third
            steps: [{name: c, type: background, flow: f.c}]
            next: [{goto: second}]
    """))
    sim.start()
    d = sim.complete("a")
    assert sim.run.current_stage == "second"  # the next one in the file
    assert scheduled(d) == [("b", 1)]
    (taken,) = audits(d, "decision_taken")
    assert (taken.data["stage"], taken.data["goto"]) == ("first", "second")
    assert taken.data["rule"] is None  # no rule: the file order decided
    # "following" is file order, not where the run came from: third goes back to second
    sim.complete("b", {"more": True})
    assert sim.run.current_stage == "third"
    sim.complete("c")
    assert sim.run.current_stage == "second"


def test_after_last_stage_run_ends() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: first
            steps: [{name: a, type: background, flow: f.a}]
          - name: last
            steps: [{name: b, type: background, flow: f.b}]
    """))
    sim.start()
    sim.complete("a")
    assert sim.run.status is RunStatus.IN_PROGRESS
    sim.complete("b")
    assert sim.run.status is RunStatus.COMPLETED
    assert sim.stages == {"first": "completed", "last": "completed"}
    assert sim.run.decisions[-1]["goto"] == "end"


def test_reentering_a_stage_starts_fresh_iteration() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: triage
            steps:
              - {name: classify, type: background, flow: f.classify}
              - {name: decide, type: interactive, after: [classify], assign: {queue: tier1},
                 form: [{name: resolution, type: choice, choices: [close, escalate],
                         required: true}]}
            next:
              - {when: '=steps.decide.output.resolution == "escalate"', goto: escalate}
              - {goto: end}
          - name: escalate
            steps: [{name: raise_level, type: background, flow: f.raise}]
            next: [{goto: triage}]
    """))
    sim.start()
    sim.complete("classify", {"category": "billing"})
    sim.complete("decide", {"resolution": "escalate"})
    assert sim.run.current_stage == "escalate"
    d = sim.complete("raise_level")
    assert sim.run.current_stage == "triage"
    assert sim.run.stages["triage"].iteration == 2
    assert sim.stages == {"triage": "in_progress", "escalate": "completed"}
    # fresh steps: not the old outputs, and a new iteration number
    assert sim.run.steps["classify"].iteration == 2
    assert sim.run.steps["classify"].status is StepStatus.RUNNING
    assert sim.run.steps["classify"].output is None
    assert sim.run.steps["decide"].status is StepStatus.NOT_STARTED
    assert sim.run.steps["decide"].output is None
    assert scheduled(d) == [("classify", 2)]
    # the second time round the person closes: the run ends
    sim.complete("classify")
    sim.complete("decide", {"resolution": "close"})
    assert sim.run.status is RunStatus.COMPLETED
    assert [(x["stage"], x["iteration"], x["goto"]) for x in sim.run.decisions] == [
        ("triage", 1, "escalate"), ("escalate", 1, "triage"), ("triage", 2, "end")]


def test_max_iterations_fails_the_run() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: loop
            max_iterations: 2
            steps: [{name: a, type: background, flow: f.a}]
            next: [{goto: loop}]
    """))
    sim.start()
    sim.complete("a")
    assert sim.run.stages["loop"].iteration == 2
    assert sim.run.status is RunStatus.IN_PROGRESS
    d = sim.complete("a")
    assert sim.run.status is RunStatus.FAILED
    assert "max_iterations" in sim.run.error["message"]  # type: ignore[index]
    assert sim.run.stages["loop"].iteration == 2  # a third iteration never started
    assert scheduled(d) == []


def test_max_iterations_default_is_ten() -> None:
    # A loop of stages without steps would spin forever; max_iterations stops it.
    sim = Sim(orchestration("""
        stages:
          - name: ping
            next: [{goto: pong}]
          - name: pong
            next: [{goto: ping}]
    """))
    sim.start()
    assert sim.run.status is RunStatus.FAILED
    assert sim.run.stages["ping"].iteration == 10
    assert "max_iterations of 10" in sim.run.error["message"]  # type: ignore[index]


def test_steps_name_means_latest_iteration() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: collect
            steps: [{name: a, type: background, flow: f.a}]
          - name: check
            steps:
              # reads a step of another stage
              - {name: b, type: background, flow: f.b, when: '=steps.a.status == "completed"'}
            next:
              - {when: '=steps.a.output.verdict == "again"', goto: collect}
              - {goto: end}
    """))
    sim.start()
    sim.complete("a", {"verdict": "again"})
    assert sim.steps["b"] == "running"
    sim.complete("b")
    assert sim.run.current_stage == "collect"
    sim.complete("a", {"verdict": "ok"})  # iteration 2 of a
    assert sim.run.steps["a"].iteration == 2
    sim.complete("b")
    # iteration 1 said "again"; the latest says "ok": the run ends instead of looping
    assert sim.run.status is RunStatus.COMPLETED
    assert sim.run.stages["collect"].iteration == 2


def test_missing_value_in_condition_is_false_for_now() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a}
              # output of a step that has not completed yet
              - {name: by_score, type: background, flow: f.x, when: '=steps.a.output.score > 3'}
              # a record field that is empty
              - {name: by_priority, type: background, flow: f.y, when: '=record.priority > 2'}
              # a key that is not in the output at all
              - {name: by_key, type: background, flow: f.z, when: '=steps.a.output.nothing == 1'}
            exit_when: '=steps.by_score.output.final == true'
    """), priority=None)
    sim.start()
    assert sim.steps == {"a": "running", "by_score": "waiting", "by_priority": "waiting",
                         "by_key": "waiting"}
    assert sim.run.status is RunStatus.IN_PROGRESS
    assert all(sr.error is None for sr in sim.run.steps.values())
    sim.complete("a", {"score": 5})
    sim.update_record(priority=3)
    assert sim.steps == {"a": "completed", "by_score": "running", "by_priority": "running",
                         "by_key": "waiting"}
    assert sim.run.status is RunStatus.IN_PROGRESS


def test_other_evaluation_error_fails_the_step() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              - {name: sibling, type: background, flow: f.s}
              - {name: divide, type: background, flow: f.d, when: '=10 / (record.priority - 1) > 2'}
              - {name: compare, type: background, flow: f.c, when: '=record.subject > 3'}
              - {name: not_bool, type: background, flow: f.n, when: '=record.priority'}
    """), priority=1)
    sim.start()
    assert sim.steps == {"sibling": "running", "divide": "fallout", "compare": "fallout",
                         "not_bool": "fallout"}
    errors = {n: sim.run.steps[n].error for n in ("divide", "compare", "not_bool")}
    for name, err in errors.items():
        assert err is not None, name
        assert err["type"] == "ExpressionError"
        assert err["message"].startswith("when: "), err
    # the expression and the reason are both there
    assert errors["divide"]["expression"] == "10 / (record.priority - 1) > 2"
    assert "divide by zero" in errors["divide"]["message"]
    assert errors["compare"]["expression"] == "record.subject > 3"
    assert "true or false" in errors["not_bool"]["message"]
    # the run is not failed by it: a step error goes to fallout
    assert sim.run.status is RunStatus.IN_PROGRESS
    assert len(audits(sim.last, "step_fallout")) == 3  # type: ignore[arg-type]


def test_step_statuses_are_lowercase_words_in_expressions() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            exit_when: '=steps.a.status == "fallout"'
            steps:
              - {name: a, type: background, flow: f.a}
              - {name: while_running, type: background, flow: f.w,
                 when: '=steps.a.status == "running"'}
              - {name: person, type: interactive, assign: {user: ann},
                 when: '=steps.while_running.status == "running"'}
              - {name: saw_person, type: background, flow: f.p,
                 when: '=steps.person.status == "waiting_for_person"'}
          - name: t
            steps:
              - {name: report, type: background, flow: f.r,
                 when: '=steps.person.status == "canceled"
                        && steps.while_running.status == "completed"'}
    """))
    sim.start()
    assert sim.steps == {"a": "running", "while_running": "running", "person": "waiting_for_person",
                         "saw_person": "running"}
    sim.complete("while_running")
    sim.fail("a")  # -> "fallout": exit_when holds, the person's step is canceled
    assert sim.run.current_stage == "t"
    assert sim.steps["report"] == "running"
    for status in StepStatus:
        assert status.value == status.value.lower() and " " not in status.value


def test_empty_stage_completes_at_once_as_decision_point() -> None:
    defn = orchestration("""
        stages:
          - name: route
            next:
              - {when: '=record.priority >= 3', goto: urgent}
              - {goto: normal}
          - name: urgent
            steps: [{name: page, type: background, flow: f.page}]
            next: [{goto: end}]
          - name: normal
            steps: [{name: queue_it, type: background, flow: f.queue}]
    """)
    urgent = Sim(defn, priority=4)
    d = urgent.start()
    assert urgent.stages == {"route": "completed", "urgent": "in_progress"}
    assert scheduled(d) == [("page", 1)]
    normal = Sim(defn, priority=1)
    d = normal.start()
    assert normal.stages == {"route": "completed", "normal": "in_progress"}
    assert scheduled(d) == [("queue_it", 1)]


def test_milestone_completes_when_after_steps_complete() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a}
              - {name: b, type: background, flow: f.b}
              - {name: ready, type: milestone, after: [a, b]}
              - {name: c, type: background, flow: f.c, after: [ready]}
    """))
    sim.start()
    sim.complete("a")
    assert sim.steps["ready"] == "not_started"
    d = sim.complete("b")
    assert sim.steps["ready"] == "completed"
    assert sim.steps["c"] == "running"
    assert [a.data["step"] for a in audits(d, "milestone_reached")] == ["ready"]
    assert scheduled(d) == [("c", 1)]  # a milestone is no job


def test_work_item_title_and_summary_from_the_step_or_the_record() -> None:
    text = (CASE.replace("fields:", "title_field: subject\nsummary_field: status\nfields:")
            + "---\nkind: orchestration\nname: t_titles\n"
            + "trigger: {type: record, object: Case, on: [create]}\n"
            + textwrap.dedent("""
        stages:
          - name: s
            steps:
              - {name: plain, type: interactive, label: Triage, assign: {user: ann}}
              - name: own
                type: interactive
                assign: {user: ann}
                title: '="Call back: " + record.subject'
                summary: Phone the customer today
              - name: broken
                type: interactive
                assign: {user: ann}
                title: '=record.priority + 1'
                summary: '="P" + string(record.priority)'
    """))
    [_, loaded] = load_text(text, "t.yaml")
    assert isinstance(loaded.definition, OrchestrationDefinition)
    sim = Sim(loaded.definition, subject="  Printer\n on fire ", status="Triaged")
    d = sim.start()
    items = {i.step: i for i in work_items(d)}
    # title_field: the subject alone (one line); summary_field: the status
    assert (items["plain"].title, items["plain"].summary) == ("Printer on fire", "Triaged")
    assert (items["own"].title, items["own"].summary) == (
        "Call back: Printer on fire", "Phone the customer today")
    # priority is empty: both expressions fail, the record's fields stand in, audited
    assert (items["broken"].title, items["broken"].summary) == ("Printer on fire", "Triaged")
    assert sorted(a.type for a in audits(d) if a.type.endswith("_invalid")) == [
        "work_item_summary_invalid", "work_item_title_invalid"]


def test_work_item_title_is_cut_to_its_column() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps: [{name: a, type: interactive, assign: {user: ann}, title: '=record.subject'}]
    """), subject="x" * 400)
    [item] = work_items(sim.start())
    assert len(item.title) == 300 and item.title.endswith("…")


def test_interactive_step_creates_work_item_with_assignee_expression() -> None:
    sim = Sim(orchestration("""
        variables: {level: 2}
        stages:
          - name: s
            steps:
              - name: triage
                type: interactive
                label: Triage the case
                instructions: Pick one.
                assign: {queue: '="tier" + string(vars.level)'}
                form:
                  - {name: resolution, type: choice, choices: [close, escalate], required: true}
                  - {name: notes, type: text}
              - {name: owner_check, type: interactive, assign: {user: ann}}
    """))
    d = sim.start()
    assert sim.steps == {"triage": "waiting_for_person", "owner_check": "waiting_for_person"}
    items = {i.step: i for i in work_items(d)}
    t = items["triage"]
    assert (t.assignee_kind, t.assignee, t.stage, t.iteration) == ("queue", "tier2", "s", 1)
    # no title of its own: the step's label and the record's subject (its naming field)
    assert t.title == "Triage the case: Printer on fire" and t.instructions == "Pick one."
    assert t.summary is None
    assert [(f["name"], f["type"], f["required"]) for f in t.form] == [
        ("resolution", "choice", True), ("notes", "text", False)]
    assert t.form[0]["choices"] == ["close", "escalate"]
    o = items["owner_check"]
    assert (o.assignee_kind, o.assignee, o.title) == ("user", "ann", "owner_check: Printer on fire")
    assert scheduled(d) == []


def test_on_failure_fallout_keeps_run_in_progress_and_siblings_go_on() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a}
              - {name: sibling, type: background, flow: f.s}
              - {name: dependent, type: background, flow: f.d, after: [a]}
          - name: t
            steps: [{name: z, type: background, flow: f.z}]
    """))
    sim.start()
    d = sim.fail("a", "connection refused")
    assert sim.run.status is RunStatus.IN_PROGRESS
    assert sim.stages == {"s": "in_progress"}
    assert sim.steps == {"a": "fallout", "sibling": "running", "dependent": "not_started"}
    assert sim.run.steps["a"].error["message"] == "connection refused"  # type: ignore[index]
    assert audits(d, "step_fallout")
    d = sim.complete("sibling")  # the independent sibling goes on
    assert sim.steps == {"a": "fallout", "sibling": "completed", "dependent": "not_started"}
    assert sim.stages == {"s": "in_progress"}  # a stage with a step in fallout is not complete
    # an operator marks it complete by hand: the dependent starts
    d = sim.complete("a", {"fixed": True}, actor="op:olga")
    assert sim.steps["dependent"] == "running"
    assert audits(d, "step_completed")[0].actor == "op:olga"


def test_on_failure_fail_run() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a, on_failure: fail_run}
              - {name: sibling, type: background, flow: f.s}
              - {name: person, type: interactive, assign: {queue: q}}
    """))
    sim.start()
    d = sim.fail("a", "card declined")
    assert sim.run.status is RunStatus.FAILED
    assert sim.steps == {"a": "failed", "sibling": "canceled", "person": "canceled"}
    assert sim.stages == {"s": "failed"}
    assert canceled_items(d) == [("person", 1)]
    assert "card declined" in sim.run.error["message"]  # type: ignore[index]
    assert sim.run.error["step"] == "a"  # type: ignore[index]
    assert sim.run.completed_at is not None


def test_on_failure_continue() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a, on_failure: continue}
              - {name: b, type: background, flow: f.b, after: [a],
                 when: '=steps.a.status == "failed"'}
    """))
    sim.start()
    d = sim.fail("a")
    assert sim.run.status is RunStatus.IN_PROGRESS
    assert sim.steps == {"a": "failed", "b": "running"}
    assert scheduled(d) == [("b", 1)]
    sim.complete("b")
    assert sim.run.status is RunStatus.COMPLETED
    assert sim.stages == {"s": "completed"}


def test_cancel_cancels_open_steps_and_work_items() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a}
              - {name: person, type: interactive, assign: {queue: q}}
              - {name: later, type: background, flow: f.l, after: [a]}
              - {name: done, type: background, flow: f.d}
    """))
    sim.start()
    sim.complete("done")
    d = sim.send(CancelRequested("customer withdrew", "user:ann"))
    assert sim.run.status is RunStatus.CANCELED
    assert sim.steps == {"a": "canceled", "person": "canceled", "later": "canceled",
                         "done": "completed"}
    assert sim.stages == {"s": "canceled"}
    assert canceled_items(d) == [("person", 1)]
    assert scheduled(d) == [] and work_items(d) == []
    (c,) = audits(d, "run_canceled")
    assert c.actor == "user:ann" and c.data["reason"] == "customer withdrew"
    # nothing moves a canceled run any more
    assert sim.send(StepCompleted("a", 1, {})).stale
    assert sim.send(RecordChanged()).stale
    assert sim.send(CancelRequested("again", "user:ann")).stale
    assert sim.run.status is RunStatus.CANCELED


def test_cancel_of_a_failed_run() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps: [{name: a, type: background, flow: f.a, on_failure: fail_run}]
    """))
    sim.start()
    sim.fail("a")
    assert sim.run.status is RunStatus.FAILED
    d = sim.send(CancelRequested("give up", "op:olga"))
    assert not d.stale
    assert sim.run.status is RunStatus.CANCELED


def test_stale_step_result_is_ignored() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a}
              - {name: b, type: background, flow: f.b}
              - {name: c, type: background, flow: f.c}
    """))
    sim.start()
    sim.complete("a", {"v": 1})
    sim.fail("c")
    assert sim.steps == {"a": "completed", "b": "running", "c": "fallout"}
    before = sim.run.to_json()
    stale_events: list[Event] = [
        StepCompleted("a", 1, {"v": 2}),  # delivered twice
        StepFailed("a", 1, {"message": "late"}),  # a late failure of a completed step
        StepCompleted("b", 2, {}),  # an iteration that does not exist
        StepCompleted("b", 0, {}),  # an old iteration
        StepCompleted("nope", 1, {}),  # not a step of this run
        StepFailed("c", 1, {"message": "again"}),  # delivered twice: already in fallout
    ]
    for event in stale_events:
        d = sim.send(event)
        assert d.stale, event
        assert d.commands == [], event
        assert sim.run.to_json() == before, event
    assert sim.run.steps["a"].output == {"v": 1}


def test_complete_when_completes_interactive_step() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              - {name: wait_for_triage, type: interactive, assign: {queue: q},
                 complete_when: '=record.status == "Triaged"'}
              - {name: after_it, type: background, flow: f.x, after: [wait_for_triage]}
    """))
    sim.start()
    assert sim.steps["wait_for_triage"] == "waiting_for_person"
    d = sim.update_record(subject="still new")
    assert sim.steps["wait_for_triage"] == "waiting_for_person" and canceled_items(d) == []
    d = sim.update_record(status="Triaged")
    assert sim.steps == {"wait_for_triage": "completed", "after_it": "running"}
    assert canceled_items(d) == [("wait_for_triage", 1)]  # nobody needs to submit the form now
    (done,) = audits(d, "step_completed")
    assert done.data["via"] == "complete_when"


def test_decide_does_not_mutate_input_run() -> None:
    defn = orchestration("""
        variables: {n: 1}
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a}
              - {name: p, type: interactive, assign: {queue: q}}
            exit_when: '=record.status == "Closed"'
          - name: t
            steps: [{name: b, type: background, flow: f.b}]
    """)
    record = {"id": "rec-1", "subject": "x", "priority": 1, "status": "New"}
    run = Run(id="run-1", orchestration=defn.name, version=1, record_id="rec-1", vars={"n": 1})

    def check(event: Event, rec: dict[str, Any]) -> Decision:
        nonlocal run
        snapshot = copy.deepcopy(run.to_json())
        rec_snapshot = copy.deepcopy(rec)
        d = decide(defn, run, event, NOW, rec)
        assert run.to_json() == snapshot, event
        assert rec == rec_snapshot, event
        assert d.run is not run or d.stale
        run = d.run
        return d

    check(RunStarted(), record)
    check(StepCompleted("a", 1, {"x": [1, 2]}, vars={"n": 2}), record)
    assert run.vars == {"n": 2}
    check(RecordChanged(), {**record, "status": "Closed"})
    check(StepCompleted("b", 1, {}), record)
    assert run.status is RunStatus.COMPLETED
    check(StepCompleted("b", 1, {}), record)  # stale


def test_evaluation_flow_condition_requests_evaluation() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: wait_parts
            exit_when: {flow: t_rules.all_parts_received}
            steps:
              - {name: chase, type: interactive, assign: {queue: purchasing}}
          - name: build
            steps: [{name: b, type: background, flow: f.b}]
    """))
    d = sim.start()
    assert evaluations(d) == ["t_rules.all_parts_received"]
    assert sim.stages == {"wait_parts": "in_progress"}  # no answer yet: false for now
    d = sim.send(ConditionEvaluated("t_rules.all_parts_received", False))
    assert sim.stages == {"wait_parts": "in_progress"}
    assert evaluations(d) == []  # the answer itself does not ask again
    d = sim.update_record(subject="parts ordered")  # a record change asks again
    assert evaluations(d) == ["t_rules.all_parts_received"]
    d = sim.send(ConditionEvaluated("t_rules.all_parts_received", True))
    assert sim.stages == {"wait_parts": "completed", "build": "in_progress"}
    assert sim.steps["chase"] == "canceled"
    assert canceled_items(d) == [("chase", 1)]
    assert scheduled(d) == [("b", 1)]


def test_evaluation_flow_is_asked_again_for_the_next_stage() -> None:
    # The stage an answer moved the run into consults another flow: it must be asked for,
    # otherwise the new stage would wait until some unrelated record or step change.
    sim = Sim(orchestration("""
        stages:
          - name: one
            exit_when: {flow: t_rules.one_done}
            steps: [{name: p1, type: interactive, assign: {queue: q}}]
          - name: two
            exit_when: {flow: t_rules.two_done}
            steps: [{name: p2, type: interactive, assign: {queue: q}}]
    """))
    sim.start()
    d = sim.send(ConditionEvaluated("t_rules.one_done", True))
    assert sim.run.current_stage == "two"
    assert "t_rules.two_done" in evaluations(d)


def test_evaluation_flow_answer_is_not_reused_when_a_stage_is_entered_again() -> None:
    # The answer "true" that ended iteration 1 of a stage must not end iteration 2 at once:
    # conditions of a fresh iteration wait for a fresh answer.
    sim = Sim(orchestration("""
        stages:
          - name: gather
            exit_when: {flow: t_rules.enough}
            steps: [{name: collect, type: interactive, assign: {queue: q}}]
          - name: review
            steps: [{name: r, type: background, flow: f.r}]
            next:
              - {when: '=steps.r.output.again == true', goto: gather}
              - {goto: end}
    """))
    sim.start()
    sim.send(ConditionEvaluated("t_rules.enough", True))
    assert sim.run.current_stage == "review"
    d = sim.complete("r", {"again": True})
    assert sim.run.current_stage == "gather"
    assert sim.run.stages["gather"].iteration == 2
    assert sim.steps["collect"] == "waiting_for_person"
    assert evaluations(d) == ["t_rules.enough"]


def test_evaluation_flow_in_next_is_asked_before_routing() -> None:
    # next is looked at only when the stage is done, so its evaluation flow cannot have
    # answered before: the stage waits for the answer instead of taking "false" unasked.
    defn = orchestration("""
        stages:
          - name: s
            steps: [{name: a, type: background, flow: f.a}]
            next:
              - {when: {flow: t_rules.is_vip}, goto: vip}
              - {goto: end}
          - name: vip
            steps: [{name: v, type: background, flow: f.v}]
    """)
    for answer, where in ((True, "vip"), (False, None)):
        sim = Sim(defn)
        d = sim.start()
        assert evaluations(d) == []  # nothing asks for it before the stage is done
        d = sim.complete("a")
        assert sim.stages == {"s": "in_progress"}
        assert sim.run.decisions == []
        assert evaluations(d) == ["t_rules.is_vip"]
        d = sim.send(ConditionEvaluated("t_rules.is_vip", answer))
        assert sim.run.current_stage == where
        assert sim.run.decisions[-1]["goto"] == (where or "end")
        assert sim.run.status is (RunStatus.IN_PROGRESS if answer else RunStatus.COMPLETED)


def test_exit_when_with_evaluation_flow_in_next_settles() -> None:
    # exit_when holds, the open steps are canceled, routing waits for its flow: one decision
    # must settle there (not spin until the loop guard fails the run).
    sim = Sim(orchestration("""
        stages:
          - name: s
            exit_when: '=record.status == "Closed"'
            steps: [{name: p, type: interactive, assign: {queue: q}}]
            next:
              - {when: {flow: t_rules.reopen}, goto: s}
              - {goto: end}
    """))
    sim.start()
    d = sim.update_record(status="Closed")
    assert sim.run.status is RunStatus.IN_PROGRESS
    assert sim.steps == {"p": "canceled"}
    assert canceled_items(d) == [("p", 1)]
    assert evaluations(d) == ["t_rules.reopen"]
    sim.send(ConditionEvaluated("t_rules.reopen", False))
    assert sim.run.status is RunStatus.COMPLETED


def test_the_commands_made_most_often_are_immutable_records() -> None:
    """Audit, ScheduleStep and CreateWorkItem are named tuples (made in one C call), not
    frozen dataclasses: as immutable, read by field name, told apart by type."""
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a}
              - {name: b, type: interactive, assign: {queue: q1}, after: [a]}
    """))
    d = sim.start()
    (job,) = [c for c in d.commands if isinstance(c, ScheduleStep)]
    assert (job.step, job.kind, job.attempt, job.not_before, job.input) == (
        "a", "step", 1, None, None)
    (item,) = work_items(sim.complete("a"))
    assert (item.step, item.assignee_kind, item.assignee, item.priority) == ("b", "queue", "q1", 1)
    audit = audits(d, "run_started")[0]
    assert (audit.actor, audit.data) == ("system", {"orchestration": "t_rules", "version": 1})
    for c in (job, item, audit):
        with pytest.raises(AttributeError):
            c.step = "other"  # type: ignore[misc,union-attr]
