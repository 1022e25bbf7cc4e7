"""What differs between SQLite and PostgreSQL: engines and pragmas, taking SQLite's write
lock, waking idle workers (NOTIFY, or SQLite's data_version poll), and which errors are
worth another try. :class:`~baton.store.sql.store.SqlStore` calls these hooks and is the
same for both otherwise.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from baton.store.sql.statements import NOTIFY_CHANNEL, json_dumps, json_loads

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
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


# ---- SQLite -------------------------------------------------------------------------------
def sqlite_engine(url: str, synchronous: str, *, immediate: bool, nullpool: bool) -> Engine:
    """An engine for the writer (``immediate``: every transaction takes the write lock at
    BEGIN) or the reader (deferred transactions on ``query_only`` connections)."""
    eng = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 60},
        json_serializer=json_dumps, json_deserializer=json_loads,
        poolclass=NullPool if nullpool else None,
    )

    @event.listens_for(eng, "connect")
    def _connect(dbapi_conn: Any, _rec: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={synchronous}")
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


def sqlite_durability(conn: Connection) -> dict[str, Any]:
    """The settings SQLite actually runs with (read back, not assumed)."""
    sync: Any = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return {
        "database": "sqlite",
        "sqlite_version": conn.exec_driver_sql("select sqlite_version()").scalar(),
        "synchronous": names.get(sync, str(sync)),
        "journal_mode": str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()).upper(),
        "durable": sync in (2, 3),
    }


class SqliteWatch:
    """A number that changes whenever any connection, in any process, commits
    (``PRAGMA data_version`` on a connection kept per thread: it is per connection)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def counter(self) -> int:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        for conn in self._conns:
            conn.close()


# ---- PostgreSQL ---------------------------------------------------------------------------
def postgres_engine(url: str, *, pool_size: int, max_overflow: int) -> Engine:
    # SQLAlchemy's QueuePool is the pool: every statement goes through SQLAlchemy Core,
    # so a second pool (psycopg-pool) underneath would only hold idle connections twice.
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=30,
        pool_pre_ping=True,  # a connection the server dropped is replaced, not used
        pool_recycle=1800,
        connect_args={"connect_timeout": 10, "application_name": "baton"},
        json_serializer=json_dumps, json_deserializer=json_loads,
    )


def postgres_durability(conn: Connection) -> dict[str, Any]:
    """The settings PostgreSQL actually runs with (read back, not assumed)."""
    show = {k: conn.exec_driver_sql(f"SHOW {k}").scalar()
            for k in ("server_version", "synchronous_commit", "fsync", "full_page_writes")}
    return {"database": "postgresql", **show,
            "durable": show["synchronous_commit"] != "off" and show["fsync"] == "on"}


def notify_workers(conn: Connection) -> None:
    """Delivered at commit, to every listening worker: no busy polling."""
    conn.exec_driver_sql(f"NOTIFY {NOTIFY_CHANNEL}")


class PgListener:
    """A connection LISTENing for enqueued jobs, opened on first use and reopened after an
    error."""

    def __init__(self, url: str) -> None:
        self.dsn = url.replace("postgresql+psycopg://", "postgresql://")
        self._conn: Any = None

    def wait(self, timeout: float) -> bool:
        import psycopg

        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
                self._conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            got = False
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                got = True
            return got
        except psycopg.Error:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None


# ---- both ---------------------------------------------------------------------------------
def is_transient(exc: BaseException, dialect: str) -> bool:
    """Errors worth one more try: a lost connection, a serialization failure, a deadlock,
    SQLite's lock timeout."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None)
    if code in ("40001", "40P01") or (code or "").startswith("08"):
        return True
    return isinstance(exc, OperationalError) and (dialect == "postgresql" or "locked" in str(exc))
