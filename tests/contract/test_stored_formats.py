"""Migration 10's stored formats through the store, on SQLite and PostgreSQL: packed audit
events read back as they were appended (filters, paging by id, rows stored before the
migration beside packed ones), and the claim handing out runs whose SLA instant came."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select

from baton.store import schema as s
from baton.store.base import SLA_JOB
from baton.store.sql import SqlStore

NOW = "2026-01-05T09:00:00.000Z"
LATER = "2026-01-05T09:10:00.000Z"


def _ev(i: int, run_id: str, type_: str, at: str = NOW, actor: str = "system") -> dict[str, Any]:
    return {"at": at, "type": type_, "actor": actor, "record_id": "rec_1", "run_id": run_id,
            "data": {"i": i}}


def test_packed_events_read_back_filtered_and_paged(store: SqlStore) -> None:
    with store.write() as tx:  # two rows as stored before migration 10: one event each
        for i, t in enumerate(("record_created", "run_started")):
            tx.conn.execute(insert(s.events).values(**_ev(i, "run_1", t)))
    appended = []
    for n in range(30):  # transitions of two runs, a few events each, different actors
        batch = [_ev(100 + 10 * n + k, f"run_{1 + n % 2}", t, at=f"2026-01-05T09:{n:02d}:00.000Z",
                     actor="ann" if t == "work_item_completed" else "system")
                 for k, t in enumerate(("step_completed", "work_item_completed", "stage_started"))]
        appended += batch
        with store.write() as tx:
            tx.append_events_txn(batch)
    with store.read() as tx:
        rows = tx.conn.execute(select(s.events.c.id)).all()
        every = tx.events_txn()
        assert len(rows) == 2 + 30  # one row per transition
        assert [e["data"]["i"] for e in every] == [0, 1] + [e["data"]["i"] for e in appended]
        ids = [e["id"] for e in every]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert every[2:] == [{"id": e["id"], **a} for e, a in zip(every[2:], appended, strict=True)]
        # filters: a run, a type (only the matching events of a packed row), both
        run2 = tx.events_txn(run_id="run_2")
        assert [e["data"]["i"] for e in run2] == [a["data"]["i"] for a in appended
                                                  if a["run_id"] == "run_2"]
        done = tx.events_txn(types=["work_item_completed", "run_started"])
        assert [e["type"] for e in done] == ["run_started"] + ["work_item_completed"] * 30
        assert all(e["actor"] == "ann" for e in done[1:])
        # paging by the last id seen, with a limit smaller than a row's events
        paged: list[dict[str, Any]] = []
        after = 0
        while page := tx.events_txn(after_id=after, limit=4):
            paged += page
            after = page[-1]["id"]
        assert paged == every
        typed: list[dict[str, Any]] = []
        after = 0
        while page := tx.events_txn(types=["stage_started"], after_id=after, limit=7):
            typed += page
            after = page[-1]["id"]
        assert typed == [e for e in every if e["type"] == "stage_started"]


def test_claim_hands_out_runs_whose_sla_instant_came(store: SqlStore) -> None:
    with store.write() as tx:
        for rid, at in (("run_a", NOW), ("run_b", LATER), ("run_c", None)):
            tx.conn.execute(insert(s.runs).values(
                id=rid, orchestration="o", version=1, record_id=None, status="in_progress",
                current_stage="s", state={}, seq=1, created_at=NOW, updated_at=NOW,
                completed_at=None, sla_at=at))
        tx.enqueue_job_txn("step", "run_x", {"i": 1}, NOW, NOW)
    got = store.claim_jobs("w1", NOW, 10)
    assert [(j.kind, j.run_id, j.id is None) for j in got] == [
        (SLA_JOB, "run_a", True), ("step", "run_x", False)]
    assert got[0].payload == {"at": NOW}
    # a batch full of due SLA instants claims no job rows
    assert [(j.kind, j.run_id) for j in store.claim_jobs("w1", LATER, 2)] == [
        (SLA_JOB, "run_a"), (SLA_JOB, "run_b")]
    assert store.claim_jobs("w1", NOW, 10, kinds=["step"]) == []
