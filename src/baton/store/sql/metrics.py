"""What ``/metrics`` reads from the database at a scrape. Each read is an index range over
what is current — runs in progress, open work items, jobs due, runs that need an operator,
workers heartbeating — never over the history a database keeps growing (runs that ended,
work done): a scrape costs as much with a million finished runs as with none.

Orchestration names are labels as they are, except a plan's (``plan:ORDER_ID``: one run
per order), counted together as ``plan``: a label takes few values, never one per record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import case, func, literal, select

from baton.engine.attention import FALLOUT, VALUES
from baton.engine.state import Run
from baton.engine.status import StepStatus
from baton.store import schema as s
from baton.store.sql.tx import SqlTx

PLAN_LABEL = "plan"
_PLAN_PREFIX = "plan:"  # (baton.runtime.definitions.PLAN_PREFIX: the store does not import it)
_CHUNK = 500  # run ids read per statement


class WorkCount(NamedTuple):
    assignee_kind: str
    assignee: str  # a queue's or a group's name; "" for items given to a person
    sla: str  # overdue | on_time | none
    n: int


class JobCount(NamedTuple):
    kind: str
    status: str
    n: int
    oldest_due: str | None  # the earliest run_after among them


def orchestration_label(name: str) -> str:
    """An orchestration's name as a label: every plan's is ``plan``."""
    return PLAN_LABEL if name.startswith(_PLAN_PREFIX) else name


def runs_in_progress(tx: SqlTx) -> dict[str, int]:
    """Runs in progress by orchestration (a plan's as ``plan``): one range of
    ``ix_runs_status``, as long as the runs in progress."""
    t = s.runs
    q = (select(t.c.orchestration, func.count()).where(t.c.status == "in_progress")
         .group_by(t.c.orchestration))
    out: dict[str, int] = {}
    for name, n in tx.conn.execute(q):
        label = orchestration_label(str(name))
        out[label] = out.get(label, 0) + int(n)
    return out


def open_work(tx: SqlTx, statuses: Sequence[str], now: str) -> list[WorkCount]:
    """Open work items by assignee (a queue's or a group's name; a person's items together,
    with no name) and SLA state: a range of ``ix_work_items_assignee`` per open status."""
    t = s.work_items
    sla = case((t.c.due_at.is_(None), "none"), (t.c.due_at <= now, "overdue"), else_="on_time")
    who = case((t.c.assignee_kind == "user", literal("")), else_=t.c.assignee)
    q = (select(t.c.assignee_kind, who, sla, func.count())
         .where(t.c.status.in_(list(statuses)))
         .group_by(t.c.assignee_kind, who, sla))
    got: dict[tuple[str, str, str], int] = {}
    for k, a, x, n in tx.conn.execute(q):
        key = (str(k), str(a or ""), str(x))
        got[key] = got.get(key, 0) + int(n)
    return [WorkCount(k, a, x, n) for (k, a, x), n in sorted(got.items())]


def jobs_due(tx: SqlTx, now: str) -> list[JobCount]:
    """Jobs due now (ready and past their ``run_after``), and jobs claimed by a worker, by
    kind: two ranges of ``ix_jobs_ready`` (timers not yet due are not read)."""
    t = s.jobs
    ready = (select(t.c.kind, func.count(), func.min(t.c.run_after))
             .where(t.c.status == "ready", t.c.run_after <= now).group_by(t.c.kind))
    claimed = (select(t.c.kind, func.count(), func.min(t.c.run_after))
               .where(t.c.status == "claimed").group_by(t.c.kind))
    return [JobCount(str(k), status, int(n), due)
            for status, q in (("ready", ready), ("claimed", claimed))
            for k, n, due in tx.conn.execute(q)]


def steps_in_fallout(tx: SqlTx) -> dict[str, int]:
    """Steps in fallout by orchestration (a plan's as ``plan``). Only the runs whose
    ``attention`` says a step waits in fallout are read (``ix_runs_attention``, partial: a
    run that needs nothing is not in it); a split run's steps merged, as the store reads it."""
    t = s.runs
    q = (select(t.c.id).where(t.c.attention.in_([v for v in VALUES if v & FALLOUT]),
                              t.c.status == "in_progress"))
    ids = [str(r[0]) for r in tx.conn.execute(q)]
    out: dict[str, int] = {}
    for i in range(0, len(ids), _CHUNK):
        for row in tx.get_runs_txn(ids[i:i + _CHUNK]).values():
            try:
                run = Run.from_json(row["state"])
            except (KeyError, TypeError, ValueError):  # a state no run reads: not counted
                continue
            n = sum(1 for sr in run.steps.values() if sr.status is StepStatus.FALLOUT)
            if n:
                label = orchestration_label(run.orchestration)
                out[label] = out.get(label, 0) + n
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
