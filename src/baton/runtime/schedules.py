"""Cron schedules: an orchestration whose trigger is ``type: schedule`` starts a run at each
tick of its ``cron`` expression, read in its ``timezone`` (default UTC).

Exactly once, durably: each scheduled orchestration has one row in ``baton_schedules`` and
at most one live ``schedule`` job, due at the row's next tick and carrying the row's
``token``. The job that fires starts the run, moves the row on to the following tick (a new
token) and queues the job for it, in the one transaction that deletes the fired job; a worker
that dies before its commit leaves the job to be claimed again, having started nothing.
Deploying or activating another version, or deactivating the orchestration, writes a new
token, so a job armed before finds itself stale and starts nothing.

Ticks missed while no worker ran (the machine was down), the trigger's ``misfire`` policy:
``run_once`` (the default) starts ONE run for them, late, and its audit event says how many
ticks were skipped — a scheduler's "fire once now" rule rather than a burst of runs;
``skip`` starts nothing for them (a ``schedule_skipped`` event says what was missed) and
waits for the next tick. A tick is missed when a later tick has passed too, so a worker a
few seconds late still runs it under either policy.

Daylight saving in the ``timezone`` (cron's own rule, as Vixie cron has it): a tick at a
local time the spring-forward night skips (``30 2 * * *`` in Europe/Berlin) fires once, at
the end of the gap (03:00); a tick at a local time the fall-back night repeats fires once,
at its first occurrence, when the cron names its minutes and hours (neither field starts
with ``*``): "at 02:30 every day" is once a day. A cron whose minute or hour field starts
with ``*`` (``*/15 * * * *``, ``0 * * * *``) follows the time that passes, so it ticks in
the repeated hour again: every 15 minutes stays every 15 minutes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
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
MISSED_COUNT_LIMIT = 10_000  # ticks counted at most, when saying how many were skipped


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


def _missed(cron: str, timezone: str, due: datetime, now: datetime) -> int:
    """Ticks after ``due`` and not after ``now`` (skipped by a late firing)."""
    n = 0
    try:
        for tick in _ticks(cron, timezone, due):
            if n >= MISSED_COUNT_LIMIT or tick > now:
                break
            n += 1
    except ScheduleError:
        pass
    return n


def arm_txn(tx: Transaction, defn: OrchestrationDefinition | None, name: str,
            version: int | None, now: datetime, ids: IdGenerator) -> None:
    """Make the schedule of orchestration ``name`` follow its active version: armed at the
    next tick when that version has a ``schedule`` trigger, disarmed otherwise (``defn``
    None: deactivated). Called in the transaction that deploys or (de)activates it."""
    t = defn.trigger if defn is not None else None
    row = tx.get_schedule_txn(name, for_update=True)
    if t is None or t.type != "schedule" or not t.cron or version is None:
        if row is not None and row["next_at"] is not None:
            tx.put_schedule_txn({**row, "token": ids.new("sch"), "next_at": None,
                                 "updated_at": iso(now)})
        return
    tz = t.timezone or DEFAULT_TIMEZONE
    tick = next_tick(t.cron, tz, now)
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
    the job is stale (another version was deployed or activated since it was armed) or its
    missed ticks are skipped (``misfire: skip``)."""
    name = payload["orchestration"]
    row = tx.get_schedule_txn(name, for_update=True)
    if row is None or row["token"] != payload["token"] or row["next_at"] is None:
        return None
    defn, version = definitions.orchestration(name, row["version"], tx=tx)
    due = parse_iso(payload["at"])
    tz = row["timezone"]
    missed = _missed(row["cron"], tz, due, now)
    skip = bool(missed) and defn.trigger.misfire == "skip"
    run_id = None if skip else runs.start_txn(tx, defn, version, None, {}, "schedule", now).id
    following = next_tick(row["cron"], tz, max(now, due))
    token = ids.new("sch")
    tx.put_schedule_txn({
        **row, "token": token, "next_at": iso(following), "updated_at": iso(now),
        **({} if skip else {"last_at": iso(due), "last_run_id": run_id})})
    nxt: jobs.SchedulePayload = {"orchestration": name, "token": token, "at": iso(following)}
    tx.enqueue_job_txn(jobs.SCHEDULE, None, dict(nxt), iso(following), iso(now))
    data: dict[str, Any] = {"orchestration": name, "version": version,
                            "scheduled_for": iso(due), "next_at": iso(following)}
    if missed:
        data["missed_ticks"] = missed
    tx.append_events_txn([{"at": iso(now), "type": "schedule_skipped" if skip else "schedule_fired",
                           "actor": "schedule", "record_id": None, "run_id": run_id, "data": data}])
    return run_id
