"""Group commit across requests: concurrent writes share one transaction.

Each API request that writes hands its work (a ``*_txn`` function of a transaction) to
the app's :class:`GroupCommitter` and waits. One committer thread takes every piece of
work waiting at that moment, opens one write transaction (SQLite's write lock is taken
once per group), runs each piece under its own savepoint (one that raises is rolled back
alone and answers with its own error; savepoints are only taken once a piece has
failed), commits once, and only then answers each request:
a request is answered only after its own data is durable. While a group commits (an
fsync with ``synchronous=FULL``), the next requests queue up and form the next group, so
under load the commits per second stay few while the writes per second grow.

A transient database error (a lost connection, a serialization failure, SQLite's lock
timeout) retries the whole group once, as :func:`baton.runtime.engine.one_transaction`
retries a single write; nothing of a failed attempt was committed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from fastapi import Request

from baton.store.sql import SqlStore
from baton.store.sql.tx import SqlTx

T = TypeVar("T")
MAX_GROUP = 256  # pieces of work per transaction at most

log = logging.getLogger("baton.web.committer")


@dataclass
class _Pending(Generic[T]):
    work: Callable[[SqlTx], T]
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None

    detached: bool = False  # nobody waits for it (:meth:`GroupCommitter.defer`)

    def settle(self, value: Any, error: BaseException | None) -> None:
        self.value, self.error = value, error
        self.done.set()
        if error is not None and self.detached:
            log.warning("deferred write failed: %s", error, exc_info=error)


class CommitterClosed(RuntimeError):
    """Work submitted after :meth:`GroupCommitter.close`."""


class GroupCommitter:
    """One committer thread per store (started on first use) and the queue in front of it.

    Thread-safe: :meth:`submit` is called from the request threads.
    """

    def __init__(self, store: SqlStore, *, max_group: int = MAX_GROUP) -> None:
        self.store = store
        self.max_group = max_group
        self._queue: list[_Pending[Any]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.groups = 0  # transactions committed (or attempted): for tests and figures
        self.pieces = 0  # pieces of work taken

    def submit(self, work: Callable[[SqlTx], T]) -> T:
        """Run ``work(tx)`` in the next group's transaction and return what it returned once
        that transaction has committed; raise what it raised (nothing of it is committed)."""
        pending: _Pending[T] = _Pending(work)
        self._enqueue(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.value  # type: ignore[no-any-return]

    def defer(self, work: Callable[[SqlTx], Any]) -> None:
        """Run ``work(tx)`` in the next group, without waiting for it: for bookkeeping no
        answer depends on (an API token's ``last_used_at``). A failure is logged."""
        self._enqueue(_Pending(work, detached=True))

    def _enqueue(self, pending: _Pending[Any]) -> None:
        with self._cond:
            if self._closed:
                raise CommitterClosed("the server is shutting down")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="baton-committer",
                                                daemon=True)
                self._thread.start()
            self._queue.append(pending)
            self._cond.notify()

    def waiting(self) -> int:
        """Pieces of work queued for the next group."""
        with self._cond:
            return len(self._queue)

    def close(self) -> None:
        """Commit what is queued, then stop the thread (work submitted meanwhile is
        refused). A later :meth:`submit` starts it again: an app's lifespan may run more
        than once (a test client entered twice)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
            log.info("group commit: %d write(s) in %d transaction(s)", self.pieces, self.groups)
        with self._cond:
            self._closed = False
            self._thread = None

    # ---- the committer thread -----------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                group = self._queue[:self.max_group]
                del self._queue[:self.max_group]
            self.groups += 1
            self.pieces += len(group)
            try:
                self._commit(group)
            except BaseException as exc:  # pragma: no cover - _commit settles everything
                log.exception("group commit failed")
                for p in group:
                    if not p.done.is_set():
                        p.settle(None, exc)

    def _commit(self, group: list[_Pending[Any]]) -> None:
        for attempt in (1, 2):
            try:
                outcomes = self._attempt(group)
            except Exception as exc:  # noqa: BLE001 - settled below; nothing was committed
                if attempt == 1 and self.store.is_transient(exc):
                    log.warning("group of %d: transient database error, trying once more: %s",
                                len(group), str(exc).splitlines()[0])
                    continue
                for p in group:
                    p.settle(None, exc)
                return
            for p, (value, error) in zip(group, outcomes, strict=True):
                p.settle(value, error)
            return

    def _attempt(self, group: list[_Pending[Any]]) -> list[tuple[Any, BaseException | None]]:
        """One transaction for the group: each piece's (value, error); raises (having
        committed nothing) when the transaction as a whole fails.

        The common case, every piece goes through, needs no savepoints (two statements
        and a flush of buffered rows per piece): that is tried first. If a piece fails,
        nothing of that try is committed and the group runs again, each piece under its
        own savepoint (as :meth:`baton.work.service.WorkService.complete_many` does)."""
        try:
            with self.store.write() as tx:
                values = [p.work(tx) for p in group]
            return [(v, None) for v in values]
        except Exception as exc:
            if self.store.is_transient(exc):
                raise
            if len(group) == 1:  # alone: its transaction was its savepoint
                return [(None, exc)]
        outcomes: list[tuple[Any, BaseException | None]] = []
        with self.store.write() as tx:
            for p in group:
                try:
                    with tx.savepoint():
                        outcomes.append((p.work(tx), None))
                except Exception as exc:
                    if self.store.is_transient(exc):
                        raise  # the transaction is in doubt: the whole group again
                    outcomes.append((None, exc))
        return outcomes

def committer_of(request: Request) -> GroupCommitter:
    """The app's committer (made by :func:`baton.web.app.create_app`)."""
    return request.app.state.committer  # type: ignore[no-any-return]
