"""A record as flows, expressions and people see it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def record_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A record as flows, expressions and users see it: fields plus the system fields."""
    return {**row["data"], "id": row["id"], "created_at": row["created_at"],
            "updated_at": row["updated_at"], "version": row["version"]}
