"""The plan store's statements made once (``store/sql/plans.py``), on both databases: an
order's lines read by ``records_naming_txn`` are what ``find_records_txn`` returns, and a
revision written with the prebuilt insert reads back whole."""

from __future__ import annotations

from typing import Any

import pytest

from baton.store.sql import SqlStore

NOW = "2026-01-05T09:00:00.000Z"


def _insert(store: SqlStore, rid: str, otype: str, data: dict[str, Any], at: str = NOW) -> None:
    with store.write() as tx:
        tx.insert_record_txn({"id": rid, "object_type": otype, "data": data, "version": 1,
                              "created_at": at, "updated_at": at})


def test_an_orders_lines_are_what_find_records_returns(store: SqlStore) -> None:
    _insert(store, "rec_o1", "Order", {})
    _insert(store, "rec_o2", "Order", {})
    for i in range(12):
        _insert(store, f"rec_l{i:02d}", "Line",
                {"order": "rec_o1" if i % 3 else "rec_o2", "qty": i,
                 **({"bundle": "rec_o1"} if i == 4 else {})},
                at=f"2026-01-05T09:00:{i:02d}.000Z")
    _insert(store, "rec_x1", "Other", {"order": "rec_o1"})  # another type naming it
    with store.read() as tx:
        for order in ("rec_o1", "rec_o2", "rec_none"):
            found = tx.records_naming_txn("Line", "order", order)
            assert found == tx.find_records_txn("Line", {"order": order}, 100)
        lines = tx.records_naming_txn("Line", "order", "rec_o1")
        by_bundle = tx.records_naming_txn("Line", "bundle", "rec_o1")  # another field
    assert [r["id"] for r in lines] == [f"rec_l{i:02d}" for i in reversed(range(12)) if i % 3]
    assert lines[-1]["data"] == {"order": "rec_o1", "qty": 1}  # whole rows, newest first
    assert [r["id"] for r in by_bundle] == ["rec_l04"]


def test_lines_named_by_a_value_that_is_no_record_id_are_refused(store: SqlStore) -> None:
    with store.read() as tx, pytest.raises(ValueError, match="'ORDER-7' is no record id"):
        tx.records_naming_txn("Line", "order", "ORDER-7")


def test_a_revision_reads_back_whole_and_its_list_leaves_the_graph_out(store: SqlStore) -> None:
    graph = {"format": 2, "definition": {"name": "plan:rec_o1", "stages": []},
             "steps": [{"name": "a", "lines": ["rec_l1"], "ponr": True}], "n": 1.5}
    base = {"order_id": "rec_o1", "kind": "plan", "fulfillment": "f",
            "fulfillment_version": 1, "catalog": "c", "catalog_version": 2,
            "created_at": NOW, "created_by": "t"}
    with store.write() as tx:
        tx.insert_plan_txn({**base, "revision": 1, "run_id": "run_1", "graph": graph})
        tx.insert_plan_txn({**base, "revision": 2, "kind": "compensation", "run_id": "run_2",
                            "graph": {**graph, "n": 2}})
    with store.read() as tx:
        assert tx.get_plan_txn("rec_o1", 1) == {**base, "revision": 1, "run_id": "run_1",
                                                "graph": graph}
        latest = tx.get_plan_txn("rec_o1")
        revisions = tx.plan_revisions_txn("rec_o1")
        assert tx.plan_revisions_txn("rec_o9") == [] and tx.get_plan_txn("rec_o9") is None
    assert latest is not None and latest["revision"] == 2 and latest["graph"]["n"] == 2
    assert [(r["revision"], r["kind"], r["run_id"]) for r in revisions] == [
        (1, "plan", "run_1"), (2, "compensation", "run_2")]
    assert all("graph" not in r for r in revisions)
