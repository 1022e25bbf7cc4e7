"""The definitions a project imported before holds (``--force``: importing again).

Every YAML file under ``definitions/`` is read (``*.yaml``, ``*.yml``, hidden ones left out,
as ``baton validate`` reads them): a user may keep object types in any of them, not only in
``objects.yaml``. Each object type may say which Salesforce object it holds, by a comment on
the line above its first key, which the import writes on every object type it writes::

    # Salesforce object: Vendor__c
    kind: object
    name: Vendor

An import matches the object types it makes with the kept ones by that line, not by their
Baton name alone: ``Vendor`` (a standard-looking object) and ``Vendor__c`` (a custom one)
both read ``Vendor``, and the kept ``Vendor`` of an import that had only ``Vendor__c``
is not the standard object's. A kept object type without the line is matched by name
when one object of the import may be it, and the import stops, saying which and where,
when two may (:func:`ambiguous`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.definitions.loader import parse_text
from baton.errors import BatonError
from baton.importers.salesforce.names import object_name

MARKER = re.compile(r"^#\s*Salesforce object:\s*(\S+)\s*$", re.IGNORECASE)
WHY = "add the object types and fields the import makes"


def marker(api: str) -> str:
    """The comment line that says an object type holds Salesforce object ``api``."""
    return f"# Salesforce object: {api}\n"


@dataclass
class KeptType:
    """An object type of the project already there."""

    name: str
    doc: dict[str, Any]
    path: Path
    line: int                # of its document's first key
    origin: str | None       # the Salesforce object its marker line names, if it has one


@dataclass
class Kept:
    """The YAML files under ``definitions/`` (their documents, in order) and the object
    types they hold (by name: the first of a name)."""

    files: dict[Path, list[Any]] = field(default_factory=dict)
    types: dict[str, KeptType] = field(default_factory=dict)

    def names(self) -> frozenset[str]:
        return frozenset(self.types)

    def marked(self) -> list[KeptType]:
        return [t for t in self.types.values() if t.origin is not None]


def read_file(path: Path, why: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise BatonError(f"{path}: cannot read it to {why}: {reason} (fix it, or move it "
                         "away and import again)") from None


def yaml_files(folder: Path) -> list[Path]:
    """The definition files under ``folder``, as ``baton validate`` finds them."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*")
                  if p.suffix in (".yaml", ".yml") and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_kept(folder: Path) -> Kept:
    """The definitions under ``folder`` (a project's ``definitions/``); a file that is not
    YAML, or holds an object type whose fields are not a mapping, stops the import, named
    with its line (nothing is written)."""
    kept = Kept()
    for path in yaml_files(folder):
        text = read_file(path, WHY)
        lines = text.splitlines()
        docs: list[Any] = []
        for doc, line in _documents(path, text):
            if doc is None:
                continue
            docs.append(doc)
            if not isinstance(doc, dict):
                raise BatonError(f"{path}:{line + 1}: cannot {WHY} to it: a document is not "
                                 "a definition (a mapping) (fix it, or move it away and "
                                 "import again)")
            if doc.get("kind") != "object" or not isinstance(doc.get("name"), str):
                continue
            if not isinstance(doc.get("fields", {}), dict):
                raise BatonError(f"{path}:{line + 1}: cannot {WHY} to it: object type "
                                 f"{doc['name']} has fields that are not a mapping (fix it, "
                                 "or move it away and import again)")
            kept.types.setdefault(doc["name"], KeptType(doc["name"], doc, path, line + 1,
                                                        _origin(lines, line)))
        kept.files[path] = docs
    return kept


def _documents(path: Path, text: str) -> list[tuple[Any, int]]:
    """Each document of ``text`` with the (0-based) line it starts at, read as ``baton
    validate`` reads definitions (:func:`baton.definitions.loader.parse_text`: its bounds on
    aliases, nesting and size refuse a hostile file before it costs more than its size)."""
    docs, issues = parse_text(text, str(path))
    if issues:
        first = issues[0]
        where = f"{path}:{first.line}" if first.line else str(path)
        raise BatonError(f"{where}: cannot {WHY} to it: not YAML Baton reads "
                         f"({first.message}): fix it, or move it away and import again")
    return [(doc.data, doc.line - 1) for doc in docs]


def _origin(lines: list[str], start: int) -> str | None:
    """The Salesforce object the marker among the comment lines just above line ``start``
    names (the nearest), else None."""
    i = start - 1
    while i >= 0:
        text = lines[i].strip()
        if text and not text.startswith("#"):
            return None
        m = MARKER.match(text)
        if m:
            return m[1]
        i -= 1
    return None


def ambiguous(kept: Kept, made: Iterable[tuple[str, str]], seeded: set[str]) -> None:
    """Stop the import when a kept object type without a marker may hold either of two
    Salesforce objects of this import (``made``: (API name, object type) of each object
    type it makes; ``seeded``: the lower-case API names kept types' markers name): each of
    them reads its name (``Vendor`` and ``Vendor__c`` both read ``Vendor``), and one of
    them would be merged into it."""
    made = list(made)
    for t in kept.types.values():
        if t.origin is not None:
            continue
        key = t.name.lower()
        may = [(api, name) for api, name in made if api.lower() not in seeded
               and key in (object_name(api).lower(), name.lower())]
        if len(may) > 1 and any(name.lower() == key for _, name in may):
            which = ", ".join(f"{api} (object type {name} in this import)"
                              for api, name in may)
            raise BatonError(
                f"{t.path}:{t.line}: object type {t.name} may hold any of the Salesforce "
                f"objects {which}: nothing says which, and taking the wrong one would mix "
                "two objects' fields and records in one object type. Write the line "
                "'# Salesforce object: <API name>' just above its first key ("
                + " or ".join(f"'# Salesforce object: {api}'" for api, _ in may)
                + "), then import again")
