"""Idle workers block and are woken, on both databases (issue 19, "no spin-waiting").

SQLite: a wait sleeps in ``select`` on an inotify watch of the WAL file (Linux) and looks at
``PRAGMA data_version`` only when something was written; PostgreSQL: it sleeps in
``select`` on the LISTEN connection. Either ends at once when another process commits (a
new job, or jobs handed back), when :meth:`SqlStore.interrupt_waits` is called (a worker
stopping), or at its timeout. No test here asserts on timing: waits that must end are
given a minute, so only a missing wake-up fails them.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from itertools import islice

import pytest

from baton.store.sql import SqlStore, dialects

NOW = "2026-01-05T09:00:00.000Z"


def _wait(store: SqlStore, seen: int | None, timeout: float) -> bool:
    """An idle worker's wait, whichever the database."""
    if store.dialect == "postgresql":
        return store.wait_for_jobs(timeout)
    return store.wait_for_change(seen, timeout, threading.Event())


def _enqueue_in_another_process(store: SqlStore) -> subprocess.Popen[bytes]:
    code = ("import sys\nfrom baton.store.sql import SqlStore\n"
            "with SqlStore(sys.argv[1]).write() as tx:\n"
            f"    tx.enqueue_job_txn('step', 'run_x', {{}}, {NOW!r}, {NOW!r})\n")
    return subprocess.Popen([sys.executable, "-c", code, store.url])


def test_a_lock_waiter_backs_off_from_half_a_millisecond_to_two() -> None:
    assert list(islice(dialects.lock_backoff(), 6)) == [0.0005, 0.001, 0.002, 0.002, 0.002, 0.002]


def test_an_idle_wait_blocks_until_another_process_commits(store: SqlStore) -> None:
    seen = store.arm_wakeup()
    assert _wait(store, seen, 0.3) is False  # nothing committed: it times out
    proc = _enqueue_in_another_process(store)
    try:
        assert _wait(store, seen, 60) is True
    finally:
        assert proc.wait(60) == 0
    assert store.claim_jobs("wrk_a", NOW, 10)  # and the job is there to claim


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_sqlite_idle_wait_reads_nothing_while_nothing_is_written(db_url: str) -> None:
    """The wake-up is the WAL file's inotify watch, not a data_version poll: while nothing is
    written, a wait looks at the counter once, on the way in."""
    if not db_url.startswith("sqlite"):
        pytest.skip("PostgreSQL waits on its LISTEN socket")
    store = SqlStore(db_url)
    store.migrate()
    watch = store._watch
    assert watch is not None
    looks = 0
    counter = watch.counter

    def counting() -> int:
        nonlocal looks
        looks += 1
        return counter()

    watch.counter = counting  # type: ignore[method-assign]
    try:
        seen = store.arm_wakeup()
        assert watch._local.watch is not None  # inotify on the WAL file is in use
        looks = 0
        assert store.wait_for_change(seen, 0.5, threading.Event()) is False
        # A data_version poll would have looked hundreds of times (every 1-20 ms).
        assert looks <= 2, looks
        proc = _enqueue_in_another_process(store)
        try:
            assert store.wait_for_change(seen, 60, threading.Event()) is True
        finally:
            assert proc.wait(60) == 0
    finally:
        store.close()


def test_interrupt_ends_an_idle_wait(store: SqlStore) -> None:
    """A worker being stopped is not left asleep until its timeout."""
    seen = store.arm_wakeup()
    timer = threading.Timer(0.2, store.interrupt_waits)
    timer.start()
    try:
        assert _wait(store, seen, 60) is True
    finally:
        timer.join()
    # Interrupting once does not end every later wait: the next one blocks again.
    seen = store.arm_wakeup()
    assert _wait(store, seen, 0.3) is False


def test_jobs_handed_back_wake_idle_workers(store: SqlStore) -> None:
    """A worker that stops with jobs claimed hands them back; an idle worker hears of it
    (PostgreSQL: the release NOTIFYs like an enqueue does)."""
    with store.write() as tx:
        tx.enqueue_job_txn("step", "run_1", {}, NOW, NOW)
    store.register_worker("wrk_a", "h", 1, NOW)
    assert len(store.claim_jobs("wrk_a", NOW, 10)) == 1
    seen = store.arm_wakeup()
    assert _wait(store, seen, 0.3) is False
    seen = store.arm_wakeup()
    other = SqlStore(store.url)  # as another process would: its own connections
    timer = threading.Timer(0.2, other.unregister_worker, args=("wrk_a",))
    timer.start()
    try:
        assert _wait(store, seen, 60) is True
    finally:
        timer.join()
        other.close()
    assert [j.run_id for j in store.claim_jobs("wrk_b", NOW, 10)] == ["run_1"]
