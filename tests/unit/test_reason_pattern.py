"""A reason's "not blank" pattern names the same strings in every regex dialect that reads
it: pydantic's (Rust) on the server, Python's ``str.strip()`` in the engine, ECMA's in a
client's JSON Schema validator (schemathesis found U+0085 accepted by the schema and refused
by the server)."""

from __future__ import annotations

import re
import sys

import pytest
from pydantic import ValidationError

from baton.web.api.common import Reason

# ECMA-262's \s: WhiteSpace and LineTerminator (what a JSON Schema validator in a browser or
# schemathesis' generator reads the pattern's \s as).
ECMA_SPACE = set("\t\n\v\f\r \u00a0\u1680\u2028\u2029\u202f\u205f\u3000\ufeff") | {
    chr(c) for c in range(0x2000, 0x200B)}
PATTERN = Reason.model_json_schema()["properties"]["reason"]["pattern"]


def _ecma_not_blank(text: str) -> bool:
    """The pattern read with ECMA's \\s (the class below is ECMA's \\s spelled out)."""
    ecma = PATTERN.replace(r"\s", "".join(f"\\u{ord(c):04x}" for c in sorted(ECMA_SPACE)))
    return re.search(ecma, text) is not None


@pytest.mark.parametrize("ch", ["\u0085", "\ufeff", "\x1c", "\x1f", "\u3000", " ", "\t"])
def test_a_reason_of_blank_characters_is_refused_by_every_reader(ch: str) -> None:
    with pytest.raises(ValidationError):
        Reason(reason=ch * 3)
    assert not _ecma_not_blank(ch * 3)


def test_the_server_and_a_json_schema_client_agree_on_every_bmp_character() -> None:
    refused_by_server = []
    for c in range(1, 0x10000):
        ch = chr(c)
        if 0xD800 <= c <= 0xDFFF:
            continue
        try:
            Reason(reason=ch)
            server = True
        except ValidationError:
            server = False
        if server != _ecma_not_blank(ch):
            refused_by_server.append(hex(c))
    assert refused_by_server == [], sys.version


def test_the_engine_keeps_what_the_server_accepts() -> None:
    for c in range(1, 0x10000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        ch = chr(c)
        try:
            Reason(reason=ch)
        except ValidationError:
            continue
        assert ch.strip() == ch, hex(c)
