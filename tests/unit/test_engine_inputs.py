"""Issue 18, items 1 and 2 on the pure core: inputs of steps and of evaluation flows, the
answer of an evaluation flow kept per condition site, a flow that gave no answer, runs
stored before sites (format 2), and related records in the record view expressions see.
Driven like ``test_engine_rules.py``: events in, statuses and commands out."""

from __future__ import annotations

import decimal
import textwrap
from typing import Any

from baton.definitions.loader import load_text
from baton.definitions.model import OrchestrationDefinition
from baton.engine.decide import Decision
from baton.engine.events import (
    ConditionEvaluated,
    CreateWorkItem,
    EvaluateCondition,
    ScheduleStep,
)
from baton.engine.state import Run
from tests.unit.test_engine_rules import Sim, orchestration

RELATED = """\
kind: object
name: User
fields:
  email: {type: string}
  manager: {type: ref, object: User}
---
kind: object
name: Account
fields:
  name: {type: string}
  limit: {type: decimal}
  owner: {type: ref, object: User}
---
kind: object
name: Case
fields:
  subject: {type: string}
  account: {type: ref, object: Account}
  contact: {type: ref, object: User}
---
kind: orchestration
name: t_related
trigger: {type: record, object: Case, on: [create, update]}
"""


def related(body: str) -> OrchestrationDefinition:
    docs = load_text(RELATED + textwrap.dedent(body))
    (defn,) = [d.definition for d in docs if d.kind == "orchestration"]
    assert isinstance(defn, OrchestrationDefinition)
    return defn


def asked(d: Decision) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [(c.site, c.flow, c.input) for c in d.commands if isinstance(c, EvaluateCondition)]


def scheduled(d: Decision) -> dict[str, dict[str, Any] | None]:
    return {c.step: c.input for c in d.commands if isinstance(c, ScheduleStep)}


TWO_APPROVALS = """
    stages:
      - name: approve
        steps:
          - name: manager
            type: interactive
            assign: {user: ann}
            form: [{name: decision, type: choice, choices: [yes, no]}]
          - name: finance
            type: interactive
            assign: {user: bob}
            form: [{name: decision, type: choice, choices: [yes, no]}]
          - name: book
            type: background
            flow: f.book
            when: {flow: t_inputs.approved, input: {approval: '=steps.manager.output.decision'}}
          - name: pay
            type: background
            flow: f.pay
            when: {flow: t_inputs.approved, input: {approval: '=steps.finance.output.decision'}}
"""


def test_one_flow_at_two_sites_is_asked_for_each_with_its_input() -> None:
    sim = Sim(orchestration(TWO_APPROVALS))
    d = sim.start()
    # not there yet: the managers have not decided, so the input is None (not an error)
    assert asked(d) == [("steps.book.when", "t_inputs.approved", {"approval": None}),
                        ("steps.pay.when", "t_inputs.approved", {"approval": None})]
    d = sim.complete("manager", {"decision": "yes"})
    assert asked(d) == [("steps.book.when", "t_inputs.approved", {"approval": "yes"}),
                        ("steps.pay.when", "t_inputs.approved", {"approval": None})]
    # each site's answer is its own: "pay" is not started by the answer given for "book"
    d = sim.send(ConditionEvaluated("t_inputs.approved", True, "steps.book.when"))
    d2 = sim.send(ConditionEvaluated("t_inputs.approved", False, "steps.pay.when"))
    assert sim.steps["book"] == "running" and sim.steps["pay"] == "waiting"
    assert list(scheduled(d)) == ["book"] and scheduled(d2) == {}
    assert sim.run.flow_conditions == {"steps.book.when": True, "steps.pay.when": False}


def test_a_flow_that_gave_no_answer_leaves_its_site_unanswered() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            steps: [{name: a, type: background, flow: f.a}]
            next:
              - {when: {flow: t_inputs.vip, input: {tier: 2}}, goto: vip}
              - {goto: end}
          - name: vip
            steps: [{name: v, type: background, flow: f.v}]
    """))
    sim.start()
    d = sim.complete("a")
    assert asked(d) == [("stages.s.next[0].when", "t_inputs.vip", {"tier": 2})]
    sim.send(ConditionEvaluated("t_inputs.vip", None, "stages.s.next[0].when"))  # it raised
    # no answer is not "false": the routing waits instead of taking the next rule
    assert sim.stages == {"s": "in_progress"} and sim.run.decisions == []
    sim.send(ConditionEvaluated("t_inputs.vip", True, "stages.s.next[0].when"))  # retried
    assert sim.run.current_stage == "vip"


def test_an_answer_that_was_true_is_dropped_when_the_flow_then_fails() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            exit_when: {flow: t_inputs.done}
            exit: when_condition
            steps: [{name: a, type: interactive, assign: {user: ann}}]
    """))
    sim.start()
    sim.send(ConditionEvaluated("t_inputs.done", None, "stages.s.exit_when"))
    assert sim.run.flow_conditions == {}
    assert sim.stages == {"s": "in_progress"}


def test_an_input_that_cannot_be_evaluated_is_sent_as_an_error() -> None:
    sim = Sim(orchestration("""
        stages:
          - name: s
            exit_when: {flow: t_inputs.done, input: {n: '=1 / 0'}}
            steps: [{name: a, type: interactive, assign: {user: ann}}]
    """))
    d = sim.start()
    (cmd,) = [c for c in d.commands if isinstance(c, EvaluateCondition)]
    assert cmd.input is None and cmd.error is not None and "n:" in cmd.error
    assert "divide by zero" in cmd.error


def test_runs_stored_in_format_2_keep_their_answers_per_flow() -> None:
    defn = orchestration("""
        stages:
          - name: s
            exit_when: {flow: t_inputs.done}
            steps: [{name: a, type: interactive, assign: {user: ann}}]
          - name: t
            steps: [{name: b, type: background, flow: f.b}]
    """)
    sim = Sim(defn)
    sim.start()
    doc = sim.run.to_json()
    doc["format"] = 2
    doc["flow_conditions"] = {"t_inputs.done": False}  # as format 2 stored it: per flow
    old = Run.from_json(doc)
    assert old.flow_conditions == {"flow:t_inputs.done": False}
    assert Run.from_json(old.to_json()).flow_conditions == old.flow_conditions  # format 3
    sim.run = old
    sim.update_record(subject="changed")  # the old answer is used while none has come
    assert sim.run.current_stage == "s"
    # a job queued before sites (no site) answers every condition of the flow
    sim.send(ConditionEvaluated("t_inputs.done", True))
    assert sim.run.current_stage == "t"


def test_step_input_is_evaluated_when_the_step_starts() -> None:
    sim = Sim(orchestration("""
        variables: {limit: 500}
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a}
              - name: b
                type: background
                flow: f.b
                after: [a]
                input: {found: '=steps.a.output.found', limit: '=vars.limit', fixed: 3,
                        missing: '=steps.a.output.nothing', subject: '=record.subject'}
              - name: c
                type: interactive
                assign: {user: ann}
                after: [a]
                input: {amount: '=steps.a.output.amount'}
    """))
    d = sim.start()
    assert scheduled(d) == {"a": None}  # no input: nothing is sent
    d = sim.complete("a", {"found": [1, 2], "amount": 12.5})
    assert scheduled(d) == {"b": {"found": [1, 2], "limit": 500, "fixed": 3, "missing": None,
                                  "subject": "Printer on fire"}}
    (item,) = [c for c in d.commands if isinstance(c, CreateWorkItem)]
    assert item.input == {"amount": 12.5}


def test_a_step_input_that_fails_puts_the_step_in_fallout() -> None:
    sim = Sim(orchestration("""
        variables: {zero: 0}
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a, input: {n: '=10 / vars.zero'}}
    """))
    d = sim.start()
    assert scheduled(d) == {}
    assert sim.steps["a"] == "fallout"
    err = sim.run.steps["a"].error or {}
    assert err["type"] == "ExpressionError" and err["message"].startswith("input: n:")


def test_related_records_in_the_record_view_decide_conditions() -> None:
    # The runtime hands decide() the record with the related records its expressions read
    # (records/related.py): a navigated ref is that record, with its id.
    defn = related("""
        stages:
          - name: s
            steps:
              - {name: a, type: background, flow: f.a,
                 when: '=record.account.owner.email == "ann@example.com"',
                 input: {account: '=record.account.id', limit: '=record.account.limit'}}
    """)
    sim = Sim(defn, account={"id": "acc-1"})  # names a record not there: false for now
    sim.start()
    assert sim.steps["a"] == "waiting"
    sim.update_record(account={"id": "acc-1", "limit": decimal.Decimal("1000.50"),
                               "owner": {"id": "u-1", "email": "ann@example.com"}})
    assert sim.steps["a"] == "running"
    assert scheduled(sim.last) == {"a": {"account": "acc-1", "limit": 1000.5}}  # type: ignore[arg-type]


def test_the_paths_a_definition_navigates_are_known_from_its_text() -> None:
    from baton.definitions.refs import navigated
    defn = related("""
        stages:
          - name: s
            exit_when: '=record.account.owner.manager.email == "x" || record.subject == "y"'
            steps:
              - {name: a, type: background, flow: f.a, input: {n: '=record.contact.email.size()'}}
    """)
    assert navigated(defn) == (("account",), ("contact",), ("account", "owner"),
                               ("account", "owner", "manager"))
    assert navigated(related("""
        stages: [{name: s, steps: [{name: a, type: background, flow: f.a}]}]
    """)) == ()
