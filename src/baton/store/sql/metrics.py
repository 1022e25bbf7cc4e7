"""What ``/metrics`` reads from the database at a scrape: counts by group, each one
statement over an index where there is one (runs by status and orchestration; open work
items by assignee; ready jobs by due time)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import Text, case, cast, func, select

from baton.store import schema as s
from baton.store.codec import json_dumps, json_loads
from baton.store.sql.tx import SqlTx


class WorkCount(NamedTuple):
    assignee_kind: str
    assignee: str
    sla: str  # overdue | on_time | none
    n: int


class JobCount(NamedTuple):
    kind: str
    status: str
    n: int
    oldest_due: str | None  # the earliest run_after among them


def runs_by_status(tx: SqlTx) -> list[tuple[str, str, int]]:
    """(orchestration, status, how many runs)."""
    t = s.runs
    q = select(t.c.orchestration, t.c.status, func.count()).group_by(t.c.status, t.c.orchestration)
    return [(o, st, int(n)) for o, st, n in tx.conn.execute(q)]


def open_work(tx: SqlTx, statuses: Sequence[str], now: str) -> list[WorkCount]:
    t = s.work_items
    sla = case((t.c.due_at.is_(None), "none"), (t.c.due_at <= now, "overdue"), else_="on_time")
    q = (select(t.c.assignee_kind, t.c.assignee, sla, func.count())
         .where(t.c.status.in_(list(statuses)))
         .group_by(t.c.assignee_kind, t.c.assignee, sla))
    return [WorkCount(k, a, str(x), int(n)) for k, a, x, n in tx.conn.execute(q)]


def jobs_due(tx: SqlTx, now: str) -> list[JobCount]:
    """Jobs due now (ready and past their ``run_after``, or claimed), by kind."""
    t = s.jobs
    q = (select(t.c.kind, t.c.status, func.count(), func.min(t.c.run_after))
         .where((t.c.status == "claimed") | (t.c.run_after <= now))
         .group_by(t.c.kind, t.c.status))
    return [JobCount(k, st, int(n), due) for k, st, n, due in tx.conn.execute(q)]


def fallout_states(tx: SqlTx) -> list[str]:
    """The state (JSON text) of each in-progress run that may have a step in fallout: the
    text is searched in the database, only those rows come back to be read exactly."""
    t = s.runs
    text = cast(t.c.state, Text)
    q = select(text).where(t.c.status == "in_progress", text.like('%"fallout"%'))
    out = [str(r[0]) for r in tx.conn.execute(q)]
    out = [x for x in out if '"split"' not in x or not json_loads(x).get("split")]
    # A split run's steps are rows of their own (store/sql/runsteps.py): read merged.
    st = s.run_steps
    split = select(st.c.run_id).where(cast(st.c.doc, Text).like('%"fallout"%')).distinct()
    ids = [r[0] for r in tx.conn.execute(split)]
    for row in tx.get_runs_txn(ids).values() if ids else ():
        if row["status"] == "in_progress" and row["state"].get("split"):
            out.append(json_dumps(row["state"]))
    return out


def workers_alive(tx: SqlTx, since: str) -> int:
    t = s.workers
    return int(tx.conn.execute(select(func.count()).where(t.c.heartbeat_at >= since)).scalar() or 0)


def runs_by_stage(tx: SqlTx, orchestration: str, version: int | None = None) -> dict[str, int]:
    """In-progress runs of an orchestration (one version of it) by their current stage."""
    t = s.runs
    q = (select(t.c.current_stage, func.count())
         .where(t.c.status == "in_progress", t.c.orchestration == orchestration)
         .group_by(t.c.current_stage))
    if version is not None:
        q = q.where(t.c.version == version)
    return {str(st): int(n) for st, n in tx.conn.execute(q) if st is not None}
