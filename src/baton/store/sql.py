"""SqlStore: the Store on SQLAlchemy Core, for SQLite (embedded) and PostgreSQL.

SQLite: WAL, ``synchronous=FULL`` by default (the honest durable setting), and
``BEGIN IMMEDIATE`` for every write transaction so writers queue on the lock
instead of failing half-way. Reads use a separate deferred-transaction engine.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from baton.clock import iso, parse_iso
from baton.errors import ConfigError, TransitionConflict
from baton.store import schema as s
from baton.store.base import DefinitionRow, Job
from baton.store.migrations import current_version, pending

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
NOTIFY_CHANNEL = "baton_jobs"
MIGRATION_LOCK = 7301995  # pg_advisory_xact_lock key held while migrating


def normalize_url(url: str) -> str:
    """Accept ``sqlite:///file.db``, a bare path, or a PostgreSQL URL."""
    if "://" not in url:
        return f"sqlite:///{url}"
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def json_dumps(value: Any) -> str:
    """The JSON columns' encoder: orjson (~5x faster than json.dumps on run states).
    What orjson refuses (an integer beyond 64 bits, an unknown type) falls back to json,
    so it encodes whatever json.dumps did."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def json_loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # what json.dumps wrote and orjson does not read (NaN)
        return json.loads(text)


# Hot-path statements, built once: SQLAlchemy then reuses their compiled form and cache
# key instead of rebuilding both on every call (it showed at the top of the profile).
_GET_RUN = select(s.runs).where(s.runs.c.id == bindparam("_id"))
_GET_RUN_LOCKED = _GET_RUN.with_for_update()
_GET_RECORD = select(s.records).where(s.records.c.id == bindparam("_id"))
_GET_RECORD_LOCKED = _GET_RECORD.with_for_update()
_GET_ITEM = select(s.work_items).where(s.work_items.c.id == bindparam("_id"))
_GET_ITEM_LOCKED = _GET_ITEM.with_for_update()
_UPDATE_RUN = update(s.runs).where(s.runs.c.id == bindparam("_id"), s.runs.c.seq == bindparam("_seq"))
_UPDATE_RECORD = (
    update(s.records)
    .where(s.records.c.id == bindparam("_id"), s.records.c.version == bindparam("_version"))
    .values(data=bindparam("data"), version=bindparam("version"), updated_at=bindparam("updated_at"))
)
_INSERT_RUN = insert(s.runs)
_INSERT_RECORD = insert(s.records)
_INSERT_EVENT = insert(s.events)
_INSERT_JOB = insert(s.jobs)
_INSERT_ITEM = insert(s.work_items)
# A step's pending timers: locked as they are read (PostgreSQL; one being claimed right now is
# skipped and fires as a no-op), then deleted by id alone. A `status = 'ready'` term in the
# DELETE made SQLite's planner walk the ready-jobs index (every pending timer) instead of the
# primary key: ~1 ms per completed work item once many SLA timers were pending.
_READY_TIMERS = select(s.jobs.c.id, s.jobs.c.payload).where(
    s.jobs.c.run_id == bindparam("_run"), s.jobs.c.kind == "timer", s.jobs.c.status == "ready"
).with_for_update(skip_locked=True)
_FINISH_JOB = delete(s.jobs).where(
    s.jobs.c.id == bindparam("_id"), s.jobs.c.claimed_by == bindparam("_worker"),
    s.jobs.c.status == "claimed",
)
_ACTIVE_RUNS = select(s.runs.c.id).where(
    s.runs.c.record_id == bindparam("_record"), s.runs.c.status == "in_progress"
)
# The step iteration's latest item: an operator retry of an interactive step cancels the old
# item and creates a new one for the same iteration.
_FIND_ITEM = select(s.work_items).where(
    s.work_items.c.run_id == bindparam("_run"), s.work_items.c.step == bindparam("_step"),
    s.work_items.c.iteration == bindparam("_iteration"),
).order_by(s.work_items.c.created_at.desc(), s.work_items.c.id.desc()).limit(1)


# Hot-path variants without "expanding" IN parameters (rendered per call by SQLAlchemy):
# an IN list of n parameters is compiled once per n (or per power of two, padded).
def _update_item_hot(n_statuses: int, at_version: bool) -> Any:
    """Compare-and-set on a work item: the SET columns come from the parameters of each call."""
    t = s.work_items
    q = update(t).where(
        t.c.id == bindparam("_id"),
        t.c.status.in_([bindparam(f"_s{i}") for i in range(n_statuses)]),
    ).values(version=t.c.version + 1)
    return q.where(t.c.version == bindparam("_version")) if at_version else q


_DELETE_JOB = delete(s.jobs).where(s.jobs.c.id == bindparam("_id"))


def _by_ids(table: Any, n: int, for_update: bool, columns: tuple[str, ...] = ()) -> Any:
    q = select(*(table.c[c] for c in columns) if columns else (table,)).where(table.c.id.in_([bindparam(f"_i{i}") for i in range(n)])).order_by(table.c.id)
    return q.with_for_update() if for_update else q


class _Hot:
    """A Core statement compiled ONCE for one dialect and run on the DB-API cursor.

    SQLAlchemy's per-call work (cache key, execution context, parameter processing,
    result wrapping) cost ~30 µs of Python per statement against ~4 µs for the driver
    call itself, on ~14 statements per run. The SQL, the bind processors (JSON
    encoding, JSONB adaptation) and the result processors (JSON decoding) are still
    SQLAlchemy's, so SQLite and PostgreSQL share the statement.
    """

    __slots__ = ("keys", "names", "positional", "procs", "row_procs", "sql", "static")

    def __init__(self, stmt: Any, dialect: Any, keys: Sequence[str] | None = None) -> None:
        c = stmt.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
        self.sql = c.string
        self.positional = bool(c.positional)
        names = list(c.positiontup or ()) if self.positional else [
            n for n in c.binds if not n.startswith("%")]
        self.names = tuple(names)
        # Binds with a value of their own (the 1 of ``version + 1``), not given per call.
        self.static = {n: c.binds[n].value for n in names if not c.binds[n].required}
        self.procs = tuple((i, p) for i, n in enumerate(names)
                           if (p := c.binds[n].type._cached_bind_processor(dialect)) is not None)
        cols = list(stmt.selected_columns) if hasattr(stmt, "selected_columns") else []
        self.keys = tuple(col.key for col in cols)
        self.row_procs = tuple((i, p) for i, col in enumerate(cols)
                               if (p := col.type._cached_result_processor(dialect, None)) is not None)

    def params(self, values: dict[str, Any]) -> Any:
        if self.static:
            values = {**self.static, **values}
        vals = [values[n] for n in self.names]
        for i, p in self.procs:
            vals[i] = p(vals[i])
        return tuple(vals) if self.positional else dict(zip(self.names, vals))

    def row(self, raw: Sequence[Any]) -> dict[str, Any]:
        if not self.row_procs:
            return dict(zip(self.keys, raw))
        vals = list(raw)
        for i, p in self.row_procs:
            vals[i] = p(vals[i])
        return dict(zip(self.keys, vals))


class SqlTx:
    """One open transaction; every method runs inside it and never commits."""

    def __init__(self, conn: Connection, hot: dict[Any, _Hot] | None = None) -> None:
        self.conn = conn
        self._hot = hot if hot is not None else {}
        self._cur: Any = None
        self.enqueued = False  # a job was enqueued: wake idle workers at commit (PostgreSQL)
        # Audit events and jobs are appended, never read back by the code that writes them,
        # so they are buffered and written with one statement each at commit (or before
        # anything in this transaction reads them).
        self._events: list[dict[str, Any]] = []
        self._jobs: list[dict[str, Any]] = []
        # Deferred writes (a worker's batch commit, which holds the rows locked and keeps
        # their current state itself): many updates of one run or record in the batch
        # become one write each, and all of them a few executemany statements.
        self.deferred = False
        self._run_writes: dict[str, tuple[dict[str, Any], int]] = {}
        self._record_writes: dict[str, dict[str, Any]] = {}
        self._finished_jobs: list[dict[str, Any]] = []
        self._buffered_timer_runs: set[str | None] = set()

    # ---- the hot path: compiled once, run on the DB-API cursor ----------------------------
    def _compiled(self, key: Any, stmt: Any, keys: Sequence[str] | None = None) -> _Hot:
        h = self._hot.get(key)
        if h is None:
            h = self._hot[key] = _Hot(stmt, self.conn.dialect, keys)
        return h

    def _run(self, h: _Hot, values: dict[str, Any]) -> Any:
        """Execute one hot statement; errors surface as SQLAlchemy's, as for conn.execute."""
        cur = self._cur
        if cur is None:
            cur = self._cur = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        params = h.params(values)
        try:
            cur.execute(h.sql, params)
        except self.conn.dialect.loaded_dbapi.Error as exc:
            self._raise(exc, h.sql, params, cur)
        return cur

    def _run_many(self, h: _Hot, rows: Sequence[dict[str, Any]]) -> int:
        cur = self._cur
        if cur is None:
            cur = self._cur = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        params = [h.params(r) for r in rows]
        try:
            cur.executemany(h.sql, params)
        except self.conn.dialect.loaded_dbapi.Error as exc:
            self._raise(exc, h.sql, params, cur)
        return int(cur.rowcount)

    def _raise(self, exc: Exception, sql: str, params: Any, cur: Any) -> None:
        # The same wrapping (DBAPIError subclasses, connection invalidation on a lost
        # connection) as a statement SQLAlchemy executes itself.
        self.conn._handle_dbapi_exception(exc, sql, params, cur, None)  # always raises
        raise exc  # pragma: no cover

    def _fetch_one(self, key: Any, stmt: Any, values: dict[str, Any]) -> dict[str, Any] | None:
        h = self._compiled(key, stmt)
        raw = self._run(h, values).fetchone()
        return h.row(raw) if raw is not None else None

    def _write(self, key: Any, stmt: Any, values: dict[str, Any]) -> int:
        h = self._compiled((key, tuple(values)), stmt, list(values))
        return int(self._run(h, values).rowcount)

    def _write_many(self, key: Any, stmt: Any, rows: Sequence[dict[str, Any]]) -> int:
        """One statement for many rows of the same keys (an executemany)."""
        n, start = 0, 0
        for i in range(1, len(rows) + 1):  # consecutive rows with the same keys, in order
            if i == len(rows) or rows[i].keys() != rows[start].keys():
                h = self._compiled((key, tuple(rows[start])), stmt, list(rows[start]))
                n += self._run_many(h, rows[start:i])
                start = i
        return n

    def flush_txn(self) -> None:
        if self._finished_jobs:
            done, self._finished_jobs = self._finished_jobs, []
            if self._write_many("finish_job", _FINISH_JOB, done) != len(done):
                raise TransitionConflict("a job of this batch is no longer held by this worker")
        if self._run_writes:
            rows = [{**row, "_id": rid, "_seq": seq} for rid, (row, seq) in self._run_writes.items()]
            self._run_writes = {}
            if self._write_many("update_run", _UPDATE_RUN, rows) != len(rows):
                raise TransitionConflict("a run of this batch changed concurrently")
        if self._record_writes:
            rows = list(self._record_writes.values())
            self._record_writes = {}
            if self._write_many("update_record", _UPDATE_RECORD, rows) != len(rows):
                raise TransitionConflict("a record of this batch changed concurrently")
        if self._events:
            self._write_many("insert_event", _INSERT_EVENT, self._events)
            self._events = []
        if self._jobs:
            self._write_many("insert_job", _INSERT_JOB, self._jobs)
            self._jobs = []
            self._buffered_timer_runs.clear()

    def get_runs_txn(self, run_ids: Sequence[str], *, for_update: bool = False) -> dict[str, dict[str, Any]]:
        """Several runs by id in one statement (locked in id order: no deadlocks)."""
        if not run_ids:
            return {}
        return self._by_ids_txn(s.runs, run_ids, for_update)

    def get_records_txn(self, record_ids: Sequence[str], *, for_update: bool = False) -> dict[str, dict[str, Any]]:
        if not record_ids:
            return {}
        return self._by_ids_txn(s.records, record_ids, for_update)

    def run_heads_txn(self, run_ids: Sequence[str], *, for_update: bool = False) -> dict[str, dict[str, Any]]:
        """Several runs' ``seq`` and ``record_id`` (not their state): enough to tell whether
        a state read earlier is still current, and to lock the rows."""
        if not run_ids:
            return {}
        return self._by_ids_txn(s.runs, run_ids, for_update, ("id", "seq", "record_id"))

    def record_versions_txn(self, record_ids: Sequence[str], *, for_update: bool = False) -> dict[str, int]:
        if not record_ids:
            return {}
        rows = self._by_ids_txn(s.records, record_ids, for_update, ("id", "version"))
        return {rid: r["version"] for rid, r in rows.items()}

    def _by_ids_txn(self, table: Any, ids: Sequence[str], for_update: bool,
                    columns: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
        # One statement per power of two of ids (padded with the last id): a few compiled
        # variants serve every batch size.
        wanted = sorted(set(ids))
        n = 1 << (len(wanted) - 1).bit_length()
        key = ("by_ids", table.name, n, for_update, columns)
        h = self._hot.get(key) or self._compiled(key, _by_ids(table, n, for_update, columns))
        params = {f"_i{i}": wanted[min(i, len(wanted) - 1)] for i in range(n)}
        return {r["id"]: r for r in map(h.row, self._run(h, params).fetchall())}

    # ---- definitions --------------------------------------------------------------------
    def latest_definition_txn(self, kind: str, name: str) -> DefinitionRow | None:
        row = self.conn.execute(
            select(s.definitions)
            .where(s.definitions.c.kind == kind, s.definitions.c.name == name)
            .order_by(s.definitions.c.version.desc())
            .limit(1)
        ).first()
        return DefinitionRow(**row._mapping) if row else None

    def get_definition_txn(self, kind: str, name: str, version: int | None) -> DefinitionRow | None:
        if version is None:
            return self.latest_definition_txn(kind, name)
        row = self.conn.execute(
            select(s.definitions).where(
                s.definitions.c.kind == kind,
                s.definitions.c.name == name,
                s.definitions.c.version == version,
            )
        ).first()
        return DefinitionRow(**row._mapping) if row else None

    def list_definitions_txn(self, kind: str | None = None) -> list[DefinitionRow]:
        q = select(s.definitions).order_by(
            s.definitions.c.kind, s.definitions.c.name, s.definitions.c.version
        )
        if kind:
            q = q.where(s.definitions.c.kind == kind)
        return [DefinitionRow(**r._mapping) for r in self.conn.execute(q)]

    def definitions_generation_txn(self) -> tuple[int, int]:
        """Changes whenever a version is deployed or (de)activated (the table is small)."""
        t = s.definitions
        row = self.conn.execute(select(
            func.coalesce(func.max(t.c.id), 0),
            func.coalesce(func.sum(case((t.c.active, t.c.id), else_=0)), 0))).one()
        return int(row[0]), int(row[1])

    def insert_definition_txn(self, row: dict[str, Any]) -> int:
        res = self.conn.execute(insert(s.definitions).values(**row))
        return int(res.inserted_primary_key[0])  # type: ignore[index]

    def set_active_txn(self, kind: str, name: str, version: int) -> None:
        t = s.definitions
        self.conn.execute(
            update(t).where(t.c.kind == kind, t.c.name == name).values(active=t.c.version == version)
        )

    # ---- records ------------------------------------------------------------------------
    def insert_record_txn(self, row: dict[str, Any]) -> None:
        self._write("insert_record", _INSERT_RECORD, row)

    def get_record_txn(self, record_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
        """``for_update`` locks the row until commit (PostgreSQL; SQLite's write lock covers it)."""
        if self._record_writes:
            self.flush_txn()
        q = _GET_RECORD_LOCKED if for_update else _GET_RECORD
        return self._fetch_one(("get_record", for_update), q, {"_id": record_id})

    def update_record_txn(
        self, record_id: str, data: dict[str, Any], expected_version: int, now: str
    ) -> int:
        params = {"_id": record_id, "_version": expected_version, "data": data,
                  "version": expected_version + 1, "updated_at": now}
        if self.deferred:
            first = self._record_writes.get(record_id)
            if first is not None:  # written earlier in this batch: compare with the stored one
                params["_version"] = first["_version"]
            self._record_writes[record_id] = params
            return expected_version + 1
        if self._write("update_record", _UPDATE_RECORD, params) != 1:
            raise TransitionConflict(
                f"record {record_id} is no longer at version {expected_version} "
                "(someone else changed it): read it again and retry"
            )
        return expected_version + 1

    def list_records_txn(self, object_type: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        q = select(s.records).order_by(s.records.c.created_at.desc()).limit(limit).offset(offset)
        if object_type:
            q = q.where(s.records.c.object_type == object_type)
        return [dict(r._mapping) for r in self.conn.execute(q)]

    # ---- runs ---------------------------------------------------------------------------
    def insert_run_txn(self, row: dict[str, Any]) -> None:
        self._write("insert_run", _INSERT_RUN, row)

    def get_run_txn(self, run_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
        """``for_update`` serialises writers of one run (two of its steps finishing at once)."""
        if self._run_writes:
            self.flush_txn()
        q = _GET_RUN_LOCKED if for_update else _GET_RUN
        return self._fetch_one(("get_run", for_update), q, {"_id": run_id})

    def update_run_txn(self, row: dict[str, Any], expected_seq: int) -> None:
        if self.deferred:
            first = self._run_writes.get(row["id"])
            self._run_writes[row["id"]] = (row, first[1] if first else expected_seq)
            return
        if self._write("update_run", _UPDATE_RUN, {**row, "_id": row["id"], "_seq": expected_seq}) != 1:
            raise TransitionConflict(f"run {row['id']} changed concurrently (expected seq {expected_seq})")

    def active_run_ids_for_record_txn(self, record_id: str) -> list[str]:
        h = self._compiled("active_runs", _ACTIVE_RUNS)
        return [r[0] for r in self._run(h, {"_record": record_id}).fetchall()]

    def list_runs_txn(self, filters: dict[str, Any], limit: int, offset: int) -> list[dict[str, Any]]:
        t = s.runs
        q = select(t).order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit).offset(offset)
        return [dict(r._mapping) for r in self.conn.execute(self._runs_where(q, filters))]

    def count_runs_filtered_txn(self, filters: dict[str, Any]) -> int:
        q = self._runs_where(select(func.count()).select_from(s.runs), filters)
        return int(self.conn.execute(q).scalar_one())

    @staticmethod
    def _runs_where(q: Any, filters: dict[str, Any]) -> Any:
        t = s.runs
        for key in ("orchestration", "version", "status", "current_stage", "record_id"):
            if filters.get(key) is not None:
                q = q.where(t.c[key] == filters[key])
        return q

    def count_records_txn(self, object_type: str | None) -> int:
        q = select(func.count()).select_from(s.records)
        if object_type:
            q = q.where(s.records.c.object_type == object_type)
        return int(self.conn.execute(q).scalar_one())

    def delete_record_txn(self, record_id: str) -> None:
        self.conn.execute(delete(s.records).where(s.records.c.id == record_id))

    def count_in_progress_runs_txn(self) -> int:
        """Runs still in progress: an index range scan, cheap however many runs finished."""
        t = s.runs
        return int(self.conn.execute(
            select(func.count()).select_from(t).where(t.c.status == "in_progress")).scalar_one())

    def count_runs_txn(self) -> list[tuple[str, str, str | None, int]]:
        t = s.runs
        q = select(t.c.orchestration, t.c.status, t.c.current_stage, func.count()).group_by(
            t.c.orchestration, t.c.status, t.c.current_stage
        )
        return [(r[0], r[1], r[2], int(r[3])) for r in self.conn.execute(q)]

    # ---- work items ---------------------------------------------------------------------
    def insert_work_item_txn(self, row: dict[str, Any]) -> None:
        self._write("insert_item", _INSERT_ITEM, row)

    def get_work_item_txn(self, item_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
        q = _GET_ITEM_LOCKED if for_update else _GET_ITEM
        return self._fetch_one(("get_item", for_update), q, {"_id": item_id})

    def find_work_item_txn(self, run_id: str, step: str, iteration: int) -> dict[str, Any] | None:
        return self._fetch_one("find_item", _FIND_ITEM,
                               {"_run": run_id, "_step": step, "_iteration": iteration})

    def update_work_item_txn(
        self,
        item_id: str,
        expected_statuses: Sequence[str],
        expected_version: int | None,
        values: dict[str, Any],
    ) -> bool:
        at_version = expected_version is not None
        params = {**values, "_id": item_id, **{f"_s{i}": st for i, st in enumerate(expected_statuses)}}
        if at_version:
            params["_version"] = expected_version
        key = ("update_item", len(expected_statuses), at_version, tuple(values))
        h = self._hot.get(key)
        if h is None:
            h = self._compiled(key, _update_item_hot(len(expected_statuses), at_version), list(values))
        return bool(self._run(h, params).rowcount == 1)

    def list_work_items_txn(self, filters: dict[str, Any], limit: int, offset: int,
                            order: str = "created") -> list[dict[str, Any]]:
        """Work items by filters. ``filters["scope"]`` = (user, groups, queues) keeps the items
        assigned to that user, claimed by them, or in one of their groups or queues.
        ``order``: ``created`` (oldest first), ``due`` (soonest due first, no due date last),
        ``priority`` (most urgent first)."""
        t = s.work_items
        q = self._work_items_where(select(t), filters)
        orders = {
            "created": (t.c.created_at, t.c.id),
            "due": (t.c.due_at.is_(None), t.c.due_at, t.c.priority.desc(), t.c.created_at, t.c.id),
            "priority": (t.c.priority.desc(), t.c.due_at.is_(None), t.c.due_at, t.c.created_at, t.c.id),
        }
        q = q.order_by(*orders[order]).limit(limit).offset(offset)
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def _update_work_item_or_conflict(self, item_id: str, expected_statuses: Sequence[str],
                                      expected_version: int | None, values: dict[str, Any]) -> None:
        if not self.update_work_item_txn(item_id, expected_statuses, expected_version, values):
            raise TransitionConflict(f"work item {item_id} changed concurrently")

    def count_work_items_txn(self, filters: dict[str, Any]) -> int:
        t = s.work_items
        q = self._work_items_where(select(func.count()).select_from(t), filters)
        return int(self.conn.execute(q).scalar_one())

    @staticmethod
    def _work_items_where(q: Any, filters: dict[str, Any]) -> Any:
        t = s.work_items
        statuses = filters.get("statuses")
        if statuses:
            q = q.where(t.c.status.in_(list(statuses)))
        for key in ("run_id", "assignee_kind", "assignee", "claimed_by", "step", "record_id",
                    "orchestration"):
            if filters.get(key) is not None:
                q = q.where(t.c[key] == filters[key])
        scope = filters.get("scope")
        if scope is not None:
            user, groups, queues = scope
            terms = [t.c.claimed_by == user, and_(t.c.assignee_kind == "user", t.c.assignee == user)]
            if groups:
                terms.append(and_(t.c.assignee_kind == "group", t.c.assignee.in_(sorted(groups))))
            if queues:
                terms.append(and_(t.c.assignee_kind == "queue", t.c.assignee.in_(sorted(queues))))
            q = q.where(or_(*terms))
        return q

    # ---- jobs ---------------------------------------------------------------------------
    def enqueue_job_txn(
        self, kind: str, run_id: str | None, payload: dict[str, Any], run_after: str, now: str
    ) -> None:
        self._jobs.append({
            "kind": kind, "run_id": run_id, "payload": payload, "status": "ready",
            "run_after": run_after, "attempts": 0, "created_at": now,
        })
        if kind == "timer":
            self._buffered_timer_runs.add(run_id)
        self.enqueued = True

    def enqueue_jobs_txn(self, jobs: Sequence[tuple[str, str | None, dict[str, Any]]],
                         run_after: str, now: str) -> None:
        """Enqueue several jobs with one statement."""
        self._jobs.extend(
            {"kind": kind, "run_id": run_id, "payload": payload, "status": "ready",
             "run_after": run_after, "attempts": 0, "created_at": now}
            for kind, run_id, payload in jobs
        )
        self._buffered_timer_runs.update(run_id for kind, run_id, _ in jobs if kind == "timer")
        self.enqueued = True

    def cancel_timers_txn(self, run_id: str, step: str, iteration: int) -> int:
        """Delete a step iteration's timers that have not fired (a timer being fired right
        now is claimed, not ready: it fires as a no-op). Returns how many were deleted."""
        def mine(kind: str, rid: str | None, payload: dict[str, Any]) -> bool:
            return kind == "timer" and rid == run_id and payload.get("step") == step \
                and payload.get("iteration") == iteration

        dropped = 0
        if run_id in self._buffered_timer_runs:  # only then can the buffer hold one of them
            before = len(self._jobs)
            self._jobs = [j for j in self._jobs if not mine(j["kind"], j["run_id"], j["payload"])]
            dropped = before - len(self._jobs)
        h = self._compiled("ready_timers", _READY_TIMERS)
        ids = [r["id"] for r in map(h.row, self._run(h, {"_run": run_id}).fetchall())
               if mine("timer", run_id, r["payload"])]
        if ids:
            self._write_many("delete_job", _DELETE_JOB, [{"_id": i} for i in ids])
        return dropped + len(ids)

    def finish_job_txn(self, job_id: int, worker_id: str) -> None:
        """Delete a claimed job; only its claimer may, exactly once."""
        if self.deferred:
            self._finished_jobs.append({"_id": job_id, "_worker": worker_id})
            return
        if self._write("finish_job", _FINISH_JOB, {"_id": job_id, "_worker": worker_id}) != 1:
            raise TransitionConflict(f"job {job_id} is no longer held by worker {worker_id}")

    def release_job_txn(self, job_id: int, worker_id: str, run_after: str) -> None:
        """Hand a claimed job back to the queue, due again at ``run_after``."""
        t = s.jobs
        self.conn.execute(
            update(t)
            .where(t.c.id == job_id, t.c.claimed_by == worker_id)
            .values(status="ready", claimed_by=None, claimed_at=None, run_after=run_after)
        )

    def count_jobs_txn(self) -> dict[str, int]:
        self.flush_txn()
        t = s.jobs
        return {r[0]: int(r[1]) for r in self.conn.execute(select(t.c.status, func.count()).group_by(t.c.status))}

    def next_job_due_txn(self) -> str | None:
        self.flush_txn()
        t = s.jobs
        return self.conn.execute(select(func.min(t.c.run_after)).where(t.c.status == "ready")).scalar()

    # ---- events -------------------------------------------------------------------------
    def append_events_txn(self, rows: Sequence[dict[str, Any]]) -> None:
        self._events.extend(rows)

    def events_txn(
        self, *, record_id: str | None = None, run_id: str | None = None,
        types: Sequence[str] | None = None, after_id: int = 0, limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        self.flush_txn()
        t = s.events
        q = select(t).where(t.c.id > after_id).order_by(t.c.id).limit(limit)
        if record_id is not None:
            q = q.where(t.c.record_id == record_id)
        if run_id is not None:
            q = q.where(t.c.run_id == run_id)
        if types:
            q = q.where(t.c.type.in_(list(types)))
        return [dict(r._mapping) for r in self.conn.execute(q)]


class PlanAborted(Exception):
    """A planned commit met something it cannot do without the write lock (a read of a row
    it wrote, a flush), or found under the lock that what it read has changed: nothing was
    committed, and the caller commits the usual way instead."""


class PlanTx(SqlTx):
    """A commit worked out on a read snapshot before the write lock is taken, then checked
    and replayed under the lock in a few statements (:meth:`commit_into`).

    Reads run on the snapshot, and the ``seq`` of every run and the ``version`` of every
    record read are remembered (:meth:`saw_run`, :meth:`saw_record` add rows read
    elsewhere). Writes are not executed: run and record updates, events, jobs and finished
    jobs are buffered as in a deferred :class:`SqlTx`; the other writes (records, runs and
    work items created, a work item's compare-and-set, stored timers deleted) are recorded
    in order and made again at replay. Reading a row this plan wrote raises
    :class:`PlanAborted`, as does anything that would flush.

    Under the lock, :meth:`commit_into` checks that every run and record read is unchanged
    and that no run of a record read for its runs started or ended, then writes. Every
    update keeps its compare-and-set guard as well: a stale plan cannot be committed.
    """

    def __init__(self, conn: Connection, hot: dict[Any, _Hot] | None = None) -> None:
        super().__init__(conn, hot)
        self.deferred = True
        self._calls: list[tuple[str, tuple[Any, ...]]] = []
        self.seen_runs: dict[str, int] = {}
        self.seen_records: dict[str, int] = {}
        self.active_runs_seen: dict[str, list[str]] = {}
        self._new_runs: set[str] = set()
        self._new_run_records: set[str] = set()
        self._new_records: set[str] = set()
        self._item_runs: dict[str, str] = {}  # work item id -> its run, for the items read
        self._written_items: set[str] = set()
        self._written_item_runs: set[str] = set()
        self._items_unknown = False  # an item of unknown run was written: no item reads
        self._scanned = 0  # buffered jobs take_new_jobs() has looked at

    def _later(self, name: str, *args: Any) -> None:
        self._calls.append((name, args))

    def saw_run(self, run_id: str, seq: int) -> None:
        self.seen_runs.setdefault(run_id, seq)

    def saw_record(self, record_id: str, version: int) -> None:
        self.seen_records.setdefault(record_id, version)

    def flush_txn(self) -> None:
        if self._run_writes or self._record_writes or self._events or self._jobs or self._finished_jobs:
            raise PlanAborted("needs a flush")

    def _write(self, key: Any, stmt: Any, values: dict[str, Any]) -> int:
        raise PlanAborted(f"a write ({key}) this plan does not know how to defer")

    def _write_many(self, key: Any, stmt: Any, rows: Sequence[dict[str, Any]]) -> int:
        raise PlanAborted(f"a write ({key}) this plan does not know how to defer")

    # ---- writes: recorded, made at replay ------------------------------------------------
    def insert_record_txn(self, row: dict[str, Any]) -> None:
        self._new_records.add(row["id"])
        self._later("insert_record_txn", row)

    def insert_run_txn(self, row: dict[str, Any]) -> None:
        self._new_runs.add(row["id"])
        if row.get("record_id"):
            self._new_run_records.add(row["record_id"])
        self._later("insert_run_txn", row)

    def insert_work_item_txn(self, row: dict[str, Any]) -> None:
        self._written_items.add(row["id"])
        self._written_item_runs.add(row["run_id"])
        self._later("insert_work_item_txn", row)

    def update_work_item_txn(self, item_id: str, expected_statuses: Sequence[str],
                             expected_version: int | None, values: dict[str, Any]) -> bool:
        # Planned as if it applies; at replay it must, or the whole plan is dropped.
        self._written_items.add(item_id)
        if item_id in self._item_runs:
            self._written_item_runs.add(self._item_runs[item_id])
        else:
            self._items_unknown = True
        self._later("_update_work_item_or_conflict", item_id, expected_statuses,
                    expected_version, values)
        return True

    def cancel_timers_txn(self, run_id: str, step: str, iteration: int) -> int:
        dropped = 0
        if run_id in self._buffered_timer_runs:  # timers this plan itself buffered
            def mine(j: dict[str, Any]) -> bool:
                return bool(j["kind"] == "timer" and j["run_id"] == run_id
                            and j["payload"].get("step") == step
                            and j["payload"].get("iteration") == iteration)

            before = len(self._jobs)
            self._scanned -= sum(1 for j in self._jobs[:self._scanned] if mine(j))
            self._jobs = [j for j in self._jobs if not mine(j)]
            dropped = before - len(self._jobs)
        self._later("cancel_timers_txn", run_id, step, iteration)  # the stored ones
        return dropped

    def release_job_txn(self, job_id: int, worker_id: str, run_after: str) -> None:
        self._later("release_job_txn", job_id, worker_id, run_after)

    def delete_record_txn(self, record_id: str) -> None:
        raise PlanAborted("deletes a record")

    def insert_definition_txn(self, row: dict[str, Any]) -> int:
        raise PlanAborted("deploys a definition")

    def set_active_txn(self, kind: str, name: str, version: int) -> None:
        raise PlanAborted("activates a definition")

    # ---- reads: on the snapshot, never of a row this plan wrote --------------------------
    def _check_runs(self, run_ids: Sequence[str]) -> None:
        for rid in run_ids:
            if rid in self._run_writes or rid in self._new_runs:
                raise PlanAborted(f"reads run {rid} after writing it")

    def _check_records(self, record_ids: Sequence[str]) -> None:
        for rid in record_ids:
            if rid in self._record_writes or rid in self._new_records:
                raise PlanAborted(f"reads record {rid} after writing it")

    def _check_items(self, item_id: str | None = None, run_id: str | None = None) -> None:
        if self._items_unknown or item_id in self._written_items or run_id in self._written_item_runs:
            raise PlanAborted("reads a work item after writing it")

    def get_runs_txn(self, run_ids: Sequence[str], *, for_update: bool = False) -> dict[str, dict[str, Any]]:
        self._check_runs(run_ids)
        rows = self._by_ids_txn(s.runs, run_ids, False) if run_ids else {}
        for rid, row in rows.items():
            self.saw_run(rid, row["seq"])
        return rows

    def get_run_txn(self, run_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
        self._check_runs([run_id])
        row = self._fetch_one(("get_run", False), _GET_RUN, {"_id": run_id})
        if row is not None:
            self.saw_run(run_id, row["seq"])
        return row

    def run_heads_txn(self, run_ids: Sequence[str], *, for_update: bool = False) -> dict[str, dict[str, Any]]:
        self._check_runs(run_ids)
        heads = super().run_heads_txn(run_ids)
        for rid, head in heads.items():
            self.saw_run(rid, head["seq"])
        return heads

    def active_run_ids_for_record_txn(self, record_id: str) -> list[str]:
        if record_id in self._new_run_records:
            raise PlanAborted(f"reads the runs of record {record_id} after starting one")
        ids = super().active_run_ids_for_record_txn(record_id)
        self.active_runs_seen.setdefault(record_id, ids)
        return ids

    def get_records_txn(self, record_ids: Sequence[str], *, for_update: bool = False) -> dict[str, dict[str, Any]]:
        self._check_records(record_ids)
        rows = self._by_ids_txn(s.records, record_ids, False) if record_ids else {}
        for rid, row in rows.items():
            self.saw_record(rid, row["version"])
        return rows

    def get_record_txn(self, record_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
        self._check_records([record_id])
        row = self._fetch_one(("get_record", False), _GET_RECORD, {"_id": record_id})
        if row is not None:
            self.saw_record(record_id, row["version"])
        return row

    def record_versions_txn(self, record_ids: Sequence[str], *, for_update: bool = False) -> dict[str, int]:
        self._check_records(record_ids)
        versions = super().record_versions_txn(record_ids)
        for rid, v in versions.items():
            self.saw_record(rid, v)
        return versions

    def get_work_item_txn(self, item_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
        self._check_items(item_id=item_id)
        item = super().get_work_item_txn(item_id)
        if item is not None:
            self._item_runs[item_id] = item["run_id"]
        return item

    def find_work_item_txn(self, run_id: str, step: str, iteration: int) -> dict[str, Any] | None:
        self._check_items(run_id=run_id)
        item = super().find_work_item_txn(run_id, step, iteration)
        if item is not None:
            self._item_runs[item["id"]] = run_id
        return item

    def list_work_items_txn(self, filters: dict[str, Any], limit: int, offset: int,
                            order: str = "created") -> list[dict[str, Any]]:
        if self._written_items or self._items_unknown:
            raise PlanAborted("lists work items after writing one")
        return super().list_work_items_txn(filters, limit, offset, order)

    def take_new_jobs(self, wanted: Any) -> list[dict[str, Any]]:
        """Remove and return the jobs buffered since the last call that ``wanted(job)``
        accepts (a worker runs them in this same plan: they are never written)."""
        start, self._scanned = self._scanned, len(self._jobs)
        if start >= len(self._jobs):
            return []
        new = self._jobs[start:]
        taken = [wanted(j) for j in new]
        if not any(taken):
            return []
        self._jobs[start:] = [j for j, t in zip(new, taken, strict=True) if not t]
        self._scanned = len(self._jobs)
        return [j for j, t in zip(new, taken, strict=True) if t]

    # ---- under the lock ------------------------------------------------------------------
    def commit_into(self, tx: SqlTx) -> None:
        """In ``tx`` (a write transaction): check that what this plan read is unchanged
        (:class:`PlanAborted` if not: roll ``tx`` back), then make its writes; they are
        flushed when ``tx`` commits. Rows are locked in id order (PostgreSQL)."""
        if self.seen_runs:
            heads = tx.run_heads_txn(list(self.seen_runs), for_update=True)
            moved = [rid for rid, seq in self.seen_runs.items()
                     if rid not in heads or heads[rid]["seq"] != seq]
            if moved:
                raise PlanAborted(f"run(s) {', '.join(moved[:3])} changed since they were read")
        if self.seen_records:
            versions = tx.record_versions_txn(list(self.seen_records), for_update=True)
            moved = [rid for rid, v in self.seen_records.items() if versions.get(rid) != v]
            if moved:
                raise PlanAborted(f"record(s) {', '.join(moved[:3])} changed since they were read")
        for record_id, ids in self.active_runs_seen.items():
            if tx.active_run_ids_for_record_txn(record_id) != ids:
                raise PlanAborted(f"runs of record {record_id} started or ended since it was read")
        self.replay_into(tx)

    def replay_into(self, tx: SqlTx) -> None:
        """Make this plan's writes in ``tx`` without checking what it read (the caller has);
        they are flushed when ``tx`` commits."""
        tx.deferred = True
        for name, args in self._calls:
            getattr(tx, name)(*args)
        tx._finished_jobs.extend(self._finished_jobs)
        for rid, (row, seq) in self._run_writes.items():
            first = tx._run_writes.get(rid)
            tx._run_writes[rid] = (row, first[1] if first else seq)
        for rid, params in self._record_writes.items():
            first_rec = tx._record_writes.get(rid)
            tx._record_writes[rid] = {**params, "_version": first_rec["_version"]} if first_rec else params
        tx._events.extend(self._events)
        tx._jobs.extend(self._jobs)
        tx._buffered_timer_runs.update(self._buffered_timer_runs)
        tx.enqueued = tx.enqueued or self.enqueued

BUSY_TIMEOUT_MS = 60_000
_FAST_WAIT_S = 1.0  # how long a writer polls for the lock every ~0.2 ms before SQLite waits


def _begin_immediate(raw: Any) -> None:
    """``BEGIN IMMEDIATE``: take SQLite's write lock, waiting for another process's.

    SQLite's own busy handler sleeps 1, 2, 5, 10, … 100 ms between tries, so a writer
    waiting for another process's transaction oversleeps it by up to that much, every
    time; the benchmark's driver and worker hand the lock to each other hundreds of times
    a second. So the lock is tried every ~0.2 ms for a while first (a failed try costs a
    few µs), and only then left to the busy timeout.
    """
    raw.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + _FAST_WAIT_S
        while True:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    break
            time.sleep(0.0002)
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    raw.execute("BEGIN IMMEDIATE")


class SqlStore:
    """The Store for SQLite and PostgreSQL."""

    def __init__(self, url: str, *, sqlite_synchronous: str | None = None) -> None:
        self.url = normalize_url(url)
        self._hot: dict[Any, _Hot] = {}  # hot statements compiled for this store's dialect
        u = make_url(self.url)
        self.dialect = u.get_backend_name()
        if self.dialect == "sqlite":
            self._init_sqlite(u.database or "", sqlite_synchronous)
        elif self.dialect == "postgresql":
            self._init_postgres()
        else:
            raise ConfigError(
                f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
            )

    # ---- SQLite setup -------------------------------------------------------------------
    def _init_sqlite(self, path: str, synchronous: str | None) -> None:
        if not path or path == ":memory:":
            raise ConfigError("SQLite needs a file (sqlite:///baton.db); in-memory databases are not durable")
        sync = (synchronous or os.environ.get("BATON_SQLITE_SYNCHRONOUS") or "FULL").upper()
        if sync not in SQLITE_SYNCHRONOUS:
            raise ConfigError(f"BATON_SQLITE_SYNCHRONOUS must be one of {', '.join(SQLITE_SYNCHRONOUS)}")
        self.synchronous = sync
        parent = Path(path).expanduser().resolve().parent
        if not parent.is_dir():
            raise ConfigError(f"database folder {parent} does not exist")
        self.path = str(Path(path).expanduser())

        def make(immediate: bool) -> Engine:
            eng = create_engine(
                self.url, connect_args={"check_same_thread": False, "timeout": 60},
                json_serializer=json_dumps, json_deserializer=json_loads,
                poolclass=NullPool if os.environ.get("BATON_SQLITE_NULLPOOL") else None,
            )

            @event.listens_for(eng, "connect")
            def _connect(dbapi_conn: Any, _rec: Any) -> None:
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute(f"PRAGMA synchronous={sync}")
                cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                cur.execute("PRAGMA foreign_keys=ON")
                if not immediate:  # the reader: a write through it is a bug (a plan's, say)
                    cur.execute("PRAGMA query_only=ON")
                cur.close()

            @event.listens_for(eng, "begin")
            def _begin(conn: Connection) -> None:
                raw = conn.connection.dbapi_connection
                if immediate:
                    _begin_immediate(raw)
                else:
                    raw.execute("BEGIN")  # type: ignore[union-attr]

            return eng

        self._writer = make(True)
        self._reader = make(False)
        self._watch = threading.local()  # per thread: PRAGMA data_version is per connection
        self._watch_conns: list[sqlite3.Connection] = []
        self._watch_lock = threading.Lock()

    # ---- PostgreSQL setup ---------------------------------------------------------------
    def _init_postgres(self) -> None:
        self.synchronous = "on (synchronous_commit)"
        self.path = ""
        env = os.environ
        # SQLAlchemy's QueuePool is the pool: every statement goes through SQLAlchemy Core,
        # so a second pool (psycopg-pool) underneath would only hold idle connections twice.
        self._writer = create_engine(
            self.url,
            pool_size=int(env.get("BATON_PG_POOL_SIZE", "5")),
            max_overflow=int(env.get("BATON_PG_POOL_OVERFLOW", "5")),
            pool_timeout=30,
            pool_pre_ping=True,  # a connection the server dropped is replaced, not used
            pool_recycle=1800,
            connect_args={"connect_timeout": 10, "application_name": "baton"},
            json_serializer=json_dumps, json_deserializer=json_loads,
        )
        self._reader = self._writer
        self._listener: Any = None

    # ---- transactions -------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[SqlTx]:
        """A write transaction: committed when the block ends, rolled back on error."""
        with self._writer.begin() as conn:
            tx = SqlTx(conn, self._hot)
            yield tx
            tx.flush_txn()
            if tx.enqueued and self.dialect == "postgresql":
                # Delivered at commit, to every listening worker: no busy polling.
                conn.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")

    def is_transient(self, exc: BaseException) -> bool:
        """Errors worth one more try: a lost connection, a serialization failure, a deadlock,
        SQLite's lock timeout."""
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        orig = getattr(exc, "orig", None)
        code = getattr(orig, "sqlstate", None)
        if code in ("40001", "40P01") or (code or "").startswith("08"):
            return True
        return isinstance(exc, OperationalError) and (
            self.dialect == "postgresql" or "locked" in str(exc)
        )

    def wait_for_jobs(self, timeout: float) -> bool:
        """Block until a job may be ready (PostgreSQL NOTIFY) or ``timeout`` passes.

        SQLite has no notifications: in-process callers are woken by the Engine's
        event and other processes by the poll.
        """
        if self.dialect != "postgresql" or timeout <= 0:
            return False
        import psycopg

        try:
            if self._listener is None or self._listener.closed:
                dsn = self.url.replace("postgresql+psycopg://", "postgresql://")
                self._listener = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
                self._listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
            got = False
            for _ in self._listener.notifies(timeout=timeout, stop_after=1):
                got = True
            return got
        except psycopg.Error:
            if self._listener is not None:
                self._listener.close()
            self._listener = None
            raise

    # ---- SQLite: a cross-process wake-up ------------------------------------------------
    def change_counter(self) -> int | None:
        """SQLite: a number that changes whenever any connection, in any process, commits
        (``PRAGMA data_version`` on a connection kept for this thread; ~5 µs, no disk read).
        None on PostgreSQL, whose workers are woken by NOTIFY instead."""
        if self.dialect != "sqlite":
            return None
        conn = getattr(self._watch, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._watch.conn = conn
            with self._watch_lock:
                self._watch_conns.append(conn)
        return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def wait_for_change(self, seen: int | None, timeout: float, wake: threading.Event,
                        *, idle_for: float = 0.0) -> bool:
        """SQLite: sleep until a commit (by any process) moves :meth:`change_counter` past
        ``seen``, ``wake`` is set (in this process), or ``timeout`` passes.

        Looks every 1 ms during the first second of idleness, then every 5 ms, and every
        20 ms after 10 s idle: a new job waits at most that long for an idle worker, and an
        idle worker costs a few hundred 5 µs reads a second at most."""
        deadline = time.monotonic() + timeout
        step = 0.001 if idle_for < 1.0 else 0.005 if idle_for < 10.0 else 0.02
        while True:
            if wake.wait(min(step, max(0.0, deadline - time.monotonic()))):
                return True
            if seen is None or self.change_counter() != seen:
                return True
            if time.monotonic() >= deadline:
                return False

    @contextmanager
    def read(self) -> Iterator[SqlTx]:
        with self._reader.begin() as conn:
            yield SqlTx(conn, self._hot)

    @contextmanager
    def plan(self) -> Iterator[PlanTx]:
        """A :class:`PlanTx` on a read snapshot: writes are planned, not made."""
        try:
            with self._reader.begin() as conn:
                yield PlanTx(conn, self._hot)
        except OperationalError as exc:
            if "readonly" in str(exc):  # SQLite's reader is query_only: nothing was written
                raise PlanAborted(f"wrote through the read connection: {exc}") from exc
            raise

    def migrate(self) -> list[str]:
        """Apply pending migrations; returns the names applied."""
        applied = []
        with self.write() as tx:
            if self.dialect == "postgresql":
                # Many workers may start at once: one migrates, the others wait and see it done.
                tx.conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
            if current_version(tx.conn) == 0:
                s.schema_migrations.create(tx.conn, checkfirst=True)
            for m in pending(tx.conn):
                m.apply(tx.conn)
                tx.conn.execute(
                    insert(s.schema_migrations).values(
                        version=m.version, name=m.name, applied_at=iso(_utcnow())
                    )
                )
                applied.append(f"{m.version:03d} {m.name}")
        return applied

    def schema_version(self) -> int:
        with self.read() as tx:
            return current_version(tx.conn)

    # ---- jobs ---------------------------------------------------------------------------
    def claim_jobs(self, worker_id: str, now: str, limit: int, kinds: Sequence[str] | None = None) -> list[Job]:
        t = s.jobs
        with self.write() as tx:
            q = (
                select(t.c.id, t.c.kind, t.c.run_id, t.c.payload, t.c.attempts)
                .where(t.c.status == "ready", t.c.run_after <= now)
                .order_by(t.c.run_after, t.c.id)
                .limit(limit)
                # PostgreSQL: rows another worker is claiming are skipped, not waited for.
                # SQLite: BEGIN IMMEDIATE already made this transaction the only writer.
                .with_for_update(skip_locked=True)
            )
            if kinds:
                q = q.where(t.c.kind.in_(list(kinds)))
            rows = tx.conn.execute(q).all()
            if not rows:
                return []
            ids = [r.id for r in rows]
            tx.conn.execute(
                update(t)
                .where(t.c.id.in_(ids), t.c.status == "ready")
                .values(status="claimed", claimed_by=worker_id, claimed_at=now, attempts=t.c.attempts + 1)
            )
            return [Job(r.id, r.kind, r.run_id, r.payload, r.attempts + 1) for r in rows]

    def release_job(self, job_id: int, worker_id: str, run_after: str) -> None:
        t = s.jobs
        with self.write() as tx:
            tx.conn.execute(
                update(t)
                .where(t.c.id == job_id, t.c.claimed_by == worker_id)
                .values(status="ready", claimed_by=None, claimed_at=None, run_after=run_after)
            )

    def drop_job(self, job_id: int, worker_id: str) -> None:
        t = s.jobs
        with self.write() as tx:
            tx.conn.execute(delete(t).where(t.c.id == job_id, t.c.claimed_by == worker_id))

    def register_worker(self, worker_id: str, host: str, pid: int, now: str) -> None:
        with self.write() as tx:
            tx.conn.execute(
                insert(s.workers).values(id=worker_id, host=host, pid=pid, started_at=now, heartbeat_at=now)
            )

    def heartbeat(self, worker_id: str, now: str) -> None:
        with self.write() as tx:
            tx.conn.execute(update(s.workers).where(s.workers.c.id == worker_id).values(heartbeat_at=now))

    def unregister_worker(self, worker_id: str) -> None:
        with self.write() as tx:
            tx.conn.execute(
                update(s.jobs)
                .where(s.jobs.c.claimed_by == worker_id, s.jobs.c.status == "claimed")
                .values(status="ready", claimed_by=None, claimed_at=None)
            )
            tx.conn.execute(delete(s.workers).where(s.workers.c.id == worker_id))

    def release_jobs_of_dead_workers(self, now: str, heartbeat_timeout_s: float) -> int:
        """Hand jobs held by dead workers back to the queue.

        A worker is dead when its heartbeat is older than the timeout, or at once
        when it ran on this host and its process no longer exists.
        """
        host = worker_host()
        cutoff = iso(parse_iso(now) - timedelta(seconds=heartbeat_timeout_s))
        with self.write() as tx:
            dead = [
                w.id
                for w in tx.conn.execute(select(s.workers))
                if w.heartbeat_at < cutoff or (w.host == host and not _pid_alive(w.pid))
            ]
            # Jobs claimed by a worker that has no row at all (crashed while registering).
            known = select(s.workers.c.id)
            orphan = s.jobs.c.claimed_by.not_in(known)
            res = tx.conn.execute(
                update(s.jobs)
                .where(s.jobs.c.status == "claimed", s.jobs.c.claimed_by.in_(dead) | orphan)
                .values(status="ready", claimed_by=None, claimed_at=None)
            )
            if dead:
                tx.conn.execute(delete(s.workers).where(s.workers.c.id.in_(dead)))
            return int(res.rowcount or 0)

    def iter_tables(self) -> Iterator[str]:
        yield from s.metadata.tables

    def database_size(self) -> int:
        if self.dialect == "postgresql":
            with self.read() as tx:
                return int(tx.conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())
        if self.dialect == "sqlite":
            return sum(
                Path(p).stat().st_size
                for p in (self.path, self.path + "-wal")
                if Path(p).exists()
            )
        return 0

    def close(self) -> None:
        self._writer.dispose()
        self._reader.dispose()
        if getattr(self, "_listener", None) is not None:
            self._listener.close()
        for conn in getattr(self, "_watch_conns", []):
            conn.close()


def _utcnow() -> Any:
    from baton.clock import SystemClock

    return SystemClock().now()


def worker_host() -> str:
    """The host name workers report; ``BATON_WORKER_HOST`` overrides it (tests use it to
    make workers on one machine behave as if on many: judged by heartbeat only)."""
    return os.environ.get("BATON_WORKER_HOST") or socket.gethostname()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (killed, not yet reaped) counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


__all__ = ["OperationalError", "PlanAborted", "PlanTx", "SqlStore", "SqlTx", "normalize_url"]
