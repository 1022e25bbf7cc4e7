"""The index of records by the records their fields name (baton_record_refs, migration 24).

Kept by triggers on baton_records, so it is checked here through the store's own writes
(insert, compare-and-set update, a worker's deferred batch, a planned commit's replay,
delete), a rollback, and a migration that backfills records stored before it; and the
lookup that uses it (``find_records_txn``) is compared with the same filter read without
it, and its query plan read back on each database.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, select

from baton.store import schema as s
from baton.store.sql import PlanTx, SqlStore

NOW = "2026-01-05T09:00:00.000Z"
LATER = "2026-01-05T09:10:00.000Z"


def _insert(store: SqlStore, rid: str, otype: str, data: dict[str, Any],
            at: str = NOW) -> None:
    with store.write() as tx:
        tx.insert_record_txn({"id": rid, "object_type": otype, "data": data, "version": 1,
                              "created_at": at, "updated_at": at})


def _refs(store: SqlStore) -> set[tuple[str, str, str, str]]:
    x = s.record_refs
    with store.read() as tx:
        rows = tx.conn.execute(select(x.c.record_id, x.c.field, x.c.target_id,
                                      x.c.object_type)).all()
    return {tuple(r) for r in rows}  # type: ignore[misc]


def test_every_record_write_keeps_its_entries(store: SqlStore) -> None:
    _insert(store, "rec_o1", "Order", {"number": "A"})
    _insert(store, "rec_o2", "Order", {"number": "B"})
    # a ref, a text that is not a record id, a number, a nested id (not a field: not indexed)
    _insert(store, "rec_l1", "Line", {"order": "rec_o1", "product": "DOCK", "qty": 2,
                                      "attributes": {"peer": "rec_o2"}, "note": "REC_o1"})
    assert _refs(store) == {("rec_l1", "order", "rec_o1", "Line")}
    with store.write() as tx:  # the ref moves to another order, a second one is set
        tx.update_record_txn("rec_l1", {"order": "rec_o2", "bundle": "rec_o1"}, 1, LATER)
    assert _refs(store) == {("rec_l1", "order", "rec_o2", "Line"),
                            ("rec_l1", "bundle", "rec_o1", "Line")}
    with store.write() as tx:  # a worker's batch: deferred, flushed with executemany
        tx.deferred = True
        tx.update_record_txn("rec_l1", {"order": "rec_o2", "bundle": None}, 2, LATER)
        tx.update_record_txn("rec_l1", {"order": "rec_o2"}, 3, LATER)
    assert _refs(store) == {("rec_l1", "order", "rec_o2", "Line")}
    with pytest.raises(RuntimeError), store.write() as tx:  # rolled back with its write
        tx.update_record_txn("rec_l1", {"order": "rec_o1"}, 4, LATER)
        raise RuntimeError("abandoned")
    assert _refs(store) == {("rec_l1", "order", "rec_o2", "Line")}
    with store.write() as tx:
        tx.delete_record_txn("rec_l1")
    assert _refs(store) == set()


def test_a_planned_commit_replayed_keeps_the_entries(store: SqlStore) -> None:
    _insert(store, "rec_o1", "Order", {})
    _insert(store, "rec_l1", "Line", {"order": "rec_o1"})
    with store.read() as rtx:
        plan = PlanTx(rtx.conn)
        row = plan.get_record_txn("rec_l1")
        assert row is not None
        plan.update_record_txn("rec_l1", {"order": None, "other": "rec_o1"}, 1, LATER)
        with store.write() as tx:
            plan.commit_into(tx)
    assert _refs(store) == {("rec_l1", "other", "rec_o1", "Line")}


def test_find_by_a_ref_reads_the_index_and_agrees_with_a_scan(store: SqlStore) -> None:
    _insert(store, "rec_o1", "Order", {})
    _insert(store, "rec_o2", "Order", {})
    for i in range(30):
        _insert(store, f"rec_l{i:02d}", "Line",
                {"order": "rec_o1" if i % 3 else "rec_o2", "product": f"P{i % 2}"},
                at=f"2026-01-05T09:00:{i:02d}.000Z")
    _insert(store, "rec_x1", "Other", {"order": "rec_o1"})  # another type naming it
    with store.read() as tx:
        lines = tx.find_records_txn("Line", {"order": "rec_o1"}, 100)
        some = tx.find_records_txn("Line", {"order": "rec_o1", "product": "P1"}, 5)
        # the same filter without the index: a value that is no record id is compared on rows
        scan = [r for r in tx.find_records_txn("Line", {}, 100)
                if r["data"]["order"] == "rec_o1"]
        none = tx.find_records_txn("Line", {"order": "rec_nothing"}, 100)
    want = [f"rec_l{i:02d}" for i in reversed(range(30)) if i % 3]
    assert [r["id"] for r in lines] == want == [r["id"] for r in scan]  # newest first
    assert [r["id"] for r in some] == [w for w in want
                                       if int(w[-2:]) % 2 == 1][:5]
    assert lines[0]["data"] == {"order": "rec_o1", "product": "P1"}  # whole rows
    assert none == []


def test_the_lookup_is_an_index_range_on_both_databases(store: SqlStore) -> None:
    """The query plan of the statement find_records_txn runs for an order's lines:
    ix_record_refs_target in the list's order, then each record by its key (PostgreSQL
    with sequential scans off: a test table this small is scanned)."""
    _insert(store, "rec_o1", "Order", {})
    _insert(store, "rec_l1", "Line", {"order": "rec_o1"})
    ran: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        ran.append((statement, parameters))

    with store.read() as tx:
        event.listen(tx.conn, "before_cursor_execute", capture)
        try:
            assert [r["id"] for r in tx.find_records_txn("Line", {"order": "rec_o1"}, 100)] \
                == ["rec_l1"]
        finally:
            event.remove(tx.conn, "before_cursor_execute", capture)
        (statement, params), = ran
        assert "baton_record_refs" in statement
        if store.dialect == "postgresql":
            tx.conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = "\n".join(r[0] for r in tx.conn.exec_driver_sql("EXPLAIN " + statement,
                                                                    params))
            assert "ix_record_refs_target" in plan, plan
            assert "Sort" not in plan, plan  # read in the list's order
        else:
            plan = "\n".join(str(r[-1]) for r in tx.conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, params))
            assert "USING COVERING INDEX ix_record_refs_target" in plan, plan
            assert "USE TEMP B-TREE" not in plan, plan  # no sort
            assert "SCAN" not in plan, plan


def test_migration_24_indexes_the_records_stored_before_it(store: SqlStore) -> None:
    """A database as it was before migration 24 (no table, no triggers; records written
    then): migrating indexes every record stored, and the triggers keep it from then on."""
    with store.write() as tx:
        tx.conn.exec_driver_sql("DROP TABLE baton_record_refs")
        if store.dialect == "postgresql":
            tx.conn.exec_driver_sql("DROP FUNCTION baton_record_refs_sync() CASCADE")
        else:
            for op in ("insert", "update", "delete"):
                tx.conn.exec_driver_sql(f"DROP TRIGGER tr_records_refs_{op}")
        tx.conn.exec_driver_sql("DELETE FROM baton_schema_migrations WHERE version = 24")
    _insert(store, "rec_o1", "Order", {"number": "A"})
    _insert(store, "rec_l1", "Line", {"order": "rec_o1", "bundle": "rec_l0", "sku": "x"})
    _insert(store, "rec_l2", "Line", {"order": "rec_o1", "name": "rec_" + "x" * 40})
    assert store.migrate() == ["024 records indexed by the records their ref fields name"]
    assert _refs(store) == {("rec_l1", "order", "rec_o1", "Line"),
                            ("rec_l1", "bundle", "rec_l0", "Line"),
                            ("rec_l2", "order", "rec_o1", "Line")}
    with store.write() as tx:
        tx.delete_record_txn("rec_l1")
    assert _refs(store) == {("rec_l2", "order", "rec_o1", "Line")}
    with store.read() as tx:
        assert [r["id"] for r in tx.find_records_txn("Line", {"order": "rec_o1"}, 9)] == [
            "rec_l2"]
