"""Planning's memo of expression values (``plans.decompose.LineMemo``): an expression of
``line`` alone is evaluated once for every order that asks it of alike lines; one that
also reads the order (or anything else) is evaluated per order."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from baton.errors import ExpressionError
from baton.expressions import Missing, evaluate
from baton.plans import decompose
from baton.plans.decompose import LineMemo, line_only


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    monkeypatch.setattr(decompose, "_SHARED", {})
    seen: list[str] = []

    def counting(source: str, scope: Any) -> Any:
        seen.append(source)
        return evaluate(source, scope)

    monkeypatch.setattr(decompose, "evaluate", counting)
    return seen


def test_a_line_only_value_is_evaluated_once_for_every_order(calls: list[str]) -> None:
    src = "=line.qty * 2"
    assert line_only(src)
    for order in ({"number": "A"}, {"number": "B"}, {"number": "C"}):
        memo = LineMemo()  # one per order, as planning makes
        assert memo.evaluate(src, {"line": {"qty": 3, "x": 1}, "record": order}) == 6
        assert memo.evaluate(src, {"line": {"qty": 3, "x": 2}, "record": order}) == 6
    assert calls == [src]
    assert LineMemo().evaluate(src, {"line": {"qty": 4}, "record": {}}) == 8  # other values
    assert calls == [src, src]


def test_a_value_that_reads_the_order_is_evaluated_per_order(calls: list[str]) -> None:
    src = '=line.qty + (record.number == "A" ? 100 : 0)'
    assert not line_only(src)
    got = [LineMemo().evaluate(src, {"line": {"qty": 1}, "record": {"number": n}})
           for n in ("A", "B", "A")]
    assert got == [101, 1, 101]
    assert len(calls) == 3


def test_a_failure_is_not_shared_but_raised_again_in_each_order(calls: list[str]) -> None:
    src = "=line.missing + 1"
    for _ in range(2):
        with pytest.raises((Missing, ExpressionError)):
            LineMemo().evaluate(src, {"line": {"qty": 1}, "record": {}})
    assert len(calls) == 2
    assert decompose._SHARED == {}


def test_the_shared_values_are_bounded(calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decompose, "SHARED_MAX", 3)
    for q in range(10):
        LineMemo().evaluate("=line.qty", {"line": {"qty": q}, "record": {}})
    assert 1 <= len(decompose._SHARED) <= 3



def test_values_of_other_types_than_jsons_are_not_shared(calls: list[str]) -> None:
    """A date (a catalog's YAML) and the same text (a record's JSON) would read alike as a
    key: such a value is remembered within its order only, never across orders."""
    def kind(source: str, scope: Any) -> str:
        return type(scope["line"]["since"]).__name__

    src = "=line.since"
    got = [LineMemo().evaluate(src, {"line": {"since": since}, "record": {}}, kind)
           for since in (date(2026, 1, 5), "2026-01-05", Decimal("2.50"), "2026-01-05",
                         date(2026, 1, 5))]
    assert got == ["date", "str", "Decimal", "str", "date"]
    assert list(decompose._SHARED) == [(kind, src, b'["2026-01-05"]')]
