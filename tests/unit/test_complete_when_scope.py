"""``complete_when`` belongs to the steps that act on it, interactive and approval steps: on
any other step type nothing ever evaluates it (a pause with ``complete_when: '=true'`` stayed
running), so validation refuses it there, located. A stored version that holds one (deployed
before this check) still loads, its problem returned for the caller to report."""

from __future__ import annotations

import textwrap

import pytest

from baton.definitions.loader import load_stored, load_text
from baton.definitions.model import Condition, OrchestrationDefinition
from baton.errors import DefinitionError, Issue
from tests.unit.test_engine_rules import Sim, audits, canceled_items, orchestration

HEAD = """\
kind: orchestration
name: t_scope
trigger: {type: autolaunched}
stages:
  - name: s
    steps:
      - {name: first, type: interactive, assign: {queue: q}}
"""

# One step of every type that does not act on complete_when, each otherwise valid.
OTHERS = {
    "pause": "{name: w, type: pause, signal: docs, complete_when: '=true'}",
    "background": "{name: w, type: background, flow: f.x, complete_when: '=true'}",
    "milestone": "{name: w, type: milestone, after: [first], complete_when: '=true'}",
    "ai": "{name: w, type: ai, task: extract, text: hi, fields: {order: {pattern: 'O-\\d+'}}, "
          "complete_when: '=true'}",
    "callout": "{name: w, type: callout, connection: bank, complete_when: '=true'}",
    "mcp": "{name: w, type: mcp, connection: erp, tool: t, complete_when: '=true'}",
    "orchestration": "{name: w, type: orchestration, orchestration: other, "
                     "complete_when: '=true'}",
}


def with_step(step: str) -> str:
    return HEAD + f"      - {step}\n"


@pytest.mark.parametrize("stype", sorted(OTHERS))
def test_complete_when_is_refused_on_a_step_type_that_never_evaluates_it(stype: str) -> None:
    with pytest.raises(DefinitionError) as exc:
        load_text(with_step(OTHERS[stype]), "t.yaml")
    assert exc.value.issues == [Issue(
        "t.yaml", 8, "stages[0].steps[1].complete_when",
        f"complete_when does not apply to {'an' if stype[0] in 'aeiou' else 'a'} {stype} step "
        "(only to interactive or approval steps)")]


# ``timeout`` likewise: only background (its flow), callout (its wait: callback) and mcp (the
# tool call) steps act on it; a person's step is bounded by its sla, said so.
@pytest.mark.parametrize("stype,step", [
    ("interactive", "{name: w, type: interactive, assign: {queue: q}, timeout: 2d}"),
    ("approval", "{name: w, type: approval, assign: {queue: q}, timeout: 2d}"),
    ("pause", "{name: w, type: pause, signal: docs, timeout: 2d}"),
    ("milestone", "{name: w, type: milestone, after: [first], timeout: 2d}"),
])
def test_timeout_is_refused_where_nothing_bounds_by_it(stype: str, step: str) -> None:
    with pytest.raises(DefinitionError) as exc:
        load_text(with_step(step), "t.yaml")
    (issue,) = exc.value.issues
    assert issue.path == "stages[0].steps[1].timeout", issue
    assert issue.message.startswith(f"timeout does not apply to a{'n' if stype[0] in 'ai' else ''} "
                                    f"{stype} step (only to background or callout or mcp steps)")
    assert "bounded by its sla:" in issue.message, issue


def test_timeout_is_taken_by_a_background_step_and_kept_in_its_options() -> None:
    (doc,) = load_text(with_step("{name: w, type: background, flow: f.x, timeout: 30s}"),
                       "t.yaml")
    assert isinstance(doc.definition, OrchestrationDefinition)
    assert doc.definition.stages[0].steps[1].options["timeout"] == "30s"


@pytest.mark.parametrize("stype", ["interactive", "approval"])
def test_complete_when_is_taken_by_interactive_and_approval_steps(stype: str) -> None:
    step = f"{{name: w, type: {stype}, assign: {{queue: q}}, complete_when: '=input.done'}}"
    text = with_step(step).replace("{type: autolaunched}",
                                   "{type: autolaunched, input: {done: {type: bool}}}")
    (loaded,) = load_text(text)
    defn = loaded.definition
    assert isinstance(defn, OrchestrationDefinition)
    w = defn.stages[0].steps[1]
    assert w.complete_when == Condition(expression="=input.done")
    assert "complete_when" not in w.options  # (a field of the step, not an option)


def test_its_expression_is_still_checked_where_it_belongs() -> None:
    step = "{name: w, type: interactive, assign: {queue: q}, complete_when: '=vars.nope'}"
    with pytest.raises(DefinitionError) as exc:
        load_text(with_step(step), "t.yaml")
    (issue,) = exc.value.issues
    assert (issue.line, issue.path) == (8, "stages[0].steps[1].complete_when")
    assert "nope" in issue.message


def test_a_stored_version_holding_one_elsewhere_still_loads() -> None:
    """Deployed before the check: read back as it was built then (the runs pinned to it go
    on), with the problem returned for the caller to log."""
    text = with_step(OTHERS["pause"])
    loaded, issues = load_stored(text, "definitions/t.yaml")
    assert [(i.line, i.path) for i in issues] == [(8, "stages[0].steps[1].complete_when")]
    defn = loaded[0].definition
    assert isinstance(defn, OrchestrationDefinition)
    w = defn.stages[0].steps[1]
    assert (w.type, w.options["signal"]) == ("pause", "docs")
    assert w.complete_when == Condition(expression="=true")


def test_complete_when_completes_a_pending_approval() -> None:
    """The approval step acts on it as the interactive step does: the item is canceled and
    the step completes with an empty output."""
    sim = Sim(orchestration(textwrap.dedent("""
        stages:
          - name: s
            steps:
              - {name: sign_off, type: approval, assign: {queue: q},
                 complete_when: '=record.status == "Closed"'}
    """)))
    sim.start()
    assert sim.steps["sign_off"] == "waiting_for_person"
    d = sim.update_record(status="Triaged")
    assert sim.steps["sign_off"] == "waiting_for_person" and canceled_items(d) == []
    d = sim.update_record(status="Closed")
    assert sim.steps["sign_off"] == "completed"
    assert canceled_items(d) == [("sign_off", 1)]
    (done,) = audits(d, "step_completed")
    assert done.data["via"] == "complete_when" and sim.run.steps["sign_off"].output == {}
