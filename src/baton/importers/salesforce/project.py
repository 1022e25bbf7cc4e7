"""``baton import salesforce``: metadata files -> a Baton project folder and a report."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from baton.errors import BatonError, Issue
from baton.importers.salesforce.conditions import Catalog
from baton.importers.salesforce.orchestration import ORCHESTRATION_TYPES, OrchestrationTranslator
from baton.importers.salesforce.report import FlowToPort, ImportReport
from baton.importers.salesforce.screens import ScreenFlows
from baton.importers.salesforce.xmlread import Node, XmlProblem, read_xml

SUFFIXES = (".flow-meta.xml", ".flow", ".xml")


class NothingImported(BatonError):
    """No project was written: ``summary`` says why, ``issues`` are the files that could not
    be read (file, line, reason). The message is the summary, then one ``path:line: reason``
    line per file."""

    def __init__(self, summary: str, issues: list[Issue]) -> None:
        self.summary = summary
        self.issues = list(issues)
        super().__init__("\n".join([summary, *(f"{i.file}:{i.line}: {i.message}"
                                               for i in self.issues)]))


@dataclass(frozen=True)
class FlowFile:
    api_name: str
    shown: str     # the path as the report shows it
    root: Node


def _api_name(path: Path) -> str:
    name = path.name
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def find_files(paths: Sequence[str | Path]) -> list[tuple[str, Path]]:
    """Files given, and every ``*.flow-meta.xml``/``*.flow`` under folders given (sorted)."""
    found: list[tuple[str, Path]] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file()
                           and (f.name.endswith(".flow-meta.xml") or f.suffix == ".flow"))
            found += [(str(f), f) for f in files]
        elif path.is_file():
            found.append((str(path), path))
        else:
            raise BatonError(f"{path}: no such file or folder")
    return found


def read_flows(files: Sequence[tuple[str, Path]], report: ImportReport) -> list[FlowFile]:
    """The flows in ``files`` (from :func:`find_files`); each file that is not one is in
    the report, with its line and why."""
    flows: list[FlowFile] = []
    for shown, path in files:
        try:
            root = read_xml(path)
        except XmlProblem as exc:
            report.cannot(shown, exc.line, "file", str(exc))
            continue
        except OSError as exc:
            report.cannot(shown, 1, "file", f"cannot read it: {exc.strerror}")
            continue
        if root.tag != "Flow":
            report.cannot(shown, root.line, "file", f"not Flow metadata: the root element is "
                                                    f"<{root.tag}>, not <Flow>")
            continue
        flows.append(FlowFile(_api_name(path), shown, root))
    return flows


def import_salesforce(paths: Sequence[str | Path], out: Path, *, force: bool = False
                      ) -> ImportReport:
    """Translate the flows under ``paths`` into a Baton project at ``out``. Nothing is
    written unless every file is (:func:`_write`)."""
    _check_out(out, force)
    report = ImportReport()
    given = find_files(paths)
    if not given:
        raise NothingImported(f"nothing imported: no flow metadata (*.flow-meta.xml, *.flow) "
                              f"in {', '.join(str(p) for p in paths)}", [])
    flows = read_flows(given, report)
    unread = [Issue(u.file, u.line, "", u.reason) for u in report.untranslated]
    catalog = Catalog()
    screens = ScreenFlows({f.api_name: (f.shown, f.root) for f in flows
                           if f.root.value("processType") == "Flow"})
    orchestrations: list[dict[str, Any]] = []
    for f in flows:
        if f.root.value("processType") in ORCHESTRATION_TYPES:
            orchestrations.append(OrchestrationTranslator(
                f.shown, f.root, f.api_name, report, catalog, screens).translate())
    if not orchestrations:
        # the files that could not be read are why, often (a truncated or empty file)
        raise NothingImported(_nothing_imported(len(given), len(flows), len(unread)), unread)
    _others(flows, screens, report)
    objects = _objects(catalog)
    report.orchestrations = [o["name"] for o in orchestrations]
    report.objects = [o["name"] for o in objects]
    _next_steps(report, out)
    files = _files(out, objects, orchestrations, report)
    files[out / "IMPORT_REPORT.md"] = report.to_text()
    _write(out, files)
    report.written += [str(path) for path in files]
    return report


def _nothing_imported(given: int, read: int, unread: int) -> str:
    """Why nothing was imported, in one line."""
    def files(n: int) -> str:
        return f"{n} file{'s' if n != 1 else ''}"

    if not read:
        return f"nothing imported: {files(unread)} could not be read"
    return ("nothing imported: no Orchestrator or ApprovalWorkflow flow among the "
            f"{files(given)} given" + (f" ({files(unread)} could not be read)" if unread else ""))


def _check_out(out: Path, force: bool) -> None:
    """``--out`` is a folder to write the project in: new, empty, or (``force``) any."""
    if out.exists() and not out.is_dir():
        raise BatonError(f"{out}: not a folder (--out names the project folder to write)")
    try:
        used = out.is_dir() and any(out.iterdir())
    except OSError as exc:
        raise BatonError(f"{out}: cannot read the folder: {exc.strerror}") from None
    if used and not force:
        raise BatonError(f"{out} is not empty: choose a new folder or give --force")


def _others(flows: list[FlowFile], screens: ScreenFlows, report: ImportReport) -> None:
    ported = {p.original for p in report.flows_to_port}
    for f in flows:
        ptype = f.root.value("processType")
        if ptype in ORCHESTRATION_TYPES or f.api_name in screens.used:
            continue
        if f.api_name in ported:
            report.ok(f.shown, f.root.line, f"{ptype} flow {f.api_name}",
                      "a stub in flows.py to port (its logic is not translated)")
        else:
            report.note(f.shown, f.root.line, f"{ptype or 'flow'} {f.api_name}",
                        "no imported orchestration uses it: not imported")


def _objects(catalog: Catalog) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in sorted(catalog.objects):
        fields: dict[str, Any] = {}
        for fname, guess in sorted(catalog.objects[name].items()):
            if guess.type == "ref" and guess.ref is not None:
                fields[fname] = {"type": "ref", "object": guess.ref}
            else:
                fields[fname] = {"type": guess.type or "string"}
        if not fields:
            fields["name"] = {"type": "string"}
        out.append({"kind": "object", "name": name, "fields": fields})
    return out


def _dump(docs: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False, allow_unicode=True, width=4096)
                        for d in docs)


HEADER = "# Imported from Salesforce by `baton import salesforce`; see IMPORT_REPORT.md.\n"


def _files(out: Path, objects: list[dict[str, Any]], orchestrations: list[dict[str, Any]],
           report: ImportReport) -> dict[Path, str]:
    """The project's files and their text."""
    files: dict[Path, str] = {
        out / "baton.toml": ('# Baton project imported from Salesforce.\n'
                             'database = "sqlite:///baton.db"\nflows = ["flows"]\n'),
        out / "definitions" / "objects.yaml": HEADER + _dump(objects),
        out / "flows.py": flows_module(report.flows_to_port),
    }
    for o in orchestrations:
        files[out / "definitions" / f"{o['name']}.yaml"] = HEADER + _dump([o])
    return files


def _write(out: Path, files: dict[Path, str]) -> None:
    """Write ``files`` (under ``out``) all or none: each is written beside its place first
    and moved there once all are; on an error, the written ones and the folders made are
    removed, and the error names the path."""
    made = [p for p in (out / "definitions", *(out / "definitions").parents)
            if not p.exists()]  # the folders this makes, deepest first
    written: list[Path] = []
    try:
        (out / "definitions").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _undo(written, made)
        raise BatonError(f"{exc.filename or out}: cannot make the folder: "
                         f"{exc.strerror}") from None
    at = out
    try:
        for at, text in files.items():
            tmp = at.with_name(f".{at.name}.baton-tmp")
            written.append(tmp)
            tmp.write_text(text, encoding="utf-8")
        for at, tmp in zip(files, written, strict=True):
            tmp.replace(at)
    except OSError as exc:
        _undo(written, made)
        raise BatonError(f"{at}: cannot write it: {exc.strerror}") from None


def _undo(written: list[Path], made: list[Path]) -> None:
    for tmp in written:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    for folder in made:
        with contextlib.suppress(OSError):
            folder.rmdir()  # (only when empty)


def flows_module(ports: list[FlowToPort]) -> str:
    """``flows.py``: one function per referenced flow, raising "port me" until written."""
    lines = ['"""Flows the imported orchestrations use, one per Salesforce flow they named.',
             "",
             "Each one fails with a \"port me\" message until you write it in Python: a",
             "background step then goes to fallout, an evaluation flow opens an incident.",
             '"""', "", "from __future__ import annotations", "", "from typing import Any", "",
             "from baton import FlowContext, StepFailure, flow", ""]
    seen: dict[str, list[FlowToPort]] = {}
    for p in ports:
        seen.setdefault(p.flow, []).append(p)
    used_names: set[str] = set()
    for name, uses in seen.items():
        first = uses[0]
        fn = re.sub(r"\W", "_", first.original).lower() or "flow"
        while fn in used_names:
            fn += "_"
        used_names.add(fn)
        evaluation = first.kind == "evaluation"
        returns = "bool" if evaluation else "dict[str, Any]"
        what = ("Return True when the condition is met (Salesforce's "
                "isOrchestrationConditionMet), else False." if evaluation else
                "Return a dict: the step's output.")
        lines += ["", f"@flow({name!r})", f"def {fn}(ctx: FlowContext) -> {returns}:",
                  (f'    """Salesforce {first.kind} flow {first.original}, used by '
                   f'{", ".join(u.used_by for u in uses)}.'),
                  "", f"    {what} The run's record is ctx.record; inputs are ctx.input.",
                  '    """',
                  f"    raise StepFailure({_port_message(first)!r}, retryable=False)", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _port_message(p: FlowToPort) -> str:
    return (f"port me: the Salesforce {p.kind} flow {p.original!r} ({p.flow}) has not been "
            "written in Python yet: write it in flows.py")


def _next_steps(report: ImportReport, out: Path) -> None:
    steps = report.next_steps
    if report.untranslated:
        steps.insert(0, f"Read the {len(report.untranslated)} construct(s) not translated "
                     "(above) and add what they did to the definitions by hand")
    if report.flows_to_port:
        steps.append(f"Port the {len({p.flow for p in report.flows_to_port})} flow(s) in "
                     f"{out / 'flows.py'}: each raises 'port me' until written")
    if report.approval_steps:
        steps.append(f"Approval steps ({', '.join(report.approval_steps)}) are type: "
                     "approval: the form is decision (approve | reject) and comments, the "
                     "record is locked while one is pending, whoever starts the run may "
                     "recall it; give approvers a delegate with `baton users update NAME "
                     "--delegate OTHER [--until DATE]` (Salesforce's delegated approver)")
    steps.append("Check the inferred object types in definitions/objects.yaml (field types "
                 "come from how the flows use them; add choices, required and defaults)")
    steps.append(f"Run `baton validate` in {out}, then `baton deploy`")
