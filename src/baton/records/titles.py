"""What a person calls a record in a list: its title (light: the CLI's lean read path
imports it without the definitions model)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TITLE_NAMES = ("title", "subject", "name", "summary", "label")
"""Field names that read as a record's title, in order of preference."""
TITLE_LENGTH = 120


def record_title(otype: Any, data: Mapping[str, Any]) -> str | None:
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
