"""The job queue and the workers' registry: claiming jobs, handing back those of dead
workers. Each method is its own write transaction (a claim must commit before the jobs run).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta

from sqlalchemy import bindparam, delete, insert, select, update

from baton.clock import iso, parse_iso
from baton.store import schema as s
from baton.store.base import SLA_JOB, Job
from baton.store.sql.tx import SqlTx

# The claim's statements, built once (see JobQueue.claim_jobs_txn). PostgreSQL: rows another
# worker is claiming are skipped, not waited for; SQLite: BEGIN IMMEDIATE already made the
# claiming transaction the only writer (no FOR UPDATE is rendered).
SLA_DUE = (
    select(s.runs.c.id, s.runs.c.sla_at).where(s.runs.c.sla_at <= bindparam("_now"))
    .order_by(s.runs.c.sla_at, s.runs.c.id).limit(bindparam("_limit"))
    .with_for_update(skip_locked=True)
)
READY = (
    select(s.jobs.c.id, s.jobs.c.kind, s.jobs.c.run_id, s.jobs.c.payload, s.jobs.c.attempts)
    .where(s.jobs.c.status == "ready", s.jobs.c.run_after <= bindparam("_now"))
    .order_by(s.jobs.c.run_after, s.jobs.c.id).limit(bindparam("_limit"))
    .with_for_update(skip_locked=True)
)


# One job marked claimed (if still ready): run for each claimed id with one executemany, so
# one compiled statement serves every batch size (an IN list of n ids is a statement per n,
# and compiling one of 256 ids cost more than a claim's whole statement work).
MARK_CLAIMED = (
    update(s.jobs)
    .where(s.jobs.c.id == bindparam("_id"), s.jobs.c.status == "ready")
    .values(status="claimed", claimed_by=bindparam("_worker"), claimed_at=bindparam("_now"),
            attempts=s.jobs.c.attempts + 1)
)


def worker_host() -> str:
    """This machine's host name, which workers report unless their store was given another
    (``BATON_WORKER_HOST``: tests use it to make workers on one machine behave as if on
    many, judged by heartbeat only)."""
    return socket.gethostname()


class JobQueue:
    """The job methods of :class:`~baton.store.sql.store.SqlStore`."""

    _worker_host: str | None
    write: Callable[[], AbstractContextManager[SqlTx]]  # SqlStore's

    def host(self) -> str:
        """The host name this store's workers report (the constructor's, else this
        machine's)."""
        return self._worker_host or worker_host()

    def claim_jobs(self, worker_id: str, now: str, limit: int, kinds: Sequence[str] | None = None) -> list[Job]:
        """Claim up to ``limit`` ready jobs; first, runs whose SLA instant (``sla_at``) has
        come, as row-less jobs of kind :data:`SLA_JOB`. Those are not marked claimed: firing
        the instant rewrites the run (compare-and-set on its ``seq``) and moves its
        ``sla_at`` on, so a second claimer's result is a conflict or stale, never twice."""
        with self.write() as tx:
            return self.claim_jobs_txn(tx, worker_id, now, limit, kinds)

    def claim_jobs_txn(self, tx: SqlTx, worker_id: str, now: str, limit: int,
                       kinds: Sequence[str] | None = None) -> list[Job]:
        """:meth:`claim_jobs` inside ``tx``, a write transaction the caller commits: the
        jobs are claimed only if it commits. A worker claims its next batch in the
        transaction that commits its last one (one lock and one fsync fewer per batch); the
        writes ``tx`` buffered are flushed first, so the jobs they enqueue can be claimed.

        The statements are compiled once per store (``tx._compiled``: run on the DB-API
        cursor, as the other hot statements are), not built, keyed and rendered by
        SQLAlchemy on every claim (the claimed jobs are marked with one executemany)."""
        tx.flush_txn()
        swept: list[Job] = []
        if not kinds or SLA_JOB in kinds:
            h = tx._compiled("claim_sla_due", SLA_DUE)
            due = tx._run(h, {"_now": now, "_limit": limit}).fetchall()
            swept = [Job(None, SLA_JOB, row[0], {"at": row[1]}, 1) for row in due]
            limit -= len(swept)
            if limit <= 0:
                return swept
        if kinds:
            key = ("claim_ready", len(kinds))
            h = tx._hot.get(key) or tx._compiled(key, READY.where(
                s.jobs.c.kind.in_([bindparam(f"_k{i}") for i in range(len(kinds))])))
            values = {"_now": now, "_limit": limit, **{f"_k{i}": k for i, k in enumerate(kinds)}}
        else:
            h = tx._compiled("claim_ready", READY)
            values = {"_now": now, "_limit": limit}
        rows = [h.row(raw) for raw in tx._run(h, values).fetchall()]
        if not rows:
            return swept
        tx._run_many(tx._compiled("claim_mark", MARK_CLAIMED),
                     [{"_id": r["id"], "_worker": worker_id, "_now": now} for r in rows])
        return swept + [Job(r["id"], r["kind"], r["run_id"], r["payload"], r["attempts"] + 1)
                        for r in rows]

    def release_job(self, job_id: int, worker_id: str, run_after: str) -> None:
        t = s.jobs
        with self.write() as tx:
            res = tx.conn.execute(
                update(t)
                .where(t.c.id == job_id, t.c.claimed_by == worker_id)
                .values(status="ready", claimed_by=None, claimed_at=None, run_after=run_after)
            )
            tx.enqueued = bool(res.rowcount)  # ready again: idle workers are told (NOTIFY)

    def drop_job(self, job_id: int, worker_id: str) -> None:
        t = s.jobs
        with self.write() as tx:
            tx.conn.execute(delete(t).where(t.c.id == job_id, t.c.claimed_by == worker_id))

    def register_worker(self, worker_id: str, host: str, pid: int, now: str) -> None:
        with self.write() as tx:
            tx.conn.execute(
                insert(s.workers).values(id=worker_id, host=host, pid=pid, started_at=now, heartbeat_at=now)
            )

    def heartbeat(self, worker_id: str, now: str) -> bool:
        """The worker is alive at ``now``. False when it has no row (it was taken for dead,
        or never registered): nothing is written then."""
        with self.write() as tx:
            res = tx.conn.execute(
                update(s.workers).where(s.workers.c.id == worker_id).values(heartbeat_at=now))
            return bool(res.rowcount)

    def hand_back_jobs(self, worker_id: str, now: str, pid: int) -> int:
        """Hand back to the queue every job ``worker_id`` holds, in one transaction with its
        heartbeat at ``now`` (its row written again, as process ``pid`` of this store's host,
        if it was taken for dead meanwhile). For a live worker with nothing in hand: after a
        database error, what its failed batch held and what a commit whose answer was lost
        claimed. The compare-and-set on the holder leaves every other worker's jobs alone,
        and a job that commit finished is gone. Returns how many went back."""
        with self.write() as tx:
            res = tx.conn.execute(
                update(s.jobs)
                .where(s.jobs.c.claimed_by == worker_id, s.jobs.c.status == "claimed")
                .values(status="ready", claimed_by=None, claimed_at=None)
            )
            tx.enqueued = bool(res.rowcount)  # handed back: idle workers are told (NOTIFY)
            beat = tx.conn.execute(
                update(s.workers).where(s.workers.c.id == worker_id).values(heartbeat_at=now))
            if not beat.rowcount:
                tx.conn.execute(insert(s.workers).values(
                    id=worker_id, host=self.host(), pid=pid, started_at=now, heartbeat_at=now))
            return int(res.rowcount or 0)

    def unregister_worker(self, worker_id: str, unrun: Sequence[int] = ()) -> None:
        """Remove the worker and hand back the jobs it holds; those of ``unrun`` (claimed,
        never started: a stop) have their claim not counted as an attempt."""
        with self.write() as tx:
            if unrun:
                tx.conn.execute(
                    update(s.jobs)
                    .where(s.jobs.c.id.in_(list(unrun)), s.jobs.c.claimed_by == worker_id,
                           s.jobs.c.status == "claimed", s.jobs.c.attempts > 0)
                    .values(attempts=s.jobs.c.attempts - 1)
                )
            res = tx.conn.execute(
                update(s.jobs)
                .where(s.jobs.c.claimed_by == worker_id, s.jobs.c.status == "claimed")
                .values(status="ready", claimed_by=None, claimed_at=None)
            )
            tx.enqueued = bool(res.rowcount)  # handed back: idle workers are told (NOTIFY)
            tx.conn.execute(delete(s.workers).where(s.workers.c.id == worker_id))

    def release_jobs_of_dead_workers(self, now: str, heartbeat_timeout_s: float) -> int:
        """Hand jobs held by dead workers back to the queue.

        A worker is dead when its heartbeat is older than the timeout, or at once
        when it ran on this host and its process no longer exists.
        """
        host = self.host()
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
            tx.enqueued = bool(res.rowcount)  # handed back: idle workers are told (NOTIFY)
            return int(res.rowcount or 0)


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

