"""The claim's compiled statements (``JobQueue.claim_jobs_txn``): the order, the limit, each
claimed job marked once (one executemany), a kind filter, runs whose SLA instant came, on
both stores."""

from __future__ import annotations

from typing import Any

from baton.store.base import SLA_JOB
from baton.store.sql import SqlStore

NOW = "2026-01-05T09:00:00.000Z"
EARLY = "2026-01-05T08:00:00.000Z"
LATER = "2026-01-05T09:10:00.000Z"


def _enqueue(store: SqlStore, jobs: list[tuple[str, str, str]]) -> None:
    with store.write() as tx:
        for i, (kind, run_id, run_after) in enumerate(jobs):
            tx.enqueue_job_txn(kind, run_id, {"i": i, "nested": {"k": [i]}}, run_after, NOW)


def _claimed(store: SqlStore) -> dict[int, tuple[str | None, int, str | None]]:
    with store.read() as tx:
        rows = tx.conn.exec_driver_sql(
            "SELECT id, claimed_by, attempts, status FROM baton_jobs").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_a_claim_marks_each_job_once_in_due_order(store: SqlStore) -> None:
    _enqueue(store, [("step", f"run_{i}", NOW if i % 2 else EARLY) for i in range(6)])
    got = store.claim_jobs("w1", NOW, 3)
    assert [j.payload["i"] for j in got] == [0, 2, 4]  # run_after first, then id
    assert all(j.attempts == 1 and j.kind == "step" for j in got)
    assert got[0].payload == {"i": 0, "nested": {"k": [0]}}  # decoded
    rows = _claimed(store)
    assert sorted(i for i, (by, _a, st) in rows.items() if by == "w1") == sorted(j.id for j in got)
    assert all(rows[j.id] == ("w1", 1, "claimed") for j in got)
    rest = store.claim_jobs("w2", NOW, 10)
    assert [j.payload["i"] for j in rest] == [1, 3, 5]
    assert store.claim_jobs("w3", LATER, 10) == []
    assert all(a == 1 and st == "claimed" for _by, a, st in _claimed(store).values())


def test_a_handed_back_job_counts_its_attempts(store: SqlStore) -> None:
    _enqueue(store, [("step", "run_1", NOW)])
    (job,) = store.claim_jobs("w1", NOW, 5)
    store.release_job(job.id, "w1", NOW)  # type: ignore[arg-type]
    (again,) = store.claim_jobs("w2", NOW, 5)
    assert (again.id, again.attempts) == (job.id, 2)


def test_a_claim_by_kinds_takes_only_those(store: SqlStore) -> None:
    _enqueue(store, [("step", "r1", NOW), ("timer", "r2", NOW), ("email", "r3", NOW),
                     ("step", "r4", NOW)])
    got = store.claim_jobs("w1", NOW, 10, kinds=["step", "email"])
    assert [(j.kind, j.run_id) for j in got] == [("step", "r1"), ("email", "r3"), ("step", "r4")]
    assert [(j.kind, j.run_id) for j in store.claim_jobs("w1", NOW, 10, kinds=["timer"])] \
        == [("timer", "r2")]


def test_runs_whose_sla_came_come_first_and_count_against_the_limit(store: SqlStore) -> None:
    base: dict[str, Any] = {"orchestration": "o", "version": 1, "record_id": None,
                            "status": "in_progress", "current_stage": "s", "state": {},
                            "seq": 1, "created_at": NOW, "updated_at": NOW, "completed_at": None}
    with store.write() as tx:
        tx.insert_run_txn({**base, "id": "run_b", "sla_at": EARLY})
        tx.insert_run_txn({**base, "id": "run_a", "sla_at": NOW})
        tx.insert_run_txn({**base, "id": "run_c", "sla_at": LATER})
    _enqueue(store, [("step", "run_x", NOW), ("step", "run_y", NOW)])
    got = store.claim_jobs("w1", NOW, 3)
    assert [(j.id, j.kind, j.run_id, j.payload) for j in got[:2]] == [
        (None, SLA_JOB, "run_b", {"at": EARLY}), (None, SLA_JOB, "run_a", {"at": NOW})]
    assert [j.run_id for j in got[2:]] == ["run_x"]
    assert store.claim_jobs("w1", NOW, 2, kinds=[SLA_JOB]) == got[:2]  # not marked: again
    assert [j.run_id for j in store.claim_jobs("w1", NOW, 5, kinds=["step"])] == ["run_y"]
