"""Read Salesforce metadata XML safely, keeping the line of every element.

Flow metadata never needs a DTD, so any ``<!DOCTYPE`` (and with it every entity
declaration: "billion laughs", external entities) is refused before anything is expanded.
Files are bounded in size. Namespaces are dropped: Salesforce writes one default namespace.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from xml.parsers import expat

MAX_XML_BYTES = 5 * 1024 * 1024
"""A metadata file larger than this is refused unread (real flows are well under 1 MiB)."""


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


def parse_xml(data: bytes) -> Node:
    """Parse ``data`` into a :class:`Node` tree; raises :class:`XmlProblem`."""
    if len(data) > MAX_XML_BYTES:
        raise XmlProblem(f"file is larger than {MAX_XML_BYTES // (1024 * 1024)} MiB", 1)
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[Node] = []
    root: list[Node] = []

    def refuse_doctype(*_: object) -> None:
        raise XmlProblem("a DOCTYPE (DTD or entity declarations) is not allowed in flow "
                         "metadata", parser.CurrentLineNumber)

    def start(name: str, _attrs: dict[str, str]) -> None:
        node = Node(_local(name), parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(node)
        else:
            root.append(node)
        stack.append(node)

    def end(_name: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text += data

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
