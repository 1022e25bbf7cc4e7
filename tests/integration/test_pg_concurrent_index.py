"""PostgreSQL: a migration's index on a table that grows is built CONCURRENTLY, ahead of the
migrations' transaction, so the table's writers go on while it builds.

A plain ``CREATE INDEX`` in the transaction takes a SHARE lock on ``baton_work_items``:
queued behind a transaction that writes to the table, it makes every later write queue
behind it in turn, for as long as the build lasts. ``CREATE INDEX CONCURRENTLY`` waits for
that transaction too, without stopping anyone else's writes. An index left INVALID by a
concurrent build that was stopped is dropped and built again by the next upgrade.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import insert

from baton.store import schema as s
from baton.store.migrations import LATEST
from baton.store.sql import SqlStore
from baton.store.sql.statements import MIGRATION_LOCK
from tests.integration.test_upgrade_old_databases import _schema_of

INDEX = "ix_work_items_routed"  # migration 27's


def _item(i: int, routed_at: str | None) -> dict[str, Any]:
    at = f"2026-01-01T00:{i % 60:02d}:00.000Z"
    return {"id": f"wi_{i:05d}", "run_id": f"run_{i:05d}", "orchestration": "o", "stage": "s",
            "step": "t", "iteration": 1, "title": "T", "form": [], "status": "open",
            "assignee_kind": "queue", "assignee": "tier1", "version": 1, "created_at": at,
            "updated_at": at, "routing_status": "routed" if routed_at else None,
            "routed_at": routed_at}


def _insert_sql(i: int, routed_at: str) -> str:
    return ("INSERT INTO baton_work_items (id, run_id, orchestration, stage, step, iteration, "
            "title, form, status, assignee_kind, assignee, version, created_at, updated_at, "
            f"routed_at) VALUES ('wi_{i:05d}', 'run_x', 'o', 's', 't', 1, 'T', '[]', 'open', "
            f"'queue', 'tier1', 1, '{routed_at}', '{routed_at}', '{routed_at}')")


@pytest.fixture
def before_27(pg_url: str) -> Iterator[tuple[str, dict[tuple[str, ...], Any]]]:
    """A database at migration 26 (ix_work_items_routed not made, 27 to 30 not recorded),
    with work items, some routed; and the canonical schema (read from it before)."""
    canonical = _schema_of(pg_url)
    store = SqlStore(pg_url)
    try:
        with store.write() as tx:
            tx.conn.execute(insert(s.work_items), [
                _item(i, f"2026-01-01T01:{i % 60:02d}:00.000Z" if i % 3 == 0 else None)
                for i in range(300)])
            tx.conn.exec_driver_sql(f"DROP INDEX {INDEX}")
            tx.conn.exec_driver_sql("DELETE FROM baton_schema_migrations WHERE version >= 27")
        assert store.schema_version() == 26
    finally:
        store.close()
    yield pg_url, canonical


def _validity(conn: psycopg.Connection[Any]) -> bool | None:
    row = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                       (INDEX,)).fetchone()
    return None if row is None else bool(row[0])


def test_the_routed_index_is_built_while_work_items_are_written(
        before_27: tuple[str, dict[tuple[str, ...], Any]]) -> None:
    """A transaction that wrote a work item is open; the upgrade (a thread) waits for it;
    meanwhile a third connection inserts and updates work items at once (lock_timeout: a
    queued write fails, it does not pass late). The holder commits: the upgrade ends, the
    index is valid, the schema is the canonical one, the migration lock is released."""
    url, canonical = before_27
    holder = psycopg.connect(url)  # (a transaction, open until commit)
    other = psycopg.connect(url, autocommit=True)
    store, second = SqlStore(url), SqlStore(url)
    got: dict[str, Any] = {}

    def upgrade(key: str, by: SqlStore) -> None:
        try:
            got[key] = by.migrate()
        except BaseException as exc:  # noqa: BLE001 - said by the test's thread
            got[f"{key} error"] = exc

    thread = threading.Thread(target=upgrade, args=("applied", store), name="upgrade")
    # Another process starting at the same time: it waits for the migration lock without
    # a snapshot open (the concurrent build waits for every older snapshot), then finds
    # nothing pending.
    also = threading.Thread(target=upgrade, args=("second", second), name="second-upgrade")
    try:
        holder.execute(_insert_sql(900, "2026-01-02T00:00:00.000Z"))
        thread.start()
        waiting: str | None = None  # the migrating backend's statement, seen blocked by holder
        deadline = time.monotonic() + 120
        while waiting is None:
            assert thread.is_alive(), f"the upgrade ended without waiting: {got}"
            assert time.monotonic() < deadline, "the upgrade never waited for the writer"
            row = other.execute(
                "SELECT query FROM pg_stat_activity WHERE datname = current_database() "
                "AND %s = ANY(pg_blocking_pids(pid))", (holder.info.backend_pid,)).fetchone()
            waiting = row[0] if row else None
            time.sleep(0.02)
        also.start()
        trying = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND query ~ '^SELECT pg_(try_)?advisory_lock\\('")
        while not other.execute(trying).fetchone()[0]:  # type: ignore[index]
            assert also.is_alive(), f"the second upgrade did not wait for the first: {got}"
            assert time.monotonic() < deadline, "the second upgrade never tried the lock"
            time.sleep(0.02)
        # The third writer: not queued behind the index build (a SHARE lock request would
        # make it wait for the holder's commit, past lock_timeout).
        other.execute("SET lock_timeout = '5s'")
        other.execute(_insert_sql(901, "2026-01-02T00:01:00.000Z"))
        updated = other.execute("UPDATE baton_work_items SET routed_at = "
                                "'2026-01-02T00:02:00.000Z', routing_status = 'routed' "
                                "WHERE id = 'wi_00001'")
        assert updated.rowcount == 1
        assert waiting.startswith(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} "), waiting
        assert thread.is_alive()  # (still waiting for the holder)
        holder.commit()
        thread.join(120)
        also.join(120)
        assert not thread.is_alive() and not also.is_alive(), got
        assert set(got) == {"applied", "second"}, got
        assert [m.split()[0] for m in got["applied"]] == [
            f"{v:03d}" for v in range(27, LATEST + 1)]  # (027 and every later one)
        assert got["second"] == []
        assert _validity(other) is True
        assert other.execute(  # (the session lock went with the migration)
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = %s "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (MIGRATION_LOCK,)).fetchone() == (0,)
        assert store.migrate() == [] and store.schema_version() == LATEST
        # (the index holds the rows written during its build: read through it)
        other.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in other.execute(
            "EXPLAIN SELECT id FROM baton_work_items WHERE routed_at >= '2026-01-02'"))
        assert INDEX in plan, plan
        assert sorted(r[0] for r in other.execute(
            "SELECT id FROM baton_work_items WHERE routed_at >= '2026-01-02'")) == [
            "wi_00001", "wi_00900", "wi_00901"]
    finally:
        if thread.is_alive() or also.is_alive():
            holder.rollback()
            for started in (thread, also):
                if started.is_alive():
                    started.join(120)
        holder.close()
        other.close()
        store.close()
        second.close()
    assert _schema_of(url) == canonical


def test_an_invalid_index_left_by_a_stopped_build_is_built_again(
        before_27: tuple[str, dict[tuple[str, ...], Any]]) -> None:
    """A concurrent build of the index (not the schema's definition: no WHERE) stopped while
    it waited for a writer leaves it INVALID; the upgrade drops it and builds the schema's."""
    url, canonical = before_27
    with psycopg.connect(url) as holder, psycopg.connect(url, autocommit=True) as builder:
        holder.execute(_insert_sql(900, "2026-01-02T00:00:00.000Z"))
        builder.execute("SET statement_timeout = '300ms'")
        with pytest.raises(psycopg.errors.QueryCanceled):
            builder.execute(f"CREATE INDEX CONCURRENTLY {INDEX} ON baton_work_items (routed_at)")
        holder.rollback()
        assert _validity(builder) is False
    store = SqlStore(url)
    try:
        assert store.migrate()[0].startswith("027")
    finally:
        store.close()
    with psycopg.connect(url, autocommit=True) as conn:
        assert _validity(conn) is True
    assert _schema_of(url) == canonical
