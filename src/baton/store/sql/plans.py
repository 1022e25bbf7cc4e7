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

# Made once: building a statement cost more than running it (a worker reads a plan's
# graph for every plan it meets; every submit reads the order's revisions and lines and
# inserts a revision: SQLAlchemy's cache key of an ``insert().values(graph=...)`` walked
# the whole row each time).
_INSERT = insert(s.plans)
_LATEST = (select(s.plans).where(s.plans.c.order_id == bindparam("_order"))
           .order_by(s.plans.c.revision.desc()).limit(1))
_REVISION = select(s.plans).where(s.plans.c.order_id == bindparam("_order"),
                                  s.plans.c.revision == bindparam("_rev"))
_REVISIONS = (select(*[c for c in s.plans.c if c.name != "graph"])
              .where(s.plans.c.order_id == bindparam("_order"))
              .order_by(s.plans.c.revision))
_REFS, _RECORDS = s.record_refs, s.records
_NAMING = (select(_RECORDS)  # the range of ix_record_refs_target, then each record by key
           .select_from(_REFS.join(_RECORDS, _RECORDS.c.id == _REFS.c.record_id))
           .where(_REFS.c.target_id == bindparam("_target"),
                  _REFS.c.object_type == bindparam("_type"),
                  _REFS.c.field == bindparam("_field"))
           .order_by(_REFS.c.created_at.desc(), _REFS.c.record_id.desc()))


class PlansSql:
    conn: Connection

    @refused("writes a plan revision")
    def insert_plan_txn(self, row: dict[str, Any]) -> None:
        self.conn.execute(_INSERT, row)

    def get_plan_txn(self, order_id: str, revision: int | None = None) -> dict[str, Any] | None:
        """One revision of an order's plan (the latest when ``revision`` is None)."""
        row = (self.conn.execute(_LATEST, {"_order": order_id}) if revision is None
               else self.conn.execute(_REVISION, {"_order": order_id, "_rev": revision})).first()
        return dict(row._mapping) if row else None

    def plan_revisions_txn(self, order_id: str) -> list[dict[str, Any]]:
        """Every revision of an order's plan without its graph, oldest first."""
        return [dict(r._mapping) for r in self.conn.execute(_REVISIONS, {"_order": order_id})]

    def records_naming_txn(self, object_type: str, field: str,
                           target_id: str) -> list[dict[str, Any]]:
        """The records of ``object_type`` whose ref field ``field`` names ``target_id`` (an
        order's lines), the newest first: what ``find_records_txn(object_type, {field:
        target_id})`` returns, by a statement made once. ``target_id`` must be a record id
        (:func:`~baton.store.schema.is_record_ref`): only those are in baton_record_refs."""
        if not s.is_record_ref(target_id):
            raise ValueError(f"{target_id!r} is no record id: records naming it are not "
                             "indexed (use find_records_txn)")
        return [dict(r._mapping) for r in self.conn.execute(
            _NAMING, {"_target": target_id, "_type": object_type, "_field": field})]
