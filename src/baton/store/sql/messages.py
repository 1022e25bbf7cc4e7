"""E-mail messages as transaction methods: the SQL of :mod:`baton.intake.service`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from baton.errors import TransitionConflict
from baton.store import schema as s
from baton.store.sql.marks import refused
from baton.store.sql.statements import insert_or_ignore


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

    def message_txn(self, row_id: str) -> dict[str, Any] | None:
        """One stored message by its row id (``msg-…``)."""
        t = s.messages
        row = self.conn.execute(select(t).where(t.c.id == row_id)).first()
        return dict(row._mapping) if row else None

    @refused("stores an attachment's content (intake writes, never a worker's plan)")
    def put_blob_txn(self, row: dict[str, Any]) -> None:
        """Store a content once: an attachment whose sha256 is stored already (the same
        PDF sent twice, or by a concurrent delivery) adds no second copy."""
        self.conn.execute(insert_or_ignore(self.conn, s.blobs).values(**row)
                          .on_conflict_do_nothing(index_elements=["sha256"]))

    @refused("stores an attachment (intake writes, never a worker's plan)")
    def insert_attachments_txn(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(insert(s.attachments), list(rows))

    def record_attachments_txn(self, record_id: str, limit: int = 500) -> list[dict[str, Any]]:
        """A record's attachments (stored and refused), oldest message first, with whether
        their text could be read; no content."""
        a, b = s.attachments, s.blobs
        rows = self.conn.execute(
            select(a, b.c.text.is_not(None).label("has_text"), b.c.text_error)
            .select_from(a.outerjoin(b, (a.c.sha256 == b.c.sha256) & (a.c.status == "stored")))
            .where(a.c.record_id == record_id)
            .order_by(a.c.created_at, a.c.message, a.c.position).limit(limit))
        return [dict(r._mapping) for r in rows]

    def attachment_txn(self, attachment_id: str, *, content: bool = False
                       ) -> dict[str, Any] | None:
        """One attachment with its extracted text and (``content=True``) its bytes; a refused
        one has neither."""
        a, b = s.attachments, s.blobs
        cols: list[Any] = [*a.c, b.c.text, b.c.text_error] + ([b.c.content] if content else [])
        row = self.conn.execute(
            select(*cols)
            .select_from(a.outerjoin(b, (a.c.sha256 == b.c.sha256) & (a.c.status == "stored")))
            .where(a.c.id == attachment_id)).first()
        return dict(row._mapping) if row else None

    def record_attachments_text_txn(self, record_id: str) -> list[dict[str, Any]]:
        """The extracted texts of a record's stored attachments, in order."""
        a, b = s.attachments, s.blobs
        rows = self.conn.execute(
            select(a.c.id, a.c.filename, a.c.content_type, b.c.text)
            .join(b, a.c.sha256 == b.c.sha256)
            .where(a.c.record_id == record_id, a.c.status == "stored")
            .order_by(a.c.created_at, a.c.message, a.c.position))
        return [dict(r._mapping) for r in rows]

    def imap_state_txn(self, mailbox: str) -> dict[str, Any] | None:
        t = s.imap_state
        row = self.conn.execute(select(t).where(t.c.mailbox == mailbox)).first()
        return dict(row._mapping) if row else None

    @refused("records an IMAP poll's progress (intake writes, never a worker's plan)")
    def put_imap_state_txn(self, row: dict[str, Any]) -> None:
        """Insert or replace a mailbox's IMAP state (one poller per mailbox at a time is not
        required: a UID taken twice is a duplicate by its Message-ID)."""
        t = s.imap_state
        done = self.conn.execute(update(t).where(t.c.mailbox == row["mailbox"])
                                 .values(**row)).rowcount
        if not done:
            self.conn.execute(insert_or_ignore(self.conn, t).values(**row)
                              .on_conflict_do_nothing(index_elements=["mailbox"]))
