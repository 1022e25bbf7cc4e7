"""What differs between SQLite and PostgreSQL: engines and pragmas, taking SQLite's write
lock, waking idle workers (NOTIFY, or a commit seen in SQLite's WAL file), and which errors
are worth another try. :class:`~baton.store.sql.store.SqlStore` calls these hooks and is the
same for both otherwise.

Nothing here spins: a writer waiting for SQLite's lock backs off (0.5 ms doubling to 2 ms),
and an idle worker blocks in ``select`` until something is written (Linux inotify on the
WAL file; elsewhere a data_version poll backing off to 20 ms), a NOTIFY arrives
(PostgreSQL), :meth:`Interrupts.interrupt` is called (a worker stopping), or its timeout
(the next job's due time, at the latest a slow safety-net heartbeat) passes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import re
import select
import sqlite3
import struct
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.pool import NullPool

from baton.errors import ConfigError
from baton.store.codec import json_dumps, json_loads
from baton.store.sql.statements import NOTIFY_CHANNEL

_log = logging.getLogger("baton.store")

SQLITE_SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")
BUSY_TIMEOUT_MS = 60_000
_FAST_WAIT_S = 1.0  # how long a writer backs off on its own before SQLite's handler waits
LOCK_BACKOFF_FIRST_S = 0.0005  # a writer's first sleep when the lock is held ...
LOCK_BACKOFF_MAX_S = 0.002  # ... doubling up to this: never a sub-ms poll for long


def lock_backoff() -> Any:
    """The sleeps between tries for SQLite's write lock: 0.5, 1, 2, 2, … ms."""
    delay = LOCK_BACKOFF_FIRST_S
    while True:
        yield delay
        delay = min(delay * 2, LOCK_BACKOFF_MAX_S)


def _begin_immediate(raw: Any) -> None:
    """``BEGIN IMMEDIATE``: take SQLite's write lock, waiting for another process's.

    SQLite's own busy handler sleeps 1, 2, 5, 10, … 100 ms between tries, so a writer
    waiting for another process's transaction oversleeps it by up to that much, every
    time; the benchmark's driver and worker hand the lock to each other hundreds of times
    a second. So for its first second a waiting writer backs off on its own, 0.5 ms
    doubling to 2 ms (a failed try costs a few µs; most holders commit within a few ms),
    and only then leaves it to the busy timeout. It used to try every 0.2 ms, which burned
    the CPU the lock holder needed when both shared a core.
    """
    raw.execute("PRAGMA busy_timeout=0")
    try:
        deadline = time.monotonic() + _FAST_WAIT_S
        for delay in lock_backoff():
            try:
                raw.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    break
            time.sleep(delay)
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    raw.execute("BEGIN IMMEDIATE")


# ---- SQLite -------------------------------------------------------------------------------
# sqlite3 binds int, float, str and bytearray as they are; any other value, None included,
# goes through its adapter protocol: no adapter registered for NoneType, then a failed
# ``PrepareProtocol.__adapt__`` lookup (an AttributeError made and cleared), then
# ``None.__conform__``, and only then NULL. An adapter for NoneType that returns its
# argument in one C call (``{}.get(None)`` is None) ends the search at the registry:
# ~2,100 instructions less per None parameter (callgrind), ~20 per triage run. The value
# bound is the same None (NULL); the registry is process-wide, as is its effect.
_NOTHING: dict[None, None] = {}
sqlite3.register_adapter(type(None), _NOTHING.get)


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
        # lower() of any letter, not only ASCII (a search box's text_lower, keyset.py)
        dbapi_conn.create_function("baton_lower", 1, _lower, deterministic=True)
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
            try:
                _begin_immediate(raw)
            except sqlite3.Error as exc:
                # A "begin" listener's error reaches the caller as it is (SQLAlchemy wraps
                # its statements' only): a lock wait that ran out is a DBAPIError like the
                # others, so the worker backs off and is_transient sorts it.
                raise DBAPIError.instance("BEGIN IMMEDIATE", None, exc, sqlite3.Error) from exc
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


SAFETY_WAKE_S = 1.0  # an idle waiter looks at its in-process Event this often at least
SETTLE_S = 0.5  # after a WAL write, how long data_version is watched for its commit
POLL_FIRST_S = 0.001  # without inotify: data_version polled every 1 ms, doubling ...
POLL_MAX_S = 0.02  # ... to 20 ms


class Interrupts:
    """Ends :meth:`SqliteWatch.wait` / :meth:`PgListener.wait` from another thread (a worker
    being stopped): one pipe per waiting thread, since a ``threading.Event`` cannot be
    waited for in ``select`` beside a file descriptor."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._pipes: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def fd(self) -> int:
        """This thread's read end (made on first use, non-blocking)."""
        r: int | None = getattr(self._local, "r", None)
        if r is None:
            r, w = os.pipe()
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            self._local.r = r
            with self._lock:
                self._pipes.append((r, w))
        return r

    def drain(self) -> None:
        _drain(self.fd())

    def interrupt(self) -> None:
        """Wake every thread waiting now (and the next wait of those that are not)."""
        with self._lock:
            for _r, w in self._pipes:
                try:
                    os.write(w, b"x")
                except BlockingIOError:  # full: it will wake anyway
                    pass

    def close(self) -> None:
        with self._lock:
            for r, w in self._pipes:
                os.close(r)
                os.close(w)
            self._pipes.clear()
        self._local = threading.local()


def _drain(fd: int) -> int:
    """Read everything there is on a non-blocking descriptor; returns the bytes read."""
    n = 0
    while True:
        try:
            chunk = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            return n
        if not chunk:
            return n
        n += len(chunk)


_IN_MODIFY, _IN_ATTRIB, _IN_DELETE_SELF, _IN_MOVE_SELF = 0x2, 0x4, 0x400, 0x800
_IN_NONBLOCK, _IN_CLOEXEC = os.O_NONBLOCK, 0o2000000
_libc: Any = None


class WalWatch:
    """Linux inotify on SQLite's WAL file: readable as soon as any process writes to it (a
    commit appends its frames there). ``None`` from :meth:`open` where that is not
    available (another OS, no WAL file, the user's inotify limits reached): callers poll."""

    def __init__(self, fd: int, wal: str) -> None:
        self.fd = fd
        self.wal = wal
        self.inode = os.stat(wal).st_ino

    @classmethod
    def open(cls, wal: str) -> WalWatch | None:
        global _libc
        if not sys.platform.startswith("linux") or not os.path.exists(wal):
            return None
        try:
            if _libc is None:
                _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            fd = int(_libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC))
            if fd < 0:
                return None
            mask = _IN_MODIFY | _IN_ATTRIB | _IN_DELETE_SELF | _IN_MOVE_SELF
            if int(_libc.inotify_add_watch(fd, os.fsencode(wal), mask)) < 0:
                os.close(fd)
                return None
            return cls(fd, wal)
        except (OSError, AttributeError):
            return None

    def drain(self) -> bool:
        """Read the pending events; False when the watch is gone (file deleted or moved:
        make a new one)."""
        gone = False
        while True:
            try:
                data = os.read(self.fd, 4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    break
                raise
            if not data:
                break
            for off in range(0, len(data) - 15, 16):
                mask = struct.unpack_from("iIII", data, off)[1]
                if mask & (_IN_DELETE_SELF | _IN_MOVE_SELF | 0x8000):  # 0x8000: IN_IGNORED
                    gone = True
        return not gone and self._same_file()

    def _same_file(self) -> bool:
        try:
            return os.stat(self.wal).st_ino == self.inode
        except OSError:
            return False

    def close(self) -> None:
        os.close(self.fd)


class SqliteWatch:
    """A number that changes whenever any connection, in any process, commits
    (``PRAGMA data_version`` on a connection kept per thread: it is per connection), and a
    wait for that number to move that blocks instead of polling (:meth:`wait`)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.wal = path + "-wal"
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._watches: list[WalWatch] = []
        self._lock = threading.Lock()
        self.interrupts = Interrupts()

    def counter(self) -> int:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def arm(self) -> int:
        """The counter now, with this thread's WAL watch emptied: every write after this
        call wakes the next :meth:`wait`. Called before looking for work."""
        seen = self.counter()  # opens the connection first: that makes the WAL file exist
        self.interrupts.fd()  # from now on an interrupt is not missed
        watch = self._watch()
        if watch is not None and not watch.drain():
            self._unwatch()
        return seen

    def _watch(self) -> WalWatch | None:
        watch: WalWatch | None = getattr(self._local, "watch", None)
        if watch is None and not getattr(self._local, "no_watch", False):
            watch = WalWatch.open(self.wal)
            if watch is None:
                self._local.no_watch = True  # poll from now on (this thread)
                return None
            self._local.watch = watch
            with self._lock:
                self._watches.append(watch)
        return watch

    def _unwatch(self) -> None:
        watch = getattr(self._local, "watch", None)
        self._local.watch = None
        if watch is not None:
            with self._lock:
                self._watches.remove(watch)
            watch.close()

    def wait(self, seen: int | None, timeout: float, wake: threading.Event) -> bool:
        """Until a commit (by any process) moves the counter past ``seen``, ``wake`` is set,
        :attr:`interrupts` fires, or ``timeout`` passes (False). Blocks: no wake-up while
        nothing is written but a look at ``wake`` every :data:`SAFETY_WAKE_S`."""
        deadline = time.monotonic() + timeout
        if wake.is_set() or seen is None or self.counter() != seen:
            return True
        watch = self._watch()
        stop = self.interrupts.fd()
        poll = POLL_FIRST_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if watch is None:  # no inotify here: a poll that backs off to 20 ms
                step, poll = min(poll, remaining), min(poll * 2, POLL_MAX_S)
                ready, _, _ = select.select([stop], [], [], step)
            else:
                ready, _, _ = select.select([watch.fd, stop], [], [],
                                            min(remaining, SAFETY_WAKE_S))
            if stop in ready:
                self.interrupts.drain()
                return True
            if wake.is_set() or self.counter() != seen:
                return True
            if watch is not None and watch.fd in ready:
                if not watch.drain():  # the WAL file was replaced: watch the new one
                    self._unwatch()
                    watch = self._watch()
                if self._settle(seen, deadline, wake):
                    return True

    def _settle(self, seen: int, deadline: float, wake: threading.Event) -> bool:
        """The WAL was written: a commit is under way, but the counter moves only once it is
        complete (after its fsync). Look with a back-off (0.5 ms doubling to 2 ms) for up to
        :data:`SETTLE_S`; a transaction that wrote and rolled back ends this."""
        end = min(deadline, time.monotonic() + SETTLE_S)
        for delay in lock_backoff():
            if self.counter() != seen or wake.is_set():
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(delay, left))
        return False  # pragma: no cover - lock_backoff never ends

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        with self._lock:
            for watch in self._watches:
                watch.close()
            self._watches.clear()
        self.interrupts.close()


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


MIGRATION_WAIT_FIRST_S = 0.05  # a process waiting for another's migration looks again ...
MIGRATION_WAIT_MAX_S = 0.5  # ... backing off to this


@contextmanager
def migration_lock(conn: Connection, key: int) -> Iterator[None]:
    """PostgreSQL: hold the advisory lock ``key`` for ``conn``'s session (not a transaction:
    the concurrent index builds run outside one) while the block runs; ``conn`` is left in
    autocommit. Many processes starting at once: one migrates, the others wait and then
    find nothing pending. (``pg_advisory_xact_lock`` on the same key, an older Baton's,
    waits for it as well.)

    Waited for with ``pg_try_advisory_lock`` and sleeps, not ``pg_advisory_lock``: a
    statement blocked in the server keeps a snapshot, and ``CREATE INDEX CONCURRENTLY``
    waits for every older snapshot: the holder would wait for its waiters (a deadlock)."""
    conn.execution_options(isolation_level="AUTOCOMMIT")
    delay, said = MIGRATION_WAIT_FIRST_S, False
    while not conn.exec_driver_sql(f"SELECT pg_try_advisory_lock({key})").scalar():
        if not said:
            _log.info("another process is migrating the database: waiting for it")
            said = True
        time.sleep(delay)
        delay = min(delay * 2, MIGRATION_WAIT_MAX_S)
    conn.commit()
    try:
        yield
    finally:
        try:
            conn.rollback()
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({key})")
            conn.commit()
        except Exception:  # noqa: BLE001 - the connection is gone, and its session's lock
            conn.invalidate()  # with it; never pooled again while it may hold the lock


class PgListener:
    """A connection LISTENing for enqueued jobs, opened on first use (:meth:`arm`, before a
    worker looks for work, so a NOTIFY sent after that look is not missed) and reopened
    after an error. :meth:`wait` blocks in ``select`` on its socket and on
    :attr:`interrupts`."""

    def __init__(self, url: str) -> None:
        self.dsn = url.replace("postgresql+psycopg://", "postgresql://")
        self._conn: Any = None
        self._lock = threading.Lock()
        self.interrupts = Interrupts()

    def arm(self) -> None:
        import psycopg

        self.interrupts.fd()  # from now on an interrupt is not missed
        with self._lock:
            if self._conn is not None and not self._conn.closed:
                return
            try:
                self._conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
                self._conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            except psycopg.Error:
                self.close()
                raise

    def _received(self) -> bool:
        """Notifications already read from the socket, or readable now (no waiting)."""
        got = False
        for _ in self._conn.notifies(timeout=0):
            got = True
        return got

    def wait(self, timeout: float) -> bool:
        import psycopg

        deadline = time.monotonic() + timeout
        stop = self.interrupts.fd()
        try:
            self.arm()
            while True:
                if self._received():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                ready, _, _ = select.select([self._conn.fileno(), stop], [], [], remaining)
                if stop in ready:
                    self.interrupts.drain()
                    return True
        except psycopg.Error:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None


# ---- both ---------------------------------------------------------------------------------
# PostgreSQL's SQLSTATE classes of errors that are not about what was written: connection
# exception, transaction rollback (serialization failure, deadlock), insufficient resources,
# operator intervention (a shutdown, a statement timeout), system error (I/O); and a lock
# wait that timed out. Any other class (22 data, 23 integrity, 54 a row too big, a trigger's
# own error...) refuses the same write every time.
_PG_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
_PG_TRANSIENT_CODES = frozenset({"55P03"})
# SQLite's primary result codes of the same kind: busy and locked (the lock wait ran out), out
# of memory, interrupted, I/O error, disk full, cannot open, WAL lock protocol.
_SQLITE_TRANSIENT = frozenset({5, 6, 7, 9, 10, 13, 14, 15})


def is_transient(exc: BaseException, dialect: str) -> bool:
    """Errors worth another try, the same write possibly going through then: a lost
    connection, a serialization failure, a deadlock, a lock wait that ran out, a server out
    of resources or shutting down. Not: a constraint, a value out of range, a row too big, a
    trigger that refused the row (what was written is refused again, every time). The one
    place both databases' errors are sorted (by PostgreSQL's SQLSTATE, SQLite's result code;
    an error with neither, raised by the driver itself, by its class)."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None)
    if code:
        return code[:2] in _PG_TRANSIENT_CLASSES or code in _PG_TRANSIENT_CODES
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if sqlite_code is not None:
        return sqlite_code & 0xFF in _SQLITE_TRANSIENT
    return isinstance(exc, OperationalError) and (dialect == "postgresql" or "locked" in str(exc))


# What refuses a write for the values it holds, the same write every time, whatever else
# happens: PostgreSQL's data exception, integrity constraint, triggered data change, check
# option, program limit (a row or index entry too big) and PL/pgSQL's RAISE (a trigger's own
# refusal); SQLite's constraint (a trigger's RAISE too), too big and datatype mismatch.
# Not a schema or privilege error (42): those refuse every write alike, an operator mends
# them, and the work waits for that rather than failing.
_PG_DATA_CLASSES = frozenset({"22", "23", "27", "44", "54", "P0"})
_SQLITE_DATA = frozenset({18, 19, 20})


def refuses_data(exc: BaseException) -> bool:
    """The database refused a write for the values it holds (a constraint, a value out of
    range, a row too big, a trigger's RAISE): the same write is refused every time, so
    retrying it as it is cannot help; other writes go through."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None)
    if code:
        return code[:2] in _PG_DATA_CLASSES
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    return sqlite_code is not None and sqlite_code & 0xFF in _SQLITE_DATA


SQLITE_CANTOPEN, SQLITE_NOTADB = 14, 26  # primary result codes (the low byte)


def open_failure(exc: BaseException, url: str) -> ConfigError | None:
    """What to tell the user when opening a connection to ``url`` raised ``exc`` (SQLAlchemy's
    error or the driver's): a file that is not a SQLite database, one SQLite cannot open, a
    PostgreSQL server that cannot be reached or refuses the login. None for anything else,
    and for any error raised by a statement: a database that is locked or a connection lost
    in the middle of a command is not a database that cannot be opened. The message never
    shows a password."""
    if getattr(exc, "statement", None) is not None:
        return None
    orig = getattr(exc, "orig", None) or exc
    if isinstance(orig, sqlite3.Error):
        code = (getattr(orig, "sqlite_errorcode", None) or 0) & 0xFF
        if code == SQLITE_NOTADB:
            return ConfigError(f"{url}: not a SQLite database")
        if code == SQLITE_CANTOPEN:
            path = url.split("///", 1)[-1].split("?", 1)[0]
            why = ("it is a folder" if os.path.isdir(path)
                   else "permission denied" if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK)
                   else str(orig))
            return ConfigError(f"cannot open {url}: {why}")
        return None
    if type(orig).__module__.split(".")[0] == "psycopg" and type(orig).__name__ == "OperationalError":
        return ConfigError(f"cannot connect to PostgreSQL at {_pg_where(url)}: "
                           f"{_pg_reason(str(orig), url)}")
    return None


def _pg_where(url: str) -> str:
    """``host:port`` of a PostgreSQL URL (never its user or password)."""
    u = make_url(url)
    if u.host:
        return f"{u.host}:{u.port or 5432}"
    socket = u.query.get("host")
    socket = socket[0] if isinstance(socket, tuple) else socket
    return f"socket {socket}" if socket else "the local socket"


def _pg_reason(message: str, url: str) -> str:
    """libpq's message without its prefixes and hints: ``connection refused``,
    ``password authentication failed for user "u"``."""
    line = message.strip().splitlines()[0] if message.strip() else "connection failed"
    for prefix in ("connection failed: ", "connection is bad: "):
        line = line.removeprefix(prefix)
    line = line.rsplit(" failed: ", 1)[-1]  # 'connection to server at "h", port 1 failed: '
    line = re.sub(r"\[Errno -?\d+\] ", "", line.removeprefix("FATAL:")).strip()
    password = make_url(url).password
    if password:
        line = line.replace(str(password), "***")
    return line[:1].lower() + line[1:] if line[1:2].islower() else line


def _lower(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value
