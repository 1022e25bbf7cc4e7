"""Incidents as transaction methods: the SQL of :mod:`baton.runtime.incidents`, which keeps
the rules (statuses, retry, dismiss) and calls these.

An incident is opened in the transaction of the write that met it, a worker's planned
batch included: the insert is recorded by the plan and made again under the lock. Changing
one is an operator's action, never a worker's: a plan refuses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from baton.store import schema as s
from baton.store.sql.marks import refused, writes


class IncidentsSql:
    conn: Connection

    @writes(None)
    def insert_incident_txn(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(s.incidents).values(**row))

    # Exact only under the write lock: a plan that meets an incident commits the usual way.
    @refused("looks for an open incident (rare: done under the write lock)")
    def find_open_incident_txn(self, key: dict[str, Any]) -> dict[str, Any] | None:
        """The open incident with these column values (kind, orchestration, version,
        record_id, run_id, expression), if any."""
        t = s.incidents
        q = select(t).where(t.c.status == "open", *(
            t.c[k].is_(None) if v is None else t.c[k] == v for k, v in key.items()))
        row = self.conn.execute(q.order_by(t.c.created_at).limit(1)).first()
        return dict(row._mapping) if row else None

    def get_incident_txn(self, incident_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
        q = select(s.incidents).where(s.incidents.c.id == incident_id)
        if for_update:
            q = q.with_for_update()
        row = self.conn.execute(q).first()
        return dict(row._mapping) if row else None

    def list_incidents_txn(self, statuses: Sequence[str] | None, limit: int, offset: int,
                           record_id: str | None = None) -> list[dict[str, Any]]:
        """Incidents, oldest first, of the given statuses (every status when None)."""
        t = s.incidents
        q = select(t).order_by(t.c.created_at, t.c.id).limit(limit).offset(offset)
        return [dict(r._mapping) for r in self.conn.execute(_where(q, statuses, record_id))]

    def count_incidents_txn(self, statuses: Sequence[str] | None,
                            record_id: str | None = None) -> int:
        q = _where(select(func.count()).select_from(s.incidents), statuses, record_id)
        return int(self.conn.execute(q).scalar_one())

    @refused("changes an incident")
    def update_incident_txn(self, incident_id: str, expected_status: str,
                            values: dict[str, Any]) -> bool:
        """Compare-and-set: False when the incident is no longer ``expected_status``."""
        t = s.incidents
        res = self.conn.execute(update(t).where(t.c.id == incident_id,
                                                t.c.status == expected_status).values(**values))
        return bool(res.rowcount == 1)


def _where(q: Any, statuses: Sequence[str] | None, record_id: str | None) -> Any:
    t = s.incidents
    if statuses:
        q = q.where(t.c.status.in_(list(statuses)))
    if record_id is not None:
        q = q.where(t.c.record_id == record_id)
    return q
