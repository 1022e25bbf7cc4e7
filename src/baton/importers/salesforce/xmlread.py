"""Read Salesforce metadata XML safely, keeping the line of every element.

Flow metadata never needs a DTD, so any ``<!DOCTYPE`` (and with it every entity
declaration: "billion laughs", external entities) is refused before anything is expanded
(what ``defusedxml`` does, on the same expat parser). Files are bounded in size
(:data:`MAX_XML_BYTES`, checked before they are read), elements in number
(:data:`MAX_ELEMENTS`) and nesting (:data:`MAX_DEPTH`). Namespaces are dropped: Salesforce
writes one default namespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

MAX_XML_BYTES = 5 * 1024 * 1024
"""A metadata file larger than this is refused unread (real flows are well under 1 MiB)."""
MAX_ELEMENTS = 200_000
"""Elements in one file (a large real flow has a few thousand)."""
MAX_DEPTH = 100
"""How deeply elements may nest (flow metadata nests a dozen levels)."""


class XmlProblem(Exception):
    """The file is not XML this importer will read; ``line`` says where."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


@dataclass
class Node:
    """One element: its tag (without namespace), text, line and children in order."""

    tag: str
    line: int
    text: str = ""
    children: list[Node] = field(default_factory=list)

    def all(self, tag: str) -> list[Node]:
        return [c for c in self.children if c.tag == tag]

    def first(self, tag: str) -> Node | None:
        for c in self.children:
            if c.tag == tag:
                return c
        return None

    def value(self, tag: str, default: str = "") -> str:
        """The text of the first child ``tag`` (stripped), or ``default``."""
        c = self.first(tag)
        return c.text.strip() if c is not None else default

    def flag(self, tag: str) -> bool:
        return self.value(tag).lower() == "true"

    def walk(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            yield from c.walk()


def _local(name: str) -> str:
    return name.rsplit(":", 1)[-1].rsplit("}", 1)[-1]


def read_xml(path: Path) -> Node:
    """:func:`parse_xml` of a file, refused unread when it is larger than
    :data:`MAX_XML_BYTES`; raises :class:`XmlProblem` (or :class:`OSError`)."""
    with path.open("rb") as f:
        data = f.read(MAX_XML_BYTES + 1)
    return parse_xml(data)


def parse_xml(data: bytes) -> Node:
    """Parse ``data`` into a :class:`Node` tree; raises :class:`XmlProblem`."""
    if len(data) > MAX_XML_BYTES:
        raise XmlProblem(f"file is larger than {MAX_XML_BYTES // (1024 * 1024)} MiB", 1)
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Node] = []
    texts: list[list[str]] = []  # each open element's text, in pieces (joined at its end)
    root: list[Node] = []
    count = 0

    def refuse_doctype(*_: object) -> None:
        raise XmlProblem("a DOCTYPE (DTD or entity declarations) is not allowed in flow "
                         "metadata", parser.CurrentLineNumber)

    def start(name: str, _attrs: dict[str, str]) -> None:
        nonlocal count
        count += 1
        if count > MAX_ELEMENTS:
            raise XmlProblem(f"more than {MAX_ELEMENTS:,} elements: not flow metadata",
                             parser.CurrentLineNumber)
        if len(stack) >= MAX_DEPTH:
            raise XmlProblem(f"elements nested more than {MAX_DEPTH} deep: not flow metadata",
                             parser.CurrentLineNumber)
        node = Node(_local(name), parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)
        texts.append([])

    def end(_name: str) -> None:
        stack.pop().text = "".join(texts.pop())

    def text(data: str) -> None:
        if texts:
            texts[-1].append(data)

    parser.StartDoctypeDeclHandler = refuse_doctype
    parser.EntityDeclHandler = refuse_doctype
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise XmlProblem(f"not well-formed XML: {expat.ErrorString(exc.code)}",
                         exc.lineno) from None
    if not root:
        raise XmlProblem("no root element", 1)
    return root[0]
