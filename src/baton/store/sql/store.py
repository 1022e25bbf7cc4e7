"""SqlStore: the store on SQLAlchemy Core, for SQLite (embedded) and PostgreSQL.

SQLite: WAL, ``synchronous=FULL`` by default (the honest durable setting), and
``BEGIN IMMEDIATE`` for every write transaction so writers queue on the lock
instead of failing half-way. Reads use a separate deferred-transaction engine.
The dialects' differences are hooks in :mod:`baton.store.sql.dialects`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from baton.clock import iso
from baton.errors import ConfigError
from baton.store import schema as s
from baton.store.migrations import build_indexes_concurrently, current_version, pending
from baton.store.sql import dialects
from baton.store.sql.jobs import JobQueue
from baton.store.sql.plan import PlanAborted, PlanTx
from baton.store.sql.runsteps import StepsSeen
from baton.store.sql.statements import MIGRATION_LOCK, Hot, normalize_url
from baton.store.sql.tx import SqlTx

log = logging.getLogger("baton.store")


class SqlStore(JobQueue):
    """The store for SQLite and PostgreSQL.

    Its options come from the entry point's settings (``Settings.store_options()``); the
    store reads no environment: ``synchronous`` is SQLite's ``PRAGMA synchronous`` (None:
    FULL), ``sqlite_nullpool`` opens a connection per transaction, ``worker_host`` is the
    host name its workers report (None: the machine's), ``pg_pool_size`` and
    ``pg_pool_overflow`` size PostgreSQL's connection pool.
    """

    def __init__(self, url: str, *, synchronous: str | None = None,
                 sqlite_nullpool: bool = False, worker_host: str | None = None,
                 pg_pool_size: int = 5, pg_pool_overflow: int = 5) -> None:
        self.url = normalize_url(url)
        self._hot: dict[Any, Hot] = {}  # hot statements compiled for this store's dialect
        self._seen = StepsSeen()  # split runs' step rows as last read (runsteps.py)
        self._worker_host = worker_host
        # Told, after each write transaction commits, the runs it started and ended
        # (SqlTx.runs_moved): the Engine counts them (baton.runtime.metrics.count_runs).
        self.runs_committed: Callable[[list[tuple[str, str]]], None] | None = None
        self._listener: dialects.PgListener | None = None
        self._watch: dialects.SqliteWatch | None = None
        u = make_url(self.url)
        self.dialect = u.get_backend_name()
        if self.dialect == "sqlite":
            self._init_sqlite(u.database or "", synchronous, sqlite_nullpool)
        elif self.dialect == "postgresql":
            s.use_postgresql()
            self._init_postgres(pg_pool_size, pg_pool_overflow)
        else:
            raise ConfigError(
                f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST/DB"
            )

    # ---- SQLite setup -------------------------------------------------------------------
    def _init_sqlite(self, path: str, synchronous: str | None, nullpool: bool) -> None:
        if not path or path == ":memory:":
            raise ConfigError("SQLite needs a file (sqlite:///baton.db); in-memory databases are not durable")
        sync = (synchronous or "FULL").upper()
        if sync not in dialects.SQLITE_SYNCHRONOUS:
            raise ConfigError(
                f"BATON_SQLITE_SYNCHRONOUS must be one of {', '.join(dialects.SQLITE_SYNCHRONOUS)}")
        self.synchronous = sync
        parent = Path(path).expanduser().resolve().parent
        if not parent.is_dir():
            raise ConfigError(f"database folder {parent} does not exist")
        self.path = str(Path(path).expanduser())
        self._writer = dialects.sqlite_engine(self.url, sync, immediate=True, nullpool=nullpool)
        self._reader = dialects.sqlite_engine(self.url, sync, immediate=False, nullpool=nullpool)
        self._watch = dialects.SqliteWatch(self.path)

    # ---- PostgreSQL setup ---------------------------------------------------------------
    def _init_postgres(self, pool_size: int, max_overflow: int) -> None:
        self.synchronous = "on (synchronous_commit)"
        self.path = ""
        self._writer = dialects.postgres_engine(self.url, pool_size=pool_size, max_overflow=max_overflow)
        self._reader = self._writer
        self._listener = dialects.PgListener(self.url)

    # ---- transactions -------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[SqlTx]:
        """A write transaction: committed when the block ends, rolled back on error."""
        with self._writer.begin() as conn:
            tx = SqlTx(conn, self._hot, self._seen)
            yield tx
            tx.flush_txn()
            if tx.enqueued and self.dialect == "postgresql":
                dialects.notify_workers(conn)
        # Committed: the step rows it wrote of split runs are the stored ones at their new
        # seq (a worker that keeps such a run writes it next from there: runsteps.py).
        for rid, (seq, texts) in tx.steps_written.items():
            self._seen.put(rid, seq, texts)
        if tx.runs_moved and self.runs_committed is not None:
            moved, tx.runs_moved = tx.runs_moved, []
            self.runs_committed(moved)

    @contextmanager
    def read(self) -> Iterator[SqlTx]:
        with self._reader.begin() as conn:
            yield SqlTx(conn, self._hot, self._seen)

    @contextmanager
    def plan(self) -> Iterator[PlanTx]:
        """A :class:`PlanTx` on a read snapshot: writes are planned, not made."""
        try:
            with self._reader.begin() as conn:
                yield PlanTx(conn, self._hot, self._seen)
        except OperationalError as exc:
            if "readonly" in str(exc):  # SQLite's reader is query_only: nothing was written
                raise PlanAborted(f"wrote through the read connection: {exc}") from exc
            raise

    def is_transient(self, exc: BaseException) -> bool:
        """Errors worth another try: a lost connection, a serialization failure, a deadlock,
        a lock wait that ran out, a server out of resources or shutting down."""
        return dialects.is_transient(exc, self.dialect)

    def refuses_data(self, exc: BaseException) -> bool:
        """The database refused a write for the values it holds (a constraint, a value out
        of range, a trigger's RAISE): refused the same every time, unlike other writes."""
        return dialects.refuses_data(exc)

    # ---- waking idle workers ------------------------------------------------------------
    def arm_wakeup(self) -> int | None:
        """Called before looking for work: whatever is committed after this wakes the next
        wait. SQLite: the change counter, with this thread's WAL watch emptied; PostgreSQL:
        the LISTEN connection open (None)."""
        if self._watch is not None:
            return self._watch.arm()
        if self._listener is not None:
            try:
                self._listener.arm()
            except Exception as exc:  # noqa: BLE001 - psycopg's errors: the server is away
                log.warning("cannot LISTEN for new jobs (%s); trying again at the next wait",
                            str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
        return None

    def wait_for_jobs(self, timeout: float) -> bool:
        """Block until a job may be ready (PostgreSQL NOTIFY), :meth:`interrupt_waits` is
        called, or ``timeout`` passes.

        SQLite has no notifications: see :meth:`wait_for_change`.
        """
        if self._listener is None or timeout <= 0:
            return False
        try:
            return self._listener.wait(timeout)
        except Exception as exc:  # noqa: BLE001 - psycopg's errors: the server is away
            log.warning("waiting for new jobs failed (%s); looking again shortly",
                        str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
            time.sleep(min(timeout, 1.0))  # the listener reconnects at the next wait
            return False

    def change_counter(self) -> int | None:
        """SQLite: a number that changes whenever any connection, in any process, commits
        (``PRAGMA data_version`` on a connection kept for this thread; ~5 µs, no disk read).
        None on PostgreSQL, whose workers are woken by NOTIFY instead."""
        return self._watch.counter() if self._watch is not None else None

    def wait_for_change(self, seen: int | None, timeout: float, wake: threading.Event,
                        *, idle_for: float = 0.0) -> bool:
        """SQLite: block until a commit (by any process) moves :meth:`change_counter` past
        ``seen``, ``wake`` is set (looked at every second at least), :meth:`interrupt_waits`
        is called, or ``timeout`` passes.

        On Linux the wait sleeps in ``select`` on an inotify watch of the WAL file: no
        wake-up at all while nothing is written. Elsewhere it polls the counter, backing off
        from 1 ms to 20 ms. ``idle_for`` is accepted for callers of the old poll."""
        if self._watch is None:
            return wake.wait(timeout)
        return self._watch.wait(seen, timeout, wake)

    def interrupt_waits(self) -> None:
        """End every :meth:`wait_for_change` / :meth:`wait_for_jobs` blocked now (a worker is
        stopping)."""
        if self._watch is not None:
            self._watch.interrupts.interrupt()
        if self._listener is not None:
            self._listener.interrupts.interrupt()

    def migrate(self) -> list[str]:
        """Apply pending migrations, in one transaction (all or nothing); returns the names
        applied.

        PostgreSQL: under the migration lock (held by the session: many workers may start
        at once; one migrates, the others wait and see it done), the indexes the pending
        migrations declare are first built CONCURRENTLY, outside the transaction
        (:func:`~baton.store.migrations.build_indexes_concurrently`: writers to their
        tables go on meanwhile); then the transaction, which finds them made."""
        if self.dialect != "postgresql":
            with self.write() as tx:
                return _apply_pending(tx.conn)
        with self._writer.connect() as conn, dialects.migration_lock(conn, MIGRATION_LOCK):
            built = build_indexes_concurrently(conn)  # (in autocommit)
            if built:
                log.info("built concurrently ahead of the migrations: %s", ", ".join(built))
            conn.commit()
            conn.execution_options(isolation_level=conn.default_isolation_level)
            with conn.begin():
                return _apply_pending(conn)

    def pending_migrations(self) -> list[str]:
        """The names of the migrations the database lacks, in order (none: its schema is
        this code's). A database a newer Baton upgraded is refused (:class:`ConfigError`)."""
        with self.read() as tx:
            return [m.name for m in pending(tx.conn)]

    def schema_version(self) -> int:
        with self.read() as tx:
            return current_version(tx.conn)

    def durability(self) -> dict[str, Any]:
        """The durability settings the database runs with, read back from it."""
        with self.read() as tx:
            if self.dialect == "sqlite":
                return dialects.sqlite_durability(tx.conn)
            return dialects.postgres_durability(tx.conn)

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
        if self._listener is not None:
            self._listener.close()
            self._listener.interrupts.close()  # (its waiting threads' pipes)
        if self._watch is not None:
            self._watch.close()


def _apply_pending(conn: Connection) -> list[str]:
    """Apply and record every pending migration in ``conn``'s transaction."""
    applied = []
    if current_version(conn) == 0:
        s.schema_migrations.create(conn, checkfirst=True)
    for m in pending(conn):
        m.apply(conn)
        conn.execute(insert(s.schema_migrations).values(
            version=m.version, name=m.name, applied_at=iso(_utcnow())))
        applied.append(f"{m.version:03d} {m.name}")
    return applied


def _utcnow() -> Any:
    from baton.clock import SystemClock

    return SystemClock().now()
