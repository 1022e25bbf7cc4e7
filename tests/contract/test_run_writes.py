"""A run's write (``update_run_txn``, at once or deferred to the batch's flush) sets its
columns but not its id, which is the statement's WHERE: the row keeps its id and every
other column written, on both stores, and the compiled UPDATE binds no ``id`` to SET."""

from __future__ import annotations

from typing import Any

import pytest

from baton.errors import TransitionConflict
from baton.store.sql import SqlStore

NOW = "2026-01-05T09:00:00.000Z"
LATER = "2026-01-05T09:10:00.000Z"


def _row(rid: str, seq: int, stage: str, at: str) -> dict[str, Any]:
    return {"id": rid, "orchestration": "o", "version": 1, "record_id": "rec_1",
            "status": "in_progress", "current_stage": stage, "state": {"seq": seq, "id": rid},
            "seq": seq, "created_at": NOW, "updated_at": at, "completed_at": None,
            "sla_at": None, "attention": None}


def _columns(store: SqlStore) -> dict[str, tuple[Any, ...]]:
    with store.read() as tx:
        rows = tx.conn.exec_driver_sql(
            "SELECT id, current_stage, seq, updated_at FROM baton_runs ORDER BY id").fetchall()
    return {r[0]: tuple(r[1:]) for r in rows}


@pytest.mark.parametrize("deferred", [False, True], ids=["at_once", "deferred"])
def test_a_run_written_keeps_its_id_and_takes_its_columns(store: SqlStore, deferred: bool) -> None:
    with store.write() as tx:
        tx.insert_run_txn(_row("run_a", 1, "s1", NOW))
        tx.insert_run_txn(_row("run_b", 1, "s1", NOW))
    with store.write() as tx:
        tx.deferred = deferred
        tx.update_run_txn(_row("run_a", 2, "s2", LATER), 1)
        tx.update_run_txn(_row("run_a", 3, "s3", LATER), 2)  # (deferred: one write, at seq 1)
        tx.flush_txn()
        compiled = [h for key, h in tx._hot.items()
                    if key == "update_run" or (isinstance(key, tuple) and key[0] == "update_run")]
    assert compiled and all("id" not in h.names and "_id" in h.names for h in compiled)
    assert _columns(store) == {"run_a": ("s3", 3, LATER), "run_b": ("s1", 1, NOW)}
    with store.read() as tx:
        assert tx.get_run_txn("run_a")["state"] == {"seq": 3, "id": "run_a"}  # type: ignore[index]
    with pytest.raises(TransitionConflict), store.write() as tx:  # still compare-and-set
        tx.update_run_txn(_row("run_a", 4, "s4", LATER), 2)
    assert _columns(store)["run_a"] == ("s3", 3, LATER)
