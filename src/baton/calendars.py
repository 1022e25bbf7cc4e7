"""Business calendars: working hours per weekday in a time zone, minus holidays.

Pure: no I/O and no clock. ``add_business_time(cal, start, delta)`` is the instant at
which ``delta`` of working time has passed since ``start`` — how an SLA with
``calendar:`` counts (``sla: {duration: 8h, calendar: support_hours}``).

Holidays come from the ``holidays`` package (country + optional subdivision, computed
from rules in the package, offline), less the ones listed in ``holidays.except`` (worked,
as the hours say), plus a definition's ``extra_dates``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HORIZON = timedelta(days=36_500)
"""How far ahead business time is counted (100 years, the longest duration a definition
may give): business time a calendar does not give within it is due at its end, never in
practice (:func:`add_business_time`)."""


@dataclass(frozen=True)
class BusinessCalendar:
    name: str
    timezone: str
    # weekday (0 = Monday) -> intervals; an end of None is the midnight that ends the day
    # ("24:00": time() has no hour 24)
    hours: dict[int, tuple[tuple[time, time | None], ...]]
    country: str | None = None
    subdivision: str | None = None
    extra_dates: frozenset[date] = frozenset()
    worked_holidays: frozenset[date] = frozenset()  # holidays.except: open as the hours say
    _holidays: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_spec(cls, name: str, spec: dict[str, Any]) -> BusinessCalendar:
        """Build from a ``kind: calendar`` document's data (already validated)."""
        hours = {WEEKDAYS.index(day): _merged(_interval(text) for text in texts)
                 for day, texts in (spec.get("hours") or {}).items()}
        hol = spec.get("holidays") or {}
        extra = frozenset(date.fromisoformat(str(d)) for d in spec.get("extra_dates") or ())
        worked = frozenset(date.fromisoformat(str(d)) for d in hol.get("except") or ())
        country, subdiv = hol.get("country"), hol.get("subdivision")
        table = None
        if country:
            import holidays as holidays_pkg  # ~40 ms of imports: only for a calendar with holidays

            table = holidays_pkg.country_holidays(country, subdiv=subdiv)
        return cls(name, spec.get("timezone", "UTC"), hours, country, subdiv, extra, worked,
                   table)

    def is_closed(self, day: date) -> bool:
        """A holiday not in ``holidays.except``, or an extra date: no working hours that day."""
        return day in self.extra_dates or (self._holidays is not None and day in self._holidays
                                           and day not in self.worked_holidays)

    def intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """That local day's working intervals as UTC instants (DST-safe)."""
        spans = self.hours.get(day.weekday())
        if not spans or self.is_closed(day):  # (a day without hours needs no holiday lookup)
            return []
        tz = ZoneInfo(self.timezone)
        return [(datetime.combine(day, a, tz).astimezone(UTC),
                 (datetime.combine(day, b, tz) if b is not None
                  else datetime.combine(day + timedelta(days=1), time(0), tz)).astimezone(UTC))
                for a, b in spans]


def _merged(spans: Iterable[tuple[time, time | None]]) -> tuple[tuple[time, time | None], ...]:
    """A day's intervals in order of their start, overlapping or touching ones joined:
    counting business time walks them in order (``["13:00-17:00", "09:00-12:00"]`` read as
    given lost the morning once the afternoon was counted)."""
    out: list[tuple[time, time | None]] = []
    for begin, end in sorted(spans, key=lambda span: span[0]):
        if out and (out[-1][1] is None or begin <= out[-1][1]):
            last_end = out[-1][1]
            out[-1] = (out[-1][0], None if last_end is None or end is None else max(last_end, end))
        else:
            out.append((begin, end))
    return tuple(out)


def _interval(text: str) -> tuple[time, time | None]:
    start, _, end = text.partition("-")
    end = end.strip()
    return time.fromisoformat(start.strip()), None if end == "24:00" else time.fromisoformat(end)


def add_business_time(cal: BusinessCalendar, start: datetime, delta: timedelta) -> datetime:
    """The instant when ``delta`` of the calendar's working time has passed after ``start``.

    Time outside working hours, at weekends without hours and on holidays does not count.
    ``delta == 0`` returns ``start`` itself.

    Never raises: business time the calendar does not give within :data:`HORIZON` (one
    hour a week and an SLA of years; a calendar without any working hours, stored before
    validation refused one) is due at the horizon's end (or at the last instant there is),
    an SLA that in practice never comes due, rather than an error in the step start or the
    record write that counts it.
    """
    remaining = delta
    if remaining <= timedelta(0):
        return start
    now = start.astimezone(UTC)
    try:
        far = now + HORIZON
    except OverflowError:
        far = datetime.max.replace(tzinfo=UTC)
    if not any(cal.hours.values()):
        return far
    tz = ZoneInfo(cal.timezone)
    day, last = now.astimezone(tz).date(), far.astimezone(tz).date()
    try:
        while day <= last:
            for begin, end in cal.intervals(day):
                if now >= end:
                    continue
                begin = max(begin, now)
                if remaining <= end - begin:
                    return min(begin + remaining, far)
                remaining -= end - begin
                now = end
            day += timedelta(days=1)
    except OverflowError:  # past the last date there is
        pass
    return far
