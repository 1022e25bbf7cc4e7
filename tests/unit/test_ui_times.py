"""Relative times as the Work Guide prints them (web/ui/times.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from baton.clock import iso
from baton.web.ui.times import ago_text, due_text, span

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (45, "45 s"), (89, "1 min"), (20 * 60, "20 min"), (59 * 60 + 29, "59 min"),
    (3600, "1 h"), (2.5 * 3600, "2 h 30 min"), (3 * 3600 + 20 * 60, "3 h"),
    (3 * 3600 + 40 * 60, "4 h"), (26 * 3600, "26 h"), (50 * 3600, "2 d"), (-20 * 60, "20 min"),
])
def test_span_rounds_to_what_matters(seconds: float, text: str) -> None:
    assert span(seconds) == text


def test_due_and_ago() -> None:
    assert due_text(iso(NOW + timedelta(hours=3)), NOW) == "due in 3 h"
    assert due_text(iso(NOW - timedelta(minutes=20)), NOW) == "overdue by 20 min"
    assert due_text(iso(NOW), NOW) == "overdue by 0 s"
    assert due_text(None, NOW) == ""
    assert ago_text(iso(NOW - timedelta(seconds=30)), NOW) == "just now"
    assert ago_text(iso(NOW - timedelta(days=3)), NOW) == "3 d ago"
