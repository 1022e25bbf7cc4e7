"""Time at its edges through the real engine, on SQLite and PostgreSQL with virtual time:
a nightly cron on the daylight-saving nights, pause timers a worker finds due after days
away, a pause until an instant (``at``), business-time SLAs across the spring-forward
night with hours written out of order, an SLA changed while runs are in flight, and the
validation of the time fields users get wrong."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from baton import flow
from baton.clock import iso
from baton.definitions.loader import check_texts
from baton.errors import Issue
from baton.flows import FlowContext
from baton.runtime import jobs
from tests.conftest import Harness

DONE: list[str] = []


@flow("t_edges.note")
def _note(ctx: FlowContext) -> dict[str, Any]:
    DONE.append(str((ctx.record or {}).get("subject")))
    return {}


CASE = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
  due: {type: string}
---
"""


def paused(pause: str, sla: str = "") -> str:
    return CASE + f"""
kind: orchestration
name: wait
trigger: {{type: record, object: Case, on: [create]}}
stages:
  - name: s
    steps:
      - {{name: p, type: pause, {pause}{sla}}}
      - {{name: note, type: background, flow: t_edges.note, after: [p]}}
"""


def run_of(h: Harness, record: dict[str, Any]) -> Any:
    (run,) = h.engine.list_runs(record_id=record["id"])
    return h.engine.get_run(run.id)


def events(h: Harness, type_: str) -> list[dict[str, Any]]:
    with h.engine.store.read() as tx:
        return list(tx.events_txn(types=[type_]))


def next_schedule_job(h: Harness) -> str:
    from sqlalchemy import select

    from baton.store import schema
    with h.engine.store.read() as tx:
        t = schema.jobs
        (at,) = tx.conn.execute(select(t.c.run_after).where(
            t.c.kind == jobs.SCHEDULE, t.c.status == "ready")).scalars()
    return str(at)


NIGHTLY = """
kind: orchestration
name: nightly
trigger: {type: schedule, cron: "30 2 * * *", timezone: Europe/Berlin}
stages:
  - name: s
    steps: [{name: m, type: pause, for: 0s}]
"""


def test_a_nightly_cron_runs_once_on_the_spring_forward_and_the_fall_back_night(
        harness: Harness) -> None:
    h = harness
    h.clock.set(datetime(2026, 3, 28, 12, tzinfo=UTC))
    h.deploy_text(NIGHTLY)
    seen: list[str] = []
    for _ in range(2):  # 29 Mar: 02:30 does not exist; it runs at 03:00 CEST (01:00Z)
        h.clock.set(datetime.fromisoformat(next_schedule_job(h)))
        h.work()
        seen.append(events(h, "schedule_fired")[-1]["data"]["scheduled_for"])
    assert seen == ["2026-03-29T01:00:00.000Z", "2026-03-30T00:30:00.000Z"]

    h.clock.set(datetime(2026, 10, 24, 12, tzinfo=UTC))
    h.work()  # (the ticks of the months between: one late run, then the next is armed)
    before = len(h.engine.list_runs())
    h.clock.set(datetime(2026, 10, 25, 0, 30, tzinfo=UTC))  # 02:30 CEST, the first time
    h.work()
    assert len(h.engine.list_runs()) == before + 1
    assert next_schedule_job(h).startswith("2026-10-26T01:30:00"), "not 02:30 CET again"
    h.clock.set(datetime(2026, 10, 25, 1, 30, tzinfo=UTC))  # 02:30 CET, the second time
    h.work()
    assert len(h.engine.list_runs()) == before + 1, "02:30 ran twice on the fall-back night"


def test_pause_timers_found_due_days_later_each_fire_once_in_due_order(harness: Harness) -> None:
    h = harness
    DONE.clear()
    for hours in (5, 1, 3, 2, 4):
        h.deploy_text(paused(f"for: {hours}h"))
        h.engine.create_record("Case", {"subject": f"{hours}h"})
        h.clock.advance(timedelta(minutes=1))
    h.work()
    assert DONE == []
    h.clock.advance(timedelta(days=3))  # the worker was away for days
    h.work()
    h.work()
    subject = {r.id: h.engine.get_record(str(r.record_id))["subject"] for r in h.engine.list_runs()}
    fired = [subject[e["run_id"]] for e in events(h, "step_completed")
             if e["data"].get("step") == "p"]
    assert fired == ["1h", "2h", "3h", "4h", "5h"]  # once each, in the order they came due
    assert sorted(DONE) == sorted(fired)
    assert all(r.status.value == "completed" for r in h.engine.list_runs())


def test_pause_at_an_instant_given_computed_or_already_past(harness: Harness) -> None:
    h = harness
    h.deploy_text(paused("at: '=record.due'"))
    soon = h.engine.create_record("Case", {"subject": "soon", "due": "2026-01-05T10:30:00+01:00"})
    past = h.engine.create_record("Case", {"subject": "past", "due": "2020-01-01T00:00:00Z"})
    local = h.engine.create_record("Case", {"subject": "no offset", "due": "2026-01-05T12:00"})
    empty = h.engine.create_record("Case", {"subject": "empty"})
    h.work()
    assert run_of(h, past).status.value == "completed"  # an instant already past: at once
    assert run_of(h, soon).steps["p"].status.value == "running"
    for rec, words in ((local, "has no UTC offset"), (empty, "has no value")):
        step = run_of(h, rec).steps["p"]
        assert step.status.value == "fallout" and words in step.error["message"], step.error
    h.clock.set(datetime(2026, 1, 5, 9, 29, 59, 999_000, tzinfo=UTC))
    h.work()
    assert run_of(h, soon).steps["p"].status.value == "running"
    h.clock.set(datetime(2026, 1, 5, 9, 30, tzinfo=UTC))  # 10:30+01:00
    h.work()
    run = run_of(h, soon)
    assert run.status.value == "completed"
    (done,) = [e for e in events(h, "step_completed")
               if e["run_id"] == run.id and e["data"].get("step") == "p"]
    assert done["at"] == "2026-01-05T09:30:00.000Z" and done["data"].get("via") == "at", done


def test_a_business_sla_across_the_spring_forward_night(harness: Harness) -> None:
    h = harness
    h.deploy_text("""
kind: calendar
name: weekend_desk
timezone: Europe/Berlin
hours: {sat: ["20:00-24:00", "08:00-12:00"], sun: ["00:00-06:00"]}
""", name="cal.yaml")
    h.deploy_text(paused("signal: go", ", sla: {duration: 4h, jeopardy: 30m, "
                                       "calendar: weekend_desk}"))
    h.clock.set(datetime(2026, 3, 28, 22, tzinfo=UTC))  # Sat 23:00 CET
    rec = h.engine.create_record("Case", {"subject": "s"})
    sla = run_of(h, rec).steps["p"].sla
    # 23:00 CET, 00:00, 01:00, then 03:00 CEST (no 02:00 that night): 4 h later is 04:00 CEST
    assert sla["due_at"] == "2026-03-29T02:00:00.000Z", sla
    assert sla["jeopardy_at"] == "2026-03-29T01:30:00.000Z", sla
    h.clock.set(datetime(2026, 3, 29, 1, 30, tzinfo=UTC))
    h.work()
    assert run_of(h, rec).steps["p"].sla["status"] == "in_jeopardy"
    h.clock.set(datetime(2026, 3, 29, 2, 0, tzinfo=UTC))
    h.work()
    assert run_of(h, rec).steps["p"].sla["status"] == "overdue"


def test_an_sla_changed_by_a_redeploy_leaves_runs_in_flight_on_theirs(harness: Harness) -> None:
    h = harness
    h.deploy_text(paused("signal: go", ", sla: {duration: 4h}"))
    old = h.engine.create_record("Case", {"subject": "old"})
    h.deploy_text(paused("signal: go", ", sla: {duration: 2h}"))
    new = h.engine.create_record("Case", {"subject": "new"})
    t0 = h.clock.now()
    assert run_of(h, old).steps["p"].sla["due_at"] == iso(t0 + timedelta(hours=4))
    assert run_of(h, new).steps["p"].sla["due_at"] == iso(t0 + timedelta(hours=2))
    h.clock.advance(timedelta(hours=3))
    h.work()
    assert run_of(h, old).steps["p"].sla["status"] == "on_track"
    assert run_of(h, new).steps["p"].sla["status"] == "overdue"


def test_a_per_minute_schedule_a_week_late_runs_once_saying_how_many_it_missed(
        harness: Harness) -> None:
    # Found: the missed ticks were counted one croniter step at a time in the write
    # transaction (0.9 s for a week), and stopped at 10,000 of the 10,080.
    h = harness
    h.clock.set(datetime(2026, 3, 23, 12, tzinfo=UTC))  # a week with the spring-forward night
    h.deploy_text(NIGHTLY.replace("30 2 * * *", "* * * * *").replace("nightly", "minutely"))
    h.clock.advance(timedelta(days=7, seconds=30))
    h.work()
    assert len(h.engine.list_runs()) == 1
    (fired,) = events(h, "schedule_fired")
    assert fired["data"]["scheduled_for"] == "2026-03-23T12:01:00.000Z"
    assert fired["data"]["missed_ticks"] == 7 * 1440 - 1  # 12:02 ... 12:00 a week on
    assert "missed_ticks_capped" not in fired["data"]
    assert next_schedule_job(h).startswith("2026-03-30T12:01"), next_schedule_job(h)


def test_a_business_sla_across_a_holiday_that_is_worked(harness: Harness) -> None:
    h = harness
    h.deploy_text("""
kind: calendar
name: plant
timezone: Europe/Berlin
hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"]}
holidays: {country: DE, subdivision: BY, except: [2026-01-06]}
""", name="cal.yaml")
    h.deploy_text(paused("signal: go", ", sla: {duration: 2h, calendar: plant}"))
    h.clock.set(datetime(2026, 1, 5, 15, 30, tzinfo=UTC))  # Mon 16:30 CET; Tue is Epiphany
    rec = h.engine.create_record("Case", {"subject": "s"})
    # 30 min on Monday, then Epiphany worked from 09:00: due Tue 10:30 CET, not Wed
    assert run_of(h, rec).steps["p"].sla["due_at"] == "2026-01-06T09:30:00.000Z"


def problems(text: str) -> dict[str, tuple[str, str]]:
    """``path -> (severity, message)`` of what validation says about ``text``."""
    warnings: list[Issue] = []
    issues = check_texts({"t.yaml": text}, warnings=warnings)[1]
    return {i.path: (i.level, i.message) for i in issues + warnings}


def test_time_fields_users_get_wrong_are_refused_where_they_are() -> None:
    step = "stages[0].steps[0]"
    assert problems(paused("for: 4 hours"))[f"{step}.for"][1] == (
        "expected a duration like 30s, 10m, 4h or 2d, got '4 hours'")
    assert "got 'PT4H'" in problems(paused("for: PT4H"))[f"{step}.for"][1]
    assert f"{step}.for" not in problems(paused("for: 4h"))
    got = problems(paused("at: '2026-03-01T09:00:00'"))[f"{step}.at"]
    assert got[0] == "error" and "has no UTC offset" in got[1], got
    got = problems(paused("at: tomorrow"))[f"{step}.at"]
    assert "expected an instant with a UTC offset" in got[1], got
    assert f"{step}.at" not in problems(paused("at: 2026-03-01T09:00:00Z"))
    got = problems(paused("until: '=timestamp(now) >= timestamp(record.due)'"))[f"{step}.until"]
    assert got[0] == "warning" and "use at:" in got[1], got
    got = problems(NIGHTLY.replace("Europe/Berlin", "Europe/Berln"))["trigger.timezone"]
    assert "unknown time zone 'Europe/Berln'" in got[1]
    got = problems(NIGHTLY.replace("30 2 * * *", "30 25 * * *"))["trigger.cron"]
    assert "not a valid cron schedule" in got[1]
    got = problems("kind: calendar\nname: c\ntimezone: UTC\nhours: {mon: []}\n")["hours"]
    assert "needs working hours" in got[1]
    got = problems(NIGHTLY.replace("Europe/Berlin", "localtime"))["trigger.timezone"]
    assert got[0] == "error" and "server's own time zone" in got[1], got
    assert "IANA name like Europe/Berlin" in got[1]
    got = problems(paused("signal: go", ", sla: {duration: 4h, jeopardy: 0s}"))
    assert f"{step}.sla.jeopardy" in got and "0 would be the due time" in \
        got[f"{step}.sla.jeopardy"][1], got
    assert f"{step}.sla.jeopardy" not in problems(paused("signal: go",
                                                         ", sla: {duration: 4h, jeopardy: 1s}"))
    calendar = "kind: calendar\nname: c\ntimezone: UTC\nhours: {mon: ['09:00-17:00']}\n"
    got = problems(calendar + "extra_dates: [2028-02-30]\n")["extra_dates[0]"]
    assert got == ("error", "'2028-02-30' is not a date (day is out of range for month)")
    got = problems(calendar + "holidays: {country: US, except: [2026-07-03, 2026-07-06]}\n")
    said = ("2026-07-06 is not a holiday in US in 2026: excepting it changes nothing "
            "(holiday rules change between years)")
    assert got == {"holidays.except[1]": ("warning", said)}
