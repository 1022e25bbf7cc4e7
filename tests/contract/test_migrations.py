"""Migrating an empty database yields the canonical schema of store/schema.py."""

from __future__ import annotations

import os
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
