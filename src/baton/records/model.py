"""A record as flows, expressions and people see it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baton.definitions.model import ObjectTypeDefinition
from baton.records.fields import json_values, typed_values
from baton.records.titles import TITLE_LENGTH, TITLE_NAMES, record_title

__all__ = ["TITLE_LENGTH", "TITLE_NAMES", "record_json_view", "record_title", "record_view"]


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


