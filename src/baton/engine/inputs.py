"""``input:`` of a step or of an evaluation flow's condition: a mapping of literals and
``=expressions`` evaluated by ``decide()`` when the step starts (or the flow is asked), in
the scope every expression of the run sees. Pure, like the rest of the engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baton.errors import ExpressionError
from baton.expressions import Missing, evaluate, is_expression


def _plain(value: Any) -> Any:
    """An evaluated input value as a job payload keeps it (JSON: a Decimal as its exact
    string, as decimals are stored)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def evaluate_input(spec: Mapping[str, Any] | None, scope: Mapping[str, Any]) -> dict[str, Any]:
    """A step's or an evaluation flow's ``input``: each literal as it is, each
    ``=expression`` evaluated now; a value that is not there yet (a step's output before
    it completed) is None. Raises :class:`ExpressionError` (naming the input) for any
    other failure."""
    out: dict[str, Any] = {}
    for name, value in (spec or {}).items():
        if not is_expression(value):
            out[name] = _plain(value)
            continue
        try:
            out[name] = _plain(evaluate(value, scope))
        except Missing:
            out[name] = None
        except ExpressionError as exc:
            raise ExpressionError(exc.source, f"{name}: {exc.reason}",
                                  exc.position) from None
    return out
