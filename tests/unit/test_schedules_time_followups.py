"""The latest tick not after now (what ``misfire: skip`` runs after missed ticks), found by
stepping back from now: the same as walking the ticks forward from the first due one, across
daylight-saving nights (the gap, the repeated hour) included. And the spring-forward gap's
ticks, which land on the instant of the gap's end (brief "time")."""

from __future__ import annotations

from bisect import bisect_right
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from baton.runtime.schedules import _count_missed, _latest, _ticks, next_tick

CRONS = ["*/15 * * * *", "0 * * * *", "30 2 * * *", "0 2 * * *", "0 1-3 * * *",
         "15,45 1 * * *", "*/30 2 * * *", "0 9 * * 1-5", "0 0 1 * *", "* * * * *"]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]
# around both daylight-saving nights of each zone, and plain days
STARTS = [datetime(2026, 3, 7, 20, tzinfo=UTC), datetime(2026, 3, 28, 20, tzinfo=UTC),
          datetime(2026, 10, 24, 20, tzinfo=UTC), datetime(2026, 10, 31, 20, tzinfo=UTC),
          datetime(2026, 4, 4, 10, tzinfo=UTC), datetime(2026, 10, 3, 10, tzinfo=UTC)]


@pytest.mark.parametrize("tz", ZONES)
@pytest.mark.parametrize("cron", CRONS)
def test_the_latest_tick_found_stepping_back_is_the_one_walked_to(cron: str, tz: str) -> None:
    checked = 0
    for start in STARTS:
        due = next_tick(cron, tz, start)
        end = due + timedelta(hours=30)
        walk = [due]  # the ticks from due on, walked forward
        for tick in _ticks(cron, tz, due):
            walk.append(tick)
            if tick > end:
                break
        # now at each tick, a second after it, and every 17 minutes over the 30 hours
        nows = {due + timedelta(minutes=17 * k) for k in range(30 * 60 // 17)}
        nows |= {t + timedelta(seconds=s) for t in walk[:60] for s in (0, 1)}
        for now in sorted(n for n in nows if due <= n <= end):
            expected = walk[bisect_right(walk, now) - 1]
            assert _latest(cron, tz, due, now) == expected, (cron, tz, due, now)
            checked += 1
    assert checked > 500


def test_the_latest_tick_after_a_long_downtime_and_the_count_of_those_before_it() -> None:
    due = datetime(2026, 1, 5, 7, tzinfo=UTC)
    now = datetime(2026, 7, 1, 7, 0, 30, tzinfo=UTC)  # half a year on, 30 s after a tick
    assert _latest("0 7 * * *", "UTC", due, now) == datetime(2026, 7, 1, 7, tzinfo=UTC)
    # the ticks skipped (misfire: skip): due and those after it but the latest
    assert _count_missed("0 7 * * *", "UTC", due, now) == (177, False)


def test_the_gap_ticks_land_on_the_instant_the_gap_ends() -> None:
    # 8 March 2026 in New York: 02:00-03:00 local does not exist. The cron's 02:00 tick
    # fires at 03:00 EDT, the instant of its 03:00 tick: one instant, one run.
    ny = ZoneInfo("America/New_York")
    ticks = [t.astimezone(ny).strftime("%d %H:%M%z") for t, _ in zip(
        _ticks("0 1-3 * * *", "America/New_York", datetime(2026, 3, 8, tzinfo=UTC)),
        range(5), strict=False)]
    assert ticks == ["08 01:00-0500", "08 03:00-0400", "09 01:00-0400", "09 02:00-0400",
                     "09 03:00-0400"]
    # 02:00 and 02:30 in the Berlin gap: one tick at 03:00 CEST
    berlin = ZoneInfo("Europe/Berlin")
    ticks = [t.astimezone(berlin).strftime("%d %H:%M%z") for t, _ in zip(
        _ticks("*/30 2 * * *", "Europe/Berlin", datetime(2026, 3, 28, 12, tzinfo=UTC)),
        range(3), strict=False)]
    assert ticks == ["29 03:00+0200", "30 02:00+0200", "30 02:30+0200"]
