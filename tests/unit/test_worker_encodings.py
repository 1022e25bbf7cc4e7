"""The worker's and the store's encodings after their fast paths: the same text and values
as before (orjson without OPT_NON_STR_KEYS first; a step's ``ran_at`` from its millisecond)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum

import orjson
import pytest

from baton.clock import iso
from baton.errors import StepFailure
from baton.runtime.worker import _iso_ms, _jsonable
from baton.store.codec import json_dumps, json_loads


class Colour(Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int


VALUES = [
    {"a": 1, "b": [1, 2.5, None, True], "c": {"d": "é", "e": {}}},
    {1: "one", "nested": {2: {3.5: "x", True: "t", None: "n"}}},  # keys that are not strings
    [{"a": 1}, {7: [8]}],
    {"big": 2**70},  # beyond 64 bits: json's encoding
    {"n": -(2**63), "m": 2**64 - 1},
    "text", 3, None, [],
]


@pytest.mark.parametrize("value", VALUES)
def test_json_dumps_writes_what_it_wrote_with_the_option_always_on(value: object) -> None:
    try:
        before = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        before = json.dumps(value)
    assert json_dumps(value) == before
    assert json_loads(json_dumps(value)) == json.loads(json.dumps(value))


def test_iso_ms_is_iso() -> None:
    base = datetime(2026, 12, 3, 13, 59, 59, tzinfo=UTC)
    for us in (0, 1, 999, 1000, 1001, 123456, 999000, 999999):
        dt = base.replace(microsecond=us)
        assert _iso_ms(dt) == iso(dt)
        ist = dt.astimezone(timezone(timedelta(hours=5, minutes=30)))
        assert _iso_ms(ist) == iso(ist) == iso(dt)
    assert _iso_ms(base.replace(microsecond=999999)) == "2026-12-03T13:59:59.999Z"


def test_jsonable_is_what_json_would_store() -> None:
    when = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    value = {"t": (1, 2), 3: {4: "x"}, "when": when, "colour": Colour.RED,
             "amount": Decimal("1.10"), "s": {"a": [1]}}
    got = _jsonable(value)
    assert got == {"t": [1, 2], "3": {"4": "x"}, "when": "2026-01-05T09:00:00Z",
                   "colour": "red", "amount": "1.10", "s": {"a": [1]}}
    # not JSON: refused, not stored as its str() (tests/unit/test_flow_values.py)
    with pytest.raises(StepFailure, match=r"output\.p is a dataclass"):
        _jsonable({"p": Point(1), 3: "x"})
    assert _jsonable({"a": {"b": [1, "c"]}}) == {"a": {"b": [1, "c"]}}
    with pytest.raises(StepFailure, match="64 bits"):
        _jsonable({"n": 2**64})
    with pytest.raises(StepFailure, match="64 bits"):
        _jsonable({1: 2**64})


def test_jsonable_refuses_text_no_store_keeps_naming_where() -> None:
    # PostgreSQL refuses NUL in jsonb ("\u0000 cannot be converted to text"): the step
    # fails, saying where, instead of the worker's commit failing on every retry.
    with pytest.raises(StepFailure, match=r"output\.pages\.1: must not contain NUL") as e:
        _jsonable({"pages": ["one", "two\x00three"]})
    assert not e.value.retryable
    with pytest.raises(StepFailure, match=r"vars\.note: must not contain NUL"):
        _jsonable({"note": "\x00"}, "vars")
    with pytest.raises(StepFailure, match=r"output\.'k\\x00': key must not contain NUL"):
        _jsonable({"k\x00": 1})
    with pytest.raises(StepFailure, match=r"output\.s: is not valid Unicode text \(lone surr"):
        _jsonable({"s": "a\ud800b"})
    # a backslash before "u0000" is text like any other
    assert _jsonable({"path": "C:\\u0000x"}) == {"path": "C:\\u0000x"}
