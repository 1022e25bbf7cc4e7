"""The one safe expression language: CEL (via cel-expr-python), wrapped.

* A string that starts with ``=`` is an expression; anything else is a literal.
* Sources are capped at :data:`MAX_SOURCE` characters and compiled once (cached).
* Data passed in is JSON-shaped (dates as ISO strings); nothing else reaches CEL,
  so an expression cannot mutate data or touch Python objects.
* CEL error *values* become :class:`~baton.errors.ExpressionError`; a read of a value
  that does not exist yet becomes :class:`Missing` so conditions can wait for it.
"""

from baton.expressions.cel import (
    MAX_SOURCE,
    VARIABLES,
    Missing,
    compile_expression,
    evaluate,
    evaluate_condition,
    is_expression,
    referenced_names,
    referenced_roots,
    resolve,
)

__all__ = [
    "MAX_SOURCE",
    "VARIABLES",
    "Missing",
    "compile_expression",
    "evaluate",
    "evaluate_condition",
    "is_expression",
    "referenced_names",
    "referenced_roots",
    "resolve",
]
