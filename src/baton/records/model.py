"""A record as flows, expressions and people see it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baton.definitions.model import ObjectTypeDefinition
from baton.records.fields import json_values, typed_values
from baton.records.titles import TITLE_LENGTH, TITLE_NAMES, record_title

__all__ = ["TITLE_LENGTH", "TITLE_NAMES", "in_field_order", "record_json_view", "record_title",
           "record_view"]


def record_view(row: Mapping[str, Any], otype: ObjectTypeDefinition | None = None) -> dict[str, Any]:
    """A record as flows and expressions see it: fields plus the system fields.

    With its object type, typed: a ``decimal`` field is a :class:`decimal.Decimal` (stored
    as its exact string). Flows and expressions always get the typed view."""
    data = typed_values(otype.fields, row["data"]) if otype is not None else row["data"]
    return {**data, "id": row["id"], "created_at": row["created_at"],
            "updated_at": row["updated_at"], "version": row["version"]}


def record_json_view(row: Mapping[str, Any], otype: ObjectTypeDefinition, *,
                     field_order: bool = False) -> dict[str, Any]:
    """A record as the API and the CLI answer it: a ``decimal`` field as its exact string
    (a value stored as a JSON number before decimals were exact is shown as its string).
    ``field_order``: its fields in the object type's order (see :func:`in_field_order`)."""
    data = in_field_order(row["data"], otype) if field_order else row["data"]
    return {**json_values(otype.fields, data), "id": row["id"],
            "created_at": row["created_at"], "updated_at": row["updated_at"],
            "version": row["version"]}


def in_field_order(data: Mapping[str, Any], otype: ObjectTypeDefinition | None
                   ) -> Mapping[str, Any]:
    """``data`` with the object type's fields first, in their order, then any other key
    as stored (a field the type no longer has). PostgreSQL's jsonb sorts a record's keys
    (shorter first), where SQLite keeps the order they were written in, which is the type's
    (fields are validated in its order): what the CLI, the API and the pages show of a
    record read there is put back in that order."""
    if otype is None:
        return data
    out = {f.name: data[f.name] for f in otype.fields if f.name in data}
    if len(out) != len(data):
        out.update((k, v) for k, v in data.items() if k not in out)
    return out


