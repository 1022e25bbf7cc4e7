"""Salesforce importer: what an audit found translated wrongly or dropped silently.

Screen flow output variables (D1), screen field visibility, validation and defaults (D2),
variables initialised from a reference (D3), an outcome's "only when the record is updated
to meet the conditions" (D4), choices with number values (D5). Each imports small flows
from XML (pure: no database) and checks the definitions (valid for ``baton validate``) and
the report: what is not translated is named with its file and line.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import yaml

from baton.definitions.loader import check_definitions
from baton.expressions.cel import evaluate_condition
from baton.importers.salesforce import ImportReport, import_salesforce


def flow(body: str, process: str = "Orchestrator") -> str:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<Flow xmlns="http://soap.sforce.com/2006/04/metadata">\n'
            "    <apiVersion>62.0</apiVersion>\n    <label>T</label>\n"
            f"    <processType>{process}</processType>\n"
            + textwrap.indent(textwrap.dedent(body).strip("\n"), "    ") + "\n</Flow>\n")


def screen_flow(fields: str, extra: str = "") -> str:
    return flow(f"""
    <choices><name>Approve_Choice</name><choiceText>Approve</choiceText>
        <dataType>String</dataType><value><stringValue>approve</stringValue></value></choices>
    <choices><name>Reject_Choice</name><choiceText>Reject</choiceText>
        <dataType>String</dataType><value><stringValue>reject</stringValue></value></choices>
    <choices><name>Low</name><choiceText>Low risk</choiceText><dataType>Number</dataType>
        <value><numberValue>1.0</numberValue></value></choices>
    <choices><name>Mid</name><choiceText>Some risk</choiceText><dataType>Number</dataType>
        <value><numberValue>2.0</numberValue></value></choices>
    <choices><name>High</name><choiceText>High risk</choiceText><dataType>Number</dataType>
        <value><numberValue>3.0</numberValue></value></choices>
    <screens>
        <name>S</name><label>S</label>
        {fields}
    </screens>
    {extra}
    <start><connector><targetReference>S</targetReference></connector></start>
    """, process="Flow")


OUTCOME = """<fields><name>Outcome</name><choiceReferences>Approve_Choice</choiceReferences>
    <choiceReferences>Reject_Choice</choiceReferences><dataType>String</dataType>
    <fieldText>Outcome</fieldText><fieldType>RadioButtons</fieldType>
    <isRequired>true</isRequired></fields>"""


def output_var(name: str, *sources: str) -> str:
    """An output variable ``name`` and an assignment of it from each source."""
    items = "".join(f"<assignmentItems><assignToReference>{name}</assignToReference>"
                    f"<operator>Assign</operator><value>{s}</value></assignmentItems>"
                    for s in sources)
    return (f"<assignments><name>Set_{name}</name><label>Set</label>{items}</assignments>"
            if sources else "") + (
        f"<variables><name>{name}</name><dataType>String</dataType>"
        "<isCollection>false</isCollection><isInput>false</isInput>"
        "<isOutput>true</isOutput></variables>")


def orchestration(conditions: str, *, variables: str = "", step_extra: str = "",
                  handle_when: str = "", rule_extra: str = "") -> str:
    """Review (a screen flow) then the decision Route: its outcome Go (``conditions``) goes
    to Manager, else Handle; Handle's step may have an entry condition."""
    entry = (f"<entryConditionLogic>and</entryConditionLogic><entryConditions>{handle_when}"
             "</entryConditions>") if handle_when else ""
    return flow(f"""
    {variables}
    <start>
        <connector><targetReference>Intake</targetReference></connector>
        <object>Case</object><recordTriggerType>CreateAndUpdate</recordTriggerType>
        <triggerType>RecordAfterSave</triggerType>
    </start>
    <orchestratedStages>
        <name>Intake</name><label>Intake</label>
        <connector><targetReference>Route</targetReference></connector>
        <stageSteps>
            <name>Review</name><label>Review</label><actionName>Review_Screen</actionName>
            <actionType>stepInteractive</actionType>
            <assignees><assignee><stringValue>agents</stringValue></assignee>
                <assigneeType>Queue</assigneeType></assignees>
            {step_extra}
        </stageSteps>
    </orchestratedStages>
    <decisions>
        <name>Route</name><label>Route</label>
        <defaultConnector><targetReference>Handle</targetReference></defaultConnector>
        <rules>
            <name>Go</name><label>Go</label><conditionLogic>and</conditionLogic>
            {conditions}
            <connector><targetReference>Manager</targetReference></connector>
            {rule_extra}
        </rules>
    </decisions>
    <orchestratedStages>
        <name>Manager</name><label>Manager</label>
        <connector><targetReference>Handle</targetReference></connector>
        <stageSteps><name>Notify</name><label>Notify</label><actionName>Notify_Mgr</actionName>
            <actionType>stepBackground</actionType></stageSteps>
    </orchestratedStages>
    <orchestratedStages>
        <name>Handle</name><label>Handle</label>
        <stageSteps><name>Pay</name><label>Pay</label><actionName>Pay_It</actionName>
            <actionType>stepBackground</actionType>{entry}</stageSteps>
    </orchestratedStages>
    """)


def cond(left: str, op: str, right: str) -> str:
    return (f"<conditions><leftValueReference>{left}</leftValueReference>"
            f"<operator>{op}</operator><rightValue>{right}</rightValue></conditions>")


def run_import(tmp_path: Path, files: dict[str, str]
               ) -> tuple[ImportReport, dict[str, Any], Path]:
    src = tmp_path / "src"
    src.mkdir(parents=True)
    for name, text in files.items():
        (src / f"{name}.flow-meta.xml").write_text(text)
    out = tmp_path / "out"
    report = import_salesforce([src], out)
    docs = {d["name"]: d for f in sorted((out / "definitions").glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text())}
    _, issues = check_definitions([out / "definitions"], known_flows=None)
    assert [str(i) for i in issues if i.level == "error"] == [], report.to_text()
    return report, docs, out


def stage(docs: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in docs["t"]["stages"] if s["name"] == name)


def review_form(docs: dict[str, Any]) -> list[dict[str, Any]]:
    return {s["name"]: s for s in stage(docs, "intake")["steps"]}["review"]["form"]


def untranslated(report: ImportReport) -> list[tuple[str, int, str]]:
    return [(Path(u.file).name, u.line, u.construct) for u in report.untranslated]


def line_of(text: str, needle: str, nth: int = 1) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    return lines[nth - 1]


# ---- D1: a screen flow's output variables ------------------------------------------------
def test_an_output_variable_reads_the_form_field_it_is_assigned_from(tmp_path: Path) -> None:
    screen = screen_flow(OUTCOME, output_var("reviewOutcome",
                                             "<elementReference>Outcome</elementReference>"))
    report, docs, _ = run_import(tmp_path, {
        "Review_Screen": screen,
        "T": orchestration(cond("Review.Outputs.reviewOutcome", "EqualTo",
                                "<stringValue>approve</stringValue>"))})
    assert report.untranslated == [], report.to_text()
    go = stage(docs, "route")["next"][0]
    assert go["when"] == '=steps.review.output.outcome == "approve"'
    assert [f["name"] for f in review_form(docs)] == ["outcome"]
    assert evaluate_condition(go["when"], {"steps": {"review": {"output": {
        "outcome": "approve"}}}}) is True
    assert any("outputs reviewOutcome = outcome" in t.became for t in report.translated)


def test_an_output_the_form_cannot_hold_is_reported_not_guessed(tmp_path: Path) -> None:
    """Not an output of the screen flow; assigned from two fields; from a literal: the
    outcome is reported and never taken (when: false), not read from a missing field."""
    notes = ("<fields><name>Notes</name><dataType>String</dataType><fieldText>N</fieldText>"
             "<fieldType>InputField</fieldType></fields>")
    screen = screen_flow(OUTCOME + notes,
                         output_var("both", "<elementReference>Outcome</elementReference>",
                                    "<elementReference>Notes</elementReference>")
                         + output_var("fixed", "<stringValue>x</stringValue>")
                         + output_var("unset"))
    for ref, why in [("nothing", "has no output variable (nor field) nothing"),
                     ("both", "is assigned from several elements (Notes, Outcome)"),
                     ("fixed", "otherwise than by assigning it a screen field"),
                     ("unset", "is set by no assignment of a screen field")]:
        orch = orchestration(cond(f"Review.Outputs.{ref}", "EqualTo",
                                  "<stringValue>approve</stringValue>"))
        report, docs, _ = run_import(tmp_path / ref, {"Review_Screen": screen, "T": orch})
        first, left_out = report.untranslated
        assert why in first.reason, first
        assert (first.line, left_out.line) == (line_of(orch, "<leftValueReference>"),
                                                line_of(orch, "<rules>"))
        assert "never taken" in left_out.reason
        assert stage(docs, "route")["next"][0] == {"when": False, "goto": "manager",
                                                   "label": "Go"}


def test_a_field_named_in_outputs_still_reads_the_field(tmp_path: Path) -> None:
    report, docs, _ = run_import(tmp_path, {
        "Review_Screen": screen_flow(OUTCOME),
        "T": orchestration(cond("Review.Outputs.Outcome", "EqualTo",
                                "<stringValue>reject</stringValue>"))})
    assert report.untranslated == []
    assert stage(docs, "route")["next"][0]["when"] == '=steps.review.output.outcome == "reject"'


def test_an_output_of_a_screen_flow_not_given_is_a_caveat(tmp_path: Path) -> None:
    report, docs, _ = run_import(tmp_path, {"T": orchestration(cond(
        "Review.Outputs.reviewOutcome", "EqualTo", "<stringValue>approve</stringValue>"))})
    assert stage(docs, "route")["next"][0]["when"] == \
        '=steps.review.output.review_outcome == "approve"'
    assert any("Review_Screen was not given" in n.reason and "review_outcome" in n.reason
               for n in report.notes), report.to_text()


# ---- D2: visibility, validation, defaults, unknown tags -----------------------------------
def test_visibility_validation_and_defaults_of_screen_fields(tmp_path: Path) -> None:
    reason = """<fields><name>Reject_Reason</name><dataType>String</dataType>
        <fieldText>Why rejected</fieldText><fieldType>InputField</fieldType>
        <isRequired>true</isRequired>
        <visibilityRule><conditionLogic>and</conditionLogic><conditions>
            <leftValueReference>Outcome</leftValueReference><operator>EqualTo</operator>
            <rightValue><stringValue>reject</stringValue></rightValue></conditions>
        </visibilityRule></fields>"""
    hours = """<fields><name>Hours</name><dataType>Number</dataType><fieldText>Hours</fieldText>
        <fieldType>InputField</fieldType><scale>0</scale>
        <defaultValue><numberValue>1</numberValue></defaultValue>
        <validationRule><errorMessage>At most 40</errorMessage>
            <formulaExpression>{!Hours} &lt;= 40</formulaExpression></validationRule></fields>"""
    section = """<fields><name>Sec</name><fieldType>RegionContainer</fieldType>
        <regionContainerType>SectionWithoutHeader</regionContainerType>
        <visibilityRule><conditionLogic>or</conditionLogic><conditions>
            <leftValueReference>Outcome</leftValueReference><operator>EqualTo</operator>
            <rightValue><stringValue>approve</stringValue></rightValue></conditions>
        </visibilityRule>
        <fields><name>Col</name><fieldType>Region</fieldType>
            <inputParameters><name>width</name><value><stringValue>12</stringValue></value>
            </inputParameters>
            <fields><name>Rate</name><dataType>Currency</dataType><fieldText>Rate</fieldText>
                <fieldType>InputField</fieldType><isRequired>true</isRequired><scale>2</scale>
                <defaultValue><elementReference>$Record.Rate__c</elementReference></defaultValue>
            </fields>
        </fields></fields>"""
    plain = """<fields><name>Vip</name><dataType>Boolean</dataType><fieldText>VIP</fieldText>
        <fieldType>InputField</fieldType><isReadOnly>true</isReadOnly>
        <defaultValue><booleanValue>true</booleanValue></defaultValue></fields>
        <fields><name>Pick</name><choiceReferences>Approve_Choice</choiceReferences>
        <choiceReferences>Reject_Choice</choiceReferences><dataType>String</dataType>
        <defaultSelectedChoiceReference>Reject_Choice</defaultSelectedChoiceReference>
        <fieldText>Pick</fieldText><fieldType>DropdownBox</fieldType></fields>
        <fields><name>Note</name><dataType>String</dataType><fieldText>Note</fieldText>
        <fieldType>InputField</fieldType>
        <defaultValue><numberValue>3</numberValue></defaultValue></fields>"""
    update = ("<recordUpdates><name>Save</name><label>Save</label>"
              "<inputReference>rec</inputReference></recordUpdates>")
    screen = screen_flow(OUTCOME + reason + hours + section + plain, update)
    report, docs, _ = run_import(tmp_path, {"Review_Screen": screen, "T": orchestration(
        cond("Review.Outputs.Outcome", "EqualTo", "<stringValue>x</stringValue>"))})
    form = {f["name"]: f for f in review_form(docs)}
    assert "required" not in form["reject_reason"] and "required" not in form["rate"]
    assert form["outcome"]["required"] is True
    assert form["hours"]["default"] == 1 and form["vip"]["default"] is True
    assert form["pick"]["default"] == "reject"
    assert "default" not in form["rate"] and "default" not in form["note"]
    f = "Review_Screen.flow-meta.xml"
    assert untranslated(report) == [
        (f, line_of(screen, "<recordUpdates>"), "screen flow element recordUpdates Save"),
        (f, line_of(screen, "<visibilityRule>"),
         'screen field Reject_Reason visibilityRule (Outcome EqualTo "reject")'),
        (f, line_of(screen, "<isRequired>true", 2), "screen field Reject_Reason isRequired"),
        (f, line_of(screen, "<validationRule>"),
         "screen field Hours validationRule '{!Hours} <= 40'"),
        (f, line_of(screen, "<visibilityRule>", 2),
         'screen field Sec visibilityRule (Outcome EqualTo "approve")'),
        (f, line_of(screen, "<isRequired>true", 3), "screen field Rate isRequired"),
        (f, line_of(screen, "$Record.Rate__c"), "screen field Rate defaultValue $Record.Rate__c"),
        (f, line_of(screen, "<isReadOnly>"), "screen field Vip: isReadOnly"),
        (f, line_of(screen, "<numberValue>3<"), "screen field Note defaultValue numberValue '3'"),
    ], report.to_text()
    by = {u.construct: u.reason for u in report.untranslated}
    assert "always shown" in by['screen field Reject_Reason visibilityRule (Outcome EqualTo '
                                '"reject")']
    assert "only while it is shown" in by["screen field Reject_Reason isRequired"]
    assert "At most 40" in by["screen field Hours validationRule '{!Hours} <= 40'"]


def test_a_screen_flow_used_twice_is_reported_once(tmp_path: Path) -> None:
    bad = ("<fields><name>Hours</name><dataType>Number</dataType><fieldText>H</fieldText>"
           "<fieldType>InputField</fieldType><validationRule><errorMessage>no</errorMessage>"
           "<formulaExpression>false</formulaExpression></validationRule></fields>")
    orch = orchestration(cond("Review.Outputs.Outcome", "EqualTo",
                              "<stringValue>x</stringValue>")).replace(
        "<stageSteps><name>Notify</name><label>Notify</label><actionName>Notify_Mgr</actionName>"
        "\n            <actionType>stepBackground</actionType></stageSteps>",
        "<stageSteps><name>Again</name><label>Again</label><actionName>Review_Screen"
        "</actionName><actionType>stepInteractive</actionType><assignees><assignee>"
        "<stringValue>agents</stringValue></assignee><assigneeType>Queue</assigneeType>"
        "</assignees></stageSteps>")
    assert "<name>Again</name>" in orch
    report, docs, _ = run_import(tmp_path, {"Review_Screen": screen_flow(OUTCOME + bad),
                                            "T": orch})
    assert [u.construct for u in report.untranslated] == [
        "screen field Hours validationRule 'false'"]
    assert len(stage(docs, "manager")["steps"][0]["form"]) == 2


# ---- D3: a variable initialised from a reference ------------------------------------------
def test_a_variable_initialised_from_the_record_reads_the_record(tmp_path: Path) -> None:
    variables = """<variables><name>Tier</name><dataType>Number</dataType>
        <isCollection>false</isCollection><isInput>false</isInput><isOutput>false</isOutput>
        <scale>0</scale><value><elementReference>$Record.Items__c</elementReference></value>
    </variables>
    <constants><name>Limit</name><dataType>Number</dataType>
        <value><numberValue>4</numberValue></value></constants>
    <variables><name>Cap</name><dataType>Number</dataType><isCollection>false</isCollection>
        <isInput>false</isInput><isOutput>false</isOutput><scale>0</scale>
        <value><elementReference>Limit</elementReference></value></variables>"""
    orch = orchestration(cond("Review.Status", "EqualTo", "<stringValue>Completed</stringValue>"),
                         variables=variables,
                         handle_when="<leftValueReference>Tier</leftValueReference><operator>"
                         "GreaterThanOrEqualTo</operator><rightValue><elementReference>Cap"
                         "</elementReference></rightValue>")
    report, docs, _ = run_import(tmp_path, {"T": orch})
    assert docs["t"]["variables"] == {"cap": 4}
    pay = stage(docs, "handle")["steps"][0]
    assert pay["when"] == "=record.items >= vars.cap"
    [note] = [n for n in report.notes if n.construct == "variable Tier = $Record.Items__c"]
    assert "record.items" in note.reason and note.line == line_of(orch, "<name>Tier<")
    assert report.untranslated == [], report.to_text()


def test_a_variable_a_step_output_sets_is_reported(tmp_path: Path) -> None:
    variables = """<variables><name>Tier</name><dataType>Number</dataType>
        <isCollection>false</isCollection><isInput>false</isInput><isOutput>false</isOutput>
        <scale>0</scale><value><elementReference>$Record.Items__c</elementReference></value>
    </variables>"""
    out = ("<outputParameters><name>tier</name><assignToReference>Tier</assignToReference>"
           "</outputParameters>")
    orch = orchestration(cond("Review.Status", "EqualTo", "<stringValue>Completed</stringValue>"),
                         variables=variables, step_extra=out,
                         handle_when="<leftValueReference>Tier</leftValueReference><operator>"
                         "GreaterThan</operator><rightValue><numberValue>0</numberValue>"
                         "</rightValue>")
    report, docs, _ = run_import(tmp_path, {"T": orch})
    assert docs["t"]["variables"] == {"tier": None}
    assert untranslated(report) == [
        ("T.flow-meta.xml", line_of(orch, "$Record.Items__c"), "variable Tier = $Record.Items__c"),
        ("T.flow-meta.xml", line_of(orch, "<outputParameters>"),
         "step Review: outputParameters tier -> Tier"),
    ]


# ---- D4: doesRequireRecordChangedToMeetCriteria on an outcome -----------------------------
def test_an_outcome_that_needs_the_record_changed_is_reported(tmp_path: Path) -> None:
    orch = orchestration(
        cond("$Record.Items__c", "GreaterThan", "<numberValue>5</numberValue>"),
        rule_extra="<doesRequireRecordChangedToMeetCriteria>true"
                   "</doesRequireRecordChangedToMeetCriteria><color>red</color>")
    report, docs, _ = run_import(tmp_path, {"T": orch})
    assert untranslated(report) == [
        ("T.flow-meta.xml", line_of(orch, "<color>"), "decision Route outcome Go: color"),
        ("T.flow-meta.xml", line_of(orch, "<doesRequire"),
         "decision Route outcome Go: doesRequireRecordChangedToMeetCriteria"),
    ]
    # never taken, as good as left out, but the stage it goes to stays reachable
    assert stage(docs, "route")["next"][0] == {"when": False, "goto": "manager", "label": "Go"}


def test_an_outcome_not_requiring_a_change_is_translated(tmp_path: Path) -> None:
    report, docs, _ = run_import(tmp_path, {"T": orchestration(
        cond("$Record.Items__c", "GreaterThan", "<numberValue>5</numberValue>"),
        rule_extra="<doesRequireRecordChangedToMeetCriteria>false"
                   "</doesRequireRecordChangedToMeetCriteria>")})
    assert report.untranslated == []
    assert stage(docs, "route")["next"][0]["when"] == "=record.items > 5"


# ---- D5: choices with number values -------------------------------------------------------
RISK = """<fields><name>Risk</name><choiceReferences>Low</choiceReferences>
    <choiceReferences>Mid</choiceReferences><choiceReferences>High</choiceReferences>
    <dataType>Number</dataType><fieldText>Risk</fieldText><fieldType>RadioButtons</fieldType>
    <isRequired>true</isRequired></fields>"""


def test_number_choices_offer_their_labels_and_conditions_map_the_numbers(
        tmp_path: Path) -> None:
    screen = screen_flow(RISK, output_var("riskScore", "<elementReference>Risk</elementReference>"))
    for op, number, cel, holds in [
        ("EqualTo", "3", '== "High risk"', ["High risk"]),
        ("GreaterThanOrEqualTo", "2.0", 'in ["Some risk", "High risk"]', ["Some risk", "High risk"]),
        ("LessThan", "2", '== "Low risk"', ["Low risk"]),
        ("NotEqualTo", "1", '!(steps.review.output.risk in ["Low risk"])',
         ["Some risk", "High risk", None]),
        ("GreaterThan", "7", "in []", []),
    ]:
        report, docs, _ = run_import(tmp_path / op, {"Review_Screen": screen, "T": orchestration(
            cond("Review.Outputs.riskScore", op, f"<numberValue>{number}</numberValue>"))})
        assert report.untranslated == [], report.to_text()
        when = stage(docs, "route")["next"][0]["when"]
        assert when.endswith(cel) and "steps.review.output.risk" in when, when
        for label in ("Low risk", "Some risk", "High risk", None):
            data = {"steps": {"review": {"output": {"risk": label}}}}
            assert evaluate_condition(when, data) is (label in holds), (op, label)
    [form] = review_form(docs)
    assert form["choices"] == ["Low risk", "Some risk", "High risk"]
    [note] = [n for n in report.notes if "Risk choices" in n.construct]
    assert "1 for 'Low risk'" in note.reason and note.line == line_of(screen, "<name>Risk<")


def test_number_choices_compared_with_text_are_reported(tmp_path: Path) -> None:
    screen = screen_flow(RISK)
    report, _, _ = run_import(tmp_path, {"Review_Screen": screen, "T": orchestration(
        cond("Review.Outputs.Risk", "EqualTo", "<stringValue>3</stringValue>"))})
    assert "only a comparison with a number" in report.untranslated[0].reason
    assert "never taken" in report.untranslated[1].reason
