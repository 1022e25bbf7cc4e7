"""The job queue and the workers' registry: claiming jobs, handing back those of dead
workers. Each method is its own write transaction (a claim must commit before the jobs run).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import timedelta

from sqlalchemy import delete, insert, select, update

from baton.clock import iso, parse_iso
from baton.store import schema as s
from baton.store.base import SLA_JOB, Job
from baton.store.sql.tx import SqlTx


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
        writes ``tx`` buffered are flushed first, so the jobs they enqueue can be claimed."""
        t = s.jobs
        tx.flush_txn()
        swept: list[Job] = []
        if not kinds or SLA_JOB in kinds:
            r = s.runs
            due = tx.conn.execute(
                select(r.c.id, r.c.sla_at).where(r.c.sla_at <= now)
                .order_by(r.c.sla_at, r.c.id).limit(limit)
                .with_for_update(skip_locked=True)).all()
            swept = [Job(None, SLA_JOB, row.id, {"at": row.sla_at}, 1) for row in due]
            limit -= len(swept)
            if limit <= 0:
                return swept
        q = (
            select(t.c.id, t.c.kind, t.c.run_id, t.c.payload, t.c.attempts)
            .where(t.c.status == "ready", t.c.run_after <= now)
            .order_by(t.c.run_after, t.c.id)
            .limit(limit)
            # PostgreSQL: rows another worker is claiming are skipped, not waited for.
            # SQLite: BEGIN IMMEDIATE already made this transaction the only writer.
            .with_for_update(skip_locked=True)
        )
        if kinds:
            q = q.where(t.c.kind.in_(list(kinds)))
        rows = tx.conn.execute(q).all()
        if not rows:
            return swept
        ids = [r.id for r in rows]
        tx.conn.execute(
            update(t)
            .where(t.c.id.in_(ids), t.c.status == "ready")
            .values(status="claimed", claimed_by=worker_id, claimed_at=now, attempts=t.c.attempts + 1)
        )
        return swept + [Job(r.id, r.kind, r.run_id, r.payload, r.attempts + 1) for r in rows]

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

    def heartbeat(self, worker_id: str, now: str) -> None:
        with self.write() as tx:
            tx.conn.execute(update(s.workers).where(s.workers.c.id == worker_id).values(heartbeat_at=now))

    def unregister_worker(self, worker_id: str) -> None:
        with self.write() as tx:
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

