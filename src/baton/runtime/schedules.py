"""Cron schedules: an orchestration whose trigger is ``type: schedule`` starts a run at each
tick of its ``cron`` expression, read in its ``timezone`` (default UTC).

Exactly once, durably: each scheduled orchestration has one row in ``baton_schedules`` and
at most one live ``schedule`` job, due at the row's next tick and carrying the row's
``token``. The job that fires starts the run, moves the row on to the following tick (a new
token) and queues the job for it, in the one transaction that deletes the fired job; a worker
that dies before its commit leaves the job to be claimed again, having started nothing.
Deploying or activating another version, or deactivating the orchestration, writes a new
token, so a job armed before finds itself stale and starts nothing; a deploy or activation
keeps a pending tick that is already due (it fires, late, for the version now active), and
replaces only one still to come.

Ticks missed while no worker ran (the machine was down), the trigger's ``misfire`` policy:
``run_once`` (the default) starts ONE run for them, late, and its audit event says how many
ticks were skipped — a scheduler's "fire once now" rule rather than a burst of runs;
``skip`` starts nothing for them (a ``schedule_skipped`` event says what was missed) and
runs the latest tick that has passed. A tick is missed when a later tick has passed too, so
a worker a few seconds late still runs it under either policy. The count is made a day at a
time, not a tick at a time (:func:`_count_missed`), and stops after
:data:`MISSED_STEP_LIMIT` steps (about 1,000 days of downtime; the event then says
``missed_ticks_capped``).

Daylight saving in the ``timezone`` (cron's own rule, as Vixie cron has it): a tick at a
local time the spring-forward night skips (``30 2 * * *`` in Europe/Berlin) fires once, at
the end of the gap (03:00). Ticks that land on the same instant start one run (a schedule
fires at most once an instant, as ``run_once`` has it): the gap's ticks and a tick at the
gap's end (``0 1-3 * * *`` in America/New_York, 8 March 2026: 01:00, then 02:00 and 03:00
as one run at 03:00 EDT; ``*/30 2 * * *`` in Europe/Berlin: 02:00 and 02:30 as one at
03:00). A tick at a local time the fall-back night repeats fires once, at its first
occurrence, when the cron names its minutes and hours (neither field starts with ``*``):
"at 02:30 every day" is once a day. A cron whose minute or hour field starts with ``*``
(``*/15 * * * *``, ``0 * * * *``) follows the time that passes, so it ticks in the
repeated hour again: every 15 minutes stays every 15 minutes.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from baton.clock import iso, parse_iso
from baton.definitions.model import OrchestrationDefinition
from baton.errors import BatonError
from baton.ids import IdGenerator
from baton.runtime import jobs
from baton.store.ports import Transaction

if TYPE_CHECKING:
    from baton.runtime.definitions import DefinitionRepo
    from baton.runtime.runs import RunDriver

DEFAULT_TIMEZONE = "UTC"
MISSED_STEP_LIMIT = 1_000
"""Croniter steps taken at most when counting the ticks a late firing skipped (0.2 s at most
on a developer's machine): about one per day that has ticks, plus one per tick in the hour a
daylight-saving change moves, so a count is cut short only after about 1,000 days of
downtime (the event then says ``missed_ticks_capped``: at least that many)."""


class ScheduleError(BatonError):
    """A cron schedule that has no next tick (``0 0 31 2 *``: validation refuses it, so
    only a definition stored before it did)."""


def next_tick(cron: str, timezone: str, after: datetime) -> datetime:
    """The first tick of ``cron`` (read in ``timezone``) strictly after ``after``, in UTC
    (daylight saving as the module says: a fixed-time tick's fall-back repeat skipped).

    Raises:
        ScheduleError: the cron has no tick after ``after`` (no date matches it).
    """
    try:
        return next(_ticks(cron, timezone, after))
    except StopIteration:
        raise ScheduleError(f"cron {cron!r} ({timezone}) has no tick after {iso(after)}: "
                            "no date matches it") from None


def _ticks(cron: str, timezone: str, after: datetime) -> Iterator[datetime]:
    """The ticks of ``cron`` strictly after ``after``, in UTC.

    Raises:
        ScheduleError: (when the next is asked for) there is none: no date matches it.
    """
    from croniter import CroniterError, croniter  # on first use: most processes never read one

    tz = ZoneInfo(timezone)
    fixed = _fixed_time(cron)
    try:
        it = croniter(cron, after.astimezone(tz))
        while True:
            tick: datetime = it.get_next(datetime)
            if fixed and _repeated(tick, tz):
                continue  # its first occurrence, an hour (or 30 minutes) earlier, was the tick
            yield tick.astimezone(UTC)
    except (CroniterError, ValueError, OverflowError) as exc:
        raise ScheduleError(f"cron {cron!r} ({timezone}) has no tick after {iso(after)}: "
                            f"no date matches it ({exc})") from None


def _fixed_time(cron: str) -> bool:
    """Does ``cron`` name its minutes and hours (neither field starts with ``*``)?"""
    fields = cron.split()
    return len(fields) >= 2 and not fields[0].startswith("*") and not fields[1].startswith("*")


def _repeated(tick: datetime, tz: ZoneInfo) -> bool:
    """Is ``tick`` the second occurrence of a local time the fall-back night repeats?"""
    wall = tick.replace(tzinfo=None)
    first, second = wall.replace(tzinfo=tz, fold=0), wall.replace(tzinfo=tz, fold=1)
    return first.utcoffset() != second.utcoffset() and tick.utcoffset() == second.utcoffset()


def _latest(cron: str, timezone: str, due: datetime, now: datetime) -> datetime:
    """The last tick (as :func:`_ticks` has them) not after ``now``, ``due`` (a tick not
    after ``now``) or a later one. Croniter steps back from ``now`` to the second tick before
    it (a fixed-time cron's fall-back repeats are not ticks: stepped over), and the ticks are
    walked forward from there (a few steps; the walk has the daylight-saving rules of
    :func:`_ticks`)."""
    from croniter import CroniterError, croniter  # on first use

    tz, fixed = ZoneInfo(timezone), _fixed_time(cron)
    start, found = due, 0
    try:
        it = croniter(cron, now.astimezone(tz))
        for _ in range(MISSED_STEP_LIMIT):
            back: datetime = it.get_prev(datetime)
            if back.astimezone(UTC) <= due:
                break
            if fixed and _repeated(back, tz):
                continue  # not a tick (its first occurrence was): further back
            found += 1
            if found == 2:  # (one more than needed: what croniter steps back to is walked)
                start = min(back.astimezone(UTC), now)
                break
    except (CroniterError, ValueError, OverflowError):
        pass  # walked from due
    last = due
    try:
        for steps, tick in enumerate(_ticks(cron, timezone, start - timedelta(seconds=1))):
            if tick > now or steps >= MISSED_STEP_LIMIT:
                break
            last = max(last, tick)
    except ScheduleError:
        pass  # no tick after the last one
    return last


def _missed(cron: str, timezone: str, due: datetime, now: datetime) -> int:
    """Ticks after ``due`` and not after ``now`` (skipped by a late firing)."""
    return _count_missed(cron, timezone, due, now)[0]


def _count_missed(cron: str, timezone: str, due: datetime,
                  now: datetime) -> tuple[int, bool]:
    """``(ticks after due and not after now, whether MISSED_STEP_LIMIT cut the count short)``.

    Counted in the write transaction that fires the tick, so not tick by tick (a per-minute
    schedule a week late took 10,080 croniter steps, 0.9 s): croniter finds a day's first
    tick, and the others the cron names that day up to ``now`` are counted, as long as the
    UTC offset stays the one of that tick; from a daylight-saving change on, croniter steps
    tick by tick (the gap and the repeated hour as :func:`_ticks` has them) to the next tick
    that is a plain one again. A week late is about 10 steps.
    """
    if now <= due:
        return 0, False
    from croniter import CroniterError, croniter  # on first use

    try:
        day_minutes = _day_minutes(croniter(cron, due))
    except (CroniterError, ValueError, OverflowError):
        return 0, False
    tz = ZoneInfo(timezone)
    n = steps = 0
    ticks = _ticks(cron, timezone, due)
    try:
        while (tick := next(ticks)) <= now:
            if steps >= MISSED_STEP_LIMIT:
                return n, True
            steps += 1
            local = tick.astimezone(tz)
            first = local.hour * 60 + local.minute
            day = local.date()
            at = bisect_left(day_minutes or [], first)
            if day_minutes is None or at + 1 >= len(day_minutes) or day_minutes[at] != first:
                n += 1  # the day's last minute, or a tick moved by daylight saving (a gap's end)
                continue
            # the cron's minutes of this day from the tick on, up to now and while the
            # offset is the tick's (there is at most one change in a day)
            offset = local.utcoffset() or timedelta(0)
            end = (now.astimezone(UTC) + offset).replace(tzinfo=None)  # read at the offset
            upto = bisect_right(day_minutes, end.hour * 60 + end.minute
                                if end.date() == day else 24 * 60 - 1)
            if upto > at + 1 and not _plain_day(day, tz):
                upto = at + 1 + _before_change(day_minutes[at + 1:upto], day, offset, tz)
            if upto == at + 1 or not croniter.match(cron, local.replace(tzinfo=None)):
                n += 1  # no other tick to count that day, or a croniter quirk (a date line)
                continue
            n += upto - at
            last = datetime.combine(day, time(*divmod(day_minutes[upto - 1], 60)))
            ticks = _ticks(cron, timezone, (last - offset).replace(tzinfo=UTC))
    except ScheduleError:
        pass
    return n, False


def _day_minutes(it: Any) -> list[int] | None:
    """The minutes of a day (hour * 60 + minute) at which ``it``'s cron ticks on a day it
    ticks; None for a cron that is not 5 fields of plain minutes and hours."""
    expanded = it.expanded
    if len(expanded) != 5:
        return None
    minutes, hours = (list(range(60)) if expanded[0] == ["*"] else expanded[0],
                      list(range(24)) if expanded[1] == ["*"] else expanded[1])
    if not all(isinstance(x, int) for x in minutes + hours):
        return None
    return sorted({h * 60 + m for h in hours for m in minutes})


def _plain_day(day: date, tz: ZoneInfo) -> bool:
    """Has ``day`` the same UTC offset from its start to the next day's (no DST change)?"""
    start = datetime.combine(day, time(0), tz)
    return start.utcoffset() == datetime.combine(day + timedelta(days=1), time(0), tz).utcoffset()


def _before_change(minutes: list[int], day: date, offset: timedelta, tz: ZoneInfo) -> int:
    """How many of the local ``minutes`` of ``day`` (in order), read at ``offset``, are
    instants that have that offset: those before the day's daylight-saving change (bisection:
    the local time read at the old offset is at or past the change from it on)."""
    lo, hi = 0, len(minutes)
    while lo < hi:
        mid = (lo + hi) // 2
        wall = datetime.combine(day, time(*divmod(minutes[mid], 60)))
        if (wall - offset).replace(tzinfo=UTC).astimezone(tz).utcoffset() == offset:
            lo = mid + 1
        else:
            hi = mid
    return lo


def arm_txn(tx: Transaction, defn: OrchestrationDefinition | None, name: str,
            version: int | None, now: datetime, ids: IdGenerator) -> None:
    """Make the schedule of orchestration ``name`` follow its active version: armed at the
    next tick when that version has a ``schedule`` trigger, disarmed otherwise (``defn``
    None: deactivated). Called in the transaction that deploys, (de)activates or imports it.

    A pending tick already due (a worker busy or down when the deploy lands) is kept, under
    a new token: it fires for the version now active, late, under its ``misfire`` policy;
    only a tick still to come is replaced by the new version's next one."""
    t = defn.trigger if defn is not None else None
    row = tx.get_schedule_txn(name, for_update=True)
    if t is None or t.type != "schedule" or not t.cron or version is None:
        if row is not None and row["next_at"] is not None:
            tx.put_schedule_txn({**row, "token": ids.new("sch"), "next_at": None,
                                 "updated_at": iso(now)})
        return
    tz = t.timezone or DEFAULT_TIMEZONE
    pending = parse_iso(row["next_at"]) if row is not None and row["next_at"] else None
    # A tick already due and not yet fired stays due: it fires (the version now active) under
    # the misfire policy, as any late tick does, rather than vanish with the redeploy.
    tick = pending if pending is not None and pending <= now else next_tick(t.cron, tz, now)
    token = ids.new("sch")
    tx.put_schedule_txn({
        "orchestration": name, "version": version, "cron": t.cron, "timezone": tz,
        "token": token, "next_at": iso(tick), "last_at": row["last_at"] if row else None,
        "last_run_id": row["last_run_id"] if row else None, "updated_at": iso(now)})
    payload: jobs.SchedulePayload = {"orchestration": name, "token": token, "at": iso(tick)}
    tx.enqueue_job_txn(jobs.SCHEDULE, None, dict(payload), iso(tick), iso(now))


def fire_txn(tx: Transaction, payload: jobs.SchedulePayload, now: datetime,
             definitions: DefinitionRepo, runs: RunDriver, ids: IdGenerator) -> str | None:
    """Start the run a tick is due, and arm the next tick; the new run's id, or None when
    the job is stale (another version was deployed or activated since it was armed).

    Ticks missed (a later tick passed too), ``misfire: run_once``: the one run is for the
    first of them (``scheduled_for``), its event counts the others (``missed_ticks``);
    ``misfire: skip``: a ``schedule_skipped`` event says which were skipped (from
    ``scheduled_for``, ``missed_ticks`` of them) and the run is for the latest tick that has
    passed (``fired_for``), merely late."""
    name = payload["orchestration"]
    row = tx.get_schedule_txn(name, for_update=True)
    if row is None or row["token"] != payload["token"] or row["next_at"] is None:
        return None
    defn, version = definitions.orchestration(name, row["version"], tx=tx)
    due = parse_iso(payload["at"])
    tz = row["timezone"]
    missed, capped = _count_missed(row["cron"], tz, due, now)
    following = next_tick(row["cron"], tz, max(now, due))
    base: dict[str, Any] = {"orchestration": name, "version": version}
    events: list[dict[str, Any]] = []
    fires_for = due
    if missed and defn.trigger.misfire == "skip":
        # ``due`` and the ticks after it but the latest are missed (a later tick passed
        # too): one event says so; the latest, merely late, runs.
        fires_for = _latest(row["cron"], tz, due, now)
        skipped = {**base, "scheduled_for": iso(due), "missed_ticks": missed,
                   "fired_for": iso(fires_for), "next_at": iso(following)}
        if capped:
            skipped["missed_ticks_capped"] = True  # at least that many: counting stopped there
        events.append({"at": iso(now), "type": "schedule_skipped", "actor": "schedule",
                       "record_id": None, "run_id": None, "data": skipped})
        missed, capped = 0, False
    run_id = runs.start_txn(tx, defn, version, None, {}, "schedule", now).id
    token = ids.new("sch")
    tx.put_schedule_txn({
        **row, "token": token, "next_at": iso(following), "updated_at": iso(now),
        "last_at": iso(fires_for), "last_run_id": run_id})
    nxt: jobs.SchedulePayload = {"orchestration": name, "token": token, "at": iso(following)}
    tx.enqueue_job_txn(jobs.SCHEDULE, None, dict(nxt), iso(following), iso(now))
    data = {**base, "scheduled_for": iso(fires_for), "next_at": iso(following)}
    if missed:
        data["missed_ticks"] = missed
    if capped:
        data["missed_ticks_capped"] = True  # at least that many: counting stopped there
    events.append({"at": iso(now), "type": "schedule_fired", "actor": "schedule",
                   "record_id": None, "run_id": run_id, "data": data})
    tx.append_events_txn(events)
    return run_id
