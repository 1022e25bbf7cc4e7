"""A record as flows, expressions and people see it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baton.definitions.model import ObjectTypeDefinition
from baton.records.fields import json_values, typed_values


def record_view(row: Mapping[str, Any], otype: ObjectTypeDefinition | None = None) -> dict[str, Any]:
    """A record as flows and expressions see it: fields plus the system fields.

    With its object type, typed: a ``decimal`` field is a :class:`decimal.Decimal` (stored
    as its exact string). Flows and expressions always get the typed view."""
    data = typed_values(otype.fields, row["data"]) if otype is not None else row["data"]
    return {**data, "id": row["id"], "created_at": row["created_at"],
            "updated_at": row["updated_at"], "version": row["version"]}


def record_json_view(row: Mapping[str, Any], otype: ObjectTypeDefinition) -> dict[str, Any]:
    """A record as the API and the CLI answer it: a ``decimal`` field as its exact string
    (a value stored as a JSON number before decimals were exact is shown as its string)."""
    return {**json_values(otype.fields, row["data"]), "id": row["id"],
            "created_at": row["created_at"], "updated_at": row["updated_at"],
            "version": row["version"]}


TITLE_NAMES = ("title", "subject", "name", "summary", "label")
"""Field names that read as a record's title, in order of preference."""
TITLE_LENGTH = 120


def record_title(otype: ObjectTypeDefinition | None, data: Mapping[str, Any]) -> str | None:
    """What a person calls the record in a list (the Monitor, the CLI): its object type's
    title field when it has one, else the first of :data:`TITLE_NAMES` that holds text,
    else its first ``string`` field with a value; None when nothing reads as a title.
    Shortened to :data:`TITLE_LENGTH` characters. (The one place that decides it.)"""
    names: list[str] = []
    title_field = getattr(otype, "title_field", None)  # object types may name one
    if isinstance(title_field, str):
        names.append(title_field)
    names += TITLE_NAMES
    if otype is not None:
        names += [f.name for f in otype.fields if f.type == "string"]
    for name in names:
        value = data.get(name)
        if isinstance(value, str) and value.strip():
            text = " ".join(value.split())
            return text if len(text) <= TITLE_LENGTH else text[:TITLE_LENGTH - 1] + "…"
    return None
