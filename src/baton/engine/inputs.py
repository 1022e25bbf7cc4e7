"""``input:`` of a step or of an evaluation flow's condition: a mapping of literals and
``=expressions`` evaluated by ``decide()`` when the step starts (or the flow is asked), in
the scope every expression of the run sees. Pure, like the rest of the engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baton.errors import ExpressionError
from baton.expressions import Missing, evaluate, is_expression

_SCALARS = frozenset({str, int, float, bool, type(None)})


def _plain(value: Any) -> Any:
    """An evaluated input value as a job payload keeps it (JSON: a Decimal as its exact
    string, as decimals are stored)."""
    # JSON's own types by their exact type first (what nearly every value is); anything
    # else, subclasses included, as the general rule below says.
    t = type(value)
    if t in _SCALARS:
        return value
    if t is dict:
        return {k if type(k) is str else str(k): v if type(v) in _SCALARS else _plain(v)
                for k, v in value.items()}
    if t is list or t is tuple:
        return [v if type(v) in _SCALARS else _plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# An input spec is part of a deployed definition, which never changes: its literals are
# made plain once per spec object, not at every step start. Keyed by id; each entry holds
# its spec, so the id is not reused while the entry is there (as records.fields does).
_PARTS: dict[int, tuple[Mapping[str, Any], tuple[tuple[str, bool, Any], ...]]] = {}
_PARTS_MAX = 4096


def _parts(spec: Mapping[str, Any]) -> tuple[tuple[str, bool, Any], ...]:
    """``spec`` as (name, is an expression, the expression's text or the literal made
    plain) per entry, in order."""
    hit = _PARTS.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    parts = tuple((name, True, value) if is_expression(value) else (name, False, _plain(value))
                  for name, value in spec.items())
    if len(_PARTS) >= _PARTS_MAX:
        _PARTS.clear()
    _PARTS[id(spec)] = (spec, parts)
    return parts


def evaluate_input(spec: Mapping[str, Any] | None, scope: Mapping[str, Any]) -> dict[str, Any]:
    """A step's or an evaluation flow's ``input``: each literal as it is, each
    ``=expression`` evaluated now; a value that is not there yet (a step's output before
    it completed) is None. Raises :class:`ExpressionError` (naming the input) for any
    other failure.

    A literal's plain value is made once per spec and shared by every mapping returned for
    it: what is given these values reads them or copies them (a job's payload is encoded;
    a flow's ``ctx.input`` is its own copy), never changes them in place."""
    out: dict[str, Any] = {}
    if not spec:
        return out
    for name, expression, value in _parts(spec):
        if not expression:
            out[name] = value
            continue
        try:
            out[name] = _plain(evaluate(value, scope))
        except Missing:
            out[name] = None
        except ExpressionError as exc:
            raise ExpressionError(exc.source, f"{name}: {exc.reason}",
                                  exc.position) from None
    return out
