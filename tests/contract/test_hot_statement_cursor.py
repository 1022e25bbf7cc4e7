"""A hot statement (compiled once, run on the transaction's DB-API cursor) that fails inside
a savepoint leaves the transaction usable: the group commit's retry runs each request under
its savepoint, and the requests after a refused one must still be written.

SQLAlchemy's error handling closes the cursor the failed statement ran on; the transaction
used to keep it, and the next savepoint's statement failed with "Cannot operate on a closed
cursor" (found by the ``tstore4`` branch, 2026-12-03)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from baton.store.sql import SqlStore

NOW = "2026-01-05T09:00:00.000Z"


def _record(rid: str) -> dict[str, Any]:
    return {"id": rid, "object_type": "Case", "data": {"n": rid}, "version": 1,
            "created_at": NOW, "updated_at": NOW}


def test_a_savepoint_whose_statement_fails_fails_alone(store: SqlStore) -> None:
    with store.write() as tx:
        tx.insert_record_txn(_record("rec_1"))
    with store.write() as tx:
        with tx.savepoint():
            tx.insert_record_txn(_record("rec_2"))
        with pytest.raises(IntegrityError), tx.savepoint():
            tx.insert_record_txn(_record("rec_3"))
            tx.insert_record_txn(_record("rec_1"))  # taken
        with tx.savepoint():
            tx.insert_record_txn(_record("rec_4"))
    with store.read() as tx:
        assert sorted(tx.get_records_txn([f"rec_{i}" for i in range(1, 5)])) == \
            ["rec_1", "rec_2", "rec_4"]
