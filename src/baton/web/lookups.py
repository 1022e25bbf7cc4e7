"""Who an API token or a session cookie is: read per request, never holding the event loop,
and without a request thread's hop in the common case.

The rules (lockouts first, revoked tokens and inactive users refused, sessions expiring, the
``last_used_at`` touch) are :class:`~baton.auth.directory.Directory`'s
(:meth:`~baton.auth.directory.Directory.token_login_txn`,
:meth:`~baton.auth.directory.Directory.session_txn`); this module only decides where their
rows are read:

* **PostgreSQL**, on an event loop the app's lifespan runs on (``baton serve``, a test
  client entered with ``with``): on that loop, as async I/O, through a small pool of
  :class:`psycopg.AsyncConnection` of the loop's own (:class:`PgLookups`). The rows the
  directory asks for are read ahead in ONE round trip (a pipeline of the store's Core
  statements, compiled for psycopg), then handed to it (:class:`ReadAhead`). A server that
  hangs holds the lookups that wait for it (each holds a pooled connection, not a thread),
  never the loop; each lookup gives up after :data:`LOOKUP_DEADLINE_S` (the server's
  ``statement_timeout`` too), a 503. A connection the server dropped is replaced (a lookup
  that met one tries once more on a new connection). The pool is closed when the lifespan
  ends (``create_app``'s lifespan: :func:`open_loop`, :func:`close_loop`). On a loop without a lifespan (a test client used without ``with`` runs each request
  on a loop of its own), the lookup runs in a request thread, as it did before.
* **SQLite**: on the loop, through a read connection of its own that never waits for a lock
  (``busy_timeout=0``; :class:`SqliteLookups`): a WAL reader of a local file waits for no
  writer, so this is the common case, and costs no thread's hop. A file another process
  holds (``locking_mode=EXCLUSIVE``, a recovery) answers SQLITE_BUSY at once, and the lookup
  is made again in a request thread, which waits for the lock as every other read does.
  A disk that stalls still stalls the loop for as long as the read waits on it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import event
from sqlalchemy.engine import Engine as SaEngine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.concurrency import run_in_threadpool

from baton.auth.directory import Directory, User, secret_digest
from baton.auth.throttle import MAX_NAME, Locked
from baton.store.codec import json_dumps, json_loads
from baton.store.ports import People
from baton.store.sql import dialects
from baton.store.sql.people import (
    SESSION_DELEGATORS,
    SESSION_MEMBERSHIPS,
    SESSION_ROW,
    SESSION_USER,
    THROTTLE_ROW,
    TOKEN_DELEGATORS,
    TOKEN_MEMBERSHIPS,
    TOKEN_USER,
)
from baton.store.sql.statements import Hot
from baton.store.sql.tx import SqlTx
from baton.web.committer import CommitterClosed

if TYPE_CHECKING:
    import psycopg

    from baton.store.sql import SqlStore

LOOKUP_DEADLINE_S = 30.0
"""How long a PostgreSQL lookup waits (for a pooled connection, a new one, the answer)
before the request is answered 503; the server's ``statement_timeout`` on its connections
too, so a lookup that waits for a lock ends in the server as well."""
POOL_SIZE = 4
"""PostgreSQL connections per event loop at most: lookups take a few hundred µs each and
never wait on one another, so a few keep up with any request rate; when the server hangs,
the lookups beyond these wait for a connection (on the loop, holding nothing)."""
CLIENT_MARGIN_S = 1.0  # the client's deadline is the server's statement_timeout plus this
APPLICATION_NAME = "baton-lookups"  # (pg_stat_activity: these connections, by name)

Later = Callable[[Callable[[Any], None]], None]
T = TypeVar("T")


class ReadAhead:
    """The :class:`~baton.store.ports.People` reads a token's or a session's lookup makes,
    answered from rows read ahead (:meth:`PgLookups.token`, :meth:`PgLookups.session`). A
    read of anything else than what was read ahead is a bug here, and raises: the lookup
    would otherwise answer from rows of another user."""

    def __init__(self, *, secret_hash: str, throttle: tuple[tuple[str, str], list[Any]] | None,
                 row: dict[str, Any] | None, user_row: dict[str, Any] | None,
                 memberships: list[dict[str, Any]], delegators: list[dict[str, Any]]) -> None:
        self.secret_hash = secret_hash
        self.throttle = throttle
        self.row = row  # the token's (with its user's columns) or the session's
        self.user_row = user_row
        self.memberships = memberships
        self.delegators = delegators

    def _user(self) -> str | None:
        row = self.user_row if self.user_row is not None else self.row
        return None if row is None else row["name"]

    def _check(self, what: str, asked: Any, read: Any) -> None:
        if asked != read:
            raise RuntimeError(f"a lookup asked for {what} {asked!r}, but read {read!r} ahead")

    def throttle_rows_txn(self, keys: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        self._check("the throttle rows of", list(keys),
                    [self.throttle[0]] if self.throttle is not None else None)
        assert self.throttle is not None
        return self.throttle[1]

    def token_user_row_txn(self, secret_hash: str) -> dict[str, Any] | None:
        self._check("the token", secret_hash, self.secret_hash)
        return self.row

    def session_row_txn(self, secret_hash: str) -> dict[str, Any] | None:
        self._check("the session", secret_hash, self.secret_hash)
        return self.row

    def user_row_txn(self, name: str) -> dict[str, Any] | None:
        if self.user_row is not None:
            self._check("the user", name, self.user_row["name"])
        return self.user_row

    def memberships_txn(self, user_name: str) -> list[tuple[str, str]]:
        self._check("the memberships of", user_name, self._user())
        return [(r["kind"], r["name"]) for r in self.memberships]

    def delegator_rows_txn(self, delegate: str) -> list[dict[str, Any]]:
        self._check("the delegators of", delegate, self._user())
        return self.delegators


def _throttle_key(address: str) -> tuple[str, str]:
    """The throttle's key of a client address (as :class:`~baton.auth.throttle.LoginThrottle`
    reads it: checked again by :meth:`ReadAhead.throttle_rows_txn`)."""
    return ("address", address[:MAX_NAME])


# ---- PostgreSQL: async reads on the loop --------------------------------------------------
def _pg_dialect() -> Any:
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    return PGDialect_psycopg(  # type: ignore[no-untyped-call]
        json_serializer=json_dumps, json_deserializer=json_loads)


class _PgStatements:
    """The lookups' statements compiled once for psycopg (made on first use)."""

    _made: _PgStatements | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        d = _pg_dialect()
        self.throttle = Hot(THROTTLE_ROW, d)
        self.token = Hot(TOKEN_USER, d)
        self.token_memberships = Hot(TOKEN_MEMBERSHIPS, d)
        self.token_delegators = Hot(TOKEN_DELEGATORS, d)
        self.session = Hot(SESSION_ROW, d)
        self.session_user = Hot(SESSION_USER, d)
        self.session_memberships = Hot(SESSION_MEMBERSHIPS, d)
        self.session_delegators = Hot(SESSION_DELEGATORS, d)

    @classmethod
    def get(cls) -> _PgStatements:
        made = cls._made
        if made is None:
            with cls._lock:
                made = cls._made = cls._made or cls()
        return made


def _pg_error(exc: BaseException, sql: str, *, broken: bool) -> DBAPIError:
    """psycopg's error as SQLAlchemy wraps the store's (so the app sorts it the same way: a
    lost connection or a statement timeout is a 503, see ``SqlStore.is_transient``)."""
    import psycopg

    return cast(DBAPIError, DBAPIError.instance(sql, None, cast(Exception, exc), psycopg.Error,
                                                connection_invalidated=broken))


class PgLookups:
    """A small pool of async connections for one event loop, and the lookups made on it.

    Connections are opened on demand (at most ``size``), in autocommit (each lookup is one
    pipeline of reads), with ``statement_timeout`` set to the deadline."""

    def __init__(self, dsn: str, *, size: int = POOL_SIZE,
                 deadline_s: float = LOOKUP_DEADLINE_S) -> None:
        self.dsn = dsn
        self.size = size
        self.deadline_s = deadline_s
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._open = 0
        self._freed = asyncio.Condition()
        self._closed = False
        self.connects = 0  # connections opened (for tests and figures)

    @classmethod
    def for_store(cls, store: SqlStore) -> PgLookups:
        url = make_url(store.url).set(drivername="postgresql")
        return cls(url.render_as_string(hide_password=False), size=POOL_SIZE,
                   deadline_s=LOOKUP_DEADLINE_S)

    async def token(self, secret_hash: str, address: str | None) -> ReadAhead:
        """The rows :meth:`Directory.token_login_txn` reads, in one round trip."""
        st = _PgStatements.get()
        key = {"_hash": secret_hash}
        reads = [(st.token, key), (st.token_memberships, key), (st.token_delegators, key)]
        throttle = _throttle_key(address) if address is not None else None
        if throttle is not None:
            reads.append((st.throttle, {"_kind": throttle[0], "_name": throttle[1]}))
        rows = await self.read(reads)
        return ReadAhead(secret_hash=secret_hash, row=rows[0][0] if rows[0] else None,
                         user_row=None, memberships=rows[1], delegators=rows[2],
                         throttle=(throttle, rows[3]) if throttle is not None else None)

    async def session(self, secret_hash: str) -> ReadAhead:
        """The rows :meth:`Directory.session_txn` reads, in one round trip."""
        st = _PgStatements.get()
        key = {"_hash": secret_hash}
        rows = await self.read([(st.session, key), (st.session_user, key),
                                (st.session_memberships, key), (st.session_delegators, key)])
        return ReadAhead(secret_hash=secret_hash, row=rows[0][0] if rows[0] else None,
                         user_row=rows[1][0] if rows[1] else None, memberships=rows[2],
                         delegators=rows[3], throttle=None)

    async def read(self, reads: Sequence[tuple[Hot, dict[str, Any]]]
                   ) -> list[list[dict[str, Any]]]:
        """Each statement's rows, all sent at once (a pipeline: one round trip), within
        :attr:`deadline_s`. A connection found dropped (the server restarted, or ended it)
        is replaced and the reads sent once more."""
        import psycopg

        sql = reads[0][0].sql
        try:  # (the server's statement_timeout ends a query first; this, one it never answers)
            async with asyncio.timeout(self.deadline_s + CLIENT_MARGIN_S):
                for attempt in (1, 2):
                    conn, reused = await self._acquire()
                    try:
                        return await self._pipeline(conn, reads)
                    except psycopg.Error as exc:
                        broken = conn.closed
                        if broken and reused and attempt == 1:
                            await self._drop_idle()  # (dropped together, most likely)
                            continue
                        raise _pg_error(exc, sql, broken=broken) from exc
                    finally:
                        await self._release(conn)
        except TimeoutError as exc:
            raise OperationalError(sql, None, TimeoutError(
                f"the database did not answer a token or session lookup within "
                f"{self.deadline_s:g} s")) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _pipeline(conn: psycopg.AsyncConnection[Any],
                        reads: Sequence[tuple[Hot, dict[str, Any]]]
                        ) -> list[list[dict[str, Any]]]:
        cursors = []
        async with conn.pipeline():
            for h, values in reads:
                cur = conn.cursor()
                await cur.execute(h.sql, h.params(values))
                cursors.append(cur)
        return [[h.row(raw) for raw in await cur.fetchall()]
                for cur, (h, _) in zip(cursors, reads, strict=True)]

    async def _acquire(self) -> tuple[psycopg.AsyncConnection[Any], bool]:
        """An idle connection (True), or a new one (False); waits while ``size`` are busy."""
        async with self._freed:
            await self._freed.wait_for(
                lambda: self._closed or bool(self._idle) or self._open < self.size)
            if self._closed:  # (the app's lifespan ended while this lookup waited: a 503)
                raise CommitterClosed("the server is shutting down")
            if self._idle:
                return self._idle.pop(), True
            self._open += 1
        try:
            return await self._connect(), False
        except BaseException:
            await self._forget()
            raise

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        import psycopg

        try:
            conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, int(self.deadline_s)),
                application_name=APPLICATION_NAME)
        except psycopg.Error as exc:
            raise _pg_error(exc, "connect", broken=True) from exc
        try:
            await conn.execute(f"SET statement_timeout = {int(self.deadline_s * 1000)}")
        except BaseException:
            await conn.close()
            raise
        self.connects += 1
        return conn

    async def _release(self, conn: psycopg.AsyncConnection[Any]) -> None:
        import psycopg

        if (self._closed or conn.closed
                or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE):
            await conn.close()
            await self._forget()
            return
        async with self._freed:
            self._idle.append(conn)
            self._freed.notify()

    async def _forget(self) -> None:
        async with self._freed:
            self._open -= 1
            self._freed.notify()

    async def _drop_idle(self) -> None:
        """Close the idle connections (a lookup found one of them dropped by the server)."""
        async with self._freed:
            dropped, self._idle = self._idle, []
            self._open -= len(dropped)
            self._freed.notify_all()
        for conn in dropped:
            await conn.close()

    async def close(self) -> None:
        """Close the idle connections; those in use are closed when their lookup ends."""
        async with self._freed:
            self._closed = True
            dropped, self._idle = self._idle, []
            self._open -= len(dropped)
            self._freed.notify_all()
        for conn in dropped:
            await conn.close()


# ---- SQLite: on the loop, never waiting for a lock -----------------------------------------
class SqliteLookups:
    """A read engine of its own on the store's file whose connections never wait for a lock
    (``busy_timeout=0``, set before the connection's first read and again after the store's
    set-up): a lookup that meets one fails at once with SQLITE_BUSY."""

    def __init__(self, store: SqlStore) -> None:
        self.engine: SaEngine = dialects.sqlite_engine(
            store.url, store.synchronous, immediate=False, nullpool=False)
        event.listen(self.engine, "connect", _no_lock_wait, insert=True)  # before its reads
        event.listen(self.engine, "connect", _no_lock_wait)  # after its busy_timeout
        self._hot: dict[Any, Hot] = {}

    @contextmanager
    def read(self) -> Iterator[SqlTx]:
        with self.engine.begin() as conn:
            yield SqlTx(conn, self._hot)

    def close(self) -> None:
        self.engine.dispose()


def _no_lock_wait(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.execute("PRAGMA busy_timeout=0")


# ---- where a request's lookup runs ---------------------------------------------------------
_state_lock = threading.Lock()


def _store(directory: Directory) -> SqlStore:
    return directory.store


async def token_login(state: Any, directory: Directory, secret: str, address: str | None,
                      later: Later) -> User | Locked | None:
    """:meth:`Directory.token_login` (``state``: the app's), read where this module's
    docstring says."""
    store = _store(directory)
    if store.dialect == "postgresql":
        pg = _pg_for_loop(state)
        if pg is None:
            return await run_in_threadpool(directory.token_login, secret, address, later=later)
        found = await pg.token(secret_digest(secret), address)
        return directory.token_login_txn(cast(People, found), secret, address, later=later)
    return await _sqlite(state, store, lambda tx: directory.token_login_txn(
        tx, secret, address, later=later), lambda: run_in_threadpool(
        directory.token_login, secret, address, later=later))


async def session(state: Any, directory: Directory, secret: str) -> tuple[User, str] | None:
    """:meth:`Directory.session` (``state``: the app's), read where this module's docstring
    says."""
    store = _store(directory)
    if store.dialect == "postgresql":
        pg = _pg_for_loop(state)
        if pg is None:
            return await run_in_threadpool(directory.session, secret)
        found = await pg.session(secret_digest(secret))
        return directory.session_txn(cast(People, found), secret)
    return await _sqlite(state, store, lambda tx: directory.session_txn(tx, secret),
                         lambda: run_in_threadpool(directory.session, secret))


async def _sqlite(state: Any, store: SqlStore, on_loop: Callable[[SqlTx], T],
                     in_thread: Callable[[], Awaitable[T]]) -> T:
    """``on_loop(tx)`` on a read that never waits for a lock; if it met one, ``in_thread()``."""
    lookups = _sqlite_lookups(state, store)
    try:
        with lookups.read() as tx:
            return on_loop(tx)
    except DBAPIError as exc:
        if not store.is_transient(exc):
            raise
    return await in_thread()


def _sqlite_lookups(state: Any, store: SqlStore) -> SqliteLookups:
    lookups: SqliteLookups | None = getattr(state, "sqlite_lookups", None)
    if lookups is None:
        with _state_lock:
            lookups = getattr(state, "sqlite_lookups", None)
            if lookups is None:
                lookups = state.sqlite_lookups = SqliteLookups(store)
    return lookups


def _pg_for_loop(state: Any) -> PgLookups | None:
    pools: MutableMapping[asyncio.AbstractEventLoop, PgLookups] | None = getattr(
        state, "pg_lookups", None)
    return pools.get(asyncio.get_running_loop()) if pools else None


# ---- the lookups' lifetime: the app's lifespan, per event loop -----------------------------
def open_loop(state: Any, loop: asyncio.AbstractEventLoop) -> None:
    """A lifespan starts on ``loop`` (the app's ``state``): on PostgreSQL, its pool of
    lookup connections (opened on demand) from now on."""
    engine = getattr(state, "engine", None)
    if engine is None or engine.store.dialect != "postgresql":
        return
    with _state_lock:
        pools = getattr(state, "pg_lookups", None)
        if pools is None:
            pools = state.pg_lookups = {}
        pools[loop] = PgLookups.for_store(engine.store)


async def close_loop(state: Any, loop: asyncio.AbstractEventLoop, *, last: bool) -> None:
    """A lifespan on ``loop`` ended: its PostgreSQL pool is closed; ``last`` (no other
    lifespan of the app is open): the SQLite lookups' connections too (made again on the
    next lookup, if there is one)."""
    with _state_lock:
        pools = getattr(state, "pg_lookups", None)
        pg = pools.pop(loop, None) if pools else None
        sqlite = getattr(state, "sqlite_lookups", None) if last else None
        if sqlite is not None:
            state.sqlite_lookups = None
    if pg is not None:
        await pg.close()
    if sqlite is not None:
        sqlite.close()
