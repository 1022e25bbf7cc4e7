"""Text no store keeps (NUL, lone surrogates) is refused where it comes in, the same on
SQLite and PostgreSQL: records, forms and run input through the CLI and the Python API
(the API's 422 uses the same rules: tests/api)."""

from __future__ import annotations

import pytest

from baton.definitions.model import FieldDefinition
from baton.errors import ValidationError
from baton.records.fields import coerce_fields
from baton.storable import bad_text, first_problem

FIELDS = (FieldDefinition("name", "string"), FieldDefinition("notes", "text"),
          FieldDefinition("data", "json"))


def test_bad_text() -> None:
    assert bad_text("plain") is None and bad_text("é ünïcode ✓") is None
    assert bad_text("a\x00b") == "must not contain NUL characters"
    assert bad_text("a\udc80") == "is not valid Unicode text (lone surrogate)"
    assert first_problem({"a": [1, {"b": "x\x00"}]}, "output") == \
        "output.a.1.b: must not contain NUL characters"
    assert first_problem({"a": float("nan")}, "") == "a: must be a finite number"
    assert first_problem({"fine": ["x", 1, None]}, "") is None


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"name": "a\x00b"}, "name", "must not contain NUL characters"),
    ({"notes": "line\n\x00"}, "notes", "must not contain NUL characters"),
    ({"name": "\ud800"}, "name", "lone surrogate"),
    ({"data": {"k": ["x", "a\x00"]}}, "data", "k.1: must not contain NUL characters"),
    ({"data": {"\x00": 1}}, "data", "'\\x00': key must not contain NUL"),
    ({"data": [float("inf")]}, "data", "0: must be a finite number"),
])
def test_a_record_with_text_no_store_keeps_is_refused_naming_the_field(
        data: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as e:
        coerce_fields(FIELDS, data, "Thing record")
    assert field in e.value.fields and message in e.value.fields[field], e.value.fields


def test_good_text_passes_unchanged() -> None:
    data = {"name": "Zoë — ok", "notes": "two\nlines", "data": {"k": ["\\u0000 literal"]}}
    assert coerce_fields(FIELDS, data, "Thing record") == data

