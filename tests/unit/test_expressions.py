"""The expression wrapper: CEL compiled once, JSON-shaped data, our own errors."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from baton.errors import ExpressionError
from baton.expressions import (
    MAX_SOURCE,
    Missing,
    compile_expression,
    evaluate,
    evaluate_condition,
    is_expression,
    referenced_names,
    resolve,
)
from baton.expressions.cel import to_json_shape


def test_equals_prefix_marks_an_expression_anything_else_is_literal() -> None:
    assert is_expression("=1 + 1")
    assert not is_expression("tier1")
    assert resolve("tier1", {}) == "tier1"
    assert resolve('="tier" + string(vars.level)', {"vars": {"level": 2}}) == "tier2"


def test_compiled_once_and_cached() -> None:
    assert compile_expression("=record.level > 1") is compile_expression("record.level > 1")


def test_source_longer_than_cap_is_refused() -> None:
    with pytest.raises(ExpressionError, match=f"longer than {MAX_SOURCE}"):
        compile_expression("=" + " || ".join(["true"] * 2000))


def test_syntax_error_carries_expression_and_column() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("=record.x +")
    assert info.value.source == "record.x +"
    assert info.value.position == 11
    assert "Syntax error" in info.value.reason


def test_unknown_variable_is_a_compile_error() -> None:
    with pytest.raises(ExpressionError, match="undeclared reference to 'recrod"):
        compile_expression("=recrod.level > 1")


def test_runtime_error_value_becomes_our_exception() -> None:
    with pytest.raises(ExpressionError, match="divide by zero") as info:
        evaluate("=1 / 0", {})
    assert not isinstance(info.value, Missing)


def test_missing_key_and_empty_value_are_missing_not_errors() -> None:
    with pytest.raises(Missing):
        evaluate("=steps.triage.output.resolution", {"steps": {}})
    assert evaluate_condition('=steps.triage.output.resolution == "close"', {"steps": {}}) is False
    assert evaluate_condition("=record.level > 1", {"record": {"level": None}}) is False


def test_condition_must_be_boolean() -> None:
    with pytest.raises(ExpressionError, match="must be true or false"):
        evaluate_condition("=1 + 1", {})


def test_dates_and_decimals_pass_as_json_shapes() -> None:
    data = to_json_shape({"d": dt.date(2026, 1, 2), "n": decimal.Decimal("1.5"), "l": (1, 2)})
    assert data == {"d": "2026-01-02", "n": 1.5, "l": [1, 2]}
    assert evaluate('=record.d == "2026-01-02"', {"record": data}) is True


def test_python_objects_cannot_reach_an_expression() -> None:
    with pytest.raises(ExpressionError):
        to_json_shape({"x": object()})


def test_expressions_cannot_mutate_data() -> None:
    record = {"tags": ["a"], "level": 1}
    evaluate('=record.tags + ["b"]', {"record": record})
    assert record == {"tags": ["a"], "level": 1}


def test_referenced_names_ignore_string_literals() -> None:
    names = list(referenced_names('=steps.triage.output.x == "record.foo" && record.level > 1'))
    assert names == [("steps", "triage"), ("record", "level")]


READS_CASES = [
    'steps.triage.output.resolution == "escalate"',
    '"tier" + string(vars.level)',
    'size(record) == 3 && record.subject.startsWith("invoice")',
    'record.exists(k, k == "level")',
    'steps.all(s, steps[s].status == "completed")',
    'steps["find agent"].output.agent == "ann"',
    '"record.subject" == vars.label',  # a variable's name inside a string is not a read
    'record.tags.exists(vars, vars == "vip")',  # a macro variable named like a variable
    'has(steps.classify.output) && now > "2026"',
    'input.amount * 2 > 10 && old.level < record.level',
    # member paths: only what is read of a member is bound (and all of it where it is used
    # otherwise than by ``.key``)
    'steps.triage.output.resolution == "escalate" && steps.triage.status == "completed"',
    'size(steps.triage.output) == 1 && steps.triage.output.resolution == "escalate"',
    'steps.triage.output.resolution == "escalate" && size(steps.triage.output) == 1',
    'has(steps.triage.output.resolution) && !has(steps.triage.output.nope)',
    'record.tags[0] == "vip" && record.tags.size() == 2 && record.tags.exists(t, t == "new")',
    'steps.classify.output.category.startsWith("bill") && steps.classify.output.category.size() == 7',
    'steps.triage.output == {"resolution": "escalate"}',
    'steps.all(s, has(steps[s].output)) && steps.triage.output.resolution == "escalate"',
]


@pytest.mark.parametrize("source", READS_CASES)
def test_binding_only_what_is_read_gives_the_same_answer(source: str) -> None:
    """evaluate() converts only the variables (and members) an expression reads; the
    answer must be the one with everything bound."""
    data = {
        "record": {"subject": "invoice 7", "level": 2, "tags": ["vip", "new"]},
        "old": {"subject": "invoice 7", "level": 1, "tags": []},
        "input": {"amount": 7},
        "vars": {"level": 2, "label": "record.subject"},
        "steps": {"triage": {"status": "completed", "output": {"resolution": "escalate"}},
                  "classify": {"status": "completed", "output": {"category": "billing"}},
                  "find agent": {"status": "completed", "output": {"agent": "ann"}}},
        "now": "2026-11-22T10:00:00.000Z",
    }
    full = compile_expression(source).eval(data={"line": {}, **data}).plain_value()
    assert evaluate(source, data) == full


def test_an_evaluation_over_cels_budget_is_an_expression_error() -> None:
    """cel-expr-python raises a bare RuntimeError for it; it must be ours, with the reason."""
    ten = "[1,2,3,4,5,6,7,8,9,10]"
    source = "=" + "".join(f"{ten}.all({v}, " for v in "abcdef") + "true" + ")" * 6
    with pytest.raises(ExpressionError, match="too costly to evaluate"):
        evaluate(source, {})
    with pytest.raises(ExpressionError, match="too costly to evaluate"):
        evaluate_condition(source, {})


class _Counting(Mapping[str, Any]):
    """A lazy view like the engine's scope (and its steps view, one level down, whose
    values are plain dicts): each read builds what it returns, and is counted."""

    def __init__(self, data: dict[str, Any], reads: list[str], top: bool = True) -> None:
        self._data, self._reads, self._top = data, reads, top

    def __getitem__(self, key: str) -> Any:
        self._reads.append(key)
        value = self._data[key]
        return _Counting(value, self._reads, False) if self._top else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


@pytest.mark.parametrize(("source", "expected"), [
    ('=steps.triage.output.resolution == "escalate"', True),
    ('=record.origin + " / " + string(vars.level)', "Web / 2"),
    ("=steps.nope.status", None),  # a step not there: read once, then missing
])
def test_each_name_and_member_read_is_read_once(source: str, expected: Any) -> None:
    """A lazy view's value is built on every read; evaluate() must not test a name or a
    member with ``in`` and then read it again (that built the engine's steps view twice)."""
    reads: list[str] = []
    data = {"record": {"origin": "Web", "subject": "s"}, "vars": {"level": 2},
            "steps": {"triage": {"status": "completed",
                                 "output": {"resolution": "escalate"}}}}
    scope = _Counting(data, reads)
    if expected is None:
        with pytest.raises(ExpressionError):
            evaluate(source, scope)
    else:
        assert evaluate(source, scope) == expected
    assert len(reads) == len(set(reads)), reads


def _counting_evals(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Count the CEL evaluations evaluate() makes (memo hits make none)."""
    from baton.expressions import cel

    calls: list[str] = []
    real = cel._eval

    def counted(expr: Any, source: str, bound: dict[str, Any]) -> Any:
        calls.append(source)
        return real(expr, source, bound)

    monkeypatch.setattr(cel, "_eval", counted)
    monkeypatch.setattr(cel, "_MEMO", {})
    return calls


def test_the_same_expression_over_the_same_values_is_evaluated_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """CEL is pure: a work item's ``"tier" + string(vars.level)`` over level 1 gives the
    same answer at every item, so it is evaluated once; other values are evaluated."""
    calls = _counting_evals(monkeypatch)
    source = '="tier" + string(vars.level)'
    for _ in range(3):
        assert evaluate(source, {"vars": {"level": 1}, "record": {"subject": "a"}}) == "tier1"
    assert evaluate(source, {"vars": {"level": 2}}) == "tier2"
    assert evaluate(source, {"vars": {"level": 1, "other": "x"}}) == "tier1"  # not read
    assert len(calls) == 2
    # Only what is read of a member counts: a person's notes beside the resolution do not.
    routing = '=steps.triage.output.resolution == "escalate"'
    for notes in ("called back", "fixed remotely", None):
        output = {"resolution": "close", "notes": notes}
        assert evaluate(routing, {"steps": {"triage": {"status": "completed", "iteration": 1,
                                                       "output": output}}}) is False
    assert len(calls) == 3


@pytest.mark.parametrize(("first", "second"), [
    (None, float("nan")),  # orjson writes NaN as null
    (None, float("inf")),
    (1, 1.0),
    (1, True),
    (0.0, -0.0),
    ("a", dt.date(2026, 1, 1)),
    ([1, 2], (1, 2)),
    ({"a": 1}, {"a": 1.0}),
])
def test_values_alike_in_json_are_not_mixed_up_by_the_memo(
        monkeypatch: pytest.MonkeyPatch, first: Any, second: Any) -> None:
    """What is memoized is told apart by its JSON, so only exact JSON types are: a NaN is
    not null, 1.0 is not 1, in either order, whatever was evaluated before."""
    from baton.expressions import cel

    def outcome(source: str, value: Any) -> Any:
        try:
            result = evaluate(source, {"vars": {"x": value}})
        except ExpressionError as exc:
            return type(exc), exc.reason
        return type(result), str(result)

    for source in ("=string(vars.x)", "=vars.x == null", "=type(vars.x) == double"):
        for a, b in ((first, second), (second, first)):
            monkeypatch.setattr(cel, "_MEMO", {}, raising=False)
            alone = outcome(source, b)  # evaluated with nothing memoized
            monkeypatch.setattr(cel, "_MEMO", {}, raising=False)
            outcome(source, a)
            assert outcome(source, b) == alone, (source, a, b)
            assert outcome(source, b) == alone, (source, a, b)


def test_memoized_results_are_immutable_and_now_is_never_memoized(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting_evals(monkeypatch)
    listed = evaluate("=[vars.level]", {"vars": {"level": 1}})
    listed.append(2)  # a caller's change to a list result is not seen by the next one
    assert evaluate("=[vars.level]", {"vars": {"level": 1}}) == [1]
    for _ in range(2):
        assert evaluate('=now > "2026"', {"now": "2026-12-03T08:00:00.000Z"}) is True
    assert len(calls) == 4
