"""CEL wrapper: compile once, evaluate JSON-shaped data, errors as our exceptions."""

from __future__ import annotations

import datetime as _dt
import decimal
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from cel_expr_python import cel

from baton.errors import ExpressionError

MAX_SOURCE = 4096
"""Longest expression source accepted (characters, without the ``=`` prefix)."""

VARIABLES: tuple[str, ...] = ("record", "old", "input", "vars", "steps", "line", "now")
"""Names every expression may read (DESIGN §2)."""

_DYN = cel.Type.DYN
_ENV = cel.NewEnv(
    variables={
        "record": cel.Type.Map(cel.Type.STRING, _DYN),
        "old": cel.Type.Map(cel.Type.STRING, _DYN),
        "input": cel.Type.Map(cel.Type.STRING, _DYN),
        "vars": cel.Type.Map(cel.Type.STRING, _DYN),
        "steps": cel.Type.Map(cel.Type.STRING, _DYN),
        "line": cel.Type.Map(cel.Type.STRING, _DYN),
        "now": cel.Type.STRING,
    }
)
_POS = re.compile(r"<input>:(\d+):(\d+): (.*?)(?:\n|$)")
# Reading something that is not there yet: a missing map key, or an empty (null) value
# used where a value is needed. Conditions treat these as "false for now" (DESIGN §2.1).
_MISSING_MARKERS = ("Key not found in map", "No such key", "null_type")


class Missing(ExpressionError):
    """The expression read a value that does not exist yet (or is empty)."""


def is_expression(value: object) -> bool:
    return isinstance(value, str) and value.startswith("=")


def _strip(source: str) -> str:
    return source.removeprefix("=")


@lru_cache(maxsize=4096)
def _compile(body: str) -> Any:
    try:
        return _ENV.compile(body)
    except RuntimeError as exc:  # cel-expr-python reports compile problems as RuntimeError
        text = str(exc)
        m = _POS.search(text)
        if m:
            raise ExpressionError(body, m.group(3).strip(), int(m.group(2))) from None
        raise ExpressionError(body, text.split("\n")[0]) from None


def compile_expression(source: str) -> Any:
    """Compile ``source`` (with or without the ``=`` prefix); cached per source text."""
    body = _strip(source)
    if len(body) > MAX_SOURCE:
        raise ExpressionError(body[:60] + "…", f"longer than {MAX_SOURCE} characters")
    if not body.strip():
        raise ExpressionError(body, "empty expression")
    return _compile(body)


def to_json_shape(value: Any) -> Any:
    """Convert Python data to what CEL may see: dict/list/str/int/float/bool/None."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_json_shape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_shape(v) for v in value]
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise ExpressionError("", f"value of type {type(value).__name__} cannot be passed to an expression")


_EMPTY: dict[str, Any] = {name: ({} if name != "now" else "") for name in VARIABLES}
_USE = re.compile(r"(?<![\w.])(" + "|".join(VARIABLES) + r")\b(?:\s*\.\s*([A-Za-z_]\w*)\b(\s*\()?)?")


@lru_cache(maxsize=4096)
def _reads(body: str) -> tuple[tuple[str, frozenset[str] | None], ...]:
    """The variables an expression reads: ``(name, members)``, where ``members`` are the
    keys it reads with ``name.key`` only, or None when it uses the value in any other way
    (``size(record)``, ``steps["a b"]``, ``record.exists(...)``): then all of it is bound.
    String literals are ignored."""
    members: dict[str, set[str] | None] = {}
    for m in _USE.finditer(_STRING.sub('""', body)):
        name, key, call = m.group(1), m.group(2), m.group(3)
        if key is None or call is not None or name == "now":
            members[name] = None
        elif name not in members:
            members[name] = {key}
        elif members[name] is not None:
            members[name].add(key)  # type: ignore[union-attr]
    return tuple((n, frozenset(k) if k is not None else None) for n, k in members.items())


_PREPARED: dict[str, tuple[Any, tuple[tuple[str, frozenset[str] | None], ...]]] = {}


def _prepared(source: str) -> tuple[Any, tuple[tuple[str, frozenset[str] | None], ...]]:
    """The compiled expression and what it reads, by source text: one dict lookup."""
    hit = _PREPARED.get(source)
    if hit is None:
        hit = (compile_expression(source), _reads(_strip(source)))
        if len(_PREPARED) < 4096:
            _PREPARED[source] = hit
    return hit


def evaluate(source: str, data: Mapping[str, Any]) -> Any:
    """Evaluate ``source`` against ``data`` (keys from :data:`VARIABLES`).

    Missing variables are bound to empty maps, so ``record.x`` without a record is
    :class:`Missing` rather than a crash. Raises :class:`Missing` or
    :class:`ExpressionError`.
    """
    expr, reads = _prepared(source)
    bound: dict[str, Any] = {}
    for name, members in reads:  # only what it reads: converting values to CEL costs
        if name not in data:
            bound[name] = _EMPTY[name]
            continue
        value = data[name]
        if members is not None and isinstance(value, Mapping):
            # Only the members it reads (steps.triage, record.subject), not every step's
            # output or the whole record.
            value = {m: value[m] for m in members if m in value}
        elif isinstance(value, Mapping) and not isinstance(value, dict):
            value = {k: value[k] for k in value}  # a lazy view (the engine's steps)
        bound[name] = value
    result = _eval(expr, source, bound)
    if result.type() == cel.Type.ERROR and "found in Activation" in str(result.value()):
        # A read _reads() did not see: evaluate again with every variable bound.
        result = _eval(expr, source, {**_EMPTY, **{k: (dict(v) if isinstance(v, Mapping) else v)
                                                   for k, v in data.items()}})
    if result.type() == cel.Type.ERROR:
        reason = str(result.value())
        body = _strip(source)
        if any(marker in reason for marker in _MISSING_MARKERS):
            raise Missing(body, reason)
        raise ExpressionError(body, reason)
    return result.plain_value()


def _eval(expr: Any, source: str, bound: dict[str, Any]) -> Any:
    """``expr.eval`` with the runtime's own refusals as :class:`ExpressionError`.

    cel-expr-python raises a plain ``RuntimeError`` when an evaluation exhausts CEL's
    iteration budget (nested comprehensions) or meets a value it cannot convert; left
    alone that was a 500 from any write whose trigger condition did it.
    """
    try:
        return expr.eval(data=bound)
    except RuntimeError as exc:
        reason = str(exc).split("\n")[0].removeprefix("INTERNAL: ").removesuffix(" [INTERNAL]")
        if "budget" in reason:
            reason = f"too costly to evaluate ({reason}): CEL bounds every evaluation"
        raise ExpressionError(_strip(source), reason) from None


def evaluate_condition(source: str | bool, data: Mapping[str, Any]) -> bool:
    """Evaluate a condition: ``True``/``False``; a missing value is ``False`` for now.

    A result that is not a boolean is an :class:`ExpressionError`.
    """
    if isinstance(source, bool):
        return source
    try:
        value = evaluate(source, data)
    except Missing:
        return False
    if not isinstance(value, bool):
        raise ExpressionError(_strip(source), f"a condition must be true or false, got {value!r}")
    return value


def resolve(value: Any, data: Mapping[str, Any]) -> Any:
    """A literal stays as it is; an ``=expression`` is evaluated."""
    if is_expression(value):
        return evaluate(value, data)
    return value


_NAME_PATH = re.compile(r"(?<![\w.\"'])(record|old|steps|vars|input|line)\.([A-Za-z_]\w*)")
_STRING = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'")


def referenced_names(source: str) -> Iterable[tuple[str, str]]:
    """``(variable, member)`` pairs the expression reads, e.g. ``("steps", "triage")``.

    Used by validation to report unknown fields and steps; string literals are ignored.
    """
    body = _STRING.sub('""', _strip(source))
    for m in _NAME_PATH.finditer(body):
        yield m.group(1), m.group(2)
