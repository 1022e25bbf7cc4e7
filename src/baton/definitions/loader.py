"""Load definition files: YAML with line numbers -> validated, frozen definitions.

A path is a file or a directory (every ``*.yaml``/``*.yml`` in it, recursively, sorted).
A file may hold several documents separated by ``---``; each is one definition.

YAML is read with two deliberate departures from PyYAML's YAML 1.1 defaults, so that
what users type stays what they meant: only ``true``/``false`` are booleans (``on:``,
``yes``, ``no`` stay strings — ``on`` is a trigger key) and dates stay ISO strings
(definitions and records are JSON-shaped).

The loader is bounded, because validating a definition must be harmless even when the
text comes from a stranger (``POST /api/definitions/validate``): a file over
:data:`MAX_FILE_BYTES`, nesting deeper than :data:`MAX_DEPTH`, more than
:data:`MAX_ALIASES` aliases, or a document that would expand to more than
:data:`MAX_NODES` nodes (the "billion laughs" alias bomb) is refused with a located issue
before anything is expanded, in milliseconds.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from baton.definitions.checks import ChildTarget, ParsedDocument, item, join
from baton.definitions.connection import build_connection
from baton.definitions.model import (
    ATTACHMENTS_ALLOW,
    ATTACHMENTS_MAX_BYTES,
    DEFAULT_MAX_ITERATIONS,
    AssigneeKind,
    Assignment,
    AttachmentPolicy,
    CalendarDefinition,
    Condition,
    Definition,
    FieldDefinition,
    ImapSource,
    LoadedDefinition,
    MailboxDefinition,
    NextRule,
    ObjectTypeDefinition,
    OrchestrationDefinition,
    StageDefinition,
    StepDefinition,
    Trigger,
)
from baton.definitions.plans import build_catalog, build_fulfillment
from baton.definitions.routing import build_rule
from baton.definitions.validate import validate_documents
from baton.errors import DefinitionError, Issue
from baton.steps import registry

__all__ = [
    "MAX_ALIASES",
    "MAX_DEPTH",
    "MAX_DOCUMENTS",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "check_definitions",
    "load_definitions",
    "load_text",
]

MAX_FILE_BYTES = 256 * 1024
"""A definition file (or text sent to the API) larger than this is refused unread.

Parsing costs about 6 µs of CPU per byte (PyYAML in Python, which keeps the line of every
value), so this bounds one file's cost near 1.5 s; real definitions are a few KiB."""
MAX_DOCUMENTS = 500
"""Most ``---``-separated documents in one file."""
MAX_DEPTH = 64
"""Deepest nesting of mappings and lists in one document (real definitions use under 10)."""
MAX_ALIASES = 1000
"""Most ``*alias`` references in one document."""
MAX_NODES = 100_000
"""Most nodes one document may have once its aliases are expanded."""

_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"
_DOC_MARKER = re.compile(r"---(?=\s|$)")
_BARE_MARKER = re.compile(r"---\s*(#.*)?$")
_LINES = re.compile(r"[^\n]*\n|[^\n]+\Z")
# Step keys kept in ``StepDefinition.options``: these, then the keys of the step's type
# (``baton.steps``) that are not fields of their own.
OPTION_KEYS = ("retry", "timeout", "sla", "lane", "run_as", "output")
_STEP_FIELDS = frozenset({"flow", "assign", "form", "instructions", "complete_when"})


class _Loader(yaml.SafeLoader):  # type: ignore[misc,unused-ignore]  # PyYAML ships no stubs
    """SafeLoader with YAML 1.2-like booleans and no timestamp type."""


class _LimitExceeded(Exception):
    """A document over one of the loader's bounds; ``line`` is 1-based within the chunk."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _BoundedLoader(_Loader):
    """Composes a document's node graph while counting nesting depth and aliases.

    PyYAML's composer recurses once per nesting level and shares the node of an anchor
    among its aliases; both bounds are checked as the events arrive, so a hostile
    document is refused before it costs more than its own size.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _LimitExceeded(
                    f"too many aliases: more than {MAX_ALIASES} in one document", mark.line + 1
                )
            return super().compose_node(parent, index)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise _LimitExceeded(
                    f"nested too deeply: more than {MAX_DEPTH} levels", mark.line + 1
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def fetch_flow_collection_start(self, token_class: Any) -> None:
        # The scanner looks ahead over open flow collections (`[[[[…`) in quadratic time
        # before the composer sees any node; stop it at the same depth.
        super().fetch_flow_collection_start(token_class)
        if self.flow_level > MAX_DEPTH:
            raise _LimitExceeded(
                f"nested too deeply: more than {MAX_DEPTH} levels", self.get_mark().line + 1
            )


def _expanded_size(root: Node) -> int:
    """How many nodes ``root`` has with every alias expanded, stopping past the bound.

    Each distinct node is sized once (aliases share nodes), so this costs the size of
    the document as written, whatever it would expand to. A node inside its own anchor
    counts once here; the converter reports it as a recursive alias.
    """
    sizes: dict[int, int] = {}
    in_progress: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in in_progress:
            return 1
        in_progress.add(key)
        total = 1
        if isinstance(node, SequenceNode):
            children: list[Node] = list(node.value)
        elif isinstance(node, MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                break
        in_progress.discard(key)
        sizes[key] = total
        return total

    return size(root)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _TIMESTAMP_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


# --- public API ---------------------------------------------------------------------------
Progress = Callable[[str, int, int], None]
"""``(phase, done, total)``: how far a long load is, for a progress bar."""


def _silent(_phase: str, _done: int, _total: int) -> None:
    return None



def load_definitions(
    paths: Sequence[str | Path],
    *,
    known_flows: Collection[str] | None = None,
    deployed_objects: Mapping[str, ObjectTypeDefinition] | None = None,
    deployed_orchestrations: Mapping[str, ChildTarget] | None = None,
    on_progress: Progress | None = None,
    deployed_connections: Mapping[str, str] | None = None,
    deployed_routings: Collection[str] | None = None,
) -> list[LoadedDefinition]:
    """Load, validate and build every definition under ``paths``.

    Args:
        paths: files and/or directories.
        known_flows: registered flow names; ``None`` skips the flow checks.
        deployed_objects: object types already deployed, which definitions may reference.
        deployed_orchestrations: orchestrations already deployed, which child-run steps
            may start; ``None`` skips that check.
        on_progress: told ``("read", done, total)`` after each file and ``("validate", 0,
            1)`` / ``("validate", 1, 1)`` around the checks across files (a progress bar).
        deployed_connections: connections already deployed (name -> type), which steps
            may name; ``None`` skips that check unless the paths define connections.
        deployed_routings: the routing rules active now, which a step's ``assign`` or SLA
            action may name (besides those the paths define); ``None`` skips that check.

    Raises:
        DefinitionError: listing every problem in every file.
    """
    loaded, issues = check_definitions(
        paths, known_flows=known_flows, deployed_objects=deployed_objects,
        deployed_orchestrations=deployed_orchestrations,
        on_progress=on_progress,
        deployed_connections=deployed_connections,
        deployed_routings=deployed_routings,
    )
    if issues:
        raise DefinitionError(issues)
    return loaded


def check_definitions(
    paths: Sequence[str | Path],
    *,
    known_flows: Collection[str] | None = None,
    deployed_objects: Mapping[str, ObjectTypeDefinition] | None = None,
    deployed_orchestrations: Mapping[str, ChildTarget] | None = None,
    warnings: list[Issue] | None = None,
    on_progress: Progress | None = None,
    deployed_connections: Mapping[str, str] | None = None,
    unknown_objects: bool = False,
    deployed_routings: Collection[str] | None = None,
) -> tuple[list[LoadedDefinition], list[Issue]]:
    """Like :func:`load_definitions` without raising.

    Returns the definitions that have no problem of their own, and every error sorted
    by (file, line); warnings (a definition that deploys but probably does not do what was
    meant) are added to ``warnings`` when a list is given, else dropped.
    ``unknown_objects``: the object types deployed are not known (files checked outside a
    project), so references to object types the files do not define are not checked.
    """
    docs: list[ParsedDocument] = []
    issues: list[Issue] = []
    files, missing, given = _expand(paths)
    issues.extend(missing)
    tell = on_progress or _silent
    found_in: set[Path] = set()  # the files that hold a document (or a problem)
    for done, (shown, path) in enumerate(files, 1):
        text, problem = _read(shown, path)
        if problem is None:
            parsed, found = parse_text(text, shown)
            docs.extend(parsed)
            issues.extend(found)
            if parsed or found:
                found_in.add(path.resolve())
        else:
            issues.append(problem)
            found_in.add(path.resolve())
        tell("read", done, len(files))
    issues.extend(_nothing_found(given, found_in))
    tell("validate", 0, 1)
    result = _finish(docs, issues, known_flows, deployed_objects, deployed_orchestrations,
                     warnings, deployed_connections, unknown_objects, deployed_routings)
    tell("validate", 1, 1)
    return result


def check_texts(
    files: Mapping[str, str],
    *,
    known_flows: Collection[str] | None = None,
    deployed_objects: Mapping[str, ObjectTypeDefinition] | None = None,
    deployed_orchestrations: Mapping[str, ChildTarget] | None = None,
    warnings: list[Issue] | None = None,
    deployed_connections: Mapping[str, str] | None = None,
    deployed_routings: Collection[str] | None = None,
) -> tuple[list[LoadedDefinition], list[Issue]]:
    """:func:`check_definitions` for YAML texts in memory, keyed by file name (the API)."""
    docs: list[ParsedDocument] = []
    issues: list[Issue] = []
    for name, text in files.items():
        parsed, found = parse_text(text, name)
        docs.extend(parsed)
        issues.extend(found)
    return _finish(docs, issues, known_flows, deployed_objects, deployed_orchestrations,
                   warnings, deployed_connections, deployed_routings=deployed_routings)


def load_text(
    text: str,
    file: str = "<text>",
    *,
    known_flows: Collection[str] | None = None,
    deployed_objects: Mapping[str, ObjectTypeDefinition] | None = None,
) -> list[LoadedDefinition]:
    """:func:`load_definitions` for YAML text already in memory (tests, the API)."""
    docs, issues = parse_text(text, file)
    loaded, issues = _finish(docs, issues, known_flows, deployed_objects)
    if issues:
        raise DefinitionError(issues)
    return loaded


def load_stored(
    text: str,
    file: str = "<text>",
    *,
    deployed_objects: Mapping[str, ObjectTypeDefinition] | None = None,
) -> tuple[list[LoadedDefinition], list[Issue]]:
    """A definition read back from the store: validated as :func:`load_text` does, but a
    version that was valid when deployed and fails a check added since is still built (and
    its issues returned for the caller to report): a stricter release must not make every
    record write of an upgraded database fail on it. Only a text that can no longer be
    parsed or built at all raises."""
    docs, issues = parse_text(text, file)
    if issues:
        raise DefinitionError(issues)
    per_doc = validate_documents(docs, deployed_objects=deployed_objects)
    errors = sorted((i for own in per_doc for i in own if i.level == "error"),
                    key=lambda i: (i.file, i.line))
    try:
        loaded = _with_record_types([build(d) for d in docs], deployed_objects)
    except Exception as exc:  # (a model these checks would have kept from being built)
        if errors:
            raise DefinitionError(errors) from exc
        raise
    return loaded, errors


def _finish(
    docs: list[ParsedDocument],
    issues: list[Issue],
    known_flows: Collection[str] | None,
    deployed_objects: Mapping[str, ObjectTypeDefinition] | None,
    deployed_orchestrations: Mapping[str, ChildTarget] | None = None,
    warnings: list[Issue] | None = None,
    deployed_connections: Mapping[str, str] | None = None,
    unknown_objects: bool = False,
    deployed_routings: Collection[str] | None = None,
) -> tuple[list[LoadedDefinition], list[Issue]]:
    per_doc = validate_documents(docs, known_flows=known_flows, deployed_objects=deployed_objects,
                                 deployed_orchestrations=deployed_orchestrations,
                                 deployed_connections=deployed_connections,
                                 unknown_objects=unknown_objects,
                                 deployed_routings=deployed_routings)
    loaded = _with_record_types(
        [build(d) for d, own in zip(docs, per_doc, strict=True)
         if not any(i.level == "error" for i in own)], deployed_objects)
    everything = issues + [i for own in per_doc for i in own]
    unique = list(dict.fromkeys(everything))
    if warnings is not None:
        warnings.extend(sorted((i for i in unique if i.level != "error"),
                               key=lambda i: (i.file, i.line)))
    errors = [i for i in unique if i.level == "error"]
    return loaded, sorted(errors, key=lambda i: (i.file, i.line))


def _with_record_types(loaded: list[LoadedDefinition],
                       deployed: Mapping[str, ObjectTypeDefinition] | None,
                       ) -> list[LoadedDefinition]:
    """Each orchestration with the object type of its trigger's records (its work items'
    titles come from it): one loaded with it, else the one deployed."""
    types = dict(deployed or {})
    types.update((d.name, d.definition) for d in loaded
                 if isinstance(d.definition, ObjectTypeDefinition))
    out = []
    for d in loaded:
        defn = d.definition
        if isinstance(defn, OrchestrationDefinition) and defn.trigger.object in types:
            d = replace(d, definition=replace(defn, record_type=types[defn.trigger.object]))
        out.append(d)
    return out


# --- files ---------------------------------------------------------------------------------


_Given = tuple[str, bool, list[Path]]  # a path as given, whether a folder, its files


def _expand(paths: Sequence[str | Path]
            ) -> tuple[list[tuple[str, Path]], list[Issue], list[_Given]]:
    """(shown name, path) of every definition file; a path that is missing, or neither a
    file nor a folder (a device, a FIFO: reading one would wait for ever), is an issue. Also
    each path given with the files it stands for (see :func:`_nothing_found`)."""
    files: list[tuple[str, Path]] = []
    issues: list[Issue] = []
    given_paths: list[_Given] = []
    if isinstance(paths, str | Path):  # a lone path, not a sequence of one-letter paths
        paths = [paths]
    for given in paths:
        path = Path(given)
        if path.is_dir():
            own = [(os.path.join(str(given), rel), path / rel) for rel in _yaml_files(path)]
            files.extend(own)
            given_paths.append((str(given), True, [p.resolve() for _, p in own]))
        elif path.is_file():
            files.append((str(given), path))
            given_paths.append((str(given), False, [path.resolve()]))
        elif path.exists():
            issues.append(Issue(str(given), 0, "", "not a regular file or a folder (a device, "
                                                   "a pipe or a socket): nothing to read"))
        else:
            issues.append(Issue(str(given), 0, "", "no such file or directory"))
    unique: dict[Path, tuple[str, Path]] = {}
    for shown, path in files:
        unique.setdefault(path.resolve(), (shown, path))  # a file given twice is loaded once
    return list(unique.values()), issues, given_paths


def _nothing_found(given: list[_Given], found_in: set[Path]) -> list[Issue]:
    """A folder or file given that holds no definition at all: validating it would say
    ``valid`` and deploying it would deploy nothing, which is never what was meant (a
    wrong folder, a file saved empty). An empty file inside a folder that has others is
    left alone."""
    out = []
    for shown, folder, files in given:
        if any(f in found_in for f in files):
            continue
        why = ("the folder has no .yaml or .yml file" if folder and not files
               else "its .yaml files are empty or hold only comments" if folder
               else "the file is empty or holds only comments")
        out.append(Issue(shown, 0, "", f"no definitions found: {why}"))
    return out


def _yaml_files(folder: Path) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        hidden = any(part.startswith(".") for part in rel.parts)  # .git, editor backups
        if path.suffix in (".yaml", ".yml") and path.is_file() and not hidden:
            found.append(rel.as_posix())
    return sorted(found)


def _read(shown: str, path: Path) -> tuple[str, Issue | None]:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            message = f"too large: {size:,} bytes, at most {MAX_FILE_BYTES:,} are read"
            return "", Issue(shown, 0, "", message)
        return path.read_text(encoding="utf-8"), None
    except (OSError, UnicodeDecodeError) as exc:
        return "", Issue(shown, 0, "", f"cannot read the file: {exc}")


# --- YAML -> plain data with line numbers ---------------------------------------------------


def parse_text(text: str, file: str) -> tuple[list[ParsedDocument], list[Issue]]:
    """Split ``text`` into documents and parse each; a YAML error spoils only its document."""
    docs: list[ParsedDocument] = []
    issues: list[Issue] = []
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        message = f"too large: {size:,} bytes, at most {MAX_FILE_BYTES:,} are read"
        return [], [Issue(file, 0, "", message)]
    chunks = _split_documents(text)
    if len(chunks) > MAX_DOCUMENTS:
        message = f"too many documents: {len(chunks):,}, at most {MAX_DOCUMENTS} in one file"
        return [], [Issue(file, 0, "", message)]
    for chunk, first_line in chunks:
        try:
            doc = _parse_document(chunk, first_line, file)
        except _LimitExceeded as exc:
            issues.append(Issue(file, first_line + exc.line, "", exc.message))
            continue
        except yaml.MarkedYAMLError as exc:
            issues.append(_yaml_issue(exc, file, first_line))
            continue
        except yaml.reader.ReaderError as exc:  # a character YAML refuses to read at all
            line = first_line + chunk[:exc.position].count("\n") + 1
            issues.append(Issue(file, line, "", f"character #x{exc.character:04x} is not allowed "
                                                "in YAML (control characters cannot appear)"))
            continue
        if doc is not None:
            docs.append(doc)
    return docs, issues


def _split_documents(text: str) -> list[tuple[str, int]]:
    """(text, 0-based line offset) of each ``---``-separated document.

    Splitting the text (rather than parsing the stream) keeps each document's exact
    source for versioning, and lets a syntax error in one document spare the others.
    A ``---`` at column 0 always starts a document in YAML, even inside a scalar.
    """
    chunks: list[tuple[str, int]] = []
    current: list[str] = []
    start = 0
    # Split on "\n" only: str.splitlines also breaks on characters YAML does not, and
    # line numbers would drift from the parser's.
    for number, line in enumerate(_LINES.findall(text)):
        if _DOC_MARKER.match(line) and number > 0:
            chunks.append(("".join(current), start))
            current, start = [], number
        current.append(line)
    chunks.append(("".join(current), start))
    return chunks


def _parse_document(chunk: str, offset: int, file: str) -> ParsedDocument | None:
    loader = _BoundedLoader(chunk)
    try:
        root = loader.get_single_node()
    finally:
        loader.dispose()
    if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL_TAG):
        return None  # only comments, blank lines or a bare `---`
    if _expanded_size(root) > MAX_NODES:
        raise _LimitExceeded(
            f"too large once its aliases are expanded: more than {MAX_NODES:,} nodes",
            root.start_mark.line + 1,
        )
    lines: dict[str, int] = {"": root.start_mark.line + 1 + offset}
    converter = _Converter(_Loader(""), lines, offset, file)
    data = converter.convert(root, "", ())
    return ParsedDocument(file, lines[""], _strip_marker(chunk), data, lines, converter.issues)


def _strip_marker(chunk: str) -> str:
    first, _, rest = chunk.partition("\n")
    return rest if _BARE_MARKER.match(first) else chunk


def _yaml_issue(exc: yaml.MarkedYAMLError, file: str, offset: int) -> Issue:
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 + offset if mark is not None else 0
    context = f" ({exc.context})" if exc.context else ""
    return Issue(file, line, "", f"invalid YAML: {exc.problem or 'cannot be parsed'}{context}")


class _Converter:
    """Composed YAML nodes -> plain data, recording the line of every path.

    Mapping keys are kept as the text typed (so ``on:`` stays ``"on"``); a repeated key
    is an issue, because PyYAML would silently keep only the last value.
    """

    def __init__(self, constructor: _Loader, lines: dict[str, int], offset: int, file: str) -> None:
        self.constructor = constructor
        self.lines = lines
        self.offset = offset
        self.file = file
        self.issues: list[Issue] = []

    def line(self, node: Node) -> int:
        return int(node.start_mark.line) + 1 + self.offset

    def convert(self, node: Node, path: str, stack: tuple[int, ...]) -> Any:
        if id(node) in stack:  # an alias inside its own anchor: the data would be infinite
            raise yaml.constructor.ConstructorError(None, None, "recursive alias", node.start_mark)
        stack = stack + (id(node),)
        if isinstance(node, MappingNode):
            return self._mapping(node, path, stack)
        if isinstance(node, SequenceNode):
            return self._sequence(node, path, stack)
        try:
            return self.constructor.construct_object(node, deep=True)  # unknown tags raise
        except (ValueError, KeyError, TypeError, OverflowError) as exc:
            # A value its tag cannot read (``!!int abc``, ``!!timestamp 2026-13-45``, a
            # whole number of thousands of digits): located like any YAML mistake.
            tag = str(node.tag).replace("tag:yaml.org,2002:", "!!")
            reason = str(exc).split(";")[0].strip("'")
            raise yaml.constructor.ConstructorError(
                None, None, f"the value cannot be read as {tag}: {reason}", node.start_mark
            ) from None

    def _sequence(self, node: SequenceNode, path: str, stack: tuple[int, ...]) -> list[Any]:
        out = []
        for index, child in enumerate(node.value):
            self.lines[item(path, index)] = self.line(child)
            out.append(self.convert(child, item(path, index), stack))
        return out

    def _mapping(self, node: MappingNode, path: str, stack: tuple[int, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        merges = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
            elif not isinstance(key_node, ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain name", key_node.start_mark
                )
            else:
                self._entry(out, str(key_node.value), key_node, value_node, path, stack)
        for merged in merges:  # `<<: *defaults` fills in the keys not given explicitly
            for source in merged.value if isinstance(merged, SequenceNode) else [merged]:
                for key_node, value_node in source.value if isinstance(source, MappingNode) else []:
                    key = str(key_node.value)
                    if isinstance(key_node, ScalarNode) and key not in out:
                        self._entry(out, key, key_node, value_node, path, stack)
        return out

    def _entry(
        self,
        out: dict[str, Any],
        key: str,
        key_node: Node,
        value_node: Node,
        path: str,
        stack: tuple[int, ...],
    ) -> None:
        kpath = join(path, key)
        if key in out:
            first = self.lines[kpath]
            message = f"duplicate key '{key}' (first at line {first})"
            self.issues.append(Issue(self.file, self.line(key_node), kpath, message))
            return
        self.lines[kpath] = self.line(key_node)
        out[key] = self.convert(value_node, kpath, stack)


# --- plain data -> frozen definitions (only for documents that passed validation) ----------


def build(doc: ParsedDocument) -> LoadedDefinition:
    """Build the frozen definition of a document that passed validation."""
    data = doc.data
    definition: Definition
    if data["kind"] == "object":
        definition = _build_object(data)
    elif data["kind"] == "calendar":
        definition = _build_calendar(data)
    elif data["kind"] == "mailbox":
        definition = MailboxDefinition(
            data["name"], data["object"], MappingProxyType(dict(data["fields"])),
            tuple(a.lower() for a in data.get("addresses", ())),
            data.get("automatic", "ignore"), data.get("label"),
            _attachment_policy(data.get("attachments") or {}), _imap(data.get("imap")))
    elif data["kind"] == "connection":
        definition = build_connection(data)
    elif data["kind"] == "catalog":
        definition = build_catalog(data)
    elif data["kind"] == "fulfillment":
        definition = build_fulfillment(data, _build_trigger(data["trigger"]))
    elif data["kind"] == "routing":
        definition = build_rule(data["name"], data)
    elif data["kind"] == "intake_form":
        from baton.definitions.intake_form import build_intake_form

        definition = build_intake_form(data)
    else:
        definition = _build_orchestration(data, doc.lines)
    return LoadedDefinition(data["kind"], definition.name, definition, doc.source, doc.file,
                            doc.line)


def _imap(data: Mapping[str, Any] | None) -> ImapSource | None:
    if not data:
        return None
    ssl = bool(data.get("ssl", True))
    return ImapSource(str(data["host"]), str(data["username"]), str(data["password_secret"]),
                      int(data.get("port", 993 if ssl else 143)), str(data.get("folder", "INBOX")),
                      ssl, int(data.get("every", 60)))


def _attachment_policy(data: Mapping[str, Any]) -> AttachmentPolicy:
    return AttachmentPolicy(int(data.get("max_bytes", ATTACHMENTS_MAX_BYTES)),
                            tuple(a.lower() for a in data.get("allow", ATTACHMENTS_ALLOW)))


def _build_calendar(data: Mapping[str, Any]) -> CalendarDefinition:
    return CalendarDefinition(
        name=data["name"],
        timezone=data["timezone"],
        hours=MappingProxyType({day: tuple(v) for day, v in data["hours"].items()}),
        holidays=MappingProxyType(dict(data["holidays"])) if data.get("holidays") else None,
        extra_dates=tuple(str(d) for d in data.get("extra_dates") or ()),
        label=data.get("label"),
    )


def _build_object(data: Mapping[str, Any]) -> ObjectTypeDefinition:
    fields = tuple(_build_field(name, spec) for name, spec in data["fields"].items())
    return ObjectTypeDefinition(name=data["name"], fields=fields, label=data.get("label"),
                                title_field=data.get("title_field"),
                                summary_field=data.get("summary_field"))


def _build_field(name: str, spec: Mapping[str, Any]) -> FieldDefinition:
    return FieldDefinition(
        name=name,
        type=spec["type"],
        required=spec.get("required", False),
        default=spec.get("default"),
        choices=tuple(spec.get("choices", ())),
        object=spec.get("object"),
        label=spec.get("label"),
        max_length=spec.get("max_length"),
        check=spec.get("check", True),
        precision=spec.get("precision"),
        scale=spec.get("scale"),
        rounding=spec.get("rounding"),
        description=spec.get("description"),
    )


def _build_orchestration(
    data: Mapping[str, Any], lines: Mapping[str, int]
) -> OrchestrationDefinition:
    stages = tuple(
        _build_stage(stage, item("stages", i), lines) for i, stage in enumerate(data["stages"])
    )
    return OrchestrationDefinition(
        name=data["name"],
        trigger=_build_trigger(data["trigger"]),
        stages=stages,
        variables=MappingProxyType(dict(data.get("variables") or {})),
        label=data.get("label"),
        retry=MappingProxyType(dict(data["retry"])) if data.get("retry") else None,
    )


def _build_trigger(data: Mapping[str, Any]) -> Trigger:
    on = data.get("on", ["create"]) if data["type"] == "record" else []
    return Trigger(
        type=data["type"],
        object=data.get("object"),
        on=(on,) if isinstance(on, str) else tuple(on),
        when=_build_condition(data.get("when"), "trigger.when"),
        input=tuple(_build_field(name, spec) for name, spec in (data.get("input") or {}).items()),
        cron=data.get("cron"),
        timezone=data.get("timezone"),
        misfire=data.get("misfire", "run_once"),
        changed_to_meet=bool(data.get("changed_to_meet", False)),
    )


def _build_stage(data: Mapping[str, Any], path: str, lines: Mapping[str, int]) -> StageDefinition:
    steps_path = join(path, "steps")
    steps = tuple(
        _build_step(s, lines[item(steps_path, j)]) for j, s in enumerate(data.get("steps") or [])
    )
    rules = data.get("next")
    at = f"stages.{data['name']}"
    return StageDefinition(
        name=data["name"],
        steps=steps,
        exit_when=_build_condition(data.get("exit_when"), f"{at}.exit_when"),
        exit=data.get("exit", "all_steps"),
        next=None
        if rules is None
        else tuple(NextRule(r["goto"], _build_condition(r.get("when"), f"{at}.next[{i}].when"),
                            r.get("label"))
                   for i, r in enumerate(rules)),
        max_iterations=data.get("max_iterations", DEFAULT_MAX_ITERATIONS),
        line=lines[path],
    )


def _build_step(data: Mapping[str, Any], line: int) -> StepDefinition:
    return StepDefinition(
        name=data["name"],
        type=data["type"],
        flow=data.get("flow"),
        label=data.get("label"),
        after=tuple(data.get("after", ())),
        when=_build_condition(data.get("when"), f"steps.{data['name']}.when"),
        complete_when=_build_condition(data.get("complete_when"),
                                       f"steps.{data['name']}.complete_when"),
        assign=_build_assignment(data.get("assign")),
        form=tuple(_build_field(f["name"], f) for f in data.get("form", ())),
        instructions=data.get("instructions"),
        on_failure=data.get("on_failure", "fallout"),
        options=MappingProxyType({k: data[k] for k in _option_keys(data["type"]) if k in data}),
        line=line,
    )


_OPTION_KEYS: dict[str, tuple[str, ...]] = {}


def _option_keys(step_type: str) -> tuple[str, ...]:
    hit = _OPTION_KEYS.get(step_type)  # a generated plan builds thousands of steps
    if hit is not None:
        return hit
    st = registry.get(step_type)
    own = tuple(k for k in st.keys if k not in _STEP_FIELDS and k not in OPTION_KEYS
                ) if st is not None else ()
    if st is not None:  # (a type registered later is looked up again)
        _OPTION_KEYS[step_type] = OPTION_KEYS + own
    return OPTION_KEYS + own


def _build_condition(value: Any, site: str) -> Condition | None:
    """``site`` names where the condition stands: an evaluation flow's answer is kept
    under it (``Run.flow_conditions``)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return Condition(expression="=true" if value else "=false", site=site)
    if isinstance(value, Mapping):
        given = value.get("input")
        return Condition(flow=value["flow"], site=site,
                         input=MappingProxyType(dict(given)) if given else None)
    return Condition(expression=value, site=site)


def _build_assignment(value: Mapping[str, Any] | None) -> Assignment | None:
    if value is None:
        return None
    ((kind, who),) = value.items()
    if kind == AssigneeKind.ROUTING.value and isinstance(who, Mapping):
        return Assignment(AssigneeKind.ROUTING, "", build_rule("", who))
    return Assignment(AssigneeKind(kind), who)
