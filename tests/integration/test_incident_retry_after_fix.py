"""Retrying a trigger's incident after the record was fixed (brief O): a later write of the
record that evaluated the trigger without failing took the failed evaluation's place, so
the retry resolves the incident as ``superseded`` and starts no second run; a trigger the
later write did not evaluate (``on: [create]``) is still evaluated by the retry."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from baton.clock import VirtualClock
from baton.engine.status import RunStatus
from baton.errors import TransitionConflict
from tests.conftest import Harness
from tests.procs import eventually

CASE = """
kind: object
name: Case
fields:
  subject:  {type: string, required: true}
  category: {type: string}
  origin:   {type: choice, choices: [Web, Internal], default: Web}
"""


def triage(on: str = "[create, update]", when: str = "=int(record.category) > 5",
           extra: str = "") -> str:
    return CASE + f"""---
kind: orchestration
name: triage
trigger: {{type: record, object: Case, on: {on}, when: '{when}'{extra}}}
stages:
  - name: only
    steps: [{{name: look, type: interactive, assign: {{queue: tier1}}}}]
"""


BAD = {"subject": "inc", "category": "abc", "origin": "Internal"}  # int('abc') raises


def _events(eng: Any, record_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in eng.timeline(record_id) if e["type"] == kind]


def _runs(eng: Any, record_id: str) -> list[str]:
    return [r.id for r in eng.list_runs(record_id=record_id)]


def test_a_retry_after_a_later_write_started_the_run_starts_no_second_one(harness: Any) -> None:
    """The auditor's case: the update that fixed the record started run A; the retry finds
    it and resolves the incident without a run, saying so in its answer and on the timelines
    of the record and of run A."""
    harness.deploy_text(triage())
    eng = harness.engine
    rec = eng.create_record("Case", BAD, actor="user:ann")
    (inc,) = eng.list_incidents()
    assert inc["kind"] == "trigger_failed" and "cannot convert" in inc["error"]
    assert _runs(eng, rec["id"]) == []
    harness.clock.advance(timedelta(minutes=1))
    eng.update_record(rec["id"], {"category": "9"}, actor="user:ann")
    (run_a,) = _runs(eng, rec["id"])
    (wrote,) = _events(eng, rec["id"], "record_updated")

    harness.clock.advance(timedelta(minutes=1))
    done = eng.retry_incident(inc["id"], reason="fixed", actor="user:olga")
    assert _runs(eng, rec["id"]) == [run_a]  # no run B
    assert (done["status"], done["run_id"], done["resolved_by"], done["reason"]) == (
        "resolved", run_a, "user:olga", "fixed")
    assert done["note"] == (f"superseded by the record's later write at {wrote['at']} (by "
                            f"user:ann), which started run {run_a}")
    assert eng.get_incident(inc["id"])["status"] == "resolved"
    assert eng.list_incidents() == []
    (retried,) = _events(eng, rec["id"], "incident_retried")
    assert (retried["actor"], retried["run_id"]) == ("user:olga", run_a)
    assert retried["data"]["outcome"] == "superseded"
    assert retried["data"]["superseded_by"]["run_id"] == run_a
    assert retried["data"]["superseded_by"]["write"] == wrote["id"]
    assert retried["data"]["superseded_by"]["note"] == done["note"]
    with eng.store.read() as tx:  # (on run A's timeline too)
        assert [e["data"]["outcome"] for e in tx.events_txn(
            run_id=run_a, types=["incident_retried"])] == ["superseded"]
    with pytest.raises(TransitionConflict, match="resolved"):
        eng.retry_incident(inc["id"], reason="again", actor="user:olga")
    harness.work()
    assert eng.get_run(run_a).status is RunStatus.IN_PROGRESS


def test_a_later_write_that_judged_the_condition_false_supersedes_the_failure(harness: Any) -> None:
    """``when`` starts a run on the first category a case gets, if above 5. The create's
    evaluation raised; the update's held its ``when`` false (the category was set before).
    Evaluated again with the create's ``old``, the retry would say true and start a run the
    trigger had decided against."""
    harness.deploy_text(triage(when="=int(record.category) > 5 && old.category == null"))
    eng = harness.engine
    rec = eng.create_record("Case", BAD)
    (inc,) = eng.list_incidents()
    eng.update_record(rec["id"], {"category": "9"}, actor="user:ann")
    assert _runs(eng, rec["id"]) == [] and eng.list_incidents()[0]["attempts"] == 1
    (wrote,) = _events(eng, rec["id"], "record_updated")
    done = eng.retry_incident(inc["id"], reason="category fixed", actor="user:olga")
    assert _runs(eng, rec["id"]) == []
    assert (done["status"], done["run_id"]) == ("resolved", None)
    assert done["note"] == (f"superseded by the record's later write at {wrote['at']} (by "
                            "user:ann), which evaluated the trigger and started no run: its "
                            "`when` did not hold")
    (retried,) = _events(eng, rec["id"], "incident_retried")
    assert retried["data"]["outcome"] == "superseded" and retried["run_id"] is None


def test_a_create_only_trigger_is_not_evaluated_by_a_later_update_so_the_retry_starts_it(
        harness: Any) -> None:
    harness.deploy_text(triage(on="[create]"))
    eng = harness.engine
    rec = eng.create_record("Case", BAD)
    (inc,) = eng.list_incidents()
    eng.update_record(rec["id"], {"category": "9"})
    assert _runs(eng, rec["id"]) == []
    done = eng.retry_incident(inc["id"], reason="fixed", actor="user:olga")
    (run,) = _runs(eng, rec["id"])
    assert (done["status"], done["run_id"]) == ("resolved", run) and done.get("note") is None
    (retried,) = _events(eng, rec["id"], "incident_retried")
    assert retried["data"]["outcome"] == "started"


def test_a_later_write_that_failed_again_supersedes_nothing(harness: Any) -> None:
    """A write whose evaluation raised again is counted in the incident: the retry still
    evaluates (and fails); once a write evaluates the trigger, the retry defers to it."""
    harness.deploy_text(triage())
    eng = harness.engine
    rec = eng.create_record("Case", BAD)
    (inc,) = eng.list_incidents()
    eng.update_record(rec["id"], {"subject": "still abc"})
    assert eng.get_incident(inc["id"])["attempts"] == 2
    again = eng.retry_incident(inc["id"], reason="try", actor="user:olga")
    assert (again["status"], again["attempts"]) == ("open", 3) and again.get("note") is None
    eng.update_record(rec["id"], {"category": "9"})
    (run_a,) = _runs(eng, rec["id"])
    done = eng.retry_incident(inc["id"], reason="fixed", actor="user:olga")
    assert (done["status"], done["run_id"]) == ("resolved", run_a)
    assert _runs(eng, rec["id"]) == [run_a]
    assert [e["data"]["outcome"] for e in _events(eng, rec["id"], "incident_retried")] == [
        "failed", "superseded"]


def test_a_run_the_fixed_version_started_supersedes_the_old_versions_incident(
        harness: Any) -> None:
    """The usual fix: a new version with a `when` that cannot raise. The update its trigger
    evaluated started the run; the old version's incident is not evaluated again."""
    harness.deploy_text(triage())
    eng = harness.engine
    rec = eng.create_record("Case", BAD)
    (inc,) = eng.list_incidents()
    harness.deploy_text(triage(when='=record.category.matches("^[0-9]+$") && '
                                    'int(record.category) > 5'))
    eng.update_record(rec["id"], {"category": "9"})
    (run_a,) = eng.list_runs(record_id=rec["id"])
    assert run_a.version == 2
    done = eng.retry_incident(inc["id"], reason="v2 deployed", actor="user:olga")
    assert (done["status"], done["run_id"]) == ("resolved", run_a.id)
    assert f"which started run {run_a.id}" in done["note"]
    assert _runs(eng, rec["id"]) == [run_a.id]


def test_a_version_other_than_the_failed_one_judging_false_is_not_taken_as_its_answer(
        harness: Any) -> None:
    """When the active version is no longer the one that failed, an update that started no
    run says nothing of the failed version: the retry evaluates that one, as before."""
    harness.deploy_text(triage(when="=int(record.category) > 5 && old.category == null"))
    eng = harness.engine
    rec = eng.create_record("Case", BAD)
    (inc,) = eng.list_incidents()
    harness.deploy_text(triage(when="=false"))
    eng.update_record(rec["id"], {"category": "9"})
    done = eng.retry_incident(inc["id"], reason="look again", actor="user:olga")
    (run,) = eng.list_runs(record_id=rec["id"])
    assert (run.version, done["run_id"], done["status"]) == (1, run.id, "resolved")


def test_a_deploy_filling_the_records_new_field_is_no_write_that_evaluated_the_trigger(
        harness: Any) -> None:
    """A new field's default written into the stored records fires no trigger: the
    retry still evaluates (and fails: the category is still 'abc')."""
    harness.deploy_text(triage())
    eng = harness.engine
    rec = eng.create_record("Case", BAD)
    (inc,) = eng.list_incidents()
    harness.deploy_text(triage().replace(
        "origin:   {type: choice", "tier: {type: string, required: true, default: low}\n"
                                   "  origin:   {type: choice"))
    (filled,) = _events(eng, rec["id"], "record_updated")
    assert filled["data"]["changes"] == {"tier": [None, "low"]}
    again = eng.retry_incident(inc["id"], reason="look", actor="user:olga")
    assert (again["status"], again["attempts"]) == ("open", 2)
    assert again.get("note") is None


ACCOUNTS = """
kind: object
name: Account
fields:
  code: {type: string}
---
kind: object
name: Ticket
fields:
  subject: {type: string}
  status:  {type: choice, choices: [New, Open], default: New}
  account: {type: ref, object: Account}
---
kind: orchestration
name: escalate
trigger: {type: record, object: Ticket, on: [update], changed_to_meet: true,
          when: '=record.status == "Open" && int(record.account.code) > 5'}
stages:
  - name: only
    steps: [{name: look, type: interactive, assign: {queue: tier1}}]
"""


def test_a_retried_changed_to_meet_trigger_starts_only_if_the_write_made_it_hold(
        harness: Any) -> None:
    """The cause is fixed on the related account (a write that does not evaluate the
    ticket's trigger). The write that opened the ticket made the condition hold: the retry
    starts the run. The write that only renamed an open ticket did not: no run."""
    harness.deploy_text(ACCOUNTS)
    eng = harness.engine
    acct = eng.create_record("Account", {"code": "x"})
    opened = eng.create_record("Ticket", {"subject": "a", "account": acct["id"]})
    renamed = eng.create_record("Ticket", {"subject": "b", "account": acct["id"],
                                           "status": "Open"})
    eng.update_record(opened["id"], {"status": "Open"})
    eng.update_record(renamed["id"], {"subject": "b2"})
    incidents = {i["record_id"]: i for i in eng.list_incidents()}
    assert set(incidents) == {opened["id"], renamed["id"]}
    eng.update_record(acct["id"], {"code": "9"})
    assert eng.list_runs() == []
    started = eng.retry_incident(incidents[opened["id"]]["id"], reason="code", actor="ops")
    (run,) = _runs(eng, opened["id"])
    assert started["run_id"] == run
    judged = eng.retry_incident(incidents[renamed["id"]]["id"], reason="code", actor="ops")
    assert (judged["status"], judged["run_id"]) == ("resolved", None)
    assert _runs(eng, renamed["id"]) == []
    (retried,) = _events(eng, renamed["id"], "incident_retried")
    assert retried["data"]["outcome"] == "false"


# ---- races (PostgreSQL: writers wait on row locks there; SQLite's writers queue on one) ----
def _pg_harness(tmp_path: Path, pg_url: str) -> Harness:
    return Harness(tmp_path, VirtualClock(), pg_url)


def _waiting_on_a_lock(pg_url: str) -> bool:
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as admin:
        row = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND wait_event_type = 'Lock'").fetchone()
    return bool(row and row[0])


def _retry_in_thread(eng: Any, incident_id: str) -> tuple[threading.Thread, list[Any]]:
    got: list[Any] = []

    def retry() -> None:
        try:
            got.append(eng.retry_incident(incident_id, reason="fixed", actor="user:olga"))
        except Exception as exc:  # noqa: BLE001 - said by the test
            got.append(exc)

    thread = threading.Thread(target=retry, name="retry")
    thread.start()
    return thread, got


def test_a_retry_racing_the_fixing_update_waits_for_it_and_sees_its_run(
        tmp_path: Path, pg_url: str) -> None:
    harness = _pg_harness(tmp_path, pg_url)
    try:
        harness.deploy_text(triage())
        eng = harness.engine
        rec = eng.create_record("Case", BAD)
        (inc,) = eng.list_incidents()
        with eng.store.write() as tx:  # the update, not yet committed while the retry starts
            row = eng.records.get_row_txn(tx, rec["id"])
            eng.records.update_txn(tx, row, {"category": "9"}, "user:ann", harness.clock.now(),
                                   exclude_run=None)
            thread, got = _retry_in_thread(eng, inc["id"])
            eventually(lambda: _waiting_on_a_lock(pg_url), what="the retry to wait")
        thread.join(120)
        assert not thread.is_alive()
        (run_a,) = _runs(eng, rec["id"])
        (done,) = got
        assert isinstance(done, dict), done
        assert (done["status"], done["run_id"]) == ("resolved", run_a)
        assert "superseded" in done["note"]
    finally:
        harness.engine.close()


def test_a_retry_racing_a_write_that_fails_again_neither_deadlocks_nor_loses_the_count(
        tmp_path: Path, pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """The write holds the record, then counts its failure in the incident; the retry
    started between: it waits for the record first (the write's order), then evaluates.
    (Locking the incident first, it deadlocked with the write; the Engine's one more try
    hid that but for its warning.)"""
    caplog.set_level(logging.WARNING)
    harness = _pg_harness(tmp_path, pg_url)
    try:
        harness.deploy_text(triage())
        eng = harness.engine
        rec = eng.create_record("Case", BAD)
        (inc,) = eng.list_incidents()
        with eng.store.write() as tx:
            row = eng.records.get_row_txn(tx, rec["id"])
            thread, got = _retry_in_thread(eng, inc["id"])
            eventually(lambda: _waiting_on_a_lock(pg_url), what="the retry to wait")
            eng.records.update_txn(tx, row, {"subject": "still abc"}, "user:ann",
                                   harness.clock.now(), exclude_run=None)
        thread.join(120)
        assert not thread.is_alive()
        (done,) = got
        assert isinstance(done, dict), done
        assert (done["status"], done["attempts"]) == ("open", 3)
        assert _runs(eng, rec["id"]) == []
        assert [r.getMessage() for r in caplog.records if "transient" in r.getMessage()] == []
    finally:
        harness.engine.close()
