"""Business time across nights, a weekend, a holiday and a daylight-saving change (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from baton.calendars import BusinessCalendar, add_business_time

LA = ZoneInfo("America/Los_Angeles")
SUPPORT = BusinessCalendar.from_spec("support_hours", {
    "timezone": "America/Los_Angeles",
    "hours": {d: ["09:00-17:00"] for d in ("mon", "tue", "wed", "thu", "fri")},
    "holidays": {"country": "US", "subdivision": "CA"},
    "extra_dates": ["2026-01-21"],
})


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=LA)  # type: ignore[misc]


def test_within_one_working_day() -> None:
    assert add_business_time(SUPPORT, local(2026, 1, 6, 9), timedelta(hours=8)) == local(2026, 1, 6, 17)


def test_overnight() -> None:
    # Tue 15:00 + 4h = 2h on Tuesday + 2h on Wednesday
    assert add_business_time(SUPPORT, local(2026, 1, 6, 15), timedelta(hours=4)) == local(2026, 1, 7, 11)


def test_across_a_weekend() -> None:
    # Fri 9 Jan 13:00 + 8h: 4h Friday, nothing Sat/Sun, 4h Monday 12 Jan
    assert add_business_time(SUPPORT, local(2026, 1, 9, 13), timedelta(hours=8)) == local(2026, 1, 12, 13)


def test_across_a_weekend_and_a_holiday() -> None:
    # Fri 16 Jan 13:00 + 8h: Mon 19 Jan is Martin Luther King Jr. Day -> Tue 20 Jan 13:00
    assert add_business_time(SUPPORT, local(2026, 1, 16, 13), timedelta(hours=8)) == local(2026, 1, 20, 13)


def test_extra_dates_are_closed() -> None:
    # Tue 20 Jan 13:00 + 8h: Wed 21 Jan is an extra closed date -> Thu 22 Jan 13:00
    assert add_business_time(SUPPORT, local(2026, 1, 20, 13), timedelta(hours=8)) == local(2026, 1, 22, 13)


def test_start_outside_hours_counts_from_the_next_opening() -> None:
    assert add_business_time(SUPPORT, local(2026, 1, 10, 20), timedelta(hours=1)) == local(2026, 1, 12, 10)
    assert add_business_time(SUPPORT, local(2026, 1, 6, 6), timedelta(hours=1)) == local(2026, 1, 6, 10)


def test_daylight_saving_change_keeps_local_working_hours() -> None:
    # DST starts Sun 8 Mar 2026 in California: Fri 16:00 PST + 2h -> Mon 10:00 PDT
    end = add_business_time(SUPPORT, local(2026, 3, 6, 16), timedelta(hours=2))
    assert end == local(2026, 3, 9, 10)
    assert end.astimezone(UTC).hour == 17  # PDT is UTC-7


def test_zero_is_the_start() -> None:
    start = local(2026, 1, 10, 20)
    assert add_business_time(SUPPORT, start, timedelta(0)) == start
