"""Fulfillment plans as transaction methods: the SQL of :mod:`baton.plans.service`.

A revision's graph is written once and never changed, so reading it needs no mark; the
writes happen where an order is submitted, canceled or amended, which a worker's planned
batch does not replay (it is refused there and made under the write lock).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, insert, select

from baton.store import schema as s
from baton.store.sql.marks import refused

# Made once: building the statement cost more than running it (a worker reads a plan's
# graph for every plan it meets, the planner the latest revision for every order).
_LATEST = (select(s.plans).where(s.plans.c.order_id == bindparam("_order"))
           .order_by(s.plans.c.revision.desc()).limit(1))
_REVISION = select(s.plans).where(s.plans.c.order_id == bindparam("_order"),
                                  s.plans.c.revision == bindparam("_rev"))


class PlansSql:
    conn: Connection

    @refused("writes a plan revision")
    def insert_plan_txn(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(s.plans).values(**row))

    def get_plan_txn(self, order_id: str, revision: int | None = None) -> dict[str, Any] | None:
        """One revision of an order's plan (the latest when ``revision`` is None)."""
        row = (self.conn.execute(_LATEST, {"_order": order_id}) if revision is None
               else self.conn.execute(_REVISION, {"_order": order_id, "_rev": revision})).first()
        return dict(row._mapping) if row else None

    def plan_revisions_txn(self, order_id: str) -> list[dict[str, Any]]:
        """Every revision of an order's plan without its graph, oldest first."""
        t = s.plans
        cols = [c for c in t.c if c.name != "graph"]
        rows = self.conn.execute(select(*cols).where(t.c.order_id == order_id)
                                 .order_by(t.c.revision)).all()
        return [dict(r._mapping) for r in rows]
