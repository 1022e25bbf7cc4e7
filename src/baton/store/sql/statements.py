"""The SQL statements of the hot path, built once, and the compiled form they run in.

Built once at import: SQLAlchemy then reuses their compiled form and cache key instead of
rebuilding both on every call (it showed at the top of the profile). :class:`Hot` goes one
step further and runs a statement compiled once per dialect on the DB-API cursor.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from baton.store import schema as s
from baton.store.codec import json_dumps, json_loads

NOTIFY_CHANNEL = "baton_jobs"
MIGRATION_LOCK = 7301995  # advisory lock key held (by the session) while migrating
DEFINITIONS_LOCK = 7301996  # held by deploys and activations that check across definitions


def normalize_url(url: str) -> str:
    """Accept ``sqlite:///file.db``, a bare path, or a PostgreSQL URL."""
    if "://" not in url:
        return f"sqlite:///{url}"
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def insert_or_ignore(conn: Connection, table: Any) -> Any:
    """INSERT … ON CONFLICT DO NOTHING in this connection's dialect (add the conflict
    target with ``.on_conflict_do_nothing(index_elements=…)`` to name one). The dialect's
    module is imported here, not at import: a SQLite process never loads PostgreSQL's."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


GET_RUN = select(s.runs).where(s.runs.c.id == bindparam("_id"))
GET_RUN_LOCKED = GET_RUN.with_for_update()
GET_RECORD = select(s.records).where(s.records.c.id == bindparam("_id"))
GET_RECORD_LOCKED = GET_RECORD.with_for_update()
GET_ITEM = select(s.work_items).where(s.work_items.c.id == bindparam("_id"))
GET_ITEM_LOCKED = GET_ITEM.with_for_update()
UPDATE_RUN = update(s.runs).where(s.runs.c.id == bindparam("_id"), s.runs.c.seq == bindparam("_seq"))
UPDATE_RECORD = (
    update(s.records)
    .where(s.records.c.id == bindparam("_id"), s.records.c.version == bindparam("_version"))
    .values(data=bindparam("data"), version=bindparam("version"), updated_at=bindparam("updated_at"))
)
INSERT_RUN = insert(s.runs)
INSERT_RECORD = insert(s.records)
INSERT_EVENT = insert(s.events)
INSERT_JOB = insert(s.jobs)
INSERT_ITEM = insert(s.work_items)
# A step's pending timers: locked as they are read (PostgreSQL; one being claimed right now is
# skipped and fires as a no-op), then deleted by id alone. A `status = 'ready'` term in the
# DELETE made SQLite's planner walk the ready-jobs index (every pending timer) instead of the
# primary key: ~1 ms per completed work item once many SLA timers were pending.
READY_TIMERS = select(s.jobs.c.id, s.jobs.c.payload).where(
    s.jobs.c.run_id == bindparam("_run"), s.jobs.c.kind == "timer", s.jobs.c.status == "ready"
).with_for_update(skip_locked=True)
FINISH_JOB = delete(s.jobs).where(
    s.jobs.c.id == bindparam("_id"), s.jobs.c.claimed_by == bindparam("_worker"),
    s.jobs.c.status == "claimed",
)
# A record's runs are a handful; the runs in progress are thousands. SQLite, which keeps no
# statistics, chose ix_runs_status (status=?) for this once the list indexes of migration 8
# were there: every record write then read every run in progress (the triage bench fell
# from ~800 to ~220 runs/s). The status is compared through coalesce(), which no index
# holds, so the record's index is the only one left (SQLAlchemy renders no SQLite index
# hints); PostgreSQL, with its statistics, reads the record's index either way.
ACTIVE_RUNS = select(s.runs.c.id).where(
    s.runs.c.record_id == bindparam("_record"),
    func.coalesce(s.runs.c.status, "") == "in_progress",
)
# The step iteration's latest item: an operator retry of an interactive step cancels the old
# item and creates a new one for the same iteration.
FIND_ITEM = select(s.work_items).where(
    s.work_items.c.run_id == bindparam("_run"), s.work_items.c.step == bindparam("_step"),
    s.work_items.c.iteration == bindparam("_iteration"),
).order_by(s.work_items.c.created_at.desc(), s.work_items.c.id.desc()).limit(1)


# Hot-path variants without "expanding" IN parameters (rendered per call by SQLAlchemy):
# an IN list of n parameters is compiled once per n (or per power of two, padded).
def update_item_hot(n_statuses: int, at_version: bool) -> Any:
    """Compare-and-set on a work item: the SET columns come from the parameters of each call."""
    t = s.work_items
    q = update(t).where(
        t.c.id == bindparam("_id"),
        t.c.status.in_([bindparam(f"_s{i}") for i in range(n_statuses)]),
    ).values(version=t.c.version + 1)
    return q.where(t.c.version == bindparam("_version")) if at_version else q


DELETE_JOB = delete(s.jobs).where(s.jobs.c.id == bindparam("_id"))


def active_runs_of(n: int) -> Any:
    """:data:`ACTIVE_RUNS` of n records at once (``_i0`` … ``_i{n-1}``): each record's
    runs in progress, as ``(record_id, id)`` rows."""
    r = s.runs
    return select(r.c.record_id, r.c.id).where(
        r.c.record_id.in_([bindparam(f"_i{i}") for i in range(n)]),
        func.coalesce(r.c.status, "") == "in_progress",
    )


def by_ids(table: Any, n: int, for_update: bool, columns: tuple[str, ...] = ()) -> Any:
    q = select(*(table.c[c] for c in columns) if columns else (table,)).where(table.c.id.in_([bindparam(f"_i{i}") for i in range(n)])).order_by(table.c.id)
    return q.with_for_update() if for_update else q



class Hot:
    """A Core statement compiled ONCE for one dialect and run on the DB-API cursor.

    SQLAlchemy's per-call work (cache key, execution context, parameter processing,
    result wrapping) cost ~30 µs of Python per statement against ~4 µs for the driver
    call itself, on ~14 statements per run. The SQL and the bind and result processors
    are SQLAlchemy's, so SQLite and PostgreSQL share the statement, with one exception:
    on SQLite a JSON document column's value is encoded and decoded by the store's codec
    directly (:func:`_sqlite_json_bind`, :func:`_sqlite_json_result`), the very functions
    SQLAlchemy's processors end in, without their two or three wrapper calls per value
    (~30,000 values per 2,000 triage runs in each process).
    """

    __slots__ = ("get", "keys", "names", "params", "positional", "procs", "row", "row_procs", "sql",
                 "static")

    def __init__(self, stmt: Any, dialect: Any, keys: Iterable[str] | None = None) -> None:
        c = stmt.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
        self.sql = c.string
        self.positional = bool(c.positional)
        names = list(c.positiontup or ()) if self.positional else [
            n for n in c.binds if not n.startswith("%")]
        self.names = tuple(names)
        # The values in the statement's order, in one C call (a 1-tuple for one name).
        self.get: Callable[[dict[str, Any]], Any] = (
            operator.itemgetter(*names) if len(names) > 1 else _one(names[0]) if names
            else _none)
        # Binds with a value of their own (the 1 of ``version + 1``), not given per call.
        self.static = {n: c.binds[n].value for n in names if not c.binds[n].required}
        self.procs = tuple((i, p) for i, n in enumerate(names)
                           if (p := _bind_processor(c.binds[n].type, dialect)) is not None)
        cols = list(stmt.selected_columns) if hasattr(stmt, "selected_columns") else []
        self.keys = tuple(col.key for col in cols)
        self.row_procs = tuple((i, p) for i, col in enumerate(cols)
                               if (p := _result_processor(col.type, dialect)) is not None)
        # What a call runs, chosen here once per statement rather than by tests on every
        # call (~47 calls per triage run): a statement without processors binds with its
        # itemgetter alone, no Python frame at all on SQLite.
        self.params: Callable[[dict[str, Any]], Any] = _binder(
            self.get, self.static, self.procs, self.names if not self.positional else None)
        self.row: Callable[[Sequence[Any]], dict[str, Any]] = _reader(self.keys, self.row_procs)


def _binder(get: Callable[[dict[str, Any]], Any], static: dict[str, Any],
            procs: tuple[tuple[int, Any], ...], names: tuple[str, ...] | None
            ) -> Callable[[dict[str, Any]], Any]:
    """A statement's parameters out of the values of one call: in the statement's order
    (a tuple) when ``names`` is None (positional), else by name; each processor applied."""
    if static:
        inner = _binder(get, {}, procs, names)
        return lambda values: inner({**static, **values})
    if names is not None:
        positional = _binder(get, {}, procs, None)
        return lambda values: dict(zip(names, positional(values)))
    if not procs:
        return get
    if len(procs) == 1:
        ((at, proc),) = procs

        def one(values: dict[str, Any]) -> tuple[Any, ...]:
            vals = list(get(values))
            vals[at] = proc(vals[at])
            return tuple(vals)
        return one

    def many(values: dict[str, Any]) -> tuple[Any, ...]:
        vals = list(get(values))
        for i, p in procs:
            vals[i] = p(vals[i])
        return tuple(vals)
    return many


def _reader(keys: tuple[str, ...], procs: tuple[tuple[int, Any], ...]
            ) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """A result row as a dict by column key, each processor applied."""
    if not procs:
        return lambda raw: dict(zip(keys, raw))
    if len(procs) == 1:
        ((at, proc),) = procs

        def one(raw: Sequence[Any]) -> dict[str, Any]:
            vals = list(raw)
            vals[at] = proc(vals[at])
            return dict(zip(keys, vals))
        return one

    def many(raw: Sequence[Any]) -> dict[str, Any]:
        vals = list(raw)
        for i, p in procs:
            vals[i] = p(vals[i])
        return dict(zip(keys, vals))
    return many


def _one(name: str) -> Callable[[dict[str, Any]], tuple[Any]]:
    return lambda values: (values[name],)


def _none(values: dict[str, Any]) -> tuple[()]:
    return ()


def _is_sqlite_json(type_: Any, dialect: Any) -> bool:
    """A JSON document column (:class:`baton.store.schema.JsonDocument`) on a SQLite
    connection whose JSON codec is the store's (every engine the store makes)."""
    return (dialect.name == "sqlite" and isinstance(type_, s.JsonDocument)
            and dialect._json_serializer is json_dumps and dialect._json_deserializer is json_loads)


def _bind_processor(type_: Any, dialect: Any) -> Any:
    if _is_sqlite_json(type_, dialect):
        return _sqlite_json_bind
    return type_._cached_bind_processor(dialect)


def _result_processor(type_: Any, dialect: Any) -> Any:
    if _is_sqlite_json(type_, dialect):
        return _sqlite_json_result
    return type_._cached_result_processor(dialect, None)


_PLAIN_JSON = frozenset({dict, list, str, int, float, bool, type(None)})


def _sqlite_json_bind(value: Any) -> Any:
    """What SQLAlchemy's JSON bind processor makes of a value on SQLite (its serializer is
    :func:`json_dumps`; None is stored as the JSON ``null``, as it does), in one call;
    anything else (its ``JSON.NULL``, ``null()``) goes through SQLAlchemy's own."""
    if value.__class__ in _PLAIN_JSON:
        try:  # json_dumps's first try, without its frame (one per JSON value written)
            return orjson.dumps(value).decode()
        except TypeError:
            return json_dumps(value)  # (tries orjson once more, then its fallbacks)
    return _SQLITE_JSON_BIND(value)


def _sqlite_json_result(value: Any) -> Any:
    """What SQLAlchemy's SQLite JSON result processor makes of a stored value: text is
    decoded with :func:`json_loads`; NULL is None; a number (a JSON path's result) is
    itself."""
    if value.__class__ is str or value.__class__ is bytes:
        try:  # json_loads without its frame (one per JSON value read)
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return json_loads(value)  # (NaN and what else json.dumps wrote)
    return value


def _sqlite_json_processors() -> Any:
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    d = SQLiteDialect_pysqlite(json_serializer=json_dumps, json_deserializer=json_loads)
    return s.JsonDocument()._cached_bind_processor(d)


_SQLITE_JSON_BIND = _sqlite_json_processors()
