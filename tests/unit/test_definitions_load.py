"""Valid definitions load into the right frozen objects (DESIGN §2.1)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from baton.definitions.loader import check_definitions, load_definitions, load_text
from baton.definitions.model import (
    AssigneeKind,
    Assignment,
    Condition,
    FieldDefinition,
    NextRule,
    ObjectTypeDefinition,
    OrchestrationDefinition,
)
from baton.errors import DefinitionError

KNOWN_FLOWS = {
    "cases.classify",
    "cases.find_agent",
    "cases.raise_level",
    "cases.close",
    "cases.send_survey",
}

OBJECTS = """\
kind: object
name: Account
fields:
  name: {type: string, required: true}
---
kind: object
name: Case
label: Support case
fields:
  subject: {type: string, required: true}
  origin:  {type: choice, choices: [Web, Email, Phone, Internal], default: Web}
  level:   {type: int, default: 1}
  status:  {type: choice, choices: [New, Triaged, Escalated, Closed], default: New}
  account: {type: ref, object: Account}
"""

CASE_TRIAGE = """\
kind: orchestration
name: case_triage
trigger: {type: record, object: Case, on: [create], when: '=record.origin != "Internal"'}
variables: {level: 1}
stages:
  - name: triage
    steps:
      - {name: classify,   type: background, flow: cases.classify}
      - {name: find_agent, type: background, flow: cases.find_agent}
      - name: triage
        type: interactive
        after: [classify, find_agent]
        assign: {queue: '="tier" + string(vars.level)'}
        form:
          - {name: resolution, type: choice, choices: [close, escalate], required: true}
          - {name: notes, type: text}
        sla: {duration: 4h, jeopardy: 1h}
    next:
      - {when: '=steps.triage.output.resolution == "escalate"', goto: escalate}
      - {goto: close}
  - name: escalate
    steps: [{name: raise_level, type: background, flow: cases.raise_level}]
    next: [{goto: triage}]
  - name: close
    steps:
      - {name: close_case,  type: background, flow: cases.close}
      - {name: send_survey, type: background, flow: cases.send_survey, after: [close_case]}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "definitions"
    (folder / "sub").mkdir(parents=True)
    (folder / "objects.yaml").write_text(OBJECTS)
    (folder / "sub" / "case_triage.yml").write_text(CASE_TRIAGE)
    (folder / "notes.txt").write_text("not a definition")
    (folder / ".hidden.yaml").write_text("kind: nonsense")
    return folder


def _load_all() -> dict[str, ObjectTypeDefinition | OrchestrationDefinition]:
    docs = load_text(OBJECTS + "---\n" + CASE_TRIAGE, "cases.yaml", known_flows=KNOWN_FLOWS)
    return {d.name: d.definition for d in docs}


def _case() -> ObjectTypeDefinition:
    definition = _load_all()["Case"]
    assert isinstance(definition, ObjectTypeDefinition)
    return definition


def _case_triage() -> OrchestrationDefinition:
    definition = _load_all()["case_triage"]
    assert isinstance(definition, OrchestrationDefinition)
    return definition


def test_case_object_type() -> None:
    case = _case()
    assert case.label == "Support case"
    assert [f.name for f in case.fields] == ["subject", "origin", "level", "status", "account"]
    assert case.field("subject") == FieldDefinition("subject", "string", required=True)
    assert case.field("origin") == FieldDefinition(
        "origin", "choice", default="Web", choices=("Web", "Email", "Phone", "Internal")
    )
    assert case.field("level") == FieldDefinition("level", "int", default=1)
    assert case.field("account") == FieldDefinition("account", "ref", object="Account")


def test_trigger_and_variables() -> None:
    orch = _case_triage()
    assert orch.trigger.type == "record"
    assert orch.trigger.object == "Case"
    assert orch.trigger.on == ("create",)
    assert orch.trigger.when == Condition(expression='=record.origin != "Internal"')
    assert dict(orch.variables) == {"level": 1}


def test_stages_steps_and_after() -> None:
    orch = _case_triage()
    assert [s.name for s in orch.stages] == ["triage", "escalate", "close"]
    triage = orch.stages[0]
    assert [s.name for s in triage.steps] == ["classify", "find_agent", "triage"]
    assert triage.steps[0].type == "background" and triage.steps[0].flow == "cases.classify"
    assert triage.step("triage").after == ("classify", "find_agent")  # type: ignore[union-attr]
    assert orch.stages[2].step("send_survey").after == ("close_case",)  # type: ignore[union-attr]
    assert triage.max_iterations == 10 and triage.exit_when is None
    assert orch.find_step("raise_level")[0].name == "escalate"  # type: ignore[index]


def test_interactive_step() -> None:
    step = _case_triage().stages[0].steps[2]
    assert step.type == "interactive"
    assert step.assign == Assignment(AssigneeKind.QUEUE, '="tier" + string(vars.level)')
    assert step.form == (
        FieldDefinition("resolution", "choice", required=True, choices=("close", "escalate")),
        FieldDefinition("notes", "text"),
    )
    assert step.options["sla"] == {"duration": "4h", "jeopardy": "1h"}
    assert step.on_failure == "fallout"
    assert step.line == 25  # the line of the step's list item, in the combined text


def test_next_rules() -> None:
    orch = _case_triage()
    assert orch.stages[0].next == (
        NextRule("escalate", Condition(expression='=steps.triage.output.resolution == "escalate"')),
        NextRule("close"),
    )
    assert orch.stages[1].next == (NextRule("triage"),)
    assert orch.stages[2].next is None  # no `next`: continue with the following stage


def test_definitions_are_frozen() -> None:
    orch = _case_triage()
    with pytest.raises(dataclasses.FrozenInstanceError):
        orch.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        orch.stages[0].steps[2].options["sla"] = {}  # type: ignore[index]


def test_multi_document_file_keeps_each_source_and_line(tmp_path: Path) -> None:
    path = tmp_path / "cases.yaml"
    path.write_text(OBJECTS + "---\n" + CASE_TRIAGE)
    docs = load_definitions([path], known_flows=KNOWN_FLOWS)
    assert [(d.kind, d.name, d.line) for d in docs] == [
        ("object", "Account", 1),
        ("object", "Case", 6),
        ("orchestration", "case_triage", 16),
    ]
    assert docs[0].source == OBJECTS.split("---\n")[0]
    assert docs[1].source == OBJECTS.split("---\n")[1]
    assert docs[2].source == CASE_TRIAGE
    assert all(d.file == str(path) for d in docs)


def test_directory_load_is_recursive_and_sorted(project: Path) -> None:
    docs = load_definitions([str(project)], known_flows=KNOWN_FLOWS)
    assert [d.name for d in docs] == ["Account", "Case", "case_triage"]
    assert Path(docs[2].file).name == "case_triage.yml"
    assert docs[2].file.startswith(str(project))


def test_valid_definitions_give_no_issues(project: Path) -> None:
    docs, issues = check_definitions([project], known_flows=KNOWN_FLOWS)
    assert issues == []
    assert len(docs) == 3


def test_orchestration_may_use_deployed_object_types(tmp_path: Path) -> None:
    case = _case()
    path = tmp_path / "case_triage.yaml"
    path.write_text(CASE_TRIAGE)
    with pytest.raises(DefinitionError, match="unknown object type 'Case'"):
        load_definitions([path], known_flows=KNOWN_FLOWS)
    docs = load_definitions([path], known_flows=KNOWN_FLOWS, deployed_objects={"Case": case})
    assert docs[0].name == "case_triage"


def test_flows_are_not_checked_without_known_flows() -> None:
    docs = load_text(OBJECTS + "---\n" + CASE_TRIAGE.replace("cases.close", "cases.other"))
    assert len(docs) == 3
    with pytest.raises(DefinitionError, match="unknown flow 'cases.other'"):
        load_text(
            OBJECTS + "---\n" + CASE_TRIAGE.replace("cases.close", "cases.other"),
            known_flows=KNOWN_FLOWS,
        )


def test_other_triggers_conditions_and_options() -> None:
    text = """\
kind: orchestration
name: refund
trigger:
  type: autolaunched
  input:
    amount: {type: decimal, required: true}
    reason: {type: choice, choices: [yes, no, on, off]}
variables: {approved: false, note: '=not an expression'}
stages:
  - name: check
    exit_when: {flow: cases.close}
    max_iterations: 3
    steps:
      - name: approve
        type: interactive
        label: Approve the refund
        when: true
        complete_when: '=input.amount < 10.0'
        assign: {group: finance}
        instructions: Check the amount.
        on_failure: continue
        retry: {max: 3, backoff: exponential, initial: 500ms, max_delay: 1m, jitter: true}
        lane: billing
        run_as: '=vars.note'
      - {name: approved, type: milestone, after: [approve], when: false}
"""
    (doc,) = load_text(text, known_flows=KNOWN_FLOWS)
    orch = doc.definition
    assert isinstance(orch, OrchestrationDefinition)
    assert (
        orch.trigger.type == "autolaunched"
        and orch.trigger.object is None
        and orch.trigger.on == ()
    )
    # YAML 1.1 would turn yes/no/on/off into booleans; choices stay the words typed.
    assert orch.trigger.input[1].choices == ("yes", "no", "on", "off")
    assert orch.variables["note"] == "=not an expression"  # variables hold literals
    stage = orch.stages[0]
    assert stage.exit_when == Condition(flow="cases.close") and stage.max_iterations == 3
    approve, approved = stage.steps
    assert approve.when == Condition(expression="=true")
    assert approved.when == Condition(expression="=false")
    assert approve.assign == Assignment(AssigneeKind.GROUP, "finance")
    assert approve.on_failure == "continue" and approve.instructions == "Check the amount."
    assert set(approve.options) == {"retry", "lane", "run_as"}
    assert approve.options["retry"]["backoff"] == "exponential"


def test_schedule_trigger_and_update_event() -> None:
    schedule = load_text(
        "kind: orchestration\nname: nightly\ntrigger: {type: schedule, cron: '0 2 * * *'}\n"
        "stages: [{name: sweep}]\n"
    )[0].definition
    assert isinstance(schedule, OrchestrationDefinition)
    assert schedule.trigger.cron == "0 2 * * *"
    assert schedule.stages[0].steps == ()  # an empty stage is a pure decision point
    case = _case()
    update = load_text(
        "kind: orchestration\nname: changed\n"
        "trigger: {type: record, object: Case, on: update, when: '=record.level > old.level'}\n"
        "stages: [{name: s, steps: [{name: a, type: background, flow: cases.close}]}]\n",
        deployed_objects={"Case": case},
    )[0].definition
    assert isinstance(update, OrchestrationDefinition)
    assert update.trigger.on == ("update",)


def test_yaml_anchors_and_merge_keys() -> None:
    text = CASE_TRIAGE.replace(
        "      - {name: classify,   type: background, flow: cases.classify}",
        "      - &bg {name: classify, type: background, flow: cases.classify, retry: {max: 2}}",
    ).replace(
        "      - {name: find_agent, type: background, flow: cases.find_agent}",
        "      - {<<: *bg, name: find_agent, flow: cases.find_agent}",
    )
    docs = load_text(OBJECTS + "---\n" + text, known_flows=KNOWN_FLOWS)
    orch = docs[2].definition
    assert isinstance(orch, OrchestrationDefinition)
    find_agent = orch.stages[0].steps[1]
    assert (find_agent.name, find_agent.type, find_agent.flow) == (
        "find_agent",
        "background",
        "cases.find_agent",
    )
    assert find_agent.options["retry"] == {"max": 2}


def test_a_yaml_error_spares_the_other_documents(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "kind: object\nname: A\nfields: {x: {type: int}}\n---\nkind: [oops\n"
    )
    (tmp_path / "b.yaml").write_text("kind: object\nname: B\nfields: {y: {type: strng}}\n")
    docs, issues = check_definitions([tmp_path])
    assert [d.name for d in docs] == ["A"]  # the valid document is still built
    assert [(Path(i.file).name, i.line) for i in issues] == [("a.yaml", 6), ("b.yaml", 3)]
    assert issues[0].message.startswith("invalid YAML: ")
    assert issues[1].message == "unknown field type 'strng' (did you mean 'string'?)"


def test_issue_text_and_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(DefinitionError) as info:
        load_definitions([missing])
    assert str(info.value.issues[0]) == f"{missing} no such file or directory"
    with pytest.raises(DefinitionError) as info:
        load_text(
            CASE_TRIAGE.replace("after: [classify", "after: [clasify"),
            "cases.yaml",
            known_flows=KNOWN_FLOWS,
            deployed_objects={"Case": _case()},
        )
    assert [str(i) for i in info.value.issues] == [
        "cases.yaml:12 stages[0].steps[2].after: unknown step 'clasify' (did you mean 'classify'?)"
    ]


def test_a_control_character_is_a_located_issue_not_a_crash() -> None:
    from baton.definitions.loader import check_texts

    text = "kind: object\nname: Thing\nfields:\n  a: {type: string}\n---\nkind: object\nname: B\x01\n"
    _docs, issues = check_texts({"bad.yaml": text})
    assert [(i.file, i.line) for i in issues] == [("bad.yaml", 7)]
    assert "#x0001 is not allowed" in issues[0].message


def test_text_no_store_keeps_is_a_located_issue() -> None:
    """YAML's "\\0" and "\\ud800" escapes make a NUL and a lone surrogate: a choice holding
    one would be offered, then refused in every record (baton.storable), and PostgreSQL
    refuses them outright. Each is reported where it is."""
    from baton.definitions.loader import check_texts

    text = ('kind: object\nname: Thing\nlabel: "Th\\0ing"\nfields:\n'
            '  kind_of: {type: choice, choices: [ok, "b\\ud800"]}\n')
    _docs, issues = check_texts({"t.yaml": text})
    assert [(i.line, i.path, i.message) for i in issues] == [
        (3, "label", "must not contain NUL characters"),
        (5, "fields.kind_of.choices[1]", "is not valid Unicode text (lone surrogate)")]
