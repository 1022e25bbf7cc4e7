"""The routing figures (the Team page's and the metrics' items waiting and routed in the last
hour: ``routing_figures_txn``) read indexes, not every work item, on both databases.

The items routed since an instant are an index range of ``ix_work_items_routed`` (migration
27: ``routed_at``, partial on ``routed_at IS NOT NULL``); the waiting ones a range of an
index on their status (SQLite) or ``ix_work_items_waiting`` (PostgreSQL, by cost). The
database holds 6,000 items, a third of them routed over 30 days; PostgreSQL is ANALYZEd
(as autovacuum keeps it), SQLite has no statistics (Baton never runs ANALYZE). A database
made before migration 27 gets the index when it is upgraded, and its plan changes from a
full scan to the range.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, insert

from baton.store import schema as s
from baton.store.sql import SqlStore

N = 6000
SINCE = "2026-01-30T00:00:00.000Z"  # the last of the 30 days: ~1/30 of the routed items


def _populate(store: SqlStore) -> list[dict[str, Any]]:
    rows = []
    for i in range(N):
        day, minute = 1 + i // 3 % 30, i % 1440
        at = f"2026-01-{day:02d}T{minute // 60:02d}:{minute % 60:02d}:00.000Z"
        routed = i % 3 == 0
        waiting = not routed and i % 50 == 1
        queue = ("tier1", "tier2")[i // 7 % 2]
        rows.append({
            "id": f"wi_{i:06d}", "run_id": f"run_{i:06d}", "record_id": None,
            "orchestration": "o", "stage": "s", "step": "t", "iteration": 1, "title": "T",
            "form": [], "status": "open" if waiting or i % 4 == 0 else "completed",
            "assignee_kind": "queue", "assignee": queue, "version": 1, "created_at": at,
            "updated_at": at, "routing": {"from": f"queue:{queue}"} if routed or waiting else None,
            "routing_status": "routed" if routed else ("waiting" if waiting else None),
            "routed_at": at.replace(":00.000Z", ":30.000Z") if routed else None})
    with store.write() as tx:
        for k in range(0, N, 1000):
            tx.conn.execute(insert(s.work_items), rows[k:k + 1000])
    _analyze(store)
    return rows


def _analyze(store: SqlStore) -> None:
    """PostgreSQL's statistics, as autovacuum keeps them (SQLite has none)."""
    if store.dialect == "postgresql":
        with store.write() as tx:
            tx.conn.exec_driver_sql("ANALYZE baton_work_items")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    url = (str(request.getfixturevalue("pg_url")) if request.param == "postgres"
           else f"sqlite:///{tmp_path / 'baton.db'}")
    st = SqlStore(url)
    st.migrate()
    yield st
    st.close()


def _plans(store: SqlStore) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """What ``routing_figures_txn(SINCE)`` returns, and the plan of each SELECT it sends
    (by the statement's filter: ``routed_at`` or ``waiting``), as one line of text."""
    sent: list[tuple[str, Any]] = []

    def grab(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, params))

    plans: dict[str, str] = {}
    with store.read() as tx:
        event.listen(tx.conn, "before_cursor_execute", grab)
        try:
            got = tx.routing_figures_txn(SINCE)
        finally:
            event.remove(tx.conn, "before_cursor_execute", grab)
        for statement, params in sent:
            key = "routed_at" if "routed_at >=" in statement else "waiting"
            if store.dialect == "postgresql":
                plan = tx.conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement,
                                               params).scalar_one()
                plans[key] = " | ".join(_pg_nodes(plan[0]["Plan"]))
            else:
                plans[key] = " | ".join(r[3] for r in tx.conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, params))
    assert set(plans) == {"routed_at", "waiting"}, sent
    return got, plans


def _pg_nodes(node: dict[str, Any]) -> Iterator[str]:
    yield " ".join(str(node.get(k, "")) for k in ("Node Type", "Relation Name", "Index Name",
                                                  "Index Cond", "Recheck Cond")).strip()
    for child in node.get("Plans", []):
        yield from _pg_nodes(child)


def _full_scans(store: SqlStore, plan: str) -> list[str]:
    steps = plan.split(" | ")
    if store.dialect == "postgresql":
        return [p for p in steps if p.startswith("Seq Scan baton_work_items")]
    return [p for p in steps if p.startswith("SCAN baton_work_items") and "INDEX" not in p]


def _reads_the_routed_index(store: SqlStore, plan: str) -> bool:
    if store.dialect == "postgresql":  # an index scan, or a bitmap of it, bounded by SINCE
        return "ix_work_items_routed" in plan and "routed_at" in plan.split(
            "ix_work_items_routed", 1)[1] and ">=" in plan
    return "SEARCH baton_work_items USING INDEX ix_work_items_routed (routed_at>?)" in plan


def test_the_routing_figures_read_index_ranges_and_count_what_is_there(
        store: SqlStore) -> None:
    rows = _populate(store)
    got, plans = _plans(store)
    assert _reads_the_routed_index(store, plans["routed_at"]), plans
    for plan in plans.values():
        assert not _full_scans(store, plan), plans
    routed = sorted((r["id"][3:], r["routed_at"]) for r in rows
                    if r["routed_at"] is not None and r["routed_at"] >= SINCE)
    waiting = [r for r in rows if r["routing_status"] == "waiting" and r["status"] == "open"]
    assert 0 < len(routed) < N // 30, len(routed)  # a range of a few, not a third of all
    assert sorted(g["routed_at"] for g in got if "routed_at" in g) == sorted(
        at for _i, at in routed)
    assert sorted(g["waiting_since"] for g in got if "waiting_since" in g) == sorted(
        r["created_at"] for r in waiting)
    assert {g["pool"] for g in got} == {"queue:tier1", "queue:tier2"}


def test_a_database_made_before_migration_27_gets_the_index_when_upgraded(
        store: SqlStore) -> None:
    _populate(store)
    with store.write() as tx:
        tx.conn.exec_driver_sql("DROP INDEX ix_work_items_routed")
        tx.conn.exec_driver_sql("DELETE FROM baton_schema_migrations WHERE version = 27")
    _analyze(store)
    _got, before = _plans(store)
    assert _full_scans(store, before["routed_at"]), before  # what it was: every item read
    # upgraded as an operator does it (``baton db upgrade``), then read by a process started
    # after it. (SQLite's EXPLAIN on a connection opened before the upgrade shows the plan
    # of the schema that connection read first: EXPLAIN reads no table, so it never learns
    # the schema changed, where the statement itself, run, does.)
    upgraded = SqlStore(store.url)
    try:
        assert [m.split()[0] for m in upgraded.migrate()] == ["027"]
        assert upgraded.migrate() == []
        _got, after = _plans(upgraded)
    finally:
        upgraded.close()
    assert _reads_the_routed_index(store, after["routed_at"]), after
    assert not _full_scans(store, after["routed_at"]), after
