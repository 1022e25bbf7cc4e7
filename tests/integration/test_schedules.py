"""Schedule (cron) triggers start runs (issue 16: "a `schedule` trigger validates and deploys
but never starts a run"). Virtual time on SQLite and PostgreSQL: nothing sleeps.

The clock starts on Monday 2026-01-05 09:00 UTC.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from baton import flow
from baton.clock import iso
from baton.flows import FlowContext
from baton.runtime import jobs
from tests.conftest import Harness

RAN: list[str] = []


@flow("t_sched.sweep")
def _sweep(ctx: FlowContext) -> dict[str, Any]:
    RAN.append(ctx.run_id)
    return {"swept": True}


def nightly(cron: str, timezone: str | None = None, name: str = "sweep") -> str:
    tz = f", timezone: {timezone}" if timezone else ""
    return f"""
kind: orchestration
name: {name}
trigger: {{type: schedule, cron: "{cron}"{tz}}}
stages:
  - name: work
    steps: [{{name: sweep, type: background, flow: t_sched.sweep}}]
"""


def fired(h: Harness) -> list[dict[str, Any]]:
    with h.engine.store.read() as tx:
        return [e for e in tx.events_txn(types=["schedule_fired"])]


def schedule_jobs(h: Harness) -> list[Any]:
    from sqlalchemy import select

    from baton.store import schema
    with h.engine.store.read() as tx:
        t = schema.jobs
        return list(tx.conn.execute(select(t.c.run_after, t.c.payload, t.c.status)
                                    .where(t.c.kind == jobs.SCHEDULE)))


def test_each_tick_starts_one_run_and_arms_the_next(harness: Harness) -> None:
    h = harness
    h.deploy_text(nightly("*/15 * * * *"))
    assert h.engine.list_runs() == []
    (job,) = schedule_jobs(h)
    assert job.run_after.startswith("2026-01-05T09:15:00"), job

    h.work()
    assert h.engine.list_runs() == [], "nothing is due before the first tick"

    h.clock.advance(timedelta(minutes=15))
    h.work()
    runs = h.engine.list_runs()
    assert len(runs) == 1 and runs[0].status.value == "completed", runs
    (event,) = fired(h)
    assert event["run_id"] == runs[0].id
    assert event["data"]["scheduled_for"].startswith("2026-01-05T09:15:00")
    assert event["data"]["next_at"].startswith("2026-01-05T09:30:00")
    assert "missed_ticks" not in event["data"]

    h.work()  # no time passed: the next tick is not due, nothing fires twice
    assert len(h.engine.list_runs()) == 1
    (job,) = schedule_jobs(h)
    assert job.run_after.startswith("2026-01-05T09:30:00"), job

    h.clock.advance(timedelta(minutes=15))
    h.work()
    assert len(h.engine.list_runs()) == 2
    assert len(fired(h)) == 2 and len(schedule_jobs(h)) == 1


def test_ticks_missed_while_no_worker_ran_start_one_run_saying_how_many(harness: Harness) -> None:
    h = harness
    h.deploy_text(nightly("*/15 * * * *"))
    h.clock.advance(timedelta(hours=2, minutes=5))  # 09:15 ... 11:00 all passed unattended
    h.work()
    assert len(h.engine.list_runs()) == 1, "one run for the ticks missed, not a burst of nine"
    (event,) = fired(h)
    assert event["data"]["scheduled_for"].startswith("2026-01-05T09:15:00")
    assert event["data"]["missed_ticks"] == 7  # 09:30 ... 11:00
    assert event["data"]["next_at"].startswith("2026-01-05T11:15:00")


def test_the_cron_is_read_in_the_trigger_time_zone(harness: Harness) -> None:
    h = harness
    # 07:00 on working days in New York, which is UTC-5 in January.
    h.deploy_text(nightly("0 7 * * 1-5", "America/New_York"))
    (job,) = schedule_jobs(h)
    assert job.run_after.startswith("2026-01-05T12:00:00"), job  # 07:00 EST = 12:00 UTC
    h.clock.advance(timedelta(hours=3))
    h.work()
    (event,) = fired(h)
    assert event["data"]["next_at"].startswith("2026-01-06T12:00:00"), event


def test_a_new_version_or_deactivation_replaces_the_armed_tick(harness: Harness) -> None:
    h = harness
    h.deploy_text(nightly("*/15 * * * *"))
    h.deploy_text(nightly("0 * * * *"))  # v2: hourly; the 09:15 tick of v1 must not fire
    h.clock.advance(timedelta(minutes=20))
    h.work()
    assert h.engine.list_runs() == []
    h.clock.advance(timedelta(minutes=40))  # 10:00
    h.work()
    (run,) = h.engine.list_runs()
    assert run.version == 2

    h.engine.definitions.set_active("orchestration", "sweep", None, "ops")
    h.clock.advance(timedelta(hours=3))
    h.work()
    assert len(h.engine.list_runs()) == 1, "a deactivated schedule starts nothing"

    h.engine.definitions.set_active("orchestration", "sweep", 1, "ops")  # back to v1
    (job,) = [j for j in schedule_jobs(h) if j.status == "ready"
              and j.run_after > iso(h.clock.now())]
    assert job.run_after.startswith("2026-01-05T13:15:00"), job
    h.clock.advance(timedelta(minutes=15))
    h.work()
    runs = sorted(h.engine.list_runs(), key=lambda r: r.created_at)
    assert [r.version for r in runs] == [2, 1]


def test_a_tick_claimed_by_a_worker_that_died_fires_once_elsewhere(harness: Harness) -> None:
    h = harness
    h.deploy_text(nightly("*/15 * * * *"))
    h.clock.advance(timedelta(minutes=15))
    store, now = h.engine.store, iso(h.clock.now())
    store.register_worker("w-dead", store.host(), 999_999_999, now)  # a pid that is not alive
    (claimed,) = store.claim_jobs("w-dead", now, 10)
    assert claimed.kind == jobs.SCHEDULE
    # A worker starting on the same host hands back the jobs of workers whose process is
    # gone (issue 3): the tick fires there, once.
    h.work()
    h.work()
    assert len(h.engine.list_runs()) == 1 and len(fired(h)) == 1
    (job,) = schedule_jobs(h)
    assert job.status == "ready" and job.run_after.startswith("2026-01-05T09:30:00"), job


def test_misfire_skip_starts_nothing_for_missed_ticks_but_runs_the_latest_merely_late(
        harness: Harness) -> None:
    # docs/yaml-reference.md: "A tick counts as missed only once a later tick has passed too,
    # so a worker a few seconds late still runs it under either policy". It skipped the
    # latest tick too, minutes late as it was, and waited for the next.
    h = harness
    h.deploy_text(nightly("*/15 * * * *").replace('cron: "*/15 * * * *"',
                                                 'cron: "*/15 * * * *", misfire: skip'))
    h.clock.advance(timedelta(minutes=17))  # the 09:15 tick, 2 minutes late: still run
    h.work()
    assert len(h.engine.list_runs()) == 1
    h.clock.advance(timedelta(hours=1))  # 10:17: 09:30 ... 10:15 passed unattended
    h.work()
    runs = sorted(h.engine.list_runs(), key=lambda r: r.created_at)
    assert len(runs) == 2, "skip: no run for the missed ticks, one for the latest (10:15)"
    with h.engine.store.read() as tx:
        (skipped,) = tx.events_txn(types=["schedule_skipped"])
        fired_now = tx.events_txn(types=["schedule_fired"])[-1]
    assert skipped["run_id"] is None, skipped
    assert skipped["data"]["scheduled_for"].startswith("2026-01-05T09:30:00"), skipped
    assert skipped["data"]["missed_ticks"] == 3, skipped  # 09:30, 09:45, 10:00
    assert skipped["data"]["fired_for"].startswith("2026-01-05T10:15:00"), skipped
    assert skipped["data"]["next_at"].startswith("2026-01-05T10:30:00"), skipped
    assert fired_now["run_id"] == runs[1].id
    assert fired_now["data"]["scheduled_for"].startswith("2026-01-05T10:15:00"), fired_now
    assert "missed_ticks" not in fired_now["data"], fired_now
    h.clock.advance(timedelta(minutes=15))
    h.work()
    assert len(h.engine.list_runs()) == 3


def test_two_workers_and_a_restart_still_one_run_per_tick(harness: Harness) -> None:
    import threading

    from baton.runtime.engine import Engine
    from baton.runtime.worker import Worker

    h = harness
    h.deploy_text(nightly("*/15 * * * *"))
    other = Worker(h.engine)
    for _ in range(4):
        h.clock.advance(timedelta(minutes=15))
        threads = [threading.Thread(target=w.run, kwargs={"until_idle": True})
                   for w in (h.worker, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert len(h.engine.list_runs()) == 4 and len(fired(h)) == 4

    h.engine.close()  # a restart: a new engine (and worker) on the same database
    h.engine = Engine(h.db_url, clock=h.clock)
    h.worker = Worker(h.engine)
    h.clock.advance(timedelta(minutes=15))
    h.work()
    runs = h.engine.list_runs()
    assert len(runs) == 5 and all(r.status.value == "completed" for r in runs), runs
    ticks = sorted(e["data"]["scheduled_for"][11:16] for e in fired(h))
    assert ticks == ["09:15", "09:30", "09:45", "10:00", "10:15"], ticks
