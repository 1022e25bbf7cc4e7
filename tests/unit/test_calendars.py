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


def test_a_day_may_end_at_24_00() -> None:
    """``24:00`` is the midnight that ends the day (validation accepts it; ``24:30`` it
    refuses): a night shift counts up to midnight and goes on the next evening, across the
    change to summer time in Lisbon (29 March 2026, 01:00 UTC)."""
    lisbon = ZoneInfo("Europe/Lisbon")
    night = BusinessCalendar.from_spec("night", {
        "timezone": "Europe/Lisbon",
        "hours": {d: ["22:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
    })
    start = datetime(2026, 3, 27, 23, 0, tzinfo=lisbon)  # Friday 23:00, one hour left
    assert night.intervals(start.date())[0][1] == datetime(2026, 3, 28, 0, 0, tzinfo=lisbon)
    assert add_business_time(night, start, timedelta(hours=1)) == datetime(
        2026, 3, 28, 0, 0, tzinfo=lisbon)
    # 1 h on Friday, 2 h on Saturday, 1 h into Sunday (after the clocks went forward)
    assert add_business_time(night, start, timedelta(hours=4)) == datetime(
        2026, 3, 29, 23, 0, tzinfo=lisbon)
