"""Orchestrated stage steps -> Baton steps (background, interactive, approval).

A Salesforce approval step (``actionType`` ``stepApproval``, ``stepSubtype`` ``ApprovalStep``,
in flows of ``processType`` ``ApprovalWorkflow``) runs a screen flow for the approver whose
outputs ``approvalDecision`` (``Approve`` | ``Reject``) and ``approvalComments`` the
decisions after it read. It becomes ``type: approval``: Baton's fixed form (decision
approve | reject, comments) stands in for the screen flow, and its output ``decision`` and
``comments`` are what those references read (``conditions.APPROVAL_OUTPUTS``).
"""

from __future__ import annotations

import json
from typing import Any

from baton.importers.salesforce.conditions import APPROVAL, AUTOMATED, PERSON, Scope, StepInfo
from baton.importers.salesforce.names import flow_name, ident
from baton.importers.salesforce.screens import ScreenFlows
from baton.importers.salesforce.xmlread import Node
from baton.steps.approval import Approval
from baton.steps.background import Background
from baton.steps.interactive import Interactive

STEP_KINDS = {"stepBackground": AUTOMATED, "stepInteractive": PERSON, "createWorkItem": PERSON,
              "stepApproval": APPROVAL}
"""Salesforce step action types -> what the step becomes (``createWorkItem``: pilot, API 52)."""

STEP_TAGS = frozenset({
    "name", "label", "description", "actionName", "actionType", "assignees", "assignee",
    "assigneeType", "canAssigneeEdit", "entryConditionLogic", "entryConditions",
    "entryActionName", "entryActionType", "entryActionInputParameters", "exitConditionLogic",
    "exitConditions", "exitActionName", "exitActionType", "exitActionInputParameters",
    "inputParameters", "outputParameters", "requiresAsyncProcessing", "stepSubtype",
    "locationX", "locationY", "processMetadataValues", "entryActionOutputParameters",
    "exitActionOutputParameters", "outputConfigParams", "shouldLock", "runAsUser",
})
"""(``outputConfigParams`` only declares outputs: a Baton step keeps all of its output.
``shouldLock`` and ``runAsUser`` are checked by :meth:`StepTranslator.locks`.)"""
STEP_KEY_ORDER = ("name", "label", "description", "type", "after", "when", "flow", "assign",
                  "instructions", "form", "complete_when", "input")
OUTPUT_ASSIGNMENTS = frozenset({"outputParameters", "entryActionOutputParameters",
                                "exitActionOutputParameters"})
"""A step's outputs assigned to the flow's variables (``assignToReference``)."""
ASSIGNEE_KINDS = {"user": "user", "group": "group", "queue": "queue"}
RECORD_ID_INPUTS = frozenset({"recordid"})


def step_kind(node: Node) -> str | None:
    return STEP_KINDS.get(node.value("actionType"))


class StepTranslator:
    """Translates the steps of one orchestration; ``scope`` already knows every step."""

    def __init__(self, scope: Scope, orchestration: str, screens: ScreenFlows) -> None:
        self.scope = scope
        self.orchestration = orchestration
        self.screens = screens

    @property
    def file(self) -> str:
        return self.scope.file

    def cannot(self, line: int, construct: str, reason: str) -> None:
        self.scope.report.cannot(self.file, line, construct, reason)

    def step(self, node: Node, stage_steps: dict[str, StepInfo]) -> dict[str, Any] | None:
        sf_name = node.value("name")
        info = self.scope.steps.get(sf_name)
        where = f"step {sf_name}"
        if info is None:
            self.cannot(node.line, f"{where} actionType {node.value('actionType') or '(none)'}",
                        "only background, interactive and approval steps are translated "
                        "(stepBackground, stepInteractive, stepApproval, pilot createWorkItem)")
            return None
        for child in node.children:
            if child.tag not in STEP_TAGS:
                self.cannot(child.line, f"{where}: {child.tag}", "not translated")
            elif child.tag in OUTPUT_ASSIGNMENTS and child.value("assignToReference"):
                self.cannot(child.line, f"{where}: {child.tag} {child.value('name')} -> "
                            f"{child.value('assignToReference')}", "Baton steps do not set "
                            "the run's variables: conditions reading the variable see its "
                            f"initial value (read steps.{info.name}.output instead)")
        out: dict[str, Any] = {"name": info.name}
        label = node.value("label")
        if label and label != sf_name:
            out["label"] = label
        if node.value("description"):
            out["description"] = node.value("description")
        out["type"] = {AUTOMATED: Background.name, APPROVAL: Approval.name}.get(
            info.kind, Interactive.name)
        self.locks(node, where, info)
        action = node.value("actionName")
        if info.kind == AUTOMATED:
            if not action:
                self.cannot(node.line, f"{where}: actionName", "a background step names the "
                            "autolaunched flow it runs")
                return None
            out["flow"] = flow_name(action)
            self.scope.report.port(out["flow"], action, "autolaunched",
                                   f"{self.orchestration}.{info.name}")
        else:
            assign = self.assignee(node, where)
            out["assign"] = assign if assign is not None else {"queue": "salesforce_unassigned"}
            if info.kind == APPROVAL:
                self.scope.report.approval_steps.append(f"{self.orchestration}.{info.name}")
                out["instructions"] = (f"Approve or reject (Salesforce approval step "
                                       f"{label or sf_name}).")
                if action:
                    self.scope.report.note(
                        self.file, node.line, f"{where}: actionName {action}",
                        "the approver's screen flow is replaced by the approval form "
                        "(decision: approve | reject, comments); its other fields are not "
                        "asked")
            elif action:
                form = self.screens.form(action, self.scope.report, self.file, node.line)
                if form is not None:
                    out["form"], instructions = form
                    if instructions:
                        out["instructions"] = instructions
                else:
                    self.scope.report.next_steps.append(
                        f"Give the form of {self.orchestration}.{info.name}: the screen flow "
                        f"{action} was not among the imported files (import it with the "
                        "orchestration, or write `form:` by hand)")
        self.entry(node, out, where, stage_steps)
        self.exit(node, out, where, info)
        inputs = self.inputs(node.all("inputParameters"), where)
        if inputs:
            out["input"] = inputs
        out = {k: out[k] for k in STEP_KEY_ORDER if k in out}
        kind = f"{out['type']} step"
        self.scope.report.ok(self.file, node.line, where, f"{kind} {info.name}")
        return out

    def locks(self, node: Node, where: str, info: StepInfo) -> None:
        """``shouldLock`` and ``runAsUser``: a Baton approval locks its record while it is
        pending (against people, not the process) and no other step locks it; an approver
        decides as themselves, any other step's flow runs as the process."""
        lock = node.first("shouldLock")
        if lock is not None:
            wanted = node.flag("shouldLock")
            if info.kind == APPROVAL and not wanted:
                self.scope.report.note(self.file, lock.line, f"{where}: shouldLock false",
                                       "a Baton approval locks its record while it is pending "
                                       "all the same")
            elif info.kind != APPROVAL and wanted:
                self.cannot(lock.line, f"{where}: shouldLock true", "only an approval "
                            "step locks its record in Baton (while it is pending)")
        run_as = node.first("runAsUser")
        if run_as is not None and node.flag("runAsUser") and info.kind != APPROVAL:
            self.cannot(run_as.line, f"{where}: runAsUser true", "a step's flow runs as "
                        "the process in Baton, not as a user (an approver decides as "
                        "themselves)")

    # ---- assignee -------------------------------------------------------------------
    def assignee(self, node: Node, where: str) -> dict[str, str] | None:
        entries = [(a.first("assignee"), a.value("assigneeType"), a.line)
                   for a in node.all("assignees")]
        if node.first("assignee") is not None:  # pilot: one assignee on the step itself
            entries.append((node.first("assignee"), node.value("assigneeType"), node.line))
        if not entries:
            self.cannot(node.line, f"{where}: assignee", "none given: the work item is put "
                        "in the queue salesforce_unassigned")
            return None
        for _, _, line in entries[1:]:
            self.cannot(line, f"{where}: assignees", "a Baton work item has one assignee: "
                        "the first is kept (use a group or queue for several people)")
        value, kind_text, line = entries[0]
        kind = ASSIGNEE_KINDS.get(kind_text.strip().lower())
        if kind is None or value is None:
            self.cannot(line, f"{where}: assigneeType {kind_text!r}",
                        "expected User, Group or Queue")
            return None
        ref = value.first("elementReference")
        if ref is None:
            text = value.value("stringValue")
            if not text:
                self.cannot(line, f"{where}: assignee", "expected a stringValue or an "
                            "elementReference")
                return None
            return {kind: "=" + json.dumps(text) if text.startswith("=") else text}
        target = self.scope.reference(ref.text, ref.line, f"{where} assignee")
        if target is None:
            return None
        cel = target.cel
        if target.ref_object == "User":
            # a User lookup holds a record id; the work item needs the user's name
            cel += ".username"
            self.scope.catalog.add(self.scope.report, "User", "username", "string", None,
                                   self.file, ref.line)
            self.scope.report.note(self.file, ref.line, f"{where}: assignee {ref.text.strip()}",
                                   f"assigned to {cel}: the related User record's username "
                                   "(a related-record field)")
        elif target.owner is not None:
            self.scope.report.note(self.file, ref.line, f"{where}: assignee {ref.text.strip()}",
                                   f"assigned to the value of {cel}: it must hold a Baton "
                                   f"{kind} name")
        return {kind: "=" + cel}

    # ---- entry and exit ---------------------------------------------------------------
    def entry(self, node: Node, out: dict[str, Any], where: str,
              stage_steps: dict[str, StepInfo]) -> None:
        conditions = node.all("entryConditions")
        if conditions:
            after = self._after(conditions, node.value("entryConditionLogic"), stage_steps)
            if after is not None:
                out["after"] = after
                return
            cel = self.scope.logic(conditions, node.value("entryConditionLogic"), node.line,
                                   f"{where} entry")
            if cel is not None:
                out["when"] = "=" + cel
        elif node.value("entryActionName"):
            out["when"] = self.evaluation(node, "entry", where, out["name"])

    def _after(self, conditions: list[Node], logic: str, stage_steps: dict[str, StepInfo]
               ) -> list[str] | None:
        """Entry conditions that only say "these steps of this stage are completed"."""
        if (logic or "and").strip().lower() != "and":
            return None
        names: list[str] = []
        for c in conditions:
            left, _, attr = c.value("leftValueReference").partition(".")
            right = c.first("rightValue")
            value = right.value("stringValue") if right is not None else ""
            if (left not in stage_steps or attr.lower() != "status"
                    or c.value("operator") != "EqualTo" or value.lower() != "completed"):
                return None
            names.append(stage_steps[left].name)
        return names

    def exit(self, node: Node, out: dict[str, Any], where: str, info: StepInfo) -> None:
        conditions = node.all("exitConditions")
        if not conditions and not node.value("exitActionName"):
            return
        if info.kind == AUTOMATED:
            self.cannot(node.line, f"{where}: exit criteria", "a background step completes "
                        "when its flow returns; exit criteria are not translated for it")
            return
        if conditions:
            cel = self.scope.logic(conditions, node.value("exitConditionLogic"), node.line,
                                   f"{where} exit")
            if cel is not None:
                out["complete_when"] = "=" + cel
        else:
            out["complete_when"] = self.evaluation(node, "exit", where, out["name"])

    def evaluation(self, node: Node, which: str, where: str, used: str) -> dict[str, Any]:
        """``entryActionName``/``exitActionName``: an evaluation flow with its inputs."""
        action = node.value(f"{which}ActionName")
        name = flow_name(action)
        cond: dict[str, Any] = {"flow": name}
        inputs = self.inputs(node.all(f"{which}ActionInputParameters"), f"{where} {which}")
        if inputs:
            cond["input"] = inputs
        self.scope.report.port(name, action, "evaluation",
                               f"{self.orchestration}.{used} ({which} condition)")
        return cond

    def inputs(self, params: list[Node], where: str) -> dict[str, Any]:
        """Input parameters -> an ``input:`` mapping (``recordId`` = ``$Record.Id`` is the
        run's own record, which every Baton flow has as ``ctx.record``: left out)."""
        out: dict[str, Any] = {}
        for p in params:
            pname = p.value("name")
            value = p.first("value")
            ref = value.value("elementReference") if value is not None else ""
            if pname.lower() in RECORD_ID_INPUTS and (
                    ref == "$Record.Id" or self.scope.variables.get(ref) == "record.id"):
                continue
            got = self.scope.value(value, p.line, f"{where} input {pname}")
            if got is None:
                continue
            text, vtype = got
            if value is not None and value.first("elementReference") is not None:
                out[ident(pname)] = "=" + text
            elif vtype == "string":
                literal = json.loads(text)
                out[ident(pname)] = "=" + text if literal.startswith("=") else literal
            else:
                out[ident(pname)] = json.loads(text) if vtype != "decimal" else float(text)
        return out
