"""Text every store keeps: no NUL character and no lone UTF-16 surrogate.

SQLite keeps a NUL inside JSON text; PostgreSQL refuses it in ``jsonb`` and ``text``
("\\u0000 cannot be converted to text"), and neither orjson nor a UTF-8 column takes a lone
surrogate. What a project stores on SQLite must store on PostgreSQL, so the same values are
refused on both, where they come in, with the field they are in: the API (422), a record,
form or run input written by the CLI or the Python API (a validation error naming the field),
and a step's output (the step fails, saying where; nothing half-written). Decoded e-mail
text drops its NULs instead (no e-mail's text means one: an encoded ``=00`` is junk).
"""

from __future__ import annotations

import math
from typing import Any

MAX_DEPTH = 64


def bad_text(value: str) -> str | None:
    """Why no store keeps ``value``, or None."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "is not valid Unicode text (lone surrogate)"
    return None


def scan(value: Any, where: str, out: list[dict[str, str]], depth: int = 0) -> None:
    """Append ``{"field": PATH, "message": WHY}`` for each value under ``value`` no store
    keeps (text as :func:`bad_text` says, keys too; NaN and infinities, which JSON has no
    number for; nesting deeper than 64), at most 20."""
    if len(out) >= 20:
        return
    if depth > MAX_DEPTH:
        out.append({"field": where, "message": f"nested too deeply (max {MAX_DEPTH} levels)"})
    elif isinstance(value, str):
        msg = bad_text(value)
        if msg:
            out.append({"field": where, "message": msg})
    elif isinstance(value, float):
        if not math.isfinite(value):
            out.append({"field": where, "message": "must be a finite number"})
    elif isinstance(value, dict):
        for k, v in value.items():
            key = str(k)
            msg = bad_text(key)
            if msg:
                out.append({"field": f"{where}.{key!r}" if where else repr(key),
                            "message": f"key {msg}"})
            scan(v, f"{where}.{key}" if where else key, out, depth + 1)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            scan(v, f"{where}.{i}" if where else str(i), out, depth + 1)


def first_problem(value: Any, where: str) -> str | None:
    """The first problem :func:`scan` finds, as one phrase ("output.text: must not contain
    NUL characters"), or None."""
    out: list[dict[str, str]] = []
    scan(value, where, out)
    if not out:
        return None
    return f"{out[0]['field'] or where or 'the value'}: {out[0]['message']}"
