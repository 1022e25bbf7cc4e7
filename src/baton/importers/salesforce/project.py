"""``baton import salesforce``: metadata files -> a Baton project folder and a report."""

from __future__ import annotations

import contextlib
import re
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from baton.errors import BatonError, Issue
from baton.importers.salesforce.conditions import Catalog
from baton.importers.salesforce.kept import Kept, ambiguous, marker, read_file, read_kept
from baton.importers.salesforce.objects import is_object_file, object_types, read_metadata
from baton.importers.salesforce.orchestration import ORCHESTRATION_TYPES, OrchestrationTranslator
from baton.importers.salesforce.report import FlowToPort, ImportReport
from baton.importers.salesforce.screens import ScreenFlows
from baton.importers.salesforce.xmlread import (
    MAX_XML_BYTES,
    Node,
    XmlProblem,
    parse_xml,
    read_xml,
)

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


def _api_name(name: str) -> str:
    """The flow's API name, from its file name (``X.flow-meta.xml``, ``X.flow``)."""
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name.rsplit(".", 1)[0] if "." in name else name


MAX_ZIP_FLOWS = 20_000
"""Flow and object files read from one zip (an org has at most a few thousand flows, and
a few thousand custom fields)."""
VERSIONED = re.compile(r"^(?P<name>.+)-(?P<version>\d+)$")
"""``Quote_Approval-3``: version 3 of flow ``Quote_Approval``, as a Metadata API retrieve
names a versioned flow (API names have no ``-``)."""


@dataclass(frozen=True)
class Source:
    """One file to read: ``shown`` is how the report names it (a zip member:
    ``unpackaged.zip/unpackaged/flows/X.flow``)."""

    shown: str
    path: Path
    member: str | None = None  # the member of the zip ``path``

    @property
    def name(self) -> str:
        return self.member.rsplit("/", 1)[-1] if self.member else self.path.name

    def read(self) -> Node:
        if self.member is None:
            return read_xml(self.path)
        try:
            with zipfile.ZipFile(self.path) as zf, zf.open(self.member) as f:
                data = f.read(MAX_XML_BYTES + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
                RuntimeError) as exc:  # (RuntimeError: an encrypted member)
            raise XmlProblem(f"cannot read it from the zip: {exc}", 1) from None
        return parse_xml(data)


def _is_flow_file(name: str) -> bool:
    return name.endswith((".flow-meta.xml", ".flow"))


def _is_read(name: str) -> bool:
    """Whether a file found in a folder or a zip is read: a flow, or object metadata."""
    return _is_flow_file(name) or is_object_file(name)


def _zip_members(path: Path) -> list[Source]:
    """The flow and object files of a Metadata API retrieve zip (``unpackaged.zip``),
    sorted."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = sorted(i.filename for i in zf.infolist()
                           if not i.is_dir() and _is_read(i.filename))
    except (zipfile.BadZipFile, OSError) as exc:
        raise BatonError(f"{path}: cannot read the zip: {exc}") from None
    if len(names) > MAX_ZIP_FLOWS:
        raise BatonError(f"{path}: more than {MAX_ZIP_FLOWS:,} flow and object files in the "
                         "zip: not a metadata retrieve")
    return [Source(f"{path}/{n}", path, n) for n in names]


def find_files(paths: Sequence[str | Path]) -> list[Source]:
    """Files given, every flow (``*.flow-meta.xml``, ``*.flow``) and object metadata file
    (:func:`~baton.importers.salesforce.objects.is_object_file`) under folders given
    (sorted), and those in zips given (a Metadata API retrieve: ``sf project retrieve start
    --target-metadata-dir``)."""
    found: list[Source] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file() and _is_read(f.name))
            found += [Source(str(f), f) for f in files]
        elif path.is_file() and _looks_zipped(path):
            found += _zip_members(path)
        elif path.is_file():
            found.append(Source(str(path), path))
        else:
            raise BatonError(f"{path}: no such file or folder")
    return found


def _looks_zipped(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"PK\x03\x04"
    except OSError:
        return False


def read_flows(files: Sequence[Source], report: ImportReport) -> list[FlowFile]:
    """The flows in ``files`` (from :func:`find_files`); each file that is not one is in
    the report, with its line and why."""
    flows: list[FlowFile] = []
    for src in files:
        shown = src.shown
        try:
            root = src.read()
        except XmlProblem as exc:
            report.cannot(shown, exc.line, "file", str(exc))
            continue
        except OSError as exc:
            report.cannot(shown, 1, "file", f"cannot read it: {exc.strerror or exc}")
            continue
        if root.tag != "Flow":
            report.cannot(shown, root.line, "file", f"not Flow metadata: the root element is "
                                                    f"<{root.tag}>, not <Flow>")
            continue
        flows.append(FlowFile(_api_name(src.name), shown, root))
    return _one_version_each(flows, report)


def _one_version_each(flows: list[FlowFile], report: ImportReport) -> list[FlowFile]:
    """One file per flow: a retrieve may hold several versions of a flow
    (``Deal_Desk-1.flow``, ``Deal_Desk-2.flow``), or the same flow twice (a source folder
    and a retrieve given together). Every version would become its own orchestration,
    triggered by the same records: the Active one is kept (else the highest version, else
    the first given) under the flow's own name; each other one is noted, not imported."""
    groups: dict[str, list[tuple[int, FlowFile]]] = {}
    for f in flows:
        m = VERSIONED.match(f.api_name)
        name, version = (m["name"], int(m["version"])) if m else (f.api_name, 0)
        groups.setdefault(name, []).append((version, f))
    kept: list[FlowFile] = []
    for name, versions in groups.items():
        best_version, best = max(versions, key=lambda v: (
            v[1].root.value("status") == "Active", v[0], -versions.index(v)))
        chosen = FlowFile(name, best.shown, best.root)
        kept.append(chosen)
        status = best.root.value("status")
        why = ("it is Active" if status == "Active" else
               "the highest version given: none is Active" if best_version else
               "the first given: none is Active")
        for _, f in versions:
            if f is not best:
                report.note(f.shown, f.root.line, f"flow {f.api_name} "
                            f"({f.root.value('status') or 'no status'})",
                            f"not imported: the version of {name} imported is {best.shown} "
                            f"({why})")
        if (status and status != "Active"
                and best.root.value("processType") in ORCHESTRATION_TYPES):
            report.note(best.shown, _line(best.root, "status"), f"status {status}",
                        f"Salesforce does not run a {status} flow; once deployed, Baton "
                        "runs the orchestration imported from it")
    return kept


def _line(root: Node, tag: str) -> int:
    node = root.first(tag)
    return node.line if node is not None else root.line


def import_salesforce(paths: Sequence[str | Path], out: Path, *, force: bool = False
                      ) -> ImportReport:
    """Translate the flows under ``paths`` into a Baton project at ``out``. Nothing is
    written unless every file is (:func:`_write`)."""
    _check_out(out, force)
    report = ImportReport()
    found = find_files(paths)
    given = [f for f in found if not is_object_file(f.name)]
    if not given:
        raise NothingImported(f"nothing imported: no flow metadata (*.flow-meta.xml, *.flow) "
                              f"in {', '.join(str(p) for p in paths)}", [])
    flows = read_flows(given, report)
    unread = [Issue(u.file, u.line, "", u.reason) for u in report.untranslated]
    # The object metadata is read before the flows are translated (its entries go in the
    # report after theirs, as before): the flows' conditions name object types, and two
    # objects one name would merge (Vendor, Vendor__c) get two, known before any is used.
    read_report = ImportReport()
    metadata = read_metadata([f for f in found if is_object_file(f.name)], read_report)
    # The project there (--force): its object types keep their names, each the Salesforce
    # object its "# Salesforce object:" line names (kept.py), before any other is named.
    kept = read_kept(out / "definitions")
    catalog = Catalog()
    seeded = _seed_names(catalog, kept, report)
    # (User first among them: assignees are Baton's User records, never a custom User__c)
    catalog.object_names.add_all([("User", "", 0), *_trigger_objects(flows),
                                  *metadata.object_apis()])
    catalog.lookups = metadata.lookups(catalog.object_names)
    catalog.relationships = metadata.relationships(catalog.object_names)
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
    for part in ("translated", "untranslated", "notes"):
        getattr(report, part).extend(getattr(read_report, part))
    _kept_apart(catalog, report)
    objects, typed = object_types(catalog, metadata, report, kept.names())
    names = catalog.object_names
    ambiguous(kept, [(api, names.by_api[api.lower()]) for api in names.owners.values()
                     if names.by_api[api.lower()] in {o["name"] for o in objects}], seeded)
    report.orchestrations = [o["name"] for o in orchestrations]
    report.objects = [o["name"] for o in objects]
    files = _files(out, objects, orchestrations, report, typed, kept, names.owners)
    given_types = metadata.by_name(catalog.object_names)
    _next_steps(report, out, inferred=[f"{o['name']}.{f}" for o in objects
                                       if o["name"] not in given_types
                                       for f in o["fields"]])
    files[out / "IMPORT_REPORT.md"] = report.to_text()
    _write(out, files)
    report.written += [str(path) for path in files]
    return report


def _seed_names(catalog: Catalog, kept: Kept, report: ImportReport) -> set[str]:
    """Name each Salesforce object a kept object type's marker names as that type (the
    names the project has win over the ones the import would give: ``Vendor__c`` stays
    the kept ``Vendor`` when the standard ``Vendor`` comes, which is named apart); the
    lower-case API names seeded. User is Baton's own, whatever a marker says."""
    names = catalog.object_names
    names.name("User")
    seeded: set[str] = set()
    for t in kept.marked():
        origin = str(t.origin)
        have = names.known(origin)
        if have == t.name or names.keep(origin, t.name):  # (User: named so already)
            seeded.add(origin.lower())
            continue
        why = (f"{origin} is already object type {have}'s" if have is not None
               else f"{t.name} is Salesforce's {names.owners[t.name.lower()]}")
        report.note(str(t.path), t.line, f"object type {t.name}",
                    f"its line '# Salesforce object: {origin}' is not followed: {why}")
    return seeded


def _trigger_objects(flows: list[FlowFile]) -> list[tuple[str, str, int]]:
    """(API name, file, line) of the object each orchestration is started by."""
    out: list[tuple[str, str, int]] = []
    for f in flows:
        start = f.root.first("start")
        if f.root.value("processType") in ORCHESTRATION_TYPES and start is not None \
                and start.value("object"):
            out.append((start.value("object"), f.shown, start.line))
    return out


def _kept_apart(catalog: Catalog, report: ImportReport) -> None:
    """Each object named apart from another whose name it would have had (``Vendor__c``
    -> ``Vendor_c`` beside ``Vendor``), said where it was first seen. Merging them would
    mix two objects' fields in one type and let a lookup to one take the other's records:
    a Salesforce admin counts two objects, and gets two object types."""
    for a in catalog.object_names.apart:
        report.note(a.file, a.line, f"object {a.api}",
                    f"object type {a.name}, apart from {a.other_api} (object type "
                    f"{a.other_name}): two Salesforce objects, whose fields and records "
                    f"are not mixed; {a.name} is the name conditions and lookups use for "
                    f"{a.api}")


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


def _flow_style(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, allow_unicode=True,
                          width=4096).strip()


def _dump(docs: list[Any], origin: Callable[[Any], str | None] = lambda _: None) -> str:
    """YAML documents; each object type whose Salesforce object ``origin`` gives is
    preceded by its ``# Salesforce object:`` line (:mod:`.kept`)."""
    parts = []
    for d in docs:
        api = origin(d)
        parts.append((marker(api) if api else "") + yaml.safe_dump(
            d, sort_keys=False, allow_unicode=True, width=4096))
    return "---\n".join(parts)


HEADER = "# Imported from Salesforce by `baton import salesforce`; see IMPORT_REPORT.md.\n"


def _files(out: Path, objects: list[dict[str, Any]], orchestrations: list[dict[str, Any]],
           report: ImportReport, typed: set[tuple[str, str]], kept: Kept,
           owners: dict[str, str]) -> dict[Path, str]:
    """The project's files and their text. A project imported before (``--force``: a
    second import after the flows changed in Salesforce) keeps what its user wrote:
    ``baton.toml`` as it is, ``flows.py`` with a stub added for each flow it lacks, its
    object types (in any file under ``definitions/``) with the fields they lack added; the
    orchestrations' files are replaced (they are what Salesforce says), keeping any other
    definition such a file holds. ``owners``: each object type's Salesforce object (by
    lower-case name)."""
    files: dict[Path, str] = {}
    toml = out / "baton.toml"
    if toml.exists():
        report.kept.append(f"{toml}: kept as it is")
    else:
        files[toml] = ('# Baton project imported from Salesforce.\n'
                       'database = "sqlite:///baton.db"\nflows = ["flows"]\n')
    made = {o["name"] for o in objects}
    kept_docs = {id(t.doc): t for t in kept.types.values()}

    def origin(doc: Any) -> str | None:
        if not isinstance(doc, dict) or doc.get("kind") != "object":
            return None
        t = kept_docs.get(id(doc))
        if t is not None and t.origin is not None:
            return t.origin
        name = doc.get("name")
        return owners.get(name.lower()) if isinstance(name, str) and name in made else None

    definitions = out / "definitions"
    files.update(_object_files(definitions, kept, objects, report, typed, owners, origin))
    flows_text = _flows_file(out / "flows.py", report)
    if flows_text is not None:
        files[out / "flows.py"] = flows_text
    for o in orchestrations:
        path = definitions / f"{o['name']}.yaml"
        others = [d for d in kept.files.get(path, []) if not (
            d.get("kind") == "orchestration" and d.get("name") == o["name"])]
        if others:
            held = ", ".join(f"{d.get('kind')} {d.get('name')}" for d in others)
            report.kept.append(f"{path}: written again (the orchestration is what Salesforce "
                               f"says), with the other definitions it holds kept after it: "
                               f"{held}")
        files[path] = HEADER + _dump([o, *others], origin)
    return files


def _object_files(folder: Path, kept: Kept, objects: list[dict[str, Any]],
                  report: ImportReport, typed: set[tuple[str, str]], owners: dict[str, str],
                  origin: Callable[[Any], str | None]) -> dict[Path, str]:
    """The files of object types to write: an object type the project has (in any file
    under ``definitions/``: :func:`~.kept.read_kept`) gets the fields it lacks, its own
    kept as they are (the user's choices, required fields, defaults; one the object
    metadata (``typed``) defines otherwise is named in the report), in its file, written
    again only when it lacks one (else left alone, comments and all); the others go in
    ``objects.yaml`` (new, or added to the one there)."""
    path = folder / "objects.yaml"
    added: dict[Path, list[str]] = {}
    new: list[dict[str, Any]] = []
    for o in objects:
        have = kept.types.get(o["name"])
        if have is None:
            new.append(o)
            continue
        adds = added.setdefault(have.path, [])
        fields = have.doc.setdefault("fields", {})
        for fname, spec in o["fields"].items():
            if fname not in fields and not (fname == "name" and len(o["fields"]) == 1):
                fields[fname] = spec
                adds.append(f"{o['name']}.{fname}")
            elif (o["name"], fname) in typed and fields.get(fname) != spec:
                report.kept.append(f"{have.path}: {o['name']}.{fname} kept as it is there "
                                   f"({_flow_style(fields.get(fname))}); the object metadata "
                                   f"says {_flow_style(spec)}")
        if have.origin is None:
            report.kept.append(
                f"{have.path}:{have.line}: object type {o['name']} taken as Salesforce's "
                f"{owners.get(o['name'].lower(), o['name'])}, by its name (no '# Salesforce "
                "object:' line above it says which object it holds)")
    if new:
        if path in kept.files:
            kept.files[path].extend(new)
            added.setdefault(path, []).extend(o["name"] for o in new)
        else:
            kept.files[path] = list(new)
            added[path] = []  # (a new file)
    if path in kept.files:
        added.setdefault(path, [])
    files: dict[Path, str] = {}
    for at, adds in added.items():
        if at == path and not path.exists():
            files[at] = HEADER + _dump(kept.files[at], origin)
            if kept.files.keys() - {path}:
                report.kept.append(f"{at}: written with the object types the project lacks "
                                   f"({', '.join(o['name'] for o in new)})")
        elif not adds:
            report.kept.append(f"{at}: kept as it is (it has every object and field "
                               "inferred)")
        else:
            report.kept.append(f"{at}: kept, with {', '.join(adds)} added (rewritten: its "
                               "comments are not kept, but for its '# Salesforce object:' "
                               "lines)")
            files[at] = (HEADER if at == path else "") + _dump(kept.files[at], origin)
    return files


FLOW_DECORATOR = re.compile(r"""@flow\(\s*(?:name\s*=\s*)?(['"])(?P<name>.+?)\1""")
DEF = re.compile(r"^\s*(?:async\s+)?def\s+(\w+)", re.MULTILINE)


def _flows_file(path: Path, report: ImportReport) -> str | None:
    """``flows.py``: new, or the one there (the flows ported so far) with a stub added for
    each flow it does not define yet; ``None`` when it lacks none."""
    if not path.exists():
        return flows_module(report.flows_to_port)
    text = read_file(path, "add the stubs of new flows")
    defined = {m["name"] for m in FLOW_DECORATOR.finditer(text)}
    report.already_ported = sorted(defined & {p.flow for p in report.flows_to_port})
    missing = [p for p in report.flows_to_port if p.flow not in defined]
    if not missing:
        report.kept.append(f"{path}: kept as it is (it defines every flow used)")
        return None
    new = sorted({p.flow for p in missing})
    report.kept.append(f"{path}: kept, with stubs added for {', '.join(new)}")
    return (text.rstrip("\n") + "\n\n\n# Added by `baton import salesforce` (a new import): "
            "the flows the orchestrations now use\n"
            "from typing import Any  # noqa: E402\n\n"
            "from baton import FlowContext, StepFailure, flow  # noqa: E402\n"
            + _stubs(missing, set(DEF.findall(text))))


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
    return "\n".join(lines) + _stubs(ports, set())


def _stubs(ports: list[FlowToPort], used_names: set[str]) -> str:
    """A "port me" function per Baton flow of ``ports``, named apart from ``used_names``."""
    lines: list[str] = []
    seen: dict[str, list[FlowToPort]] = {}
    for p in ports:
        seen.setdefault(p.flow, []).append(p)
    used_names = set(used_names)
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


def _next_steps(report: ImportReport, out: Path, inferred: list[str]) -> None:
    steps = report.next_steps
    if report.untranslated:
        steps.insert(0, f"Read the {len(report.untranslated)} construct(s) not translated "
                     "(above) and add what they did to the definitions by hand")
    to_port = {p.flow for p in report.flows_to_port} - set(report.already_ported)
    if to_port:
        steps.append(f"Port the {len(to_port)} flow(s) in {out / 'flows.py'}: each raises "
                     "'port me' until written" + (f" ({len(report.already_ported)} already "
                                                  "written there)" if report.already_ported
                                                  else ""))
    if report.approval_steps:
        steps.append(f"Approval steps ({', '.join(report.approval_steps)}) are type: "
                     "approval: the form is decision (approve | reject) and comments, the "
                     "record is locked while one is pending, whoever starts the run may "
                     "recall it; give approvers a delegate with `baton users update NAME "
                     "--delegate OTHER [--until DATE]` (Salesforce's delegated approver)")
    objects = sorted({f.split(".")[0] for f in inferred})
    if objects:
        steps.append(f"Check the object types inferred from the flows ({', '.join(objects)}) "
                     "in definitions/objects.yaml (field types come from how the flows use "
                     "them; add choices, required and defaults), or import them again with "
                     "their object metadata (objects/)")
    steps.append(f"Run `baton validate` in {out}, then `baton deploy`")
