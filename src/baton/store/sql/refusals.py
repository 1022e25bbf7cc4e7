"""The mail intake refused, as statements on a transaction's connection: the SQL of
:meth:`baton.intake.service.IntakeService.note_refusal` and its readers.

A refusal is written in a short transaction of its own, after the one that met it rolled
back, never by a worker's plan: these are functions of the connection rather than methods
of :class:`~baton.store.sql.tx.SqlTx` (no plan need know them).

**Bounded growth**: each insert deletes, a batch at a time (:data:`SWEEP_BATCH`), the rows
older than :data:`KEEP_DAYS` days and those past the newest :data:`KEEP_ROWS`, as expired
idempotency keys are swept when answers are kept: a flood of refused mail (a spammer, a
sender's loop) keeps the table at its size, and a quiet one keeps three months of them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, func, or_, select, tuple_

from baton.store import schema as s

KEEP_ROWS = 10_000  # the newest refusals kept
KEEP_DAYS = 90  # ... for at most this long
SWEEP_BATCH = 100  # rows deleted per insert at most: an insert's cost stays bounded


def insert_refusal_txn(conn: Connection, row: dict[str, Any], *, expired_before: str) -> int:
    """Insert one refusal, then delete up to :data:`SWEEP_BATCH` of the oldest rows that are
    older than ``expired_before`` or past the newest :data:`KEEP_ROWS`; how many were
    deleted."""
    t = s.intake_refusals
    conn.execute(t.insert().values(**row))
    # The oldest row kept by count: the KEEP_ROWS-th newest (an index range read).
    edge = conn.execute(select(t.c.refused_at, t.c.id)
                        .order_by(t.c.refused_at.desc(), t.c.id.desc())
                        .limit(1).offset(KEEP_ROWS - 1)).first()
    old = t.c.refused_at < expired_before
    if edge is not None:
        old = or_(old, tuple_(t.c.refused_at, t.c.id) < tuple_(edge.refused_at, edge.id))
    batch = (select(t.c.id).where(old).order_by(t.c.refused_at, t.c.id)
             .limit(SWEEP_BATCH).with_for_update(skip_locked=True))
    done = conn.execute(delete(t).where(t.c.id.in_(batch)))
    return int(done.rowcount)


def list_refusals_txn(conn: Connection, mailbox: str | None, limit: int, offset: int = 0
                      ) -> list[dict[str, Any]]:
    """Refusals, newest first (of one mailbox when given)."""
    t = s.intake_refusals
    q = select(t).order_by(t.c.refused_at.desc(), t.c.id.desc()).limit(limit).offset(offset)
    if mailbox is not None:
        q = q.where(t.c.mailbox == mailbox)
    return [dict(r._mapping) for r in conn.execute(q)]


def count_refusals_txn(conn: Connection, mailbox: str | None = None,
                       since: str | None = None) -> int:
    """How many refusals are kept (of one mailbox, since an instant, when given)."""
    t = s.intake_refusals
    q = select(func.count()).select_from(t)
    if mailbox is not None:
        q = q.where(t.c.mailbox == mailbox)
    if since is not None:
        q = q.where(t.c.refused_at >= since)
    return int(conn.execute(q).scalar_one())
