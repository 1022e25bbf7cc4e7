"""Schedules as transaction methods: the SQL of :mod:`baton.runtime.schedules`, which keeps
the rules (cron ticks, time zones, stale jobs) and calls these.

A schedule row is written when an orchestration's version is deployed, activated or
deactivated, and when its tick fires. A worker's planned batch never fires one: the plan
refuses, and the batch commits under the write lock the usual way (a tick is rare).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from baton.store import schema as s
from baton.store.sql.marks import refused


class SchedulesSql:
    conn: Connection

    @refused("reads a schedule to fire it (rare: done under the write lock)")
    def get_schedule_txn(self, orchestration: str, *, for_update: bool = False) -> dict[str, Any] | None:
        q = select(s.schedules).where(s.schedules.c.orchestration == orchestration)
        if for_update:
            q = q.with_for_update()
        row = self.conn.execute(q).first()
        return dict(row._mapping) if row else None

    @refused("arms a schedule")
    def put_schedule_txn(self, row: dict[str, Any]) -> None:
        """Insert or replace the schedule of ``row["orchestration"]``."""
        t = s.schedules
        values = {k: v for k, v in row.items() if k != "orchestration"}
        done = self.conn.execute(
            update(t).where(t.c.orchestration == row["orchestration"]).values(**values))
        if done.rowcount == 0:
            self.conn.execute(insert(t).values(**row))

    def list_schedules_txn(self) -> list[dict[str, Any]]:
        t = s.schedules
        return [dict(r._mapping) for r in self.conn.execute(select(t).order_by(t.c.orchestration))]
