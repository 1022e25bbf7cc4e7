"""What a flow returns, or leaves in ``ctx.vars``, is stored as JSON: a value JSON has no
type for fails the step (not retried), naming where and what, instead of being stored as its
``str()`` ("{1, 2}", "b'ab'", "<object at 0x…>"); a datetime, date, Decimal, tuple, Enum or
UUID is stored as it obviously reads (ISO 8601 in UTC, exact digits, a list, its value, its
text)."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections import OrderedDict, defaultdict
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from baton import flow
from baton.errors import StepFailure
from baton.runtime.worker import _jsonable


class Colour(enum.Enum):
    RED = "red"


class Size(enum.IntEnum):
    L = 3


class Name(str):
    pass


@dataclasses.dataclass
class Point:
    x: int


class Thing:
    pass


def _refused(value: Any, what: str = "output") -> StepFailure:
    with pytest.raises(StepFailure) as caught:
        _jsonable(value, what)
    assert caught.value.retryable is False
    return caught.value


def test_values_with_an_obvious_json_reading_are_stored_as_it() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    value = {
        "when": datetime(2026, 1, 5, 14, 30, 15, tzinfo=ist),  # the instant, in UTC
        "precise": datetime(2026, 1, 5, 9, 0, 0, 123456, tzinfo=UTC),
        "day": date(2026, 2, 28),
        "amount": Decimal("19.90"), "big": Decimal("1E+3"), "tiny": Decimal("-0.000123"),
        "pair": (1, (2, "x")), "colour": Colour.RED, "size": Size.L,
        "id": uuid.UUID(int=5), "name": Name("ann"),
        "ordered": OrderedDict(b=1, a=2), "grouped": defaultdict(list, k=[1]),
        "nested": [{"at": date(2026, 3, 1)}],
    }
    assert _jsonable(value) == {
        "when": "2026-01-05T09:00:15Z",
        "precise": "2026-01-05T09:00:00.123456Z",
        "day": "2026-02-28",
        "amount": "19.90", "big": "1000", "tiny": "-0.000123",
        "pair": [1, [2, "x"]], "colour": "red", "size": 3,
        "id": "00000000-0000-0000-0000-000000000005", "name": "ann",
        "ordered": {"b": 1, "a": 2}, "grouped": {"k": [1]},
        "nested": [{"at": "2026-03-01"}],
    }
    # keys that are not text become text, as JSON makes them (the slower second try)
    assert _jsonable({1: {2.5: date(2026, 1, 1)}, "s": (Decimal("2.50"),)}) == {
        "1": {"2.5": "2026-01-01"}, "s": ["2.50"]}


@pytest.mark.parametrize(("value", "where", "what", "instead"), [
    ({"tags": {1, 2}}, "output.tags", "is of type set", "a list"),
    ({"raw": b"ab"}, "output.raw", "is of type bytes", "base64"),
    ({"a": [1, {"b": bytearray(b"x")}]}, "output.a.1.b", "is of type bytearray", "base64"),
    ({"t": Thing()}, "output.t", "is of type tests.unit.test_flow_values.Thing", "lists or dicts"),
    ({"p": Point(1)}, "output.p", "is a dataclass, tests.unit.test_flow_values.Point",
     "a dict (dataclasses.asdict"),
    ({"f": frozenset()}, "output.f", "is of type frozenset", "a list"),
    ({"d": timedelta(hours=1)}, "output.d", "is of type timedelta", ".total_seconds()"),
    ({"at": time(9, 30)}, "output.at", "is of type time", ".isoformat()"),
    ({"n": Decimal("NaN")}, "output.n", "is of type Decimal (NaN: not a finite", "exact digits"),
    ({"x": [1, 2, (3, object())]}, "output.x.2.1", "is of type object", "lists or dicts"),
    ({"c": Colour.RED, "late": {3}}, "output.late", "is of type set", "a list"),
    ({"gen": (i for i in range(2))}, "output.gen", "is of type generator", "lists or dicts"),
])
def test_a_value_json_does_not_hold_fails_the_step_naming_where_and_what(
        value: Any, where: str, what: str, instead: str) -> None:
    message = str(_refused(value))
    assert f"{where} {what}" in message, message
    assert instead in message, message
    assert "not JSON" in message


def test_a_datetime_without_a_time_zone_is_refused_as_record_fields_refuse_it() -> None:
    message = str(_refused({"due": [datetime(2026, 1, 5, 9, 0)]}))
    assert "output.due.0 is a datetime without a time zone" in message
    assert "tzinfo=datetime.UTC" in message


def test_vars_are_named_as_vars_and_keys_as_what_they_are() -> None:
    message = str(_refused({"seen": {"a", "b"}}, "vars"))
    assert "vars.seen is of type set" in message
    message = str(_refused({"m": {(1, 2): "pair"}}))
    assert "output.m has a key of type tuple" in message
    # with keys that are not text, the walk still finds the value (the second try's path)
    assert "output.1.2 is of type set" in str(_refused({1: {2: {3}}}))


def test_wide_integers_and_bad_text_are_still_refused_as_before() -> None:
    assert "whole numbers must fit in 64 bits" in str(_refused({"n": [1, 2**64]}))
    assert "output.n.1" in str(_refused({"n": [1, 2**64]}))
    assert "whole numbers must fit in 64 bits" in str(_refused({1: -(2**63) - 1}))
    assert "output.s: must not contain NUL" in str(_refused({"s": "a\x00"}))
    assert _jsonable({"n": 2**64 - 1, "m": -(2**63)}) == {"n": 2**64 - 1, "m": -(2**63)}


# ---- through a real worker -------------------------------------------------------------------

FLOWS = """
kind: orchestration
name: t_flow_values
trigger: {type: autolaunched}
stages:
  - name: only
    steps:
      - {name: typed, type: background, flow: t_flow_values.typed}
      - {name: odd, type: background, flow: t_flow_values.odd, after: [typed],
         retry: {max: 3, initial: 1s}}
"""


@flow("t_flow_values.typed")
def _typed(ctx: Any) -> dict[str, Any]:
    ctx.vars["seen_at"] = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
    ctx.vars["total"] = Decimal("10.50")
    return {"day": date(2026, 4, 1), "pair": (1, 2)}


@flow("t_flow_values.odd")
def _odd(ctx: Any) -> dict[str, Any]:
    ctx.vars["ids"] = {3, 1}
    return {"ok": True}


def test_a_flows_values_are_stored_as_json_or_its_step_falls_out_saying_why(
        harness: Any) -> None:
    harness.deploy_text(FLOWS)
    run = harness.engine.start("t_flow_values", {})
    harness.work()
    run = harness.engine.get_run(run.id)
    typed, odd = run.steps["typed"], run.steps["odd"]
    assert typed.status.value == "completed"
    assert typed.output == {"day": "2026-04-01", "pair": [1, 2]}
    assert run.vars["seen_at"] == "2026-04-01T12:00:00Z" and run.vars["total"] == "10.50"
    # not retried (retry: max 3): the same flow would return the same
    assert odd.status.value == "fallout" and odd.attempts == 1, odd
    assert "vars.ids is of type set" in str(odd.error) and "a list" in str(odd.error)
    assert "ids" not in run.vars
