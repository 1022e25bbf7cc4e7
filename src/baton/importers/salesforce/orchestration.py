"""One ``Orchestrator`` or ``ApprovalWorkflow`` flow -> one Baton orchestration (a dict)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from baton.importers.salesforce.conditions import PERSON, Catalog, Scope, StepInfo
from baton.importers.salesforce.names import distinct, ident, stage_name
from baton.importers.salesforce.report import ImportReport
from baton.importers.salesforce.screens import ScreenFlows
from baton.importers.salesforce.steps import OUTPUT_ASSIGNMENTS, StepTranslator, step_kind
from baton.importers.salesforce.xmlread import Node

ORCHESTRATION_TYPES = frozenset({"Orchestrator", "ApprovalWorkflow"})
API_VERSIONS = range(52, 66)
IGNORED_TAGS = frozenset({
    "apiVersion", "label", "description", "processType", "status", "interviewLabel",
    "environments", "processMetadataValues", "start", "startElementReference", "variables",
    "orchestratedStages", "decisions", "constants", "runInMode", "areMetadataValuesDisabled",
    "isTemplate", "sourceTemplate", "fullName", "isAdditionalPermissionRequiredToRun",
    "triggerOrder", "migratedFromWorkflowRuleName", "timeZoneSidKey",
    "apexPluginCalls", "textTemplates",
})
STAGE_TAGS = frozenset({
    "name", "label", "description", "stageSteps", "connector", "exitConditionLogic",
    "exitConditions", "exitActionName", "exitActionType", "exitActionInputParameters",
    "exitActionOutputParameters", "locationX", "locationY", "processMetadataValues",
    "stageStepOutputParameters",
})
START_TAGS = frozenset({
    "connector", "object", "triggerType", "recordTriggerType", "filters", "filterLogic",
    "filterFormula", "doesRequireRecordChangedToMeetCriteria", "schedule", "locationX",
    "locationY",
})
"""What :meth:`OrchestrationTranslator.trigger` reads of ``start``; any other child (a
scheduled path, above all) is reported, not dropped."""
DECISION_TAGS = frozenset({
    "name", "label", "description", "rules", "defaultConnector", "defaultConnectorLabel",
    "locationX", "locationY", "processMetadataValues",
})
RULE_TAGS = frozenset({
    "name", "label", "description", "conditionLogic", "conditions", "connector",
    "doesRequireRecordChangedToMeetCriteria", "processMetadataValues",
})
"""What :meth:`OrchestrationTranslator.decision` reads of a decision and of its outcomes;
any other child is reported."""
APPROVAL_INPUTS = frozenset({"recordId", "submitter", "submissionComments"})
"""The input variables Salesforce requires of an ``ApprovalWorkflow`` flow."""
KINDS = {"orchestratedStages": "stage", "decisions": "decision", "stageSteps": "step"}
TRIGGER_ON = {"Create": ["create"], "Update": ["update"], "CreateAndUpdate": ["create", "update"]}
INPUT_TYPES = {"string": "string", "number": "decimal", "currency": "decimal",
               "boolean": "bool", "date": "date", "datetime": "datetime"}


def _filter_condition(f: Node) -> Node:
    """A start filter (``field``, ``operator``, ``value``) as the condition it stands for."""
    value = f.first("value")
    return Node("condition", f.line, children=[
        Node("leftValueReference", f.line, "$Record." + f.value("field")),
        Node("operator", f.line, f.value("operator")),
        *([Node("rightValue", f.line, children=value.children)] if value is not None else []),
    ])


def _target(node: Node | None) -> str:
    return node.value("targetReference") if node is not None else ""


class OrchestrationTranslator:
    def __init__(self, file: str, root: Node, api_name: str, report: ImportReport,
                 catalog: Catalog, screens: ScreenFlows) -> None:
        self.file, self.root, self.api_name = file, root, api_name
        self.report, self.catalog, self.screens = report, catalog, screens
        self.name = ident(api_name)
        self.scope = Scope(file, report, catalog, None)
        # stages and decisions by name; a second element of a name is left out (reported):
        # connectors name their target, so only one of them can be reached
        self.stages: dict[str, Node] = {}
        self.decisions: dict[str, Node] = {}
        self.duplicates: list[tuple[Node, Node]] = []  # (the one left out, the first)
        kept: list[Node] = []
        for c in root.children:
            if c.tag in ("orchestratedStages", "decisions"):
                first = self.stages.get(c.value("name")) or self.decisions.get(c.value("name"))
                if first is not None:
                    self.duplicates.append((c, first))
                    continue
                kept.append(c)
                (self.stages if c.tag == "orchestratedStages" else self.decisions)[
                    c.value("name")] = c
        self.kept = kept  # in the file's order
        self.stage_names = distinct((c.value("name") for c in kept), stage_name)
        self.left_out: set[int] = set()  # id() of the steps left out (a duplicate name)

    def cannot(self, line: int, construct: str, reason: str) -> None:
        self.report.cannot(self.file, line, construct, reason)

    def _duplicate(self, node: Node, first: Node) -> None:
        """``node`` has the name of ``first``: left out, reported."""
        name = node.value("name")
        steps = len(node.all("stageSteps"))
        self.cannot(node.line, f"{KINDS[node.tag]} {name}",
                    f"its name is that of the {KINDS[first.tag]} at line {first.line} (names "
                    "are unique in a flow): left out"
                    + (f" with its {steps} step(s)" if steps else ""))

    def _renamed(self, nodes: list[Node], names: dict[str, str],
                 to_baton: Callable[[str], str]) -> None:
        """Note each element whose Baton name is not its own (another had it first)."""
        had: dict[str, Node] = {}
        for node in nodes:
            sf_name = node.value("name")
            if names[sf_name] == to_baton(sf_name):
                had[names[sf_name]] = node
                continue
            first = had[to_baton(sf_name)]
            self.report.note(self.file, node.line, f"{KINDS[node.tag]} {sf_name}",
                             f"named {names[sf_name]}: {to_baton(sf_name)} is the Baton name "
                             f"of {KINDS[first.tag]} {first.value('name')} (line {first.line})")

    def translate(self) -> dict[str, Any]:
        root = self.root
        self._check_version()
        for child in root.children:
            if child.tag not in IGNORED_TAGS:
                self.cannot(child.line, f"element {child.tag} {child.value('name')}".strip(),
                            "not part of what an orchestration translates to (stages, steps, "
                            "decisions, variables, constants)")
        for node, first in self.duplicates:
            self._duplicate(node, first)
        self._renamed(self.kept, self.stage_names, stage_name)
        out: dict[str, Any] = {"kind": "orchestration", "name": self.name}
        label = root.value("label")
        if label:
            out["label"] = label
        if root.value("description"):
            out["description"] = root.value("description")
        trigger_node = root.first("start")
        out["trigger"] = self.trigger(trigger_node)
        variables = self.variables(out["trigger"])
        if variables:
            out["variables"] = variables
        self._know_steps()
        stages = self.stage_list(trigger_node)
        out["stages"] = stages
        self.report.ok(self.file, root.line, f"{root.value('processType')} flow {self.api_name}",
                       f"orchestration {self.name} ({len(stages)} stage(s))")
        return out

    def _check_version(self) -> None:
        text = self.root.value("apiVersion")
        node = self.root.first("apiVersion")
        try:
            version = int(float(text))
        except ValueError:
            version = 0
        if version not in API_VERSIONS:
            self.report.note(self.file, node.line if node is not None else self.root.line,
                             f"apiVersion {text or '(none)'}",
                             "outside the versions this importer knows (52 to 65): "
                             "translated as the nearest")

    # ---- trigger and variables ---------------------------------------------------------
    def trigger(self, start: Node | None) -> dict[str, Any]:
        if start is None:
            return {"type": "autolaunched"}
        self._start_extras(start)
        obj = start.value("object")
        trigger_type = start.value("triggerType")
        when_type = start.value("recordTriggerType")
        if trigger_type in ("PlatformEvent", "Scheduled") or start.first("schedule") is not None:
            self.cannot(start.line, f"start triggerType {trigger_type or 'Scheduled'}",
                        "not translated: the orchestration is started by hand (autolaunched)")
            return {"type": "autolaunched"}
        if not obj:
            self.report.ok(self.file, start.line, "start (autolaunched)",
                           "trigger type autolaunched")
            return {"type": "autolaunched"}
        object_type = self.catalog.object_names.name(obj, self.file, start.line)
        self.catalog.touch(object_type)
        self.scope.record_object = object_type
        if not when_type and not trigger_type:
            self.report.ok(self.file, start.line, f"start (autolaunched, object {obj})",
                           f"trigger type autolaunched, object {object_type}")
            return {"type": "autolaunched", "object": object_type}
        on = TRIGGER_ON.get(when_type or "Create")
        if on is None:
            self.cannot(start.line, f"start recordTriggerType {when_type}",
                        "not translated (Create, Update, CreateAndUpdate): started on create")
            on = ["create"]
        trigger: dict[str, Any] = {"type": "record", "object": object_type, "on": on}
        self.scope.old_allowed = "update" in on
        when = self.filters(start)
        self.scope.old_allowed = False
        if when is not None:
            trigger["when"] = "=" + when
        if start.flag("doesRequireRecordChangedToMeetCriteria"):
            if when is None:
                self.cannot(start.line, "start doesRequireRecordChangedToMeetCriteria",
                            "needs filter conditions: left out")
            else:
                trigger["changed_to_meet"] = True
        self.report.ok(self.file, start.line, f"start (record-triggered, {obj}, "
                       f"{when_type or 'Create'})",
                       f"record trigger on {object_type} {on}"
                       + (" with changed_to_meet" if trigger.get("changed_to_meet") else ""))
        return trigger

    def _start_extras(self, start: Node) -> None:
        """Report what the start has beyond its trigger: scheduled paths above all (a run
        of them would never happen in Baton, and nothing else says so)."""
        for child in start.children:
            if child.tag == "scheduledPaths":
                offset = " ".join(t for t in (child.value("offsetNumber"),
                                              child.value("offsetUnit")) if t)
                field = child.value("recordField")
                when = (f" ({offset} from {field or 'the trigger'})" if offset else "")
                self.cannot(child.line, f"start scheduled path {child.value('name')}{when}",
                            "scheduled paths are not translated: add a stage with a pause "
                            "step (`for: 3d`, or `at: '=record.field'`) on the path by hand")
            elif child.tag not in START_TAGS:
                self.cannot(child.line, f"start: {child.tag}", "not translated")

    def filters(self, start: Node) -> str | None:
        formula = start.first("filterFormula")
        if formula is not None and formula.text.strip():
            self.cannot(formula.line, "start filterFormula",
                        "formulas are not translated: write the trigger's when in CEL")
            return None
        filters = start.all("filters")
        if not filters or start.value("filterLogic").lower() == "no_conditions":
            return None
        return self.scope.logic([_filter_condition(f) for f in filters],
                                start.value("filterLogic"), start.line, "start filter")

    def variables(self, trigger: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        inputs: dict[str, Any] = {}
        for c in self.root.all("constants"):
            got = self.scope.value(c.first("value"), c.line, f"constant {c.value('name')}")
            if got is not None:
                self.scope.variables[c.value("name")] = got[0]
                self.report.ok(self.file, c.line, f"constant {c.value('name')}",
                               f"the literal {got[0]} where it is used")
        approval = self.root.value("processType") == "ApprovalWorkflow"
        for v in self.root.all("variables"):
            name, line = v.value("name"), v.line
            data_type = v.value("dataType").lower()
            if approval and name in APPROVAL_INPUTS and self._approval_input(v, trigger):
                continue
            if data_type in ("sobject", "apex"):
                self.cannot(line, f"variable {name} ({v.value('dataType')})",
                            "record and Apex variables are not translated")
                continue
            if v.flag("isInput") and trigger["type"] == "autolaunched":
                spec: dict[str, Any] = {"type": "json" if v.flag("isCollection")
                                        else INPUT_TYPES.get(data_type, "string")}
                inputs[ident(name)] = spec
                self.scope.variables[name] = f"input.{ident(name)}"
                self.report.ok(self.file, line, f"input variable {name}",
                               f"trigger input {ident(name)}")
                continue
            initial: Any = [] if v.flag("isCollection") else None
            value = v.first("value")
            if value is not None and value.value("elementReference"):
                if self._reference_default(v, value, out):
                    continue
            elif value is not None:
                got = self.scope.value(v.first("value"), line, f"variable {name}")
                initial = json.loads(got[0]) if got is not None and got[1] else initial
            out[ident(name)] = initial
            self.scope.variables[name] = f"vars.{ident(name)}"
            self.report.ok(self.file, line, f"variable {name}", f"variable {ident(name)}")
        if inputs:
            trigger["input"] = inputs
        return out

    def _reference_default(self, v: Node, value: Node, out: dict[str, Any]) -> bool:
        """A variable whose default is a reference (``$Record.Items__c``, a constant):
        Baton variables start as literals. A constant's literal is its initial value; any
        other reference is read where the flow reads the variable (``record.items``: the
        value then, not at the start), when no step's output sets the variable. True when
        the variable is dealt with (not a run variable, or reported)."""
        name, line = v.value("name"), v.line
        ref = value.first("elementReference")
        assert ref is not None
        text = ref.text.strip()
        construct = f"variable {name} = {text}"
        if name.lower() in self._assigned_variables():
            self.cannot(ref.line, construct, "a default read from a reference, of a variable a "
                        "step's output sets, is not translated (Baton variables start as "
                        f"literals): vars.{ident(name)} starts as null")
            return False
        got = self.scope.reference(text, ref.line, f"variable {name}")
        if got is None:
            self.cannot(ref.line, construct, f"its default was not translated: "
                        f"vars.{ident(name)} starts as null")
            return False
        try:
            literal = json.loads(got.cel)  # a constant: its literal
        except ValueError:
            self.scope.variables[name] = got.cel
            ftype = INPUT_TYPES.get(v.value("dataType").lower(), "")
            if got.owner is not None and ftype and not v.flag("isCollection"):
                # the variable's type is the field's (an inferred field gets it)
                self.catalog.add(self.report, *got.owner, ftype, None, self.file, ref.line)
            self.report.note(self.file, line, construct,
                             f"Baton variables start as literals: where the flow reads {name}, "
                             f"the orchestration reads {got.cel} (its value at that moment, "
                             "not at the start of the run); it is not a run variable "
                             "(flows do not see it in ctx.vars)")
            return True
        self.scope.variables[name] = f"vars.{ident(name)}"
        out[ident(name)] = literal
        self.report.ok(self.file, line, f"variable {name}",
                       f"variable {ident(name)} (initially {got.cel}, from {text})")
        return True

    def _assigned_variables(self) -> set[str]:
        """The variables (lower-case) a step's output is assigned to."""
        return {n.value("assignToReference").lower() for n in self.root.walk()
                if n.tag in OUTPUT_ASSIGNMENTS and n.value("assignToReference")}

    def _approval_input(self, v: Node, trigger: dict[str, Any]) -> bool:
        """The input variables every approval flow has (``recordId``, ``submitter``,
        ``submissionComments``): the record is the run's own (when the start names its
        object), the submitter is whoever starts the run (who may recall its approvals).
        True when the variable needs nothing more."""
        name = v.value("name")
        if name == "recordId" and trigger.get("object"):
            self.scope.variables[name] = "record.id"
            self.report.ok(self.file, v.line, f"approval input {name}",
                           "the run's record (record.id)")
            return True
        if name == "submitter":
            self.report.ok(self.file, v.line, f"approval input {name}",
                           "whoever starts the run (the run_started actor: who may recall "
                           "its approvals)" + (" and the trigger input submitter"
                                               if trigger["type"] == "autolaunched" else ""))
        return False

    # ---- stages and decisions ----------------------------------------------------------
    def _know_steps(self) -> None:
        """Every step of every stage, so conditions may name steps of any stage. A second
        step of a name is left out (reported); steps whose names read alike get distinct
        Baton names (step names are unique in an orchestration)."""
        seen: dict[str, Node] = {}
        known: list[tuple[Node, str, str]] = []  # (step, its kind, its stage)
        for sname, stage in self.stages.items():
            for step in stage.all("stageSteps"):
                first = seen.setdefault(step.value("name"), step)
                if first is not step:
                    self.left_out.add(id(step))
                    self._duplicate(step, first)
                    continue
                kind = step_kind(step)
                if kind is not None:
                    known.append((step, kind, sname))
        names = distinct((step.value("name") for step, _, _ in known), ident)
        self._renamed([step for step, _, _ in known], names, ident)
        for step, kind, sname in known:
            screen = step.value("actionName") if kind == PERSON else ""
            self.scope.steps[step.value("name")] = StepInfo(
                names[step.value("name")], kind, self.stage_names[sname], screen,
                self.screens.outputs(screen) if screen else None)

    def _order(self, start: Node | None) -> list[str]:
        """The elements reachable from the start: the start's first, then the others in
        the order the file has them (each stage says where it goes, so order is for readers)."""
        first = _target(start.first("connector")) if start is not None else ""
        first = first or self.root.value("startElementReference")
        reached: set[str] = set()
        todo = [first] if first else []
        while todo:
            name = todo.pop()
            if name in reached or (name not in self.stages and name not in self.decisions):
                continue
            reached.add(name)
            if name in self.stages:
                todo.append(_target(self.stages[name].first("connector")))
            else:
                d = self.decisions[name]
                todo += [_target(r.first("connector")) for r in d.all("rules")]
                todo.append(_target(d.first("defaultConnector")))
        rest = list(dict.fromkeys(c.value("name") for c in self.root.children
                                  if c.tag in ("orchestratedStages", "decisions")))
        return [first] + [n for n in rest if n in reached and n != first] if reached else []

    def stage_list(self, start: Node | None) -> list[dict[str, Any]]:
        order = self._order(start)
        for name, node in {**self.stages, **self.decisions}.items():
            if name not in order:
                self.cannot(node.line, f"{node.tag} {name}", "not reachable from the start: "
                            "left out")
        if not order:
            self.cannot(self.root.line, "orchestration", "no stage is connected to the start: "
                        "an empty stage stands in")
            return [{"name": "empty", "steps": []}]
        steps = StepTranslator(self.scope, self.name, self.screens)
        return [self.stage(self.stages[n], steps) if n in self.stages
                else self.decision(self.decisions[n]) for n in order]

    def _goto(self, target: str, line: int, where: str) -> str:
        if not target:
            return "end"
        if target in self.stages or target in self.decisions:
            return self.stage_names[target]
        self.cannot(line, f"{where} -> {target}", "connects to an element that is not a stage "
                    "or decision: the run ends there instead")
        return "end"

    def stage(self, node: Node, steps: StepTranslator) -> dict[str, Any]:
        sf_name = node.value("name")
        name = self.stage_names[sf_name]
        where = f"stage {sf_name}"
        for child in node.children:
            if child.tag not in STAGE_TAGS:
                self.cannot(child.line, f"{where}: {child.tag}", "not translated")
        out: dict[str, Any] = {"name": name}
        label = node.value("label")
        if label and label != sf_name:
            out["label"] = label
        if node.value("description"):
            out["description"] = node.value("description")
        mine = [s for s in node.all("stageSteps") if id(s) not in self.left_out]
        own = {s.value("name"): self.scope.steps[s.value("name")]
               for s in mine if s.value("name") in self.scope.steps}
        translated = [steps.step(s, own) for s in mine]
        out["steps"] = [s for s in translated if s is not None]
        conditions = node.all("exitConditions")
        exit_when: Any = None
        if conditions:
            cel = self.scope.logic(conditions, node.value("exitConditionLogic"), node.line,
                                   f"{where} exit")
            exit_when = None if cel is None else "=" + cel
        elif node.value("exitActionName"):
            exit_when = steps.evaluation(node, "exit", where, f"{name} stage")
        if exit_when is not None:
            out["exit_when"] = exit_when
            out["exit"] = "when_condition"
        connector = node.first("connector")
        out["next"] = [{"goto": self._goto(_target(connector), connector.line if connector
                                           else node.line, where)}]
        self.report.ok(self.file, node.line, where,
                       f"stage {name} ({len(out['steps'])} step(s)"
                       + (", exits when its condition holds" if exit_when is not None else "")
                       + ")")
        return out

    def decision(self, node: Node) -> dict[str, Any]:
        sf_name = node.value("name")
        name = self.stage_names[sf_name]
        where = f"decision {sf_name}"
        for child in node.children:
            if child.tag not in DECISION_TAGS:
                self.cannot(child.line, f"{where}: {child.tag}", "not translated")
        rules: list[dict[str, Any]] = []
        for rule in node.all("rules"):
            rwhere = f"{where} outcome {rule.value('name')}"
            for child in rule.children:
                if child.tag not in RULE_TAGS:
                    self.cannot(child.line, f"{rwhere}: {child.tag}", "not translated")
            changed = rule.first("doesRequireRecordChangedToMeetCriteria")
            cel = self.scope.logic(rule.all("conditions"), rule.value("conditionLogic"),
                                   rule.line, rwhere)
            when: str | bool = False if cel is None else "=" + cel
            if changed is not None and rule.flag("doesRequireRecordChangedToMeetCriteria"):
                when = False
                self.cannot(changed.line, f"{rwhere}: doesRequireRecordChangedToMeetCriteria",
                            "Baton sees the record as it was before the write only in the "
                            "trigger's condition, so \"only when the record is updated to meet "
                            "the conditions\" cannot be asked here: the outcome is kept with "
                            "when: false, never taken (move the condition into the trigger's "
                            "when with changed_to_meet, or write its when by hand)")
            elif cel is None:
                self.cannot(rule.line, rwhere, "its condition was not translated: the outcome "
                            "is kept with when: false, never taken (write its when by hand)")
            connector = rule.first("connector")
            entry: dict[str, Any] = {"when": when,
                                     "goto": self._goto(_target(connector), rule.line, rwhere)}
            entry["label"] = rule.value("label") or rule.value("name")
            rules.append(entry)
        default = node.first("defaultConnector")
        rules.append({"goto": self._goto(_target(default), node.line, f"{where} default"),
                      "label": node.value("defaultConnectorLabel") or "Default Outcome"})
        out: dict[str, Any] = {"name": name}
        label = node.value("label")
        if label and label != sf_name:
            out["label"] = label
        out["steps"] = []
        out["next"] = rules
        self.report.ok(self.file, node.line, where,
                       f"stage {name} without steps: a decision of {len(rules)} outcome(s)")
        return out

