"""Migrating an empty database yields the canonical schema of store/schema.py."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sqlalchemy import create_engine, inspect

from baton.store import schema
from baton.store.migrations import LATEST
from baton.store.sql import SqlStore


def _shape(url: str) -> dict[str, tuple[set[str], set[str]]]:
    eng = create_engine(url)
    insp = inspect(eng)
    out = {}
    for table in insp.get_table_names():
        cols = {c["name"] for c in insp.get_columns(table)}
        idx = {i["name"] for i in insp.get_indexes(table) if i["name"]}
        out[table] = (cols, idx)
    eng.dispose()
    return out


def test_migrations_produce_the_canonical_schema(tmp_path: Path) -> None:
    migrated = f"sqlite:///{tmp_path / 'migrated.db'}"
    store = SqlStore(migrated)
    applied = store.migrate()
    assert applied and applied[-1].startswith(f"{LATEST:03d}")
    assert store.schema_version() == LATEST
    store.close()

    canonical = f"sqlite:///{tmp_path / 'canonical.db'}"
    eng = create_engine(canonical)
    schema.metadata.create_all(eng)
    eng.dispose()
    assert _shape(migrated) == _shape(canonical)


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'b.db'}")
    assert store.migrate()
    assert store.migrate() == []
    store.close()


def test_migrations_produce_the_canonical_schema_on_postgres(pg_template: str) -> None:
    from tests.conftest import _pg_admin, _pg_url_for

    names = [f"baton_mig_{os.getpid()}_{kind}" for kind in ("migrated", "canonical")]
    with _pg_admin() as admin:  # type: ignore[attr-defined]
        for name in names:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {name}")
    try:
        store = SqlStore(_pg_url_for(names[0]))
        assert store.migrate()[-1].startswith(f"{LATEST:03d}")
        assert store.migrate() == []
        store.close()
        canonical = _pg_url_for(names[1]).replace("postgresql://", "postgresql+psycopg://")
        eng = create_engine(canonical)
        schema.metadata.create_all(eng)
        eng.dispose()
        migrated = _shape(_pg_url_for(names[0]).replace("postgresql://", "postgresql+psycopg://"))
        assert {k: v for k, v in migrated.items()} == _shape(canonical)
    finally:
        with _pg_admin() as admin:  # type: ignore[attr-defined]
            for name in names:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_migration_8_remakes_the_list_indexes_of_an_existing_database(tmp_path: Path) -> None:
    """A database from before migration 8 (its old list indexes, version 7) is carried
    forward: the redefined indexes get their new columns, the new ones are made."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = SqlStore(url)
    store.migrate()
    with store.write() as tx:
        for name, table, cols in (("ix_runs_status", "baton_runs", "status, orchestration"),
                                  ("ix_runs_record", "baton_runs", "record_id, status"),
                                  ("ix_records_created", "baton_records", "created_at"),
                                  ("ix_work_items_assignee", "baton_work_items",
                                   "status, assignee_kind, assignee")):
            tx.conn.exec_driver_sql(f"DROP INDEX {name}")
            tx.conn.exec_driver_sql(f"CREATE INDEX {name} ON {table} ({cols})")
        for name in ("ix_runs_created", "ix_runs_stage", "ix_work_items_urgent"):
            tx.conn.exec_driver_sql(f"DROP INDEX {name}")
        tx.conn.exec_driver_sql("DELETE FROM baton_schema_migrations WHERE version >= 8")
    assert store.schema_version() == 7
    assert store.migrate()[0].startswith("008")
    store.close()
    eng = create_engine(url)
    cols = {i["name"]: i["column_names"] for t in ("baton_runs", "baton_records")
            for i in inspect(eng).get_indexes(t)}
    eng.dispose()
    assert cols["ix_runs_status"] == ["status", "created_at", "id"]
    assert cols["ix_runs_record"] == ["record_id", "created_at", "id"]
    assert cols["ix_records_created"] == ["created_at", "id"]
    assert cols["ix_runs_created"] == ["created_at", "id"]
    # (SQLAlchemy does not reflect expression indexes on SQLite: ask SQLite itself)
    con = sqlite3.connect(tmp_path / "old.db")
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    con.close()
    assert {"ix_work_items_urgent", "ix_work_items_assignee_urgent", "ix_runs_stage"} <= names
