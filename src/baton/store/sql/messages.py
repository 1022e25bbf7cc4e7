"""E-mail messages as transaction methods: the SQL of :mod:`baton.intake.service`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from baton.errors import TransitionConflict
from baton.store import schema as s
from baton.store.sql.marks import refused


class MessagesSql:
    conn: Connection

    @refused("stores an e-mail message (intake writes, never a worker's plan)")
    def insert_message_txn(self, row: dict[str, Any]) -> None:
        """Store a message; one stored already under its Message-ID (a concurrent delivery
        of the same message) raises TransitionConflict and the transaction must roll back."""
        try:
            self.conn.execute(insert(s.messages).values(**row))
        except IntegrityError as exc:
            raise TransitionConflict(f"message {row['message_id']!r} is stored already") from exc

    def find_messages_txn(self, message_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The stored messages among ``message_ids`` (for duplicates and threading)."""
        if not message_ids:
            return []
        t = s.messages
        rows = self.conn.execute(select(t).where(t.c.message_id.in_(list(message_ids))))
        return [dict(r._mapping) for r in rows]

    def record_messages_txn(self, record_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """A record's messages, oldest first."""
        t = s.messages
        rows = self.conn.execute(select(t).where(t.c.record_id == record_id)
                                 .order_by(t.c.received_at, t.c.id).limit(limit))
        return [dict(r._mapping) for r in rows]
