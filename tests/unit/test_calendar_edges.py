"""Business calendars and cron ticks at the edges a company's year has: daylight saving
(Europe/Berlin, America/New_York, Australia/Lord_Howe's 30-minute shift), holidays of a
country and a subdivision, year ends and leap days, 24-hour and overnight hours, intervals
written out of order. Pure: no database, no clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from baton.calendars import HORIZON, BusinessCalendar, add_business_time
from baton.definitions.loader import check_texts
from baton.definitions.model import CalendarDefinition
from baton.runtime.schedules import MISSED_STEP_LIMIT, _count_missed, _missed, _ticks, next_tick

BERLIN, NEW_YORK, LORD_HOWE = "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"
WEEK = ("mon", "tue", "wed", "thu", "fri")


def cal(hours: dict[str, list[str]], tz: str = BERLIN, **more: object) -> BusinessCalendar:
    return BusinessCalendar.from_spec("c", {"timezone": tz, "hours": hours, **more})


def local(tz: str, year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo(tz))


def add(c: BusinessCalendar, start: datetime, **delta: float) -> datetime:
    return add_business_time(c, start, timedelta(**delta)).astimezone(ZoneInfo(c.timezone))


# ---- intervals out of order, overlapping ---------------------------------------------------

def test_intervals_written_out_of_order_count_the_morning_first() -> None:
    # Found: read as given, the afternoon was counted first and the morning was then past,
    # so 1 business hour from 08:00 was due at 14:00, not 10:00.
    c = cal({"mon": ["13:00-17:00", "09:00-12:00"]})
    assert add(c, local(BERLIN, 2026, 1, 5, 8), hours=1) == local(BERLIN, 2026, 1, 5, 10)
    assert add(c, local(BERLIN, 2026, 1, 5, 8), hours=4) == local(BERLIN, 2026, 1, 5, 14)


def test_overlapping_intervals_count_once() -> None:
    c = cal({"mon": ["09:00-12:00", "11:00-13:00", "12:30-14:00"]})  # 09:00-14:00: 5 h
    assert add(c, local(BERLIN, 2026, 1, 5, 9), hours=5) == local(BERLIN, 2026, 1, 5, 14)
    assert add(c, local(BERLIN, 2026, 1, 5, 9), hours=6) == local(BERLIN, 2026, 1, 12, 10)


# ---- daylight saving ------------------------------------------------------------------------

def test_four_business_hours_across_the_spring_forward_night_are_four_real_hours() -> None:
    c = cal({d: ["00:00-24:00"] for d in ("sat", "sun")})  # around the clock at weekends
    # Sat 28 Mar 2026 23:00 CET; 02:00 -> 03:00 that night: 4 h later it is 04:00 CEST.
    got = add(c, local(BERLIN, 2026, 3, 28, 23), hours=4)
    assert got == local(BERLIN, 2026, 3, 29, 4) and got.utcoffset() == timedelta(hours=2)


def test_hours_in_the_skipped_hour_give_no_time_and_in_the_repeated_hour_twice() -> None:
    c = cal({"sun": ["02:00-03:00"]})
    assert [b - a for a, b in c.intervals(date(2026, 3, 29))] == [timedelta(0)]
    assert [b - a for a, b in c.intervals(date(2026, 10, 25))] == [timedelta(hours=2)]
    assert [b - a for a, b in c.intervals(date(2026, 11, 1))] == [timedelta(hours=1)]
    # so an SLA counting that hour waits for the next Sunday in spring
    start = local(BERLIN, 2026, 3, 29, 0)
    assert add(c, start, minutes=30) == local(BERLIN, 2026, 4, 5, 2, 30)


def test_lord_howe_half_hour_shift() -> None:
    c = cal({"sun": ["01:00-04:00"]}, tz=LORD_HOWE)
    # 5 Apr 2026 02:00 (+11) -> 01:30 (+10:30): 3.5 h; 4 Oct 02:00 -> 02:30 (+11): 2.5 h
    assert [b - a for a, b in c.intervals(date(2026, 4, 5))] == [timedelta(hours=3.5)]
    assert [b - a for a, b in c.intervals(date(2026, 10, 4))] == [timedelta(hours=2.5)]
    start = local(LORD_HOWE, 2026, 10, 4, 0)
    assert add(c, start, hours=2.5) == local(LORD_HOWE, 2026, 10, 4, 4)


# ---- holidays, year ends, leap days -------------------------------------------------------

def test_new_year_in_california_and_an_observed_holiday() -> None:
    c = cal({d: ["09:00-17:00"] for d in WEEK}, tz="America/Los_Angeles",
            holidays={"country": "US", "subdivision": "CA"})
    la = "America/Los_Angeles"
    # Thu 31 Dec 2026 16:00 + 2 h: 1 h that day, 1 Jan closed, a weekend, Mon 4 Jan 10:00
    assert add(c, local(la, 2026, 12, 31, 16), hours=2) == local(la, 2027, 1, 4, 10)
    # New Year 2028 is a Saturday: Fri 31 Dec 2027 is observed (closed)
    assert add(c, local(la, 2027, 12, 30, 16), hours=2) == local(la, 2028, 1, 3, 10)
    # Cesar Chavez Day (31 Mar) is a California holiday, not a federal one
    federal = cal({d: ["09:00-17:00"] for d in WEEK}, tz=la, holidays={"country": "US"})
    assert c.is_closed(date(2026, 3, 31)) and not federal.is_closed(date(2026, 3, 31))


def test_a_bavarian_holiday_and_extra_dates() -> None:
    hours = {d: ["09:00-17:00"] for d in WEEK}
    by = cal(hours, holidays={"country": "DE", "subdivision": "BY"}, extra_dates=["2026-01-07"])
    de = cal(hours, holidays={"country": "DE"})
    start = local(BERLIN, 2026, 1, 5, 17)  # Monday's close; 6 Jan is Epiphany in Bavaria
    assert add(de, start, hours=1) == local(BERLIN, 2026, 1, 6, 10)
    assert add(by, start, hours=1) == local(BERLIN, 2026, 1, 8, 10)  # 7 Jan closed too


def test_a_leap_day_is_a_working_day() -> None:
    c = cal({"tue": ["09:00-17:00"]}, tz="UTC")
    got = add_business_time(c, datetime(2028, 2, 28, tzinfo=UTC), timedelta(hours=1))
    assert got == datetime(2028, 2, 29, 10, tzinfo=UTC)


# ---- 24-hour days, overnight shifts, no hours ---------------------------------------------

def test_a_24_hour_day_and_an_overnight_shift_split_at_midnight() -> None:
    c = cal({"mon": ["22:00-24:00"], "tue": ["00:00-06:00"]})
    assert add(c, local(BERLIN, 2026, 1, 5, 21), hours=3) == local(BERLIN, 2026, 1, 6, 1)
    assert add(c, local(BERLIN, 2026, 1, 5, 21), hours=8) == local(BERLIN, 2026, 1, 6, 6)
    assert add(c, local(BERLIN, 2026, 1, 5, 21), hours=9) == local(BERLIN, 2026, 1, 12, 23)
    all_day = cal({d: ["00:00-24:00"] for d in ("mon", "tue", "wed", "thu", "fri", "sat",
                                                "sun")})
    assert add(all_day, local(BERLIN, 2026, 1, 5, 9), days=3) == local(BERLIN, 2026, 1, 8, 9)


def test_a_calendar_without_hours_answers_at_once() -> None:
    start = datetime(2026, 1, 5, tzinfo=UTC)
    assert add_business_time(cal({"mon": []}), start, timedelta(hours=1)) == start + HORIZON


# ---- cron ticks on the daylight-saving nights ---------------------------------------------

def ticks(cron: str, tz: str, start: datetime, hours: int) -> list[str]:
    out, t = [], start
    while (t := next_tick(cron, tz, t)) <= start + timedelta(hours=hours):
        out.append(t.astimezone(ZoneInfo(tz)).strftime("%d %H:%M%z"))
    return out


@pytest.mark.parametrize(("tz", "spring", "fall"), [
    (BERLIN, datetime(2026, 3, 28, 12, tzinfo=UTC), datetime(2026, 10, 24, 12, tzinfo=UTC)),
    (LORD_HOWE, datetime(2026, 10, 3, 2, tzinfo=UTC), datetime(2026, 4, 4, 2, tzinfo=UTC)),
])
def test_a_fixed_time_cron_ticks_once_a_day_on_both_nights(tz: str, spring: datetime,
                                                          fall: datetime) -> None:
    # Found: croniter ticks "30 1 * * *" twice on the fall-back night (01:30 comes twice
    # in Berlin; in Lord Howe the half hour 01:30-02:00 does).
    for start in (spring, fall):
        got = ticks("30 1 * * *", tz, start, 48)
        assert len(got) == 2 and len({g[:2] for g in got}) == 2, got
        got = ticks("30 2 * * *", tz, start, 48)
        assert len(got) == 2 and len({g[:2] for g in got}) == 2, got


def test_on_the_spring_forward_night_a_skipped_tick_fires_at_the_end_of_the_gap() -> None:
    assert ticks("30 2 * * *", BERLIN, datetime(2026, 3, 28, 12, tzinfo=UTC), 24) == [
        "29 03:00+0200"]
    assert ticks("30 2 * * *", NEW_YORK, datetime(2026, 3, 7, 12, tzinfo=UTC), 24) == [
        "08 03:00-0400"]


def test_a_wildcard_cron_follows_the_time_that_passes_in_the_repeated_hour() -> None:
    got = ticks("0 * * * *", BERLIN, datetime(2026, 10, 24, 23, 30, tzinfo=UTC), 4)
    assert got == ["25 02:00+0200", "25 02:00+0100", "25 03:00+0100", "25 04:00+0100"]
    got = ticks("*/30 * * * *", NEW_YORK, datetime(2026, 11, 1, 5, 0, tzinfo=UTC), 2)
    assert got == ["01 01:30-0400", "01 01:00-0500", "01 01:30-0500", "01 02:00-0500"]


def test_missed_ticks_across_the_fall_back_night_are_counted_once() -> None:
    due = datetime(2026, 10, 23, 0, 30, tzinfo=UTC)  # Fri 02:30 CEST
    assert _missed("30 2 * * *", BERLIN, due, datetime(2026, 10, 27, tzinfo=UTC)) == 3


def test_missed_ticks_of_a_per_minute_cron_a_week_late_are_counted_exactly() -> None:
    # Found: counted tick by tick, 10,000 croniter steps (0.9 s in the write transaction),
    # and then stopped there: a week is 10,080 minutes.
    due = datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert _count_missed("* * * * *", "UTC", due, due + timedelta(days=7)) == (10_080, False)
    # a week across the spring-forward night follows the time that passes: 7 x 1,440 again
    due = datetime(2026, 3, 25, 9, tzinfo=UTC)
    assert _count_missed("* * * * *", BERLIN, due, due + timedelta(days=7)) == (10_080, False)
    # a per-minute cron in working hours: 5 days x 9 hours x 60, as of Monday 09:00
    due = local(BERLIN, 2026, 3, 2, 9)
    got = _count_missed("* 9-17 * * 1-5", BERLIN, due, due + timedelta(days=7))
    assert got == (5 * 540, False)  # Monday 09:00 is `due` itself; the next Monday's counts


def test_missed_ticks_counted_past_the_step_limit_say_so() -> None:
    due = datetime(2020, 1, 1, 9, tzinfo=UTC)
    got = _count_missed("0 9 * * *", "UTC", due, datetime(2026, 1, 1, tzinfo=UTC))
    assert got == (MISSED_STEP_LIMIT, True)  # one step a day: cut short at 1,000 days


def _stepped(cron: str, tz: str, due: datetime, now: datetime) -> int:
    """The missed ticks counted the slow way: every tick of ``_ticks``."""
    n = 0
    for tick in _ticks(cron, tz, due):
        if tick > now:
            return n
        n += 1
    return n


@pytest.mark.parametrize("cron", ["*/7 * * * *", "30 1,2 * * *", "0 * * * *",
                                  "*/20 0-3,23 * * 0,6", "15,45 1-3 * * *"])
@pytest.mark.parametrize(("tz", "change"), [
    (BERLIN, datetime(2026, 10, 25, 1, tzinfo=UTC)),  # 03:00 CEST -> 02:00 CET
    (BERLIN, datetime(2026, 3, 29, 1, tzinfo=UTC)),  # 02:00 CET -> 03:00 CEST
    (LORD_HOWE, datetime(2026, 4, 4, 15, tzinfo=UTC)),  # 02:00 -> 01:30
    ("America/Havana", datetime(2026, 3, 8, 5, tzinfo=UTC)),  # 00:00 -> 01:00 (midnight)
    ("America/Santiago", datetime(2026, 4, 5, 3, tzinfo=UTC)),  # 24:00 -> 23:00 (midnight)
])
def test_missed_ticks_counted_a_day_at_a_time_are_the_ticks_stepped_one_by_one(
        cron: str, tz: str, change: datetime) -> None:
    # from a tick a day before the change to a `now` before, in and after its hour
    for before in (timedelta(hours=26), timedelta(hours=3, minutes=10)):
        due = next_tick(cron, tz, change - before)
        for after in range(-150, 200, 23):
            now = change + timedelta(minutes=after, seconds=13)
            if now >= due:
                assert _missed(cron, tz, due, now) == _stepped(cron, tz, due, now), (due, now)


def test_a_tick_moved_to_a_day_the_cron_does_not_name_is_counted_alone() -> None:
    # Samoa skipped Friday 30 Dec 2011: its 00:00 tick fires at the gap's end, Saturday
    # 00:00, a minute the cron names on a day it does not (no Saturday 00:30 follows).
    due, now = datetime(2011, 12, 22, 10, 30, tzinfo=UTC), datetime(2011, 12, 31, 12, tzinfo=UTC)
    assert _count_missed("0,30 0 * * 5", "Pacific/Apia", due, now) == (3, False)
    assert _stepped("0,30 0 * * 5", "Pacific/Apia", due, now) == 3


# ---- holidays that are worked ---------------------------------------------------------------

def test_a_holiday_in_except_is_a_working_day_and_the_others_stay_closed() -> None:
    hours = {d: ["09:00-17:00"] for d in WEEK}
    by = cal(hours, holidays={"country": "DE", "subdivision": "BY", "except": ["2026-01-06"]})
    assert not by.is_closed(date(2026, 1, 6)) and by.is_closed(date(2026, 1, 1))
    start = local(BERLIN, 2026, 1, 5, 17)  # Monday's close; 6 Jan (Epiphany) is worked
    assert add(by, start, hours=1) == local(BERLIN, 2026, 1, 6, 10)
    assert add(by, local(BERLIN, 2026, 12, 31, 16), hours=2) == local(BERLIN, 2027, 1, 4, 10)
    # the next year's Epiphany is a holiday again: except names dates, not holidays
    assert by.is_closed(date(2027, 1, 6))
    # worked on the day, still only as the hours say: no hours on a Sunday
    sunday = cal(hours, holidays={"country": "DE", "except": ["2026-04-05"]})
    assert sunday.intervals(date(2026, 4, 5)) == []


def test_except_reaches_the_calendar_from_its_definition() -> None:
    loaded, issues = check_texts({"c.yaml": """
kind: calendar
name: support
timezone: Europe/Berlin
hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"]}
holidays: {country: DE, subdivision: BY, except: [2026-01-06]}
"""})
    assert not issues
    (doc,) = loaded
    assert isinstance(doc.definition, CalendarDefinition)
    spec = doc.definition.spec()
    assert spec["holidays"] == {"country": "DE", "subdivision": "BY", "except": ["2026-01-06"]}
    c = BusinessCalendar.from_spec("support", spec)
    assert not c.is_closed(date(2026, 1, 6)) and c.is_closed(date(2026, 1, 1))
