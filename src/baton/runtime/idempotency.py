"""Idempotency keys: a request that creates something or acts on something (a work
item's completion, a run's cancel), sent again with the same key (a client retrying
after a lost answer), does nothing more and gets the first answer.

The key is claimed in the transaction that creates the record or run, or makes the
change (so a crash commits both or neither), and names what it created or acted on; the
answer is kept by a second, short write once it is built. A key whose answer was never
kept (the server died in between) is answered by reading what it names. Keys are per
principal and expire after :data:`KEY_TTL`; expired ones are swept a batch at a time as
answers are kept.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from baton.clock import Clock, iso
from baton.store.ports import Transaction
from baton.store.sql import SqlStore

KEY_TTL = timedelta(hours=24)


def fingerprint(method: str, path: str, body: Any) -> str:
    """What makes two requests the same: method, path and the body's JSON (key order and
    spacing aside)."""
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(f"{method} {path}\n{canon}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """One request's key, to be claimed by the transaction that does what it asks."""

    principal: str
    key: str
    method: str
    path: str
    fingerprint: str
    resource: str  # what it creates (record, run...) or acts on (work_item, run...)

    def claim_txn(self, tx: Transaction, now: Any, resource_id: str | None = None) -> None:
        """Claim the key first thing in the transaction that does what the request asks
        (a concurrent duplicate then waits for it and fails:
        :class:`~baton.errors.IdempotencyKeyTaken`). ``resource_id``: what it acts on,
        when that is known before (an action on something that exists, named by its
        path): bound at once, as :meth:`bind_txn` does once a create has made it."""
        tx.claim_idempotency_key_txn(
            {"principal": self.principal, "key": self.key, "method": self.method,
             "path": self.path, "fingerprint": self.fingerprint, "resource": self.resource,
             "resource_id": resource_id, "created_at": iso(now)},
            expired_before=iso(now - KEY_TTL))

    def bind_txn(self, tx: Transaction, resource_id: str) -> None:
        """Name what the request created, in the same transaction."""
        tx.bind_idempotency_key_txn(self.principal, self.key, resource_id)


@dataclass(frozen=True, slots=True)
class KeptRequest:
    """A live key: the request it was first used with and, once kept, its answer."""

    method: str
    path: str
    fingerprint: str
    resource: str
    resource_id: str | None
    response: dict[str, Any] | None  # {"status", "headers", "body"}


class IdempotencyKeys:
    """Look keys up and keep answers, on one store."""

    def __init__(self, store: SqlStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def lookup(self, principal: str, key: str) -> KeptRequest | None:
        """The key's request, unless it is unknown or expired."""
        with self.store.read() as tx:
            row = tx.idempotency_key_txn(principal, key)
        if row is None or row["created_at"] < iso(self.clock.now() - KEY_TTL):
            return None
        return KeptRequest(row["method"], row["path"], row["fingerprint"], row["resource"],
                           row["resource_id"], row["response"])

    def keep_response(self, principal: str, key: str, response: dict[str, Any]) -> None:
        """Keep the answer the key's request got (the first kept wins), and sweep a batch
        of expired keys."""
        with self.store.write() as tx:
            self.keep_response_txn(tx, principal, key, response)

    def keep_response_txn(self, tx: Transaction, principal: str, key: str,
                          response: dict[str, Any]) -> None:
        """:meth:`keep_response` in the caller's transaction (a group commit's)."""
        tx.store_idempotent_response_txn(principal, key, response)
        tx.sweep_idempotency_keys_txn(iso(self.clock.now() - KEY_TTL))
