"""Exact ``decimal`` fields (issue 17, defect 6): limits, the stored form, and what CEL sees.

Pure: ``baton.decimals``, the field coercion and the expression language. The same values
through the API, the CLI and flows on both databases are in
tests/integration/test_decimal_fields.py and tests/e2e/test_cli_decimals.py.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from baton import decimals
from baton.definitions.loader import load_text
from baton.definitions.model import FieldDefinition
from baton.errors import DefinitionError, ExpressionError, ValidationError
from baton.expressions import Missing, evaluate, evaluate_condition
from baton.records.fields import coerce_fields, json_values, typed_values

EIGHTEEN = "1234567890123456.78"  # 18 significant digits: a double holds ~15.95
NEXT = "1234567890123456.79"  # the next cent: the same double as EIGHTEEN


def money(**kw: Any) -> FieldDefinition:
    return FieldDefinition(name="amount", type="decimal", **kw)


def coerce(value: Any, **kw: Any) -> Any:
    return coerce_fields([money(**kw)], {"amount": value}, "Order")["amount"]


# ---- values and limits -------------------------------------------------------------------
@pytest.mark.parametrize(("given", "stored"), [
    ("19.9", "19.90"), (19.9, "19.90"), (Decimal("19.90"), "19.90"), (7, "7.00"),
    (" 0.10 ", "0.10"), ("1E+2", "100.00"), ("-0", "0.00"), (0.3, "0.30"),
    (EIGHTEEN, EIGHTEEN), (Decimal(EIGHTEEN), EIGHTEEN), ("-9999999999999999.99", "-9999999999999999.99"),
])
def test_a_decimal_is_stored_as_its_exact_string_at_the_field_scale(given: Any, stored: str) -> None:
    assert coerce(given) == stored


def test_more_places_than_the_scale_are_refused_naming_the_field_and_limit() -> None:
    with pytest.raises(ValidationError) as exc:
        coerce("12.345")
    assert exc.value.fields == {"amount": "12.345 has 3 decimal places: at most 2 "
                                          "(scale: 2; or declare rounding: half_even)"}


def test_beyond_the_precision_is_refused_even_with_rounding() -> None:
    with pytest.raises(ValidationError) as exc:
        coerce("10000000000000000", rounding="half_even")  # 17 digits before the point
    assert "at most 16 digits before the point (precision: 18, scale: 2)" in exc.value.fields["amount"]
    with pytest.raises(ValidationError) as exc:
        coerce("1000", precision=5, scale=2)
    assert "at most 3 digits before the point (precision: 5, scale: 2)" in exc.value.fields["amount"]


@pytest.mark.parametrize(("rounding", "given", "stored"), [
    ("half_even", "0.125", "0.12"), ("half_even", "0.135", "0.14"), ("half_up", "0.125", "0.13"),
    ("down", "-0.129", "-0.12"), ("floor", "-0.121", "-0.13"), ("ceiling", "0.121", "0.13"),
    ("half_even", "-0.001", "0.00"), ("half_even", 0.1 + 0.2, "0.30"),
])
def test_a_field_that_declares_rounding_rounds(rounding: str, given: Any, stored: str) -> None:
    assert coerce(given, rounding=rounding) == stored


def test_a_float_is_taken_only_when_it_stands_for_one_decimal_of_the_field() -> None:
    assert coerce(0.1) == "0.10"
    with pytest.raises(ValidationError) as exc:
        coerce(0.1 + 0.2)  # 0.30000000000000004
    assert exc.value.fields["amount"].startswith("0.30000000000000004 has 17 decimal places")
    with pytest.raises(ValidationError) as exc:
        coerce(float(EIGHTEEN))  # already rounded to 1234567890123456.8 by the float
    assert "may not be exact (a float keeps 15 significant digits)" in exc.value.fields["amount"]


@pytest.mark.parametrize("bad", ["abc", "1,5", "1_000", "NaN", "Infinity", "", "0x10", True,
                                 [1], {"a": 1}, float("nan"), float("inf"), Decimal("NaN"),
                                 "1e99999", "9" * 200])
def test_what_is_not_a_number_is_refused_clearly(bad: Any) -> None:
    if bad == "":
        return  # "" clears an optional field, as for every non-text type
    with pytest.raises(ValidationError) as exc:
        coerce(bad)
    message = exc.value.fields["amount"]
    assert message.startswith(("expected a", "1E+99999 is out of range")), message


def test_a_default_is_stored_exactly_too() -> None:
    f = FieldDefinition(name="fee", type="decimal", default=2.5, scale=3)
    assert coerce_fields([f], {}, "Order") == {"fee": "2.500"}


def test_typed_and_json_views() -> None:
    fields = [money(), FieldDefinition(name="note", type="string")]
    stored = {"amount": "19.90", "note": "19.90"}
    assert typed_values(fields, stored) == {"amount": Decimal("19.90"), "note": "19.90"}
    assert isinstance(typed_values(fields, stored)["amount"], Decimal)
    # A JSON number stored before decimals were exact is read lazily, as its shortest repr
    assert typed_values(fields, {"amount": 19.9})["amount"] == Decimal("19.90")
    assert str(typed_values(fields, {"amount": 19.9})["amount"]) == "19.90"
    assert json_values(fields, {"amount": 19.9, "note": "x"}) == {"amount": "19.90", "note": "x"}
    # ... and one that does not fit the field's scale is shown exactly, never rounded
    assert json_values(fields, {"amount": 0.125}) == {"amount": "0.125"}
    assert typed_values(fields, {"note": "x"}) == {"note": "x"}


# ---- definitions ----------------------------------------------------------------------------
def _issues(fields: str) -> list[str]:
    text = f"kind: object\nname: Order\nfields:\n{fields}"
    try:
        load_text(text, Path("order.yaml"))
    except DefinitionError as exc:
        return [f"{i.path}: {i.message}" for i in exc.issues]
    return []


def test_precision_scale_and_rounding_are_checked_with_located_issues() -> None:
    assert _issues("  amount: {type: decimal, precision: 12, scale: 4, rounding: half_up}\n") == []
    assert _issues("  amount: {type: decimal, scale: 20}\n") == []  # precision follows: 20
    assert _issues("  amount: {type: decimal, precision: 4, scale: 6}\n") == [
        ("fields.amount.scale: scale 6 is more than precision 4 (the digits after the point "
        "are part of the precision)")]
    assert _issues("  amount: {type: decimal, precision: 0}\n") == [
        "fields.amount.precision: precision must be a whole number from 1 to 38, got 0"]
    assert _issues("  amount: {type: decimal, scale: two}\n") == [
        "fields.amount.scale: scale must be a whole number from 0 to 38, got 'two'"]
    (issue,) = _issues("  amount: {type: decimal, rounding: half_evn}\n")
    assert issue.startswith("fields.amount.rounding: unknown rounding 'half_evn'")
    assert "half_even" in issue
    assert _issues("  n: {type: int, scale: 2}\n") == [
        "fields.n.scale: scale only applies to decimal fields"]
    assert _issues("  amount: {type: decimal, default: 1.005}\n") == [
        ("fields.amount.default: default 1.005 is not a valid decimal: 1.005 has 3 decimal "
        "places: at most 2 (scale: 2; or declare rounding: half_even)")]
    assert _issues("  amount: {type: decimal, default: '12.50'}\n") == []


# ---- CEL ------------------------------------------------------------------------------------
def rec(**values: str) -> dict[str, Any]:
    """A record as the engine hands it to expressions: decimals typed (Decimal)."""
    return {"record": {k: Decimal(v) for k, v in values.items()}}


@pytest.mark.parametrize(("source", "values", "expected"), [
    ("=record.amount > 100.10", {"amount": "100.10"}, False),
    ("=record.amount > 100.10", {"amount": "100.11"}, True),
    ("=record.amount >= 100.10", {"amount": "100.10"}, True),
    ("=record.amount == 100.1", {"amount": "100.10"}, True),
    ("=record.amount > 100", {"amount": "100.01"}, True),
    ("=record.amount < 0.01", {"amount": "0.00"}, True),
    ("=record.total == 0.3", {"total": str(Decimal("0.1") + Decimal("0.2"))}, True),
    ("=record.a < record.b", {"a": "0.29", "b": "0.30"}, True),
    ("=record.a == record.b", {"a": "999999999999.99", "b": "999999999999.99"}, True),
    ("=record.a < record.b", {"a": "9999999999999.98", "b": "9999999999999.99"}, True),
    ("=record.a == record.b", {"a": "9999999999999.98", "b": "9999999999999.99"}, False),
    ("=record.amount == 123456789012345.0", {"amount": "123456789012345.00"}, True),
    ("=record.amount > 123456789012344.9", {"amount": "123456789012345.00"}, True),
    (f'=decimal.compare(record.big, "{EIGHTEEN}") == 0', {"big": EIGHTEEN}, True),
    (f'=decimal.compare(record.big, "{NEXT}") < 0', {"big": EIGHTEEN}, True),
    ("=decimal.compare(record.a, record.b) < 0", {"a": EIGHTEEN, "b": NEXT}, True),
    ("=decimal.compare(record.a, record.b) == 0", {"a": EIGHTEEN, "b": NEXT}, False),
    ("=decimal.scaled(record.a, 2) + 1 == decimal.scaled(record.b, 2)",
     {"a": EIGHTEEN, "b": NEXT}, True),
    ('=decimal.compare(decimal.add(record.a, record.b), "0.3") == 0',
     {"a": "0.1", "b": "0.2"}, True),
    ("=decimal.compare(record.amount, 100.10) > 0", {"amount": "100.11"}, True),
    ("=decimal.compare(record.amount, 100) == 0", {"amount": "100.00"}, True),
])
def test_cel_compares_decimals_exactly(source: str, values: dict[str, str], expected: bool) -> None:
    assert evaluate_condition(source, rec(**values)) is expected


def test_an_amount_a_double_cannot_hold_fails_loudly_instead_of_answering_wrong() -> None:
    # As doubles, EIGHTEEN and NEXT are equal; as strings, "9…" > "1…" letter by letter.
    for source in ("=record.a < record.b", "=record.a > 100.10", "=record.a < 1",
                   "=record.c > record.a"):
        with pytest.raises(ExpressionError) as exc:
            evaluate_condition(source, rec(a=EIGHTEEN, b=NEXT, c="9999999999999999.99"))
        assert "decimal.compare" in str(exc.value), exc.value
    # Equality between two of them is exact (the digits are normalised: scale 2 or 3)
    assert evaluate_condition("=record.a == record.b", rec(a=EIGHTEEN, b=NEXT)) is False
    assert evaluate_condition("=record.a != record.b", rec(a=EIGHTEEN, b=NEXT)) is True
    assert evaluate_condition("=record.a == record.b", rec(a=EIGHTEEN, b=EIGHTEEN + "0")) is True
    assert evaluate_condition("=decimal.compare(record.c, record.a) < 0",
                              rec(a="12345678901234567.8", c="9999999999999999.99")) is True


def test_double_arithmetic_cannot_pass_for_a_decimal() -> None:
    with pytest.raises(ExpressionError) as exc:
        evaluate("=decimal.compare(record.a + record.b, 0.3)", rec(a="0.1", b="0.2"))
    assert "0.30000000000000004 is not an exact decimal" in str(exc.value)
    with pytest.raises(ExpressionError) as exc:
        evaluate("=decimal.scaled(record.a, 1)", rec(a="0.25"))
    assert "0.25 has more than 1 decimal places" in str(exc.value)
    with pytest.raises(ExpressionError) as exc:
        evaluate('=decimal.scaled("123456789012345678901", 0)', {})
    assert "beyond a 64-bit whole number" in str(exc.value)


def test_an_empty_decimal_is_missing_for_now_in_conditions() -> None:
    data = {"record": {"amount": None}}
    assert evaluate_condition("=record.amount > 1.0", data) is False
    assert evaluate_condition("=decimal.compare(record.amount, 1) > 0", data) is False
    with pytest.raises(Missing):
        evaluate("=decimal.compare(record.amount, 1)", data)


def test_the_cel_view_is_a_double_only_where_it_is_exact() -> None:
    assert decimals.cel_view(Decimal("100.10")) == 100.1
    assert decimals.cel_view(Decimal(999999999999999)) == 999999999999999.0
    assert decimals.cel_view(Decimal(9999999999999999)) == {"decimal": "9999999999999999"}
    assert decimals.cel_view(Decimal(EIGHTEEN + "00")) == {"decimal": EIGHTEEN}
    assert decimals.cel_view(Decimal("0.10000000000000000")) == 0.1  # trailing zeros: 1 digit


@pytest.mark.parametrize("extreme", [Decimal("1e999999999999"), Decimal("1e-999999999"),
                                     Decimal("9" * 100_000), Decimal("1." + "1" * 5000)])
def test_an_extreme_number_from_a_json_body_is_refused_with_a_short_message(extreme: Any) -> None:
    # The API parses numbers as Decimal: "1e999999999999" is a few bytes of JSON whose
    # plain digits would be a terabyte.
    with pytest.raises(ValidationError) as exc:
        coerce(extreme)
    assert len(exc.value.fields["amount"]) < 200, exc.value.fields
    assert coerce(Decimal("1e-999999999"), rounding="half_even") == "0.00"
