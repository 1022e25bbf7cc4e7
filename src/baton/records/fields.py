"""Typed fields: validate and normalise record data, form submissions and run input.

One function serves all three, so a form and an object type agree on what
``int`` or ``choice`` means. Every bad field is reported at once.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import orjson

from baton import decimals
from baton.definitions.model import FieldDefinition, OrchestrationDefinition
from baton.definitions.refs import DefinitionMemo
from baton.errors import ValidationError
from baton.storable import bad_text, first_problem

RESERVED = ("id", "created_at", "updated_at", "version")
MAX_STRING = 1000
"""Default most characters of a ``string`` field (one line)."""
MAX_TEXT = 100_000
"""Default most characters of a ``text`` field, and of a ``json`` field's JSON: a record
is read whole by every list, timeline and flow, so one field cannot be megabytes unless its
definition says so (``max_length``, up to 1,000,000)."""
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
"""An ``int`` field holds a signed 64-bit integer: what CEL computes with and what every
JSON reader (orjson, JavaScript's BigInt-less clients aside) keeps exact."""


def _show(value: Any) -> str:
    return str(value) if isinstance(value, decimal.Decimal) else repr(value)


def _coerce(f: FieldDefinition, value: Any) -> Any:
    t = f.type
    if t in ("string", "text"):
        if not isinstance(value, str):
            kind = "a number" if isinstance(value, decimal.Decimal) else type(value).__name__
            raise ValueError(f"expected text, got {kind}")
        bad = bad_text(value)
        if bad:
            raise ValueError(bad)
        if t == "string" and "\n" in value:
            raise ValueError("expected one line (use type text for several)")
        limit = f.max_length or (MAX_STRING if t == "string" else MAX_TEXT)
        if len(value) > limit:
            hint = " (use type text)" if t == "string" and f.max_length is None else ""
            raise ValueError(f"{len(value):,} characters is too long: at most {limit:,}{hint}")
        return value
    if t == "int":
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"expected a whole number, got {_show(value)}")
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if not INT_MIN <= number <= INT_MAX:
            raise ValueError(f"{number} is out of range: a whole number is kept exact from "
                             f"{INT_MIN} to {INT_MAX} (use type decimal or text beyond that)")
        return number
    if t == "decimal":
        # Stored as its canonical string ("19.90"): exact in JSON, whatever reads it.
        # Flows and expressions get a Decimal back through typed_values().
        return decimals.canonical(decimals.fit(value, f.precision, f.scale, f.rounding))
    if t == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"expected true or false, got {_show(value)}")
    if t == "date":
        try:
            return dt.date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise ValueError(f"expected a date YYYY-MM-DD, got {value!r}") from None
    if t == "datetime":
        if isinstance(value, dt.datetime) and value.utcoffset() is None:
            # (Python's naive datetime is local time by convention: never taken as UTC)
            raise ValueError(f"datetime {value.isoformat()} has no time zone: give it one "
                             "(tzinfo=datetime.UTC), or pass ISO 8601 text")
        try:
            parsed = dt.datetime.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"expected an ISO 8601 date-time, got {value!r}") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        try:
            in_utc = parsed.astimezone(dt.UTC)
        except OverflowError:  # 0001-01-01T00:00+05:00 is before the year 1 in UTC
            raise ValueError(f"{value!r} is out of range once converted to UTC") from None
        return in_utc.isoformat().replace("+00:00", "Z")
    if t == "choice":
        if value not in f.choices:
            raise ValueError(f"{_show(value)} is not one of {', '.join(f.choices)}")
        return value
    if t == "ref":
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected the id of a {f.object} record, got {value!r}")
        return value
    if t == "json":
        value = _json_floats(value)
        _check_json_numbers(value)
        problem = first_problem(value, "")
        if problem:
            raise ValueError(f"holds what no store keeps: {problem}")
        try:  # as the store keeps it (tuples as lists, keys as text), so returned the same
            value = orjson.loads(orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS))
        except TypeError as exc:  # (a set, bytes, an object of a class of one's own ...)
            raise ValueError(f"is not JSON ({exc}): JSON holds text, numbers, true/false, "
                             "null, lists and objects") from None
        limit = f.max_length or MAX_TEXT
        size = len(_JSON_TEXT.encode(value))
        if size > limit:
            raise ValueError(f"{size:,} characters of JSON is too long: at most {limit:,}")
        return value
    raise ValueError(f"unknown field type {t!r}")


# What a ``json`` field's size is measured in: its compact JSON text (the encoder
# ``json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)`` makes, made
# once rather than on every call).
_JSON_TEXT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def _json_floats(value: Any) -> Any:
    """A ``json`` value as JSON holds it: a number the API parsed exactly (a Decimal) is
    a float there, as it always was (exact numbers are what ``decimal`` fields are for)."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _json_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_floats(v) for v in value]
    return value


def _check_json_numbers(value: Any) -> None:
    """A ``json`` value's whole numbers must fit 64 bits, like ``int`` fields: the stores
    read JSON with orjson, which would turn a wider one into an inexact float."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ValueError(f"holds {value}, a whole number out of range: numbers are kept "
                             f"exact from {INT_MIN} to {INT_MAX} (write wider ones as text)")
    elif isinstance(value, dict):
        for item in value.values():
            _check_json_numbers(item)
    elif isinstance(value, list):
        for item in value:
            _check_json_numbers(item)


def coerce_fields(
    fields: Sequence[FieldDefinition],
    data: Mapping[str, Any],
    what: str,
    *,
    partial: bool = False,
    apply_defaults: bool = True,
) -> dict[str, Any]:
    """Validate ``data`` against ``fields``; return the normalised values.

    ``partial`` (updates): only the given fields are checked, required fields may
    be absent. A value of ``None`` clears an optional field. Raises
    :class:`ValidationError` naming every bad field.
    """
    if not isinstance(data, Mapping):
        raise ValidationError(what, {"(data)": f"expected an object of fields, got {type(data).__name__}"})
    known = fields_by_name(fields)
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    for key in data:
        if key not in known:
            if key in RESERVED:
                errors[key] = "is set by Baton and cannot be written"
            else:
                errors[key] = f"unknown field (fields: {', '.join(known) or 'none'})"
    for f in fields:
        if f.name not in data:
            if partial:
                continue
            if f.default is not None and apply_defaults:
                out[f.name] = (_coerce(f, f.default) if f.type == "decimal"  # checked at deploy
                               else f.default)
            elif f.required:
                errors[f.name] = "is required"
            continue
        value = data[f.name]
        if value is None or (value == "" and f.type not in ("string", "text", "json")):
            if f.required:
                errors[f.name] = "is required"
            else:
                out[f.name] = None
            continue
        if f.required and isinstance(value, str) and not value.strip():
            errors[f.name] = "is required"
            continue
        try:
            out[f.name] = _coerce(f, value)
        except ValueError as exc:
            errors[f.name] = str(exc)
    if errors:
        raise ValidationError(what, errors)
    return out


def typed_values(fields: Sequence[FieldDefinition], data: Mapping[str, Any]) -> Mapping[str, Any]:
    """``data`` as stored, with each ``decimal`` field as a :class:`decimal.Decimal`: what
    flows (``ctx.record``, ``ctx.input``) and expressions get. A value stored as a JSON
    number before decimals were exact is read here (lazily: the next write of the field
    stores its string). ``data`` itself when there is no decimal to convert."""
    wanted = [f for f in decimal_fields(fields) if data.get(f.name) is not None]
    if not wanted:
        return data
    out = dict(data)
    for f in wanted:
        out[f.name] = _read_decimal(f, out[f.name])
    return out


def ref_problem(f: FieldDefinition, target_id: str, target: Mapping[str, Any] | None
                ) -> str | None:
    """What is wrong with a checked ``ref`` field naming ``target_id``, given the record
    read by that id (None: there is none): it must be a record of the field's type."""
    if target is None:
        return f"no {f.object} record {target_id!r}"
    if target["object_type"] != f.object:
        return f"{target_id!r} is a {target['object_type']} record, not a {f.object}"
    return None


class FieldShape:
    """What is looked up in a tuple of fields on every record write and read, found once:
    the fields by name, the ``decimal`` fields, the ``ref`` fields whose target is checked,
    and every field empty (what a record was before its create, for triggers' ``old``)."""

    __slots__ = ("by_name", "checked_refs", "decimals", "empty")

    def __init__(self, fields: Sequence[FieldDefinition]) -> None:
        self.by_name: Mapping[str, FieldDefinition] = {f.name: f for f in fields}
        self.decimals = tuple(f for f in fields if f.type == "decimal")
        self.checked_refs = tuple(f for f in fields if f.type == "ref" and f.check)
        self.empty: Mapping[str, None] = MappingProxyType(dict.fromkeys(self.by_name))


_SHAPES: dict[int, tuple[Sequence[FieldDefinition], FieldShape]] = {}


def field_shape(fields: Sequence[FieldDefinition]) -> FieldShape:
    """:class:`FieldShape` of ``fields``; remembered per (immutable) tuple of a definition,
    since every record a worker reads and writes asks, and made afresh for a list (a form
    built for one call)."""
    hit = _SHAPES.get(id(fields))
    if hit is not None and hit[0] is fields:
        return hit[1]
    shape = FieldShape(fields)
    if isinstance(fields, tuple):  # a definition's: it lives as long as its version
        if len(_SHAPES) >= 4096:
            _SHAPES.clear()
        _SHAPES[id(fields)] = (fields, shape)  # holds it, so the id is not reused
    return shape


def fields_by_name(fields: Sequence[FieldDefinition]) -> Mapping[str, FieldDefinition]:
    """``fields`` by name (remembered per tuple: see :func:`field_shape`)."""
    return field_shape(fields).by_name


def decimal_fields(fields: Sequence[FieldDefinition]) -> tuple[FieldDefinition, ...]:
    """The ``decimal`` fields among ``fields``; remembered per (immutable) tuple of a
    definition, since every record a worker reads and every evaluation asks."""
    return field_shape(fields).decimals


def json_values(fields: Sequence[FieldDefinition], data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` as the API and the CLI answer it: each ``decimal`` field as its exact string
    (``"19.90"``, never a JSON number a client would read as a float)."""
    out = dict(data)
    for f in decimal_fields(fields):
        if out.get(f.name) is not None:
            typed = _read_decimal(f, out[f.name])
            if isinstance(typed, decimal.Decimal):
                out[f.name] = decimals.canonical(typed)
    return out


def _read_decimal(f: FieldDefinition, value: Any) -> Any:
    """A stored decimal as a Decimal at the field's scale; a legacy value that does not fit
    the field's limits (stored before it had them) is kept exactly as it was, not rounded."""
    if isinstance(value, decimal.Decimal):
        return value
    typed = decimals.read(value)
    if isinstance(typed, decimal.Decimal) and not isinstance(value, str):
        try:
            return decimals.fit(typed, f.precision, f.scale)
        except ValueError:
            return typed
    return typed


_FORMS: DefinitionMemo[dict[str, tuple[FieldDefinition, ...]]] = DefinitionMemo()


def decimal_forms(defn: OrchestrationDefinition) -> dict[str, tuple[FieldDefinition, ...]]:
    """Step name -> its form, for the steps whose form has a ``decimal`` field (what types
    ``steps.NAME.output``); remembered per definition version."""
    hit = _FORMS.get(defn)
    if hit is not None:
        return hit
    forms = {step.name: step.form for stage in defn.stages for step in stage.steps
             if decimal_fields(step.form)}
    _FORMS.put(defn, forms)
    return forms
