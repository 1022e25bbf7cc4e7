"""The store's options read from the environment: the only place the store reads it.

:class:`~baton.store.sql.store.SqlStore` takes each option as a constructor parameter and
falls back on these values for a parameter left as None, so that the entry points can pass
what they resolved themselves (from their settings) and nothing below them has to read the
environment; until they all do, these names keep working as documented in the README.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class StoreOptions:
    synchronous: str | None  # BATON_SQLITE_SYNCHRONOUS: SQLite's PRAGMA synchronous
    sqlite_nullpool: bool  # BATON_SQLITE_NULLPOOL: a connection per transaction
    worker_host: str | None  # BATON_WORKER_HOST: the host name workers report
    # BATON_PG_POOL_SIZE, BATON_PG_POOL_OVERFLOW: as written (only a PostgreSQL store reads
    # them as numbers, so a bad value does not stop a SQLite one).
    pg_pool_size: str
    pg_pool_overflow: str


def options_from_environment() -> StoreOptions:
    env = os.environ
    return StoreOptions(
        synchronous=env.get("BATON_SQLITE_SYNCHRONOUS") or None,
        sqlite_nullpool=bool(env.get("BATON_SQLITE_NULLPOOL")),
        worker_host=env.get("BATON_WORKER_HOST") or None,
        pg_pool_size=env.get("BATON_PG_POOL_SIZE", "5"),
        pg_pool_overflow=env.get("BATON_PG_POOL_OVERFLOW", "5"),
    )
