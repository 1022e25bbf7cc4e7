"""Schedule defects an audit found (brief "time"), on SQLite and PostgreSQL, in virtual time:

* a deploy, an activation or a bundle import landing while a tick is due but not yet fired
  dropped that tick (the schedule was re-armed at the next tick after now): it now fires,
  late, for the version then active, under its ``misfire`` policy;
* ``misfire: skip`` skipped the latest tick too, however little late (the docs say a tick is
  missed only once a later tick has passed too): the latest runs, the earlier are skipped;
* daylight saving: a tick in the spring-forward gap and the tick at the gap's end land on
  one instant and start one run (documented; the day after, each tick runs).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from baton import flow
from baton.clock import parse_iso
from baton.flows import FlowContext
from baton.runtime import jobs
from baton.runtime.bundle import apply_import, plan_import
from tests.conftest import Harness


@flow("t_sched_tf.noop")
def _noop(ctx: FlowContext) -> dict[str, Any]:
    return {}


def scheduled(cron: str, *, misfire: str = "run_once", label: str = "v1",
              timezone: str = "UTC") -> str:
    return f"""
kind: orchestration
name: nightly
description: {label}
trigger: {{type: schedule, cron: "{cron}", timezone: {timezone}, misfire: {misfire}}}
stages:
  - name: work
    steps: [{{name: s, type: background, flow: t_sched_tf.noop}}]
"""


def schedule_events(h: Harness) -> list[tuple[str, str, Any, str | None]]:
    """(type, scheduled_for, missed_ticks, run_id) of each schedule event, in order."""
    with h.engine.store.read() as tx:
        return [(e["type"], e["data"]["scheduled_for"], e["data"].get("missed_ticks"),
                 e["run_id"])
                for e in tx.events_txn(types=["schedule_fired", "schedule_skipped"])]


def schedule_row(h: Harness) -> dict[str, Any]:
    with h.engine.store.read() as tx:
        row = tx.get_schedule_txn("nightly")
    assert row is not None
    return dict(row)


def test_a_deploy_landing_while_a_tick_is_due_keeps_that_tick(harness: Harness) -> None:
    h = harness
    h.clock.set(datetime(2026, 1, 5, 6, 0, tzinfo=UTC))
    h.deploy_text(scheduled("0 7 * * *"))
    # The 07:00 tick is due; the worker is 5 s late (busy) when v2 (its description
    # changed) is deployed.
    h.clock.set(datetime(2026, 1, 5, 7, 0, 5, tzinfo=UTC))
    h.deploy_text(scheduled("0 7 * * *", label="v2"), name="v2.yaml")
    assert schedule_row(h)["next_at"] == "2026-01-05T07:00:00.000Z", "the due tick is kept"
    h.work()
    (run,) = h.engine.list_runs()
    assert run.version == 2, "it fires for the version now active"
    assert schedule_events(h) == [("schedule_fired", "2026-01-05T07:00:00.000Z", None, run.id)]
    row = schedule_row(h)
    assert (row["last_at"], row["next_at"]) == ("2026-01-05T07:00:00.000Z",
                                                "2026-01-06T07:00:00.000Z")
    h.work()  # nothing fires twice
    assert len(h.engine.list_runs()) == 1


def test_a_deploy_before_the_tick_still_replaces_it_with_the_new_versions(
        harness: Harness) -> None:
    h = harness
    h.clock.set(datetime(2026, 1, 5, 6, 0, tzinfo=UTC))
    h.deploy_text(scheduled("0 7 * * *"))
    h.clock.set(datetime(2026, 1, 5, 6, 59, 59, tzinfo=UTC))
    h.deploy_text(scheduled("30 7 * * *", label="v2"), name="v2.yaml")
    assert schedule_row(h)["next_at"] == "2026-01-05T07:30:00.000Z"
    h.clock.set(datetime(2026, 1, 5, 7, 10, tzinfo=UTC))
    h.work()
    assert h.engine.list_runs() == [], "v1's 07:00 tick was replaced before it was due"


def test_an_activation_landing_while_a_tick_is_due_keeps_that_tick(harness: Harness) -> None:
    h = harness
    h.clock.set(datetime(2026, 1, 5, 6, 0, tzinfo=UTC))
    h.deploy_text(scheduled("0 7 * * *"))
    h.deploy_text(scheduled("0 7 * * *", label="v2"), name="v2.yaml")
    h.clock.set(datetime(2026, 1, 5, 7, 0, 30, tzinfo=UTC))
    h.engine.definitions.set_active("orchestration", "nightly", 1, "ops")  # back to v1
    h.work()
    (run,) = h.engine.list_runs()
    assert run.version == 1
    assert [e[:2] for e in schedule_events(h)] == [("schedule_fired", "2026-01-05T07:00:00.000Z")]


def test_a_bundle_import_landing_while_a_tick_is_due_keeps_that_tick(harness: Harness) -> None:
    h = harness
    h.clock.set(datetime(2026, 1, 5, 6, 0, tzinfo=UTC))
    h.deploy_text(scheduled("0 7 * * *"))
    h.clock.set(datetime(2026, 1, 5, 7, 0, 5, tzinfo=UTC))
    bundle = {"manifest.json": {"format": 1}, "definitions.json": [
        {"kind": "orchestration", "name": "nightly", "version": 1, "active": True,
         "file": "v2.yaml", "source": scheduled("0 7 * * *", label="imported")}]}
    apply_import(h.engine, plan_import(h.engine, bundle), "ops")
    h.work()
    (run,) = h.engine.list_runs()
    assert run.version == 2
    assert [e[:2] for e in schedule_events(h)] == [("schedule_fired", "2026-01-05T07:00:00.000Z")]


def test_a_deactivation_still_drops_the_due_tick(harness: Harness) -> None:
    h = harness
    h.clock.set(datetime(2026, 1, 5, 6, 0, tzinfo=UTC))
    h.deploy_text(scheduled("0 7 * * *"))
    h.clock.set(datetime(2026, 1, 5, 7, 0, 5, tzinfo=UTC))
    h.engine.definitions.set_active("orchestration", "nightly", None, "ops")
    h.work()
    assert h.engine.list_runs() == [] and schedule_events(h) == []
    h.engine.definitions.set_active("orchestration", "nightly", 1, "ops")
    assert schedule_row(h)["next_at"] == "2026-01-06T07:00:00.000Z", "ticks while off: not run"


def test_a_due_tick_claimed_by_a_worker_that_died_before_the_deploy_fires_once(
        harness: Harness) -> None:
    h = harness
    h.clock.set(datetime(2026, 1, 5, 6, 0, tzinfo=UTC))
    h.deploy_text(scheduled("0 7 * * *"))
    h.clock.set(datetime(2026, 1, 5, 7, 0, 5, tzinfo=UTC))
    store, now = h.engine.store, "2026-01-05T07:00:05.000Z"
    store.register_worker("w-dead", store.host(), 999_999_999, now)  # a pid that is not alive
    (claimed,) = store.claim_jobs("w-dead", now, 10)
    assert claimed.kind == jobs.SCHEDULE
    h.deploy_text(scheduled("0 7 * * *", label="v2"), name="v2.yaml")
    h.work()  # the dead worker's job comes back, stale (an old token); the kept one fires
    h.work()
    (run,) = h.engine.list_runs()
    assert run.version == 2 and len(schedule_events(h)) == 1


def test_a_deploy_after_downtime_runs_the_missed_ticks_under_the_misfire_policy(
        harness: Harness) -> None:
    h = harness
    h.clock.set(datetime(2026, 1, 5, 6, 0, tzinfo=UTC))
    h.deploy_text(scheduled("0 7 * * *", misfire="skip"))
    # Down for three days; the deploy of v2 lands before any worker is back.
    h.clock.set(datetime(2026, 1, 7, 7, 0, 20, tzinfo=UTC))
    h.deploy_text(scheduled("0 7 * * *", misfire="skip", label="v2"), name="v2.yaml")
    h.work()
    (run,) = h.engine.list_runs()
    assert schedule_events(h) == [
        ("schedule_skipped", "2026-01-05T07:00:00.000Z", 2, None),  # the 5th and the 6th
        ("schedule_fired", "2026-01-07T07:00:00.000Z", None, run.id)]  # 20 s late: run
    assert run.version == 2


def test_skip_after_days_down_runs_the_latest_tick_and_skips_the_others_in_one_event(
        harness: Harness) -> None:
    h = harness
    h.clock.set(datetime(2026, 1, 5, 6, 0, tzinfo=UTC))
    h.deploy_text(scheduled("0 7 * * 1-5", misfire="skip"))
    # Back on Monday the 12th at 07:03: the ticks of Mon 5 ... Fri 9 were missed (a later
    # tick passed each), Monday the 12th's is merely late.
    h.clock.set(datetime(2026, 1, 12, 7, 3, tzinfo=UTC))
    h.work()
    (run,) = h.engine.list_runs()
    assert schedule_events(h) == [
        ("schedule_skipped", "2026-01-05T07:00:00.000Z", 5, None),
        ("schedule_fired", "2026-01-12T07:00:00.000Z", None, run.id)]
    with h.engine.store.read() as tx:
        (skipped,) = tx.events_txn(types=["schedule_skipped"])
    assert skipped["data"]["fired_for"] == "2026-01-12T07:00:00.000Z", skipped
    assert skipped["data"]["next_at"] == "2026-01-13T07:00:00.000Z", skipped
    row = schedule_row(h)
    assert (row["last_at"], row["last_run_id"]) == ("2026-01-12T07:00:00.000Z", run.id)
    # Back after the 13th's tick and before the 14th's: nothing was missed, it runs.
    h.clock.set(datetime(2026, 1, 13, 18, 0, tzinfo=UTC))
    h.work()
    assert len(h.engine.list_runs()) == 2
    assert schedule_events(h)[-1][:3] == ("schedule_fired", "2026-01-13T07:00:00.000Z", None)


def test_run_once_after_downtime_is_as_it_was(harness: Harness) -> None:
    h = harness
    h.clock.set(datetime(2026, 1, 5, 6, 0, tzinfo=UTC))
    h.deploy_text(scheduled("0 7 * * 1-5"))
    h.clock.set(datetime(2026, 1, 12, 7, 3, tzinfo=UTC))
    h.work()
    (run,) = h.engine.list_runs()
    assert schedule_events(h) == [("schedule_fired", "2026-01-05T07:00:00.000Z", 5, run.id)]


def test_the_gap_tick_and_the_tick_at_the_gaps_end_start_one_run(harness: Harness) -> None:
    # 01:00, 02:00 and 03:00 in New York; on 8 March 2026 02:00 does not exist (02:00 EST
    # is 03:00 EDT): the gap's tick fires when the gap ends, the instant of the 03:00 tick,
    # and the two start one run (docs/yaml-reference.md, "Daylight saving").
    h = harness
    h.clock.set(datetime(2026, 3, 8, 0, 0, tzinfo=UTC))  # 19:00 EST the evening before
    h.deploy_text(scheduled("0 1-3 * * *", timezone="America/New_York"))
    for _ in range(6):  # a worker back 10 s after each tick is due
        h.clock.set(parse_iso(schedule_row(h)["next_at"]) + timedelta(seconds=10))
        h.work()
        assert len(h.engine.list_runs()) == len(schedule_events(h))
    fired = [e[1] for e in schedule_events(h)]
    assert fired == ["2026-03-08T06:00:00.000Z",  # 01:00 EST
                     "2026-03-08T07:00:00.000Z",  # 03:00 EDT (02:00's and 03:00's)
                     "2026-03-09T05:00:00.000Z",  # 01:00 EDT
                     "2026-03-09T06:00:00.000Z",  # 02:00 EDT
                     "2026-03-09T07:00:00.000Z",  # 03:00 EDT
                     "2026-03-10T05:00:00.000Z"], fired
    assert all(e[0] == "schedule_fired" and e[2] is None for e in schedule_events(h))
    assert len(h.engine.list_runs()) == 6
