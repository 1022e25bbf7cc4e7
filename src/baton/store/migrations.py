"""Numbered, versioned schema migrations, applied in order and recorded.

Each migration is a function of a SQLAlchemy connection inside a transaction.
``tests/contract/test_migrations.py`` checks that migrating an empty database
yields the canonical schema of ``schema.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, inspect
from sqlalchemy.schema import CreateIndex

from baton.store import schema


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Connection], None]


def _m001_initial(conn: Connection) -> None:
    tables = [
        schema.definitions,
        schema.records,
        schema.runs,
        schema.work_items,
        schema.jobs,
        schema.events,
        schema.workers,
    ]
    for table in tables:
        table.create(conn)


def _m002_jobs_by_run(conn: Connection) -> None:
    """Index jobs by run: a step that closes cancels its pending timers (SLA, pause)."""
    for index in schema.jobs.indexes:
        if index.name == "ix_jobs_run":
            index.create(conn, checkfirst=True)  # a fresh database got it from migration 1


def _m003_people(conn: Connection) -> None:
    """Users, their groups and queues, API tokens and UI sessions (the web API and UI)."""
    for table in (schema.users, schema.memberships, schema.api_tokens, schema.sessions):
        table.create(conn)
    # Work items carry their priority and due time (the Work Guide sorts by them).
    columns = {c["name"] for c in inspect(conn).get_columns(schema.work_items.name)}
    if "priority" not in columns:
        conn.exec_driver_sql(
            "ALTER TABLE baton_work_items ADD COLUMN priority INTEGER NOT NULL DEFAULT 1")
    if "due_at" not in columns:
        conn.exec_driver_sql("ALTER TABLE baton_work_items ADD COLUMN due_at VARCHAR(40)")


def _m004_records_by_creation(conn: Connection) -> None:
    """Index records by creation time: listing the newest records of every type read the
    whole table (each row's data with it) to sort it."""
    for index in schema.records.indexes:
        if index.name == "ix_records_created":
            index.create(conn, checkfirst=True)  # a fresh database got it from migration 1


def _m005_login_throttle(conn: Connection) -> None:
    """Failed logins per account and per client address: after too many, a lockout."""
    schema.login_throttle.create(conn, checkfirst=True)


def _m006_idempotency_keys(conn: Connection) -> None:
    """Idempotency keys: a create retried after a lost answer replays the first one."""
    schema.idempotency_keys.create(conn, checkfirst=True)


def _m007_incidents(conn: Connection) -> None:
    """Incidents: a trigger's `when` or an evaluation flow that raised, for an operator to
    retry or dismiss (the write that fired it is saved all the same)."""
    schema.incidents.create(conn)


# Indexes whose columns migration 8 changed (the name kept): dropped and made again.
_M008_REDEFINED = ("ix_records_object_type", "ix_records_created", "ix_runs_record",
                   "ix_runs_status", "ix_work_items_assignee")


def _m008_list_indexes(conn: Connection) -> None:
    """Indexes for keyset pagination: every list the API, the UI and the CLI page through
    (runs by any Monitor filter, work items in each Work Guide order, records) is an index
    range read in the list's order, the id last, instead of a scan and a sort."""
    for name in _M008_REDEFINED:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    for table in (schema.records, schema.runs, schema.work_items):
        for index in table.indexes:  # (checkfirst does not see expression indexes)
            conn.execute(CreateIndex(index, if_not_exists=True))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _m001_initial),
    Migration(2, "index jobs by run", _m002_jobs_by_run),
    Migration(3, "users, memberships, API tokens, sessions", _m003_people),
    Migration(4, "index records by creation time", _m004_records_by_creation),
    Migration(5, "failed logins per account and client address", _m005_login_throttle),
    Migration(6, "idempotency keys", _m006_idempotency_keys),
    Migration(7, "incidents", _m007_incidents),
    Migration(8, "indexes for keyset pagination of runs, work items and records",
              _m008_list_indexes),
)
LATEST = MIGRATIONS[-1].version


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table(schema.schema_migrations.name):
        return 0
    row = conn.execute(
        schema.schema_migrations.select().order_by(schema.schema_migrations.c.version.desc())
    ).first()
    return int(row.version) if row else 0


def pending(conn: Connection) -> list[Migration]:
    have = current_version(conn)
    return [m for m in MIGRATIONS if m.version > have]
