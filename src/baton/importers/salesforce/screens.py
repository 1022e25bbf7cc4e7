"""Screen flows -> the form (and instructions) of the interactive step that names them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from baton.importers.salesforce.names import ident
from baton.importers.salesforce.report import ImportReport
from baton.importers.salesforce.xmlread import Node

INPUT_TYPES = {"string": "string", "number": "decimal", "currency": "decimal",
               "boolean": "bool", "date": "date", "datetime": "datetime"}
CHOICE_FIELDS = frozenset({"DropdownBox", "RadioButtons"})
CONTAINERS = frozenset({"RegionContainer", "Region"})


@dataclass
class ScreenFlows:
    """The screen flows given to the import, by API name, with the file each came from."""

    flows: dict[str, tuple[str, Node]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def form(self, api_name: str, report: ImportReport, used_in: str, line: int
             ) -> tuple[list[dict[str, Any]], str] | None:
        """The form of screen flow ``api_name`` and its display texts, or ``None`` when the
        flow was not given."""
        found = self.flows.get(api_name)
        if found is None:
            report.note(used_in, line, f"screen flow {api_name}",
                        "its XML was not given: the step has no form")
            return None
        self.used.add(api_name)
        file, root = found
        choices = {c.value("name"): c for c in root.all("choices")}
        form: list[dict[str, Any]] = []
        texts: list[str] = []
        for screen in root.all("screens"):
            for f in screen.all("fields"):
                self._field(f, file, report, choices, form, texts)
        report.ok(file, root.line, f"screen flow {api_name}",
                  f"form of {len(form)} field(s) on the step using it ({used_in}:{line})")
        return form, "\n\n".join(texts)

    def _field(self, node: Node, file: str, report: ImportReport, choices: dict[str, Node],
               form: list[dict[str, Any]], texts: list[str]) -> None:
        ftype = node.value("fieldType")
        name = node.value("name")
        if ftype in CONTAINERS:
            for child in node.all("fields"):
                self._field(child, file, report, choices, form, texts)
            return
        if ftype == "DisplayText":
            text = node.value("fieldText")
            if text:
                texts.append(_plain(text))
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
        elif ftype in CHOICE_FIELDS:
            values = self._choices(node, file, report, choices)
            if values is None:
                return
            spec["type"] = "choice"
            spec["choices"] = values
        else:
            report.cannot(file, node.line, f"screen field {name} fieldType {ftype}",
                          "not translated (supported: InputField, LargeTextArea, DropdownBox, "
                          "RadioButtons, DisplayText, sections)")
            return
        if node.flag("isRequired"):
            spec["required"] = True
        label = node.value("fieldText")
        if label:
            spec["label"] = _plain(label)
        if node.value("helpText"):
            spec["description"] = _plain(node.value("helpText"))
        form.append(spec)

    def _choices(self, node: Node, file: str, report: ImportReport, choices: dict[str, Node]
                 ) -> list[str] | None:
        values: list[str] = []
        for ref in node.all("choiceReferences"):
            choice = choices.get(ref.text.strip())
            if choice is None:
                report.cannot(file, ref.line, f"choice {ref.text.strip()}",
                              "not a choice of this flow (record or picklist choice sets are "
                              "not translated)")
                return None
            value = choice.first("value")
            text = value.value("stringValue") if value is not None else ""
            text = text or choice.value("choiceText")
            if text and text not in values:
                values.append(text)
        if not values:
            report.cannot(file, node.line, f"screen field {node.value('name')}",
                          "a choice field without choices")
            return None
        return values


def _plain(text: str) -> str:
    """Screen texts are rich text (HTML-escaped): keep the words."""
    import html
    import re

    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.unescape(text))).strip()
