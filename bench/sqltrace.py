"""Counts every SQL statement a process sends through SQLAlchemy, and flags table-level locks.

``install()`` wraps psycopg's ``Cursor.execute``/``executemany`` and ``Connection.commit``/
``rollback`` in this process: each statement is counted under its normalized text
(placeholders and repeated value lists collapsed), with the wall time it took from the
client's side (network, server work and any lock wait); each transaction is counted with its
BEGIN and its COMMIT (or ROLLBACK), which psycopg sends as round trips of their own.
``dump(path)`` writes the counts as JSON; ``table_locks(statements)`` lists the statements
that would take a table-level lock (``LOCK TABLE``, DDL, VACUUM ...).

Used by ``bench/pg_scale.py`` (its driver, and the workers of ``bench/triage.py`` when
``BATON_BENCH_SQL_TRACE`` names a folder) and by ``tests/integration/test_pg_table_locks.py``.
PostgreSQL only (SQLite's sqlite3 calls are not wrapped).
"""

from __future__ import annotations

import json
import re
import threading
import time
import weakref
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

# Statements that take a lock on a whole table (or the schema) in PostgreSQL.
TABLE_LOCK = re.compile(
    r"^\s*(LOCK\b|CREATE\b|ALTER\b|DROP\b|TRUNCATE\b|VACUUM\b|CLUSTER\b|REINDEX\b|ANALYZE\b"
    r"|REFRESH\s+MATERIALIZED\b|COMMENT\s+ON\b|GRANT\b|REVOKE\b|SECURITY\s+LABEL\b)",
    re.IGNORECASE)
_PLACEHOLDER = re.compile(r"%\([^)]*\)s|\$\d+|\?|%s")
_LIST = re.compile(r"\(\?(?:, \?)+\)")
_ROWS = re.compile(r"(\([^()]*\))(?:, \1)+")
_SPACE = re.compile(r"\s+")


def normalize(statement: str) -> str:
    """One text per statement shape: placeholders as ?, IN lists and VALUES rows collapsed."""
    s = _SPACE.sub(" ", statement).strip()
    s = _PLACEHOLDER.sub("?", s)
    s = _LIST.sub("(?...)", s)
    return _ROWS.sub(r"\1, ...", s)


def table_locks(statements: Any) -> list[str]:
    """The statements (texts) among ``statements`` that take a table-level lock."""
    return sorted({s for s in statements if TABLE_LOCK.match(s)})


class Trace:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.statements: Counter[str] = Counter()
            self.seconds: defaultdict[str, float] = defaultdict(float)
            self.rows: Counter[str] = Counter()  # executemany: parameter sets sent
            self.transactions = 0  # BEGINs psycopg sent (a transaction's first statement)
            self.commits = 0
            self.rollbacks = 0
            self.started = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            executes = sum(self.statements.values())
            return {
                "executes": executes,
                "transactions": self.transactions,  # BEGINs sent
                "commits": self.commits,
                "rollbacks": self.rollbacks,
                # executemany counts once (psycopg pipelines its parameter sets)
                "round_trips": executes + self.transactions + self.commits + self.rollbacks,
                "seconds_in_statements": round(sum(self.seconds.values()), 4),
                "statements": [
                    {"sql": sql, "count": n, "seconds": round(self.seconds[sql], 4),
                     "rows": self.rows[sql]}
                    for sql, n in self.statements.most_common()],
                "table_locks": table_locks(self.statements),
                "window_s": round(time.monotonic() - self.started, 3),
            }


TRACE = Trace()
_installed = False
_ignored: weakref.WeakSet[Any] = weakref.WeakSet()
_originals: dict[tuple[Any, str], Any] = {}


def ignore(conn: Any) -> None:
    """Leave this psycopg connection's statements out (a measuring tool's own)."""
    _ignored.add(conn)


def _text(query: Any) -> str:
    if isinstance(query, str):
        return query
    if isinstance(query, bytes):
        return query.decode(errors="replace")
    return str(query)


def install() -> Trace:
    """Count every statement every psycopg connection in this process sends (once).

    At the DB-API level, not SQLAlchemy's events: the store's hot statements run on the
    psycopg cursor directly (``baton.store.sql.statements.Hot``)."""
    global _installed
    if _installed:
        return TRACE
    import psycopg
    from psycopg.pq import TransactionStatus

    idle = TransactionStatus.IDLE
    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
    commit, rollback = psycopg.Connection.commit, psycopg.Connection.rollback

    def _begins(conn: Any) -> None:
        # psycopg sends BEGIN as a command of its own before a transaction's first statement.
        if not conn.autocommit and conn.info.transaction_status == idle:
            with TRACE.lock:
                TRACE.transactions += 1

    def _count(query: Any, took: float, rows: int | None) -> None:
        key = normalize(_text(query))
        with TRACE.lock:
            TRACE.statements[key] += 1
            TRACE.seconds[key] += took
            if rows is not None:
                TRACE.rows[key] += rows

    def traced_execute(self: Any, query: Any, params: Any = None, **kw: Any) -> Any:
        if self.connection in _ignored:
            return execute(self, query, params, **kw)
        _begins(self.connection)
        t0 = time.perf_counter()
        try:
            return execute(self, query, params, **kw)
        finally:
            _count(query, time.perf_counter() - t0, None)

    def traced_executemany(self: Any, query: Any, params_seq: Any, **kw: Any) -> Any:
        _begins(self.connection)
        params_seq = list(params_seq)
        t0 = time.perf_counter()
        try:
            return executemany(self, query, params_seq, **kw)
        finally:
            _count(query, time.perf_counter() - t0, len(params_seq))

    def traced_commit(self: Any) -> None:
        if self in _ignored:
            return commit(self)
        sent = self.info.transaction_status != idle
        commit(self)
        if sent:
            with TRACE.lock:
                TRACE.commits += 1

    def traced_rollback(self: Any) -> None:
        sent = self.info.transaction_status != idle
        rollback(self)
        if sent:
            with TRACE.lock:
                TRACE.rollbacks += 1

    _originals.update({(psycopg.Cursor, "execute"): execute,
                       (psycopg.Cursor, "executemany"): executemany,
                       (psycopg.Connection, "commit"): commit,
                       (psycopg.Connection, "rollback"): rollback})
    psycopg.Cursor.execute = traced_execute  # type: ignore[method-assign]
    psycopg.Cursor.executemany = traced_executemany  # type: ignore[method-assign]
    psycopg.Connection.commit = traced_commit  # type: ignore[method-assign]
    psycopg.Connection.rollback = traced_rollback  # type: ignore[method-assign]
    _installed = True
    return TRACE


def uninstall() -> None:
    """Put psycopg back as it was (a test process traces only while it needs to)."""
    global _installed
    for (klass, name), fn in _originals.items():
        setattr(klass, name, fn)
    _originals.clear()
    _installed = False


def dump(path: Path | str, **extra: Any) -> None:
    """Write this process's counts (and ``extra``) as JSON; atomically (rename)."""
    p = Path(path)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps({**TRACE.snapshot(), **extra}))
    tmp.replace(p)
