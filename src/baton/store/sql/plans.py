"""Fulfillment plans as transaction methods: the SQL of :mod:`baton.plans.service`.

A revision's graph is written once and never changed, so reading it needs no mark; the
writes happen where an order is submitted, canceled or amended, which a worker's planned
batch does not replay (it is refused there and made under the write lock).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select

from baton.store import schema as s
from baton.store.sql.marks import refused


class PlansSql:
    conn: Connection

    @refused("writes a plan revision")
    def insert_plan_txn(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(s.plans).values(**row))

    def get_plan_txn(self, order_id: str, revision: int | None = None) -> dict[str, Any] | None:
        """One revision of an order's plan (the latest when ``revision`` is None)."""
        t = s.plans
        q = select(t).where(t.c.order_id == order_id)
        q = (q.where(t.c.revision == revision) if revision is not None
             else q.order_by(t.c.revision.desc()).limit(1))
        row = self.conn.execute(q).first()
        return dict(row._mapping) if row else None

    def plan_revisions_txn(self, order_id: str) -> list[dict[str, Any]]:
        """Every revision of an order's plan without its graph, oldest first."""
        t = s.plans
        cols = [c for c in t.c if c.name != "graph"]
        rows = self.conn.execute(select(*cols).where(t.c.order_id == order_id)
                                 .order_by(t.c.revision)).all()
        return [dict(r._mapping) for r in rows]
