"""Intake's events and messages as people read them (the record page, ``baton records``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def describe_message(d: Mapping[str, Any], limit: int = 160) -> str:
    """A ``message_received`` event's data in one line: who, about what, how it came, what
    it says (its new text, shortened), its files (refused ones marked) and what intake noted
    about it (a defect read around)."""
    how = "a reply" if d.get("via") == "reply" else f"via {d.get('via')}"
    out = f"from {d.get('from') or 'unknown'}: {d.get('subject') or '(no subject)'} ({how})"
    text = " ".join(str(d.get("text") or "").split())
    if text:
        out += " — " + (text if len(text) <= limit else text[: limit - 1] + "…")
    files = d.get("attachments") or []
    if files:
        refused = set(d.get("refused") or [])
        out += "; attachments: " + ", ".join(
            f"{f} (refused)" if f in refused else str(f) for f in files)
    notes = d.get("notes") or []
    if notes:
        out += "; note: " + "; ".join(str(n) for n in notes)
    return out
