"""The import report: what was translated, what was not (file and line), what to do next."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Translated:
    """One Salesforce element and what it became."""

    file: str
    line: int
    element: str  # e.g. "stage Review", "step Manager_Approval", "decision Route"
    became: str   # e.g. "stage review", "interactive step manager_approval"


@dataclass(frozen=True)
class Untranslated:
    """A construct the importer could not translate; the generated project lacks it."""

    file: str
    line: int
    construct: str
    reason: str


@dataclass(frozen=True)
class FlowToPort:
    """A referenced Salesforce flow whose logic the user must write in Python."""

    flow: str          # the Baton flow name, e.g. salesforce.Check_Credit
    original: str      # the Salesforce flow's API name
    kind: str          # "autolaunched" | "evaluation"
    used_by: str       # "orchestration.step" or "orchestration.stage (exit)"


@dataclass
class ImportReport:
    """Everything one ``baton import salesforce`` did, in the order it was found."""

    translated: list[Translated] = field(default_factory=list)
    untranslated: list[Untranslated] = field(default_factory=list)
    notes: list[Untranslated] = field(default_factory=list)  # translated with a caveat
    flows_to_port: list[FlowToPort] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # files of an earlier import kept (why)
    already_ported: list[str] = field(default_factory=list)  # flows a kept flows.py defines
    orchestrations: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    approval_steps: list[str] = field(default_factory=list)  # "orchestration.step"

    def ok(self, file: str, line: int, element: str, became: str) -> None:
        self.translated.append(Translated(file, line, element, became))

    def cannot(self, file: str, line: int, construct: str, reason: str) -> None:
        self.untranslated.append(Untranslated(file, line, construct, reason))

    def note(self, file: str, line: int, construct: str, reason: str) -> None:
        self.notes.append(Untranslated(file, line, construct, reason))

    def port(self, flow: str, original: str, kind: str, used_by: str) -> None:
        if not any(p.flow == flow and p.used_by == used_by for p in self.flows_to_port):
            self.flows_to_port.append(FlowToPort(flow, original, kind, used_by))

    def to_json(self) -> dict[str, Any]:
        return {
            "orchestrations": self.orchestrations,
            "objects": self.objects,
            "translated": [vars(t) for t in self.translated],
            "untranslated": [vars(u) for u in self.untranslated],
            "notes": [vars(n) for n in self.notes],
            "flows_to_port": [vars(p) for p in self.flows_to_port],
            "approval_steps": self.approval_steps,
            "next_steps": self.next_steps,
            "written": self.written,
            "kept": self.kept,
        }

    def to_text(self) -> str:
        """The report as people read it (also written to IMPORT_REPORT.md)."""
        out = ["# Salesforce import report", ""]
        out.append(f"Orchestrations: {', '.join(self.orchestrations) or 'none'}")
        out.append(f"Object types: {', '.join(self.objects) or 'none'}")
        out += ["", f"## Translated ({len(self.translated)})", ""]
        out += [f"- {t.file}:{t.line} {t.element} -> {t.became}" for t in self.translated]
        out += ["", f"## Not translated ({len(self.untranslated)})", ""]
        if not self.untranslated:
            out.append("- nothing: every construct found was translated")
        out += [f"- {u.file}:{u.line} {u.construct}: {u.reason}" for u in self.untranslated]
        if self.notes:
            out += ["", f"## Translated with a caveat ({len(self.notes)})", ""]
            out += [f"- {n.file}:{n.line} {n.construct}: {n.reason}" for n in self.notes]
        out += ["", f"## Flows to port ({len(self.flows_to_port)})", ""]
        if not self.flows_to_port:
            out.append("- none")
        out += [f"- {p.flow} (Salesforce {p.kind} flow {p.original}, used by {p.used_by}): "
                "in flows.py it raises 'port me' until you write it" for p in self.flows_to_port]
        if self.kept:
            out += ["", "## Kept from the project already there", ""]
            out += [f"- {k}" for k in self.kept]
        out += ["", "## Next steps", ""]
        out += [f"{i}. {s}" for i, s in enumerate(self.next_steps, 1)]
        return "\n".join(out) + "\n"
