"""The Store contract: the same tests against SQLite and PostgreSQL.

What the engine relies on: compare-and-set writes that refuse stale versions, jobs
claimed by exactly one worker, jobs finished only by their holder, dead workers' jobs
handed back, events kept in order, and (PostgreSQL) idle workers woken by NOTIFY.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import Any

import pytest

from baton.errors import TransitionConflict
from baton.store.migrations import LATEST
from baton.store.sql import PlanAborted, SqlStore

NOW = "2026-01-05T09:00:00.000Z"
LATER = "2026-01-05T09:10:00.000Z"


def _enqueue(store: SqlStore, n: int, run_after: str = NOW) -> None:
    with store.write() as tx:
        for i in range(n):
            tx.enqueue_job_txn("step", f"run_{i}", {"i": i}, run_after, NOW)


def _record(store: SqlStore, rid: str = "rec_1") -> None:
    with store.write() as tx:
        tx.insert_record_txn({"id": rid, "object_type": "Case", "data": {"a": 1}, "version": 1,
                              "created_at": NOW, "updated_at": NOW})


def test_schema_is_at_the_latest_migration(store: SqlStore) -> None:
    assert store.schema_version() == LATEST
    assert store.migrate() == []


def test_record_update_is_compare_and_set(store: SqlStore) -> None:
    _record(store)
    with store.write() as tx:
        assert tx.update_record_txn("rec_1", {"a": 2}, 1, LATER) == 2
    with pytest.raises(TransitionConflict, match="no longer at version 1"), store.write() as tx:
        tx.update_record_txn("rec_1", {"a": 3}, 1, LATER)
    with store.read() as tx:
        row = tx.get_record_txn("rec_1")
    assert row is not None and row["data"] == {"a": 2} and row["version"] == 2


def test_run_update_is_compare_and_set(store: SqlStore) -> None:
    row: dict[str, Any] = {"id": "run_1", "orchestration": "o", "version": 1, "record_id": None,
                           "status": "in_progress", "current_stage": "s", "state": {"x": 1},
                           "seq": 1, "created_at": NOW, "updated_at": NOW, "completed_at": None}
    with store.write() as tx:
        tx.insert_run_txn(row)
        tx.update_run_txn({**row, "seq": 2, "state": {"x": 2}}, 1)
    with pytest.raises(TransitionConflict), store.write() as tx:
        tx.update_run_txn({**row, "seq": 2, "state": {"x": 3}}, 1)
    with store.read() as tx:
        got = tx.get_run_txn("run_1")
    assert got is not None and got["state"] == {"x": 2}


def test_step_slas_are_read_out_of_the_run_state(store: SqlStore) -> None:
    sla = {"status": "in_jeopardy", "due_at": LATER, "jeopardy_at": NOW}
    steps = {"triage": {"stage": "t", "iteration": 2, "sla": sla, "output": {"big": "x" * 500}},
             "plain": {"stage": "t", "iteration": 1},
             'odd "name"': {"stage": "t", "iteration": 3, "sla": {"status": "overdue"}}}
    base: dict[str, Any] = {"orchestration": "o", "version": 1, "record_id": None,
                            "status": "in_progress", "current_stage": "t", "seq": 1,
                            "created_at": NOW, "updated_at": NOW, "completed_at": None}
    with store.write() as tx:
        for i in range(3):  # (three runs: the statement is padded to four ids)
            tx.insert_run_txn({**base, "id": f"run_{i}", "state": {"steps": steps if i else {}}})
    with store.read() as tx:
        got = tx.step_slas_txn([("run_1", "triage"), ("run_2", "triage"), ("run_1", "plain"),
                                ("run_0", "triage"), ("run_1", "nope"), ("run_9", "triage"),
                                ("run_2", 'odd "name"')])
    assert got == {("run_1", "triage"): (2, sla), ("run_2", "triage"): (2, sla),
                   ("run_1", "plain"): (1, None), ("run_0", "triage"): (None, None),
                   ("run_1", "nope"): (None, None), ("run_2", 'odd "name"'): (3, {"status": "overdue"})}


def test_a_failed_transaction_leaves_nothing(store: SqlStore) -> None:
    with pytest.raises(RuntimeError), store.write() as tx:
        tx.enqueue_job_txn("step", "run_1", {}, NOW, NOW)
        tx.append_events_txn([{"at": NOW, "type": "x", "actor": "t", "record_id": None,
                               "run_id": "run_1", "data": {}}])
        raise RuntimeError("boom")
    with store.read() as tx:
        assert tx.count_jobs_txn() == {}
        assert tx.events_txn(run_id="run_1") == []


def test_timers_enqueued_together_are_cancelled_before_they_are_written(store: SqlStore) -> None:
    """A decision's jobs go in with enqueue_jobs_txn; a step's timer among them that the
    same transaction cancels is never written, and the other jobs are (its order kept)."""
    with store.write() as tx:
        tx.enqueue_jobs_txn([("step", "run_1", {"step": "a", "iteration": 1}),
                             ("timer", "run_1", {"step": "review", "iteration": 1}),
                             ("timer", "run_2", {"step": "review", "iteration": 1}),
                             ("email", None, {"to": "x"})], NOW, NOW)
        assert tx.cancel_timers_txn("run_1", "review", 1) == 1
        assert tx.cancel_timers_txn("run_1", "review", 2) == 0
    jobs = store.claim_jobs("w1", NOW, 10)
    assert [(j.kind, j.run_id, j.payload) for j in jobs] == [
        ("step", "run_1", {"step": "a", "iteration": 1}),
        ("timer", "run_2", {"step": "review", "iteration": 1}),
        ("email", None, {"to": "x"})]


def test_jobs_not_yet_due_are_not_claimed(store: SqlStore) -> None:
    _enqueue(store, 2, run_after=LATER)
    assert store.claim_jobs("w1", NOW, 10) == []
    assert len(store.claim_jobs("w1", LATER, 10)) == 2


def test_concurrent_claimers_never_get_the_same_job(store: SqlStore) -> None:
    _enqueue(store, 200)
    got: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def claimer(name: str) -> None:
        barrier.wait()
        mine: list[int] = []
        while batch := store.claim_jobs(name, NOW, 7):
            mine += [j.id for j in batch]
        got[name] = mine

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for ids in got.values() for i in ids]
    assert len(all_ids) == 200 and len(set(all_ids)) == 200


def test_only_the_holder_finishes_a_job_and_only_once(store: SqlStore) -> None:
    _enqueue(store, 1)
    (job,) = store.claim_jobs("w1", NOW, 1)
    with pytest.raises(TransitionConflict), store.write() as tx:
        tx.finish_job_txn(job.id, "w2")
    with store.write() as tx:
        tx.finish_job_txn(job.id, "w1")
    with pytest.raises(TransitionConflict), store.write() as tx:
        tx.finish_job_txn(job.id, "w1")


def test_jobs_of_a_silent_worker_are_handed_back_after_the_timeout(store: SqlStore,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_WORKER_HOST", "elsewhere")  # judged by heartbeat, not by pid
    store.register_worker("w1", "another-host", 999_999, NOW)
    _enqueue(store, 3)
    assert len(store.claim_jobs("w1", NOW, 10)) == 3
    assert store.release_jobs_of_dead_workers("2026-01-05T09:00:20.000Z", 30) == 0
    assert store.release_jobs_of_dead_workers("2026-01-05T09:00:31.000Z", 30) == 3
    again = store.claim_jobs("w2", LATER, 10)
    assert len(again) == 3 and all(j.attempts == 2 for j in again)


def test_jobs_of_a_dead_process_on_this_host_are_handed_back_at_once(store: SqlStore) -> None:
    import subprocess

    from baton.store.sql import worker_host

    gone = subprocess.Popen(["true"])  # a process that existed and has exited
    gone.wait()
    store.register_worker("w1", worker_host(), gone.pid, NOW)
    _enqueue(store, 2)
    store.claim_jobs("w1", NOW, 10)
    assert store.release_jobs_of_dead_workers(NOW, 30) == 2


def test_graceful_unregister_releases_claimed_jobs(store: SqlStore) -> None:
    store.register_worker("w1", "h", 1, NOW)
    _enqueue(store, 2)
    store.claim_jobs("w1", NOW, 10)
    store.unregister_worker("w1")
    assert len(store.claim_jobs("w2", NOW, 10)) == 2


def test_events_come_back_in_order(store: SqlStore) -> None:
    with store.write() as tx:
        tx.append_events_txn([{"at": NOW, "type": f"e{i}", "actor": "t", "record_id": "rec_1",
                               "run_id": None, "data": {"i": i}} for i in range(50)])
    with store.read() as tx:
        events = tx.events_txn(record_id="rec_1")
    assert [e["data"]["i"] for e in events] == list(range(50))


def test_idle_workers_are_woken_by_an_enqueue(store: SqlStore) -> None:
    if store.dialect != "postgresql":
        pytest.skip("SQLite has no notifications: in-process workers are woken by the Engine")
    assert store.wait_for_jobs(0.2) is False  # nothing enqueued: times out
    timer = threading.Timer(0.3, _enqueue, args=(store, 1))
    timer.start()
    assert store.wait_for_jobs(30) is True
    timer.join()


def test_sqlite_idle_workers_see_a_commit_by_another_process(store: SqlStore) -> None:
    if store.dialect != "sqlite":
        pytest.skip("PostgreSQL workers are woken by NOTIFY")
    wake = threading.Event()
    seen = store.change_counter()
    assert store.change_counter() == seen  # nothing committed: the counter stays
    assert store.wait_for_change(seen, 0.2, wake) is False  # times out
    # Another process commits a job (SQLite has no notifications to send).
    code = ("import sys\nfrom baton.store.sql import SqlStore\n"
            "with SqlStore(sys.argv[1]).write() as tx:\n"
            f"    tx.enqueue_job_txn('step', 'run_x', {{}}, {NOW!r}, {NOW!r})\n")
    proc = subprocess.Popen([sys.executable, "-c", code, store.url])
    try:
        assert store.wait_for_change(seen, 60, wake) is True
    finally:
        assert proc.wait(60) == 0
    assert store.change_counter() != seen
    seen = store.change_counter()
    threading.Timer(0.2, wake.set).start()  # an in-process wake-up ends the wait too
    assert store.wait_for_change(seen, 60, wake) is True


def _item(item_id: str, status: str, created_at: str) -> dict[str, object]:
    return {"id": item_id, "run_id": "run_1", "record_id": None, "orchestration": "o",
            "stage": "s", "step": "review", "iteration": 1, "title": "Review",
            "instructions": None, "form": [], "status": status, "assignee_kind": "queue",
            "assignee": "q", "claimed_by": None, "data": None, "version": 1,
            "created_at": created_at, "updated_at": created_at, "completed_at": None,
            "completed_by": None, "priority": 2, "due_at": None}


def test_find_work_item_gives_the_iterations_latest_item(store: SqlStore) -> None:
    """An operator retry cancels a step's item and creates another for the same iteration."""
    with store.write() as tx:
        tx.insert_work_item_txn(_item("wi_a", "canceled", NOW))
        tx.insert_work_item_txn(_item("wi_b", "open", LATER))
    with store.read() as tx:
        found = tx.find_work_item_txn("run_1", "review", 1)
        assert found is not None and found["id"] == "wi_b" and found["priority"] == 2
        assert tx.find_work_item_txn("run_1", "review", 2) is None


def test_work_items_in_a_users_scope(store: SqlStore) -> None:
    rows = [("wi_1", "user", "ann", None), ("wi_2", "queue", "tier1", None),
            ("wi_3", "queue", "tier2", "ann"), ("wi_4", "group", "emea", None),
            ("wi_5", "user", "bob", None)]
    with store.write() as tx:
        for item_id, kind, who, claimed in rows:
            tx.insert_work_item_txn({**_item(item_id, "claimed" if claimed else "open", NOW),
                                     "assignee_kind": kind, "assignee": who, "claimed_by": claimed})
    with store.read() as tx:
        scope = {"statuses": ["open", "claimed"], "scope": ("ann", {"emea"}, {"tier1"})}
        assert [i["id"] for i in tx.list_work_items_txn(scope, 10, 0)] == ["wi_1", "wi_2", "wi_3", "wi_4"]
        assert tx.count_work_items_txn(scope) == 4
        assert tx.count_work_items_txn({"scope": ("bob", set(), set())}) == 1


def test_a_plan_writes_nothing_until_replayed_under_the_lock(store: SqlStore) -> None:
    """A worker plans a batch's commit on a read snapshot (PlanTx) and replays it in a write
    transaction; planning writes nothing, and a plan cannot read what it wrote."""
    _record(store)
    event = {"at": NOW, "type": "planned", "actor": "t", "record_id": "rec_1", "run_id": None,
             "data": {}}
    with store.plan() as plan:
        assert plan.get_record_txn("rec_1")["version"] == 1  # reads see the snapshot
        plan.insert_work_item_txn(_item("wi_p", "open", NOW))
        assert plan.update_record_txn("rec_1", {"a": 2}, 1, NOW) == 2
        assert plan.update_work_item_txn("wi_p", ["open"], 1, {"status": "claimed"}) is True
        plan.append_events_txn([event])
        plan.enqueue_job_txn("timer", "run_1", {"step": "review", "iteration": 1}, LATER, NOW)
        plan.enqueue_job_txn("step", "run_1", {"i": 1}, NOW, NOW)
        assert plan.cancel_timers_txn("run_1", "review", 1) == 1  # the timer it planned itself
        with pytest.raises(PlanAborted):
            plan.find_work_item_txn("run_1", "review", 1)  # work_items: written by the plan
        with pytest.raises(PlanAborted):
            plan.get_record_txn("rec_1")  # would need its record write flushed first
    with store.read() as tx:  # nothing written
        assert tx.get_record_txn("rec_1")["version"] == 1
        assert tx.get_work_item_txn("wi_p") is None
        assert tx.events_txn(record_id="rec_1") == []
        assert tx.count_jobs_txn() == {}
    with store.write() as tx:
        plan.replay_into(tx)
    with store.read() as tx:
        rec = tx.get_record_txn("rec_1")
        assert (rec["version"], rec["data"]) == (2, {"a": 2})
        assert tx.get_work_item_txn("wi_p")["status"] == "claimed"
        assert [e["type"] for e in tx.events_txn(record_id="rec_1")] == ["planned"]
        assert tx.count_jobs_txn() == {"ready": 1}  # the step; the timer was canceled


def test_a_plan_replayed_over_a_changed_row_does_not_commit(store: SqlStore) -> None:
    """Every write a plan replays keeps its compare-and-set: a stale plan raises, and the
    write transaction rolls back whole."""
    _record(store)
    with store.plan() as plan:
        plan.update_record_txn("rec_1", {"a": 2}, 1, NOW)
        plan.append_events_txn([{"at": NOW, "type": "planned", "actor": "t", "record_id": "rec_1",
                                 "run_id": None, "data": {}}])
    with store.write() as tx:  # someone else changes the record in between
        tx.update_record_txn("rec_1", {"a": 9}, 1, NOW)
    with pytest.raises(TransitionConflict), store.write() as tx:
        plan.replay_into(tx)
    with store.read() as tx:
        rec = tx.get_record_txn("rec_1")
        assert (rec["version"], rec["data"]) == (2, {"a": 9})
        assert tx.events_txn(record_id="rec_1") == []


def test_a_plan_is_not_committed_over_rows_that_changed_since_it_read_them(store: SqlStore) -> None:
    _record(store)
    event = {"at": NOW, "type": "planned", "actor": "t", "record_id": "rec_1", "run_id": None,
             "data": {}}
    with store.plan() as plan:
        assert plan.get_record_txn("rec_1")["version"] == 1
        assert plan.active_run_ids_for_record_txn("rec_1") == []
        plan.append_events_txn([event])
    with store.write() as tx:  # the record is unchanged, but a run of it starts meanwhile
        tx.insert_run_txn({"id": "run_9", "orchestration": "o", "version": 1, "record_id": "rec_1",
                           "status": "in_progress", "current_stage": None, "state": {}, "seq": 1,
                           "created_at": NOW, "updated_at": NOW})
    with pytest.raises(PlanAborted, match="started or ended"), store.write() as tx:
        plan.commit_into(tx)
    with store.plan() as plan:
        plan.get_record_txn("rec_1")
        plan.append_events_txn([event])
    with store.write() as tx:
        tx.update_record_txn("rec_1", {"a": 9}, 1, NOW)
    with pytest.raises(PlanAborted, match="changed since"), store.write() as tx:
        plan.commit_into(tx)
    with store.read() as tx:
        assert tx.events_txn(record_id="rec_1") == []  # neither plan wrote anything


def test_a_plan_cannot_write_what_it_does_not_defer(store: SqlStore) -> None:
    """A write path a plan does not know is refused, never made on the read snapshot."""
    _record(store)
    with pytest.raises(PlanAborted), store.plan() as plan:
        plan._write("insert_record", None, {})
    if store.dialect == "sqlite":  # the reader connection itself refuses writes
        with pytest.raises(PlanAborted, match="read connection"), store.plan() as plan:
            plan.conn.exec_driver_sql("DELETE FROM baton_records")
    with store.read() as tx:
        assert tx.get_record_txn("rec_1") is not None


def test_newest_records_of_every_type_are_listed_by_index(store: SqlStore) -> None:
    """Hardening #3: listing records across types sorted by creation read (and sorted) the
    whole table, 4.2 s once one record held 50 MB; now the index gives them in order."""
    from sqlalchemy import select

    from baton.store import schema as s

    q = select(s.records).order_by(s.records.c.created_at.desc()).limit(5).offset(0)
    with store.read() as tx:
        sql = str(q.compile(dialect=tx.conn.dialect, compile_kwargs={"literal_binds": True}))
        if store.dialect == "sqlite":
            plan = " ".join(str(r[-1]) for r in tx.conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "ix_records_created" in plan and "TEMP B-TREE" not in plan, plan
        else:
            tx.conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # an empty table
            plan = " ".join(str(r[0]) for r in tx.conn.exec_driver_sql(f"EXPLAIN {sql}"))
            assert "ix_records_created" in plan and "Sort" not in plan, plan
