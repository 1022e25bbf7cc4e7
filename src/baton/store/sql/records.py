"""Reads of every record of a type, for a deploy that changes the type
(:mod:`baton.records.changes`): their pages on the DB-API cursor, and their versions alone
(what the check under the write lock reads to tell which records were written since a
survey judged them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from sqlalchemy import bindparam, select, tuple_

from baton.store import schema as s
from baton.store.sql.statements import Hot

KEYS_CHUNK = 10_000
"""Rows fetched at a time (two short columns each: ~1 MB)."""

_T = s.records
_SCAN = select(_T).where(_T.c.object_type == bindparam("_type"))
_SCAN_FIRST = _SCAN.order_by(_T.c.created_at, _T.c.id).limit(bindparam("_limit"))
_SCAN_AFTER = (_SCAN.where(tuple_(_T.c.created_at, _T.c.id)
                           > tuple_(bindparam("_at"), bindparam("_after")))
               .order_by(_T.c.created_at, _T.c.id).limit(bindparam("_limit")))
_VERSIONS = (select(_T.c.id, _T.c.version).where(_T.c.object_type == bindparam("_type"))
             .order_by(_T.c.created_at, _T.c.id))


def record_versions(tx: Any, object_type: str, chunk: int = KEYS_CHUNK
                    ) -> Iterator[list[tuple[str, int]]]:
    """``(id, version)`` of every record of ``object_type``, in the order
    ``scan_records_txn`` pages them (``created_at``, then ``id``), ``chunk`` at a time,
    in ``tx`` (a :class:`~baton.store.sql.tx.SqlTx`): one statement, its rows streamed (a
    server-side cursor on PostgreSQL), so it reads one snapshot of them however many
    there are. The data column is neither read nor decoded: a range of
    ``ix_records_object_type``, each row's version read beside it, on the DB-API cursor
    (SQLAlchemy's rows cost as much again)."""
    conn = tx.conn
    h = Hot(_VERSIONS, conn.dialect)
    params = h.params({"_type": object_type})
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql":  # (named: a server-side cursor, fetched by chunk)
        cur = raw.cursor(name="baton_record_versions")
    else:
        cur = raw.cursor()
    try:
        try:
            cur.execute(h.sql, params)
            while rows := cur.fetchmany(chunk):
                yield cast(list[tuple[str, int]], rows)
        except conn.dialect.loaded_dbapi.Error as exc:
            tx._raise(exc, h.sql, params, cur)  # (wrapped as SQLAlchemy wraps its own)
    finally:
        cur.close()


def scan_records(tx: Any, object_type: str, after: tuple[str, str] | None,
                 limit: int) -> list[dict[str, Any]]:
    """:meth:`~baton.store.sql.queries.ListingsSql.scan_records_txn` (the same rows, in
    the same order) as a statement compiled once and run on ``tx``'s DB-API cursor (a
    :class:`~baton.store.sql.tx.SqlTx`), each row's data decoded by the store's codec:
    a deploy reads every record of the type this way, twice when it gives them a
    default (SQLAlchemy's result rows cost ~1 s a 100,000)."""
    if after is None:
        return cast(list[dict[str, Any]], tx._fetch_all(
            "scan_records", _SCAN_FIRST, {"_type": object_type, "_limit": limit}))
    return cast(list[dict[str, Any]], tx._fetch_all(
        "scan_records_after", _SCAN_AFTER,
        {"_type": object_type, "_at": after[0], "_after": after[1], "_limit": limit}))
