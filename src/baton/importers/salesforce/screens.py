"""Screen flows -> the form (and instructions) of the interactive step that names them.

A step's ``Outputs.<name>`` are its screen flow's output variables (``isOutput``); each is
read as the form field an assignment of the flow sets it from (:meth:`ScreenFlows.outputs`).
Baton forms have literal defaults and fixed ``required``; they have no conditional fields,
no validation formulas and no choices whose value differs from their text: a screen field's
``visibilityRule`` and ``validationRule`` are reported (a field required only while shown is
not required), a choice's number value is kept as the label the form offers, mapped back in
the conditions that compare it (:meth:`.conditions.Scope._choice_test`).
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from baton.importers.salesforce.conditions import ScreenOutput
from baton.importers.salesforce.names import ident
from baton.importers.salesforce.report import ImportReport
from baton.importers.salesforce.xmlread import Node

INPUT_TYPES = {"string": "string", "number": "decimal", "currency": "decimal",
               "boolean": "bool", "date": "date", "datetime": "datetime"}
CHOICE_FIELDS = frozenset({"DropdownBox", "RadioButtons"})
CONTAINERS = frozenset({"RegionContainer", "Region"})
SUPPORTED = CHOICE_FIELDS | CONTAINERS | {"InputField", "LargeTextArea", "DisplayText"}
FIELD_TAGS = frozenset({
    "name", "fieldType", "fieldText", "dataType", "isRequired", "helpText", "scale",
    "choiceReferences", "defaultValue", "defaultSelectedChoiceReference", "validationRule",
    "visibilityRule", "fields",
})
"""What :meth:`ScreenFlows._field` reads of a screen field; another child is reported."""
LAYOUT_TAGS = frozenset({
    "regionContainerType", "styleProperties", "inputsOnNextNavToAssocScrn",
    "storeOutputAutomatically", "locationX", "locationY", "processMetadataValues",
})
"""How a field is laid out or kept when going back: nothing a Baton form has."""
CONTAINER_TAGS = frozenset({"inputParameters"})
"""A section's columns take their width as ``inputParameters``: layout too."""
FLOW_TAGS = frozenset({
    "apiVersion", "label", "description", "processType", "status", "interviewLabel",
    "environments", "processMetadataValues", "start", "startElementReference", "choices",
    "screens", "variables", "assignments", "runInMode", "areMetadataValuesDisabled",
    "isTemplate", "sourceTemplate", "fullName", "isAdditionalPermissionRequiredToRun",
    "timeZoneSidKey",
})
"""What a screen flow may hold beyond its screens: assignments are read for its outputs."""
DEFAULT_TAGS = {"stringValue": ("string", "text"), "numberValue": ("int", "decimal"),
                "booleanValue": ("bool",), "dateValue": ("date",),
                "dateTimeValue": ("datetime",)}


@dataclass
class Built:
    """One screen flow translated: its form, display texts, the Baton name of each field
    (by lower-case Salesforce name) and the number-valued choices of choice fields."""

    form: list[dict[str, Any]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, tuple[tuple[float, str], ...]] = field(default_factory=dict)


@dataclass
class ScreenFlows:
    """The screen flows given to the import, by API name, with the file each came from."""

    flows: dict[str, tuple[str, Node]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    reported: set[str] = field(default_factory=set)  # flows whose problems are reported

    def form(self, api_name: str, report: ImportReport, used_in: str, line: int
             ) -> tuple[list[dict[str, Any]], str] | None:
        """The form of screen flow ``api_name`` and its display texts, or ``None`` when the
        flow was not given. What it cannot translate is reported once per flow."""
        found = self.flows.get(api_name)
        if found is None:
            report.note(used_in, line, f"screen flow {api_name}",
                        "its XML was not given: the step has no form")
            return None
        self.used.add(api_name)
        file, root = found
        first = api_name not in self.reported
        self.reported.add(api_name)
        built = self._build(file, root, report if first else ImportReport())
        outputs = self.outputs(api_name) or {}
        shown = [f"{name} = {o.field}" for name, o in self._output_names(root, outputs)
                 if o.field is not None]
        report.ok(file, root.line, f"screen flow {api_name}",
                  f"form of {len(built.form)} field(s) on the step using it ({used_in}:{line})"
                  + (f"; outputs {', '.join(shown)}" if shown else ""))
        return built.form, "\n\n".join(built.texts)

    def outputs(self, api_name: str) -> dict[str, ScreenOutput] | None:
        """What ``Outputs.<name>`` reads of a step running screen flow ``api_name`` (by
        lower-case name), or ``None`` when the flow was not given. An output variable is
        the form field every assignment to it takes (``Assign`` of a screen field); one
        assigned otherwise, or never, maps to no field (``reason``). A field's own name
        reads it too."""
        found = self.flows.get(api_name)
        if found is None:
            return None
        file, root = found
        built = self._build(file, root, ImportReport())
        sources: dict[str, list[Node]] = {}
        for a in root.all("assignments"):
            for item in a.all("assignmentItems"):
                sources.setdefault(item.value("assignToReference").lower(), []).append(item)
        out: dict[str, ScreenOutput] = {}
        for v in root.all("variables"):
            if v.flag("isOutput"):
                out[v.value("name").lower()] = self._output(v, sources, built)
        for sf_name, name in built.names.items():
            out.setdefault(sf_name, ScreenOutput(name, choices=built.numbers.get(name, ())))
        return out

    @staticmethod
    def _output_names(root: Node, outputs: dict[str, ScreenOutput]
                      ) -> list[tuple[str, ScreenOutput]]:
        return [(v.value("name"), outputs[v.value("name").lower()])
                for v in root.all("variables") if v.flag("isOutput")
                and v.value("name").lower() in outputs]

    @staticmethod
    def _output(v: Node, sources: dict[str, list[Node]], built: Built) -> ScreenOutput:
        items = sources.get(v.value("name").lower(), [])
        if not items:
            return ScreenOutput(None, "is set by no assignment of a screen field"
                                + (" (it keeps its default)" if v.first("value") is not None
                                   else ""))
        refs: dict[str, str] = {}  # lower-case -> as written
        for item in items:
            value = item.first("value")
            ref = value.value("elementReference") if value is not None else ""
            if item.value("operator") != "Assign" or not ref:
                return ScreenOutput(None, f"is set at line {item.line} otherwise than by "
                                          "assigning it a screen field")
            refs.setdefault(ref.lower(), ref)
        if len(refs) > 1:
            return ScreenOutput(None, "is assigned from several elements ("
                                + ", ".join(sorted(refs.values())) + ")")
        [(key, ref)] = refs.items()
        name = built.names.get(key)
        if name is None:
            return ScreenOutput(None, f"is assigned from {ref}, which is not a field of the "
                                      "form")
        return ScreenOutput(name, choices=built.numbers.get(name, ()))

    # ---- the form -------------------------------------------------------------------
    def _build(self, file: str, root: Node, report: ImportReport) -> Built:
        for child in root.children:
            if child.tag not in FLOW_TAGS:
                report.cannot(file, child.line, f"screen flow element {child.tag} "
                              f"{child.value('name')}".strip(), "not translated: only the "
                              "screens become the step's form")
        choices = {c.value("name"): c for c in root.all("choices")}
        built = Built()
        for screen in root.all("screens"):
            for f in screen.all("fields"):
                self._field(f, file, report, choices, built, None)
        return built

    def _field(self, node: Node, file: str, report: ImportReport, choices: dict[str, Node],
               built: Built, shown_when: int | None) -> None:
        """One screen field into ``built``; ``shown_when``: the line of the visibility rule
        of a section around it, if any."""
        ftype = node.value("fieldType")
        name = node.value("name")
        if ftype not in SUPPORTED:
            report.cannot(file, node.line, f"screen field {name} fieldType {ftype}",
                          "not translated (supported: InputField, LargeTextArea, DropdownBox, "
                          "RadioButtons, DisplayText, sections)")
            return
        known = FIELD_TAGS | LAYOUT_TAGS | (CONTAINER_TAGS if ftype in CONTAINERS else set())
        for child in node.children:
            if child.tag not in known:
                report.cannot(file, child.line, f"screen field {name}: {child.tag}",
                              "not translated")
        rule = node.first("visibilityRule")
        if rule is not None:
            report.cannot(file, rule.line, f"screen field {name} visibilityRule "
                          f"({_conditions(rule)})", "Baton forms have no conditional fields: "
                          + ("the fields in it are" if ftype in CONTAINERS else "it is")
                          + " always shown")
            shown_when = rule.line
        if ftype in CONTAINERS:
            for child in node.all("fields"):
                self._field(child, file, report, choices, built, shown_when)
            return
        if ftype == "DisplayText":
            text = node.value("fieldText")
            if text:
                built.texts.append(_plain(text))
            return
        spec: dict[str, Any] = {"name": ident(name)}
        if ftype == "InputField":
            data_type = node.value("dataType").lower()
            base = INPUT_TYPES.get(data_type)
            if base is None:
                report.cannot(file, node.line, f"screen field {name} dataType "
                              f"{node.value('dataType')}", "not translated")
                return
            if data_type == "number" and node.value("scale") in ("", "0"):
                base = "int"
            spec["type"] = base
        elif ftype == "LargeTextArea":
            spec["type"] = "text"
        else:  # a choice field
            got = self._choices(node, file, report, choices)
            if got is None:
                return
            values, numbers = got
            spec["type"] = "choice"
            spec["choices"] = values
            if numbers:
                built.numbers[spec["name"]] = numbers
        required = node.first("isRequired")
        if required is not None and node.flag("isRequired"):
            if shown_when is None:
                spec["required"] = True
            else:
                report.cannot(file, required.line, f"screen field {name} isRequired",
                              f"Salesforce requires it only while it is shown (visibilityRule "
                              f"at line {shown_when}): not required in Baton, where it is "
                              "always shown")
        self._default(node, file, report, choices, spec)
        validation = node.first("validationRule")
        if validation is not None:
            report.cannot(file, validation.line, f"screen field {name} validationRule "
                          f"{validation.value('formulaExpression')!r}",
                          "not checked: Baton forms have no validation formulas (its message: "
                          f"{_plain(validation.value('errorMessage'))!r})")
        label = node.value("fieldText")
        if label:
            spec["label"] = _plain(label)
        if node.value("helpText"):
            spec["description"] = _plain(node.value("helpText"))
        built.form.append(spec)
        built.names[name.lower()] = spec["name"]

    def _default(self, node: Node, file: str, report: ImportReport, choices: dict[str, Node],
                 spec: dict[str, Any]) -> None:
        """``defaultValue`` (a literal of the field's type) and, of a choice field,
        ``defaultSelectedChoiceReference`` -> ``default``; anything else is reported."""
        name = node.value("name")
        selected = node.first("defaultSelectedChoiceReference")
        if selected is not None and spec["type"] == "choice":
            choice = choices.get(selected.text.strip())
            text = _choice_text(choice)[0] if choice is not None else ""
            if text in spec["choices"]:
                spec["default"] = text
            else:
                report.cannot(file, selected.line, f"screen field {name} default "
                              f"{selected.text.strip()}", "not one of its choices: no default")
        default = node.first("defaultValue")
        if default is None or not default.children:
            return
        value = default.children[0]
        text = value.text.strip()
        if value.tag == "elementReference":
            report.cannot(file, value.line, f"screen field {name} defaultValue {text}",
                          "a default read from the flow is not translated (Baton defaults "
                          "are literals): the field has none")
            return
        if spec["type"] not in DEFAULT_TAGS.get(value.tag, ()):
            report.cannot(file, value.line, f"screen field {name} defaultValue {value.tag} "
                          f"{text!r}", f"not a default of a {spec['type']} field: the field "
                          "has none")
            return
        literal: Any = text
        if value.tag == "numberValue":
            try:
                number = float(text)
            except ValueError:
                number = float("nan")
            if not math.isfinite(number) or (spec["type"] == "int"
                                             and not number.is_integer()):
                report.cannot(file, value.line, f"screen field {name} defaultValue {text!r}",
                              f"not a {spec['type']}: the field has none")
                return
            literal = int(number) if spec["type"] == "int" else number
        elif value.tag == "booleanValue":
            literal = text.lower() == "true"
        spec["default"] = literal

    def _choices(self, node: Node, file: str, report: ImportReport, choices: dict[str, Node]
                 ) -> tuple[list[str], tuple[tuple[float, str], ...]] | None:
        """The texts a choice field offers and, when its choices have number values, each
        value with its text (the form offers the label, conditions map the number to it)."""
        values: list[str] = []
        numbers: list[tuple[float, str]] = []
        for ref in node.all("choiceReferences"):
            choice = choices.get(ref.text.strip())
            if choice is None:
                report.cannot(file, ref.line, f"choice {ref.text.strip()}",
                              "not a choice of this flow (record or picklist choice sets are "
                              "not translated)")
                return None
            text, number, other = _choice_text(choice)
            if number is not None:
                numbers.append((number, text))
            elif other:
                report.cannot(file, choice.line, f"choice {choice.value('name')} value "
                              f"{other}", f"not kept: Baton choices are texts; the form offers "
                              f"{text!r} and the step's output is that text")
            if text and text not in values:
                values.append(text)
        if not values:
            report.cannot(file, node.line, f"screen field {node.value('name')}",
                          "a choice field without choices")
            return None
        if numbers:
            report.note(file, node.line, f"screen field {node.value('name')} choices",
                        "their values are numbers ("
                        + ", ".join(f"{_number(v)} for {t!r}" for v, t in numbers)
                        + "); Baton choices are texts: the form offers the labels and the "
                        "step's output is the label chosen (conditions comparing it with a "
                        "number are translated to the labels; a flow reading it gets the "
                        "label)")
        return values, tuple(numbers)


def _choice_text(choice: Node) -> tuple[str, float | None, str]:
    """A choice's text in a Baton form (its string value, else its label), its number value
    if it has one, and the tag of any other kind of value (not kept)."""
    value = choice.first("value")
    label = _plain(choice.value("choiceText"))
    kind = value.children[0] if value is not None and value.children else None
    if kind is None:
        return label, None, ""
    if kind.tag == "stringValue":
        return kind.text.strip() or label, None, ""
    if kind.tag == "numberValue":
        try:
            number = float(kind.text.strip())
        except ValueError:
            return label, None, f"numberValue {kind.text.strip()!r}"
        return label or _number(number), number, ""
    return label, None, f"{kind.tag} {kind.text.strip()!r}"


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _conditions(rule: Node) -> str:
    """A visibility rule as people read it: ``Outcome EqualTo "reject"`` (joined by its
    logic)."""
    parts = []
    for c in rule.all("conditions"):
        right = c.first("rightValue")
        value = right.children[0] if right is not None and right.children else None
        shown = "" if value is None else (
            value.text.strip() if value.tag != "stringValue"
            else json.dumps(value.text.strip(), ensure_ascii=False))
        parts.append(" ".join(t for t in (c.value("leftValueReference"), c.value("operator"),
                                          shown) if t))
    logic = rule.value("conditionLogic") or "and"
    joiner = f" {logic.upper()} " if logic.lower() in ("and", "or") else "; "
    text = joiner.join(parts)
    return text if logic.lower() in ("and", "or") else f"{text}; logic {logic}"


def _plain(text: str) -> str:
    """Screen texts are rich text (HTML-escaped): keep the words."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.unescape(text))).strip()
