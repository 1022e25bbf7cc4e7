"""What record writes and form submissions look up once per definition, not once per call
(issue 19, target 1): the lookups must answer exactly what the per-call code did."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson
import pytest

from baton.definitions.model import FieldDefinition as F
from baton.errors import ValidationError
from baton.records.fields import coerce_fields, field_shape, json_values
from baton.work.service import form_fields

FIELDS = (
    F("subject", "string", required=True),
    F("account", "ref", object="Account"),
    F("later", "ref", object="Order", check=False),
    F("amount", "decimal"),
    F("notes", "json", max_length=20),
)


def test_a_definitions_fields_are_looked_at_once_and_a_list_every_time() -> None:
    shape = field_shape(FIELDS)
    assert field_shape(FIELDS) is shape  # (a definition's tuple: remembered)
    assert list(shape.by_name) == ["subject", "account", "later", "amount", "notes"]
    assert [f.name for f in shape.checked_refs] == ["account"]  # not check: false, not others
    assert [f.name for f in shape.decimals] == ["amount"]
    assert dict(shape.empty) == dict.fromkeys(shape.by_name)
    with pytest.raises(TypeError):
        shape.empty["subject"] = "x"  # type: ignore[index]  # (shared: read-only)
    as_list = list(FIELDS)
    assert field_shape(as_list) is not field_shape(as_list)  # (a list may change: never kept)


def test_unknown_fields_are_still_reported_with_every_known_name() -> None:
    with pytest.raises(ValidationError) as err:
        coerce_fields(FIELDS, {"subject": "a", "colour": "red"}, "Case record")
    assert err.value.fields == {"colour": "unknown field (fields: subject, account, later, "
                                          "amount, notes)"}


@pytest.mark.parametrize("value", [
    {"a": "é" * 12},  # 20 characters of JSON (non-ASCII counted as characters)
    {"a": "x" * 12},
    {"d": dt.date(2026, 1, 2)},  # not JSON: measured as its str(), as json.dumps(default=str)
    [1.5, 2, None, True, "ü"],
])
def test_a_json_fields_size_is_measured_as_json_dumps_measured_it(value: Any) -> None:
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))
    if size <= 20:  # (kept as the store keeps it: a date as its ISO text)
        kept = coerce_fields(FIELDS, {"notes": value}, "x", partial=True)["notes"]
        assert kept == orjson.loads(orjson.dumps(value))
    else:
        with pytest.raises(ValidationError, match=f"{size:,} characters of JSON is too long"):
            coerce_fields(FIELDS, {"notes": value}, "x", partial=True)


def test_json_values_turn_only_decimals_to_text() -> None:
    data = {"subject": "a", "amount": 19.9, "notes": {"n": 1}}
    out = json_values(FIELDS, data)
    assert out == {"subject": "a", "amount": "19.90", "notes": {"n": 1}}
    assert out is not data and data["amount"] == 19.9  # (a copy: the stored row is left alone)


FORM = [{"name": "resolution", "type": "choice", "required": True,
         "choices": ["close", "escalate"]},
        {"name": "notes", "type": "text", "required": False}]


def test_a_work_items_form_is_made_into_fields_once_per_form() -> None:
    first = form_fields(FORM)
    assert [(f.name, f.type, f.required, f.choices) for f in first] == [
        ("resolution", "choice", True, ("close", "escalate")), ("notes", "text", False, ())]
    # Another item of the same step: its form read from its own row, equal, not the same.
    assert form_fields(json.loads(json.dumps(FORM))) is first
    other = [{**FORM[0], "choices": ["close"]}, FORM[1]]
    assert form_fields(other) is not first and form_fields(other)[0].choices == ("close",)
    with pytest.raises(ValidationError):
        coerce_fields(form_fields(other), {"resolution": "escalate"}, "form")


def test_a_form_whose_default_is_an_object_gives_each_submission_its_own() -> None:
    text = json.dumps([{"name": "tags", "type": "json", "required": False,
                        "default": {"seen": []}}])
    a = coerce_fields(form_fields(json.loads(text)), {}, "form")  # (each item's row decoded)
    a["tags"]["seen"].append("x")  # (a flow or a caller may change what it was given)
    b = coerce_fields(form_fields(json.loads(text)), {}, "form")
    assert b["tags"] == {"seen": []}


def test_a_wake_up_sets_the_event_only_when_it_is_down(tmp_path: Any) -> None:
    """Every decision that enqueues a job wakes in-process workers; an event already up
    (nobody has looked since, or no in-process worker: an API server) is left alone."""
    from baton.runtime.engine import Engine

    eng = Engine(f"sqlite:///{tmp_path}/w.db")
    try:
        event, sets = eng.work_available, []
        real = event.set
        event.set = lambda: (sets.append(1), real())[1]  # type: ignore[method-assign]
        for wake in (eng.applier.wake, eng.records.wake, eng.wake):
            assert wake is not None
            wake()
        assert event.is_set() and len(sets) == 1
        event.clear()  # (a worker looked)
        eng.records.wake()
        assert event.is_set() and len(sets) == 2
    finally:
        eng.close()
