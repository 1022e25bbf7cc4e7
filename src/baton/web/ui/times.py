"""Times as people read them: relative to now ("due in 3 h", "overdue by 20 min"), written
on the server from UTC; ``/static/local-time.js`` then writes the exact time in the
viewer's own time zone beside it (``<time class="exact">``, visible text: keyboard and
touch users reach it) and in its tooltip (UTC when scripts are off).
"""

from __future__ import annotations

from datetime import datetime

from baton.clock import parse_iso


def span(seconds: float) -> str:
    """A duration, rounded to what matters at its size: ``45 s``, ``20 min``, ``3 h``,
    ``2 h 30 min`` (under 10 h), ``4 d``."""
    s = int(abs(seconds))
    if s < 60:
        return f"{s} s"
    minutes = (s + 30) // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    if hours < 10:
        return f"{hours} h {rest} min" if rest and hours < 3 else f"{hours + (rest >= 30)} h"
    if hours < 48:
        return f"{hours + (rest >= 30)} h"
    return f"{(hours + 12) // 24} d"


def due_text(due_at: str | None, now: datetime) -> str:
    """``due in 3 h`` or ``overdue by 20 min``; empty without a due time."""
    if not due_at:
        return ""
    left = (parse_iso(due_at) - now).total_seconds()
    return f"due in {span(left)}" if left > 0 else f"overdue by {span(left)}"


def ago_text(at: str | None, now: datetime) -> str:
    """``5 min ago`` (``just now`` under a minute)."""
    if not at:
        return ""
    past = (now - parse_iso(at)).total_seconds()
    if past < 60:
        return "just now"
    return f"{span(past)} ago"
