"""Callbacks as transaction methods: the SQL of :mod:`baton.runtime.callbacks`.

A callback may arrive at any moment, so a worker's planned batch never reads or writes
these rows: the plan refuses, and that batch commits under the write lock, where the run
row lock orders it with the callback's own transaction.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select, update

from baton.store import schema as s
from baton.store.sql.marks import refused


class CallbacksSql:
    conn: Connection

    def server_key_txn(self, name: str) -> str | None:
        row = self.conn.execute(select(s.server_keys.c.value)
                                .where(s.server_keys.c.name == name)).first()
        return str(row[0]) if row else None

    @refused("reads callbacks, which arrive at any time (under the write lock)")
    def get_callback_txn(self, run_id: str, step: str, iteration: int) -> dict[str, Any] | None:
        t = s.callbacks
        row = self.conn.execute(select(t).where(
            t.c.run_id == run_id, t.c.step == step, t.c.iteration == iteration)).first()
        return dict(row._mapping) if row else None

    @refused("records a callback")
    def insert_callback_txn(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(s.callbacks).values(**row))

    @refused("forgets a callback")
    def forget_callback_txn(self, run_id: str, step: str, iteration: int) -> bool:
        """Forget the callback received for the step iteration (an operator retries the
        step: its request is sent again and the other system's next callback is taken)."""
        t = s.callbacks
        done = self.conn.execute(delete(t).where(
            t.c.run_id == run_id, t.c.step == step, t.c.iteration == iteration))
        return bool(done.rowcount)

    @refused("records a callback")
    def deliver_callback_txn(self, run_id: str, step: str, iteration: int, at: str) -> None:
        t = s.callbacks
        self.conn.execute(update(t).where(
            t.c.run_id == run_id, t.c.step == step, t.c.iteration == iteration)
            .values(status="delivered", delivered_at=at))
