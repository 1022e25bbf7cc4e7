"""Whole-table reads for reports and checks (the benchmark's verification): a statement
each, outside the repositories because nothing on the request or worker paths needs them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from sqlalchemy import select

from baton.store import schema as s
from baton.store.sql.tx import SqlTx


class RunOutcome(NamedTuple):
    id: str
    record_id: str | None
    status: str
    current_stage: str | None
    completed_at: str | None


def records_of_type(tx: SqlTx, object_type: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Every record of one object type: id -> (created_at, data)."""
    t = s.records
    return {r.id: (r.created_at, r.data) for r in tx.conn.execute(
        select(t.c.id, t.c.created_at, t.c.data).where(t.c.object_type == object_type))}


def run_outcomes(tx: SqlTx) -> list[RunOutcome]:
    """Every run's status, stage and completion time (not its state)."""
    t = s.runs
    return [RunOutcome(*r) for r in tx.conn.execute(
        select(t.c.id, t.c.record_id, t.c.status, t.c.current_stage, t.c.completed_at))]
