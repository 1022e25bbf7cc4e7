"""The idempotency keys table as transaction methods: the SQL of
:mod:`baton.runtime.idempotency`, which keeps the rules (fingerprints, expiry).

A key is claimed in the transaction that creates what the request creates, or makes the
change it asks for (a work item's completion, a run's cancel), so a crash commits both or
neither; the primary key (principal, key) makes a concurrent duplicate fail. A request
whose service commits on its own (users, deploys; incidents, plans, activations, unlocks)
claims the key in a write of its own first, and a failure releases it: its row is
deleted, only if it is still that request's claim. A plan never writes here: keys belong
to API requests, not a worker's batch.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, insert, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from baton.errors import IdempotencyKeyTaken
from baton.store import schema as s
from baton.store.sql.marks import refused

SWEEP_BATCH = 100  # expired keys deleted per sweep: a sweep's cost stays bounded


class IdempotencySql:
    conn: Connection

    def idempotency_key_txn(self, principal: str, key: str) -> dict[str, Any] | None:
        t = s.idempotency_keys
        row = self.conn.execute(
            select(t).where(t.c.principal == principal, t.c.key == key)).first()
        return dict(row._mapping) if row else None

    @refused("claims an idempotency key")
    def claim_idempotency_key_txn(self, row: dict[str, Any], *, expired_before: str) -> None:
        """Insert the key's row (an expired row of the same key is replaced); a key taken
        by another request raises :class:`IdempotencyKeyTaken` and the transaction must
        roll back (PostgreSQL aborts it)."""
        t = s.idempotency_keys
        self.conn.execute(delete(t).where(t.c.principal == row["principal"],
                                           t.c.key == row["key"],
                                           t.c.created_at < expired_before))
        try:
            self.conn.execute(insert(t).values(**row))
        except IntegrityError as exc:
            raise IdempotencyKeyTaken(row["principal"], row["key"]) from exc

    @refused("binds an idempotency key")
    def bind_idempotency_key_txn(self, principal: str, key: str, resource_id: str) -> None:
        """Name what the key's request created (in the transaction that created it)."""
        t = s.idempotency_keys
        self.conn.execute(update(t).where(t.c.principal == principal, t.c.key == key)
                          .values(resource_id=resource_id))

    @refused("releases an idempotency key")
    def release_idempotency_key_txn(self, principal: str, key: str, *, fingerprint: str,
                                    claimed_at: str) -> bool:
        """Delete the key's row if it is still the in-progress claim of the request that
        failed (a compare-and-set): claimed at ``claimed_at`` for a request of this
        ``fingerprint``, naming nothing made and keeping no answer. A key claimed again
        since (after it expired), or whose request got through, is left alone (False)."""
        t = s.idempotency_keys
        done = self.conn.execute(delete(t).where(
            t.c.principal == principal, t.c.key == key, t.c.fingerprint == fingerprint,
            t.c.created_at == claimed_at, t.c.resource_id.is_(None), t.c.response.is_(None)))
        return bool(done.rowcount == 1)

    @refused("stores an idempotent response")
    def store_idempotent_response_txn(self, principal: str, key: str,
                                      response: dict[str, Any]) -> bool:
        """Keep the response the key's request got, unless one is kept already."""
        t = s.idempotency_keys
        done = self.conn.execute(update(t).where(t.c.principal == principal, t.c.key == key,
                                                 t.c.response.is_(None))
                                 .values(response=response))
        return bool(done.rowcount == 1)

    @refused("deletes idempotency keys")
    def sweep_idempotency_keys_txn(self, expired_before: str) -> int:
        """Delete up to :data:`SWEEP_BATCH` keys created before ``expired_before`` (rows another
        transaction holds are skipped, not waited for)."""
        t = s.idempotency_keys
        batch = (select(t.c.principal, t.c.key).where(t.c.created_at < expired_before)
                 .order_by(t.c.created_at).limit(SWEEP_BATCH).with_for_update(skip_locked=True))
        done = self.conn.execute(delete(t).where(tuple_(t.c.principal, t.c.key).in_(batch)))
        return int(done.rowcount)
