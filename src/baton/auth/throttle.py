"""Failed logins, counted per account and per client address, and the lockouts they earn.

Every password check that fails (the web UI's login form) counts against the account
name tried and against the client address; every API token that is unknown counts against
the address. ``ACCOUNT_LIMIT`` failures of one account, or ``ADDRESS_LIMIT`` from one
address, within ``WINDOW`` lock it: for ``FIRST_LOCKOUT``, doubling with each lockout in a
row up to ``MAX_LOCKOUT``. While locked, attempts are refused before any password or token
is looked at, so a correct password does not get in either. A successful login clears the
account's count; an admin can clear any (``baton users unlock``, ``POST
/api/users/{name}/unlock``). Lockouts and unlocks are audit events; the counts live in the
database, so restarting ``baton serve`` forgives nothing and every process sees them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from baton.clock import Clock, iso, parse_iso
from baton.store.ports import People
from baton.store.sql import SqlStore

Kind = Literal["account", "address"]
ACCOUNT_LIMIT = 5
ADDRESS_LIMIT = 20  # several people may share an address (an office behind one NAT)
WINDOW = timedelta(minutes=15)
FIRST_LOCKOUT = timedelta(minutes=1)
MAX_LOCKOUT = timedelta(hours=1)
FORGET_AFTER = timedelta(hours=24)  # a key idle this long starts again from nothing
LIMITS: dict[str, int] = {"account": ACCOUNT_LIMIT, "address": ADDRESS_LIMIT}
MAX_NAME = 200


@dataclass(frozen=True)
class Locked:
    """An account or address that may not try again until ``until``."""

    kind: Kind
    name: str
    until: datetime

    def retry_after(self, now: datetime) -> int:
        """Whole seconds to wait (at least 1): the ``Retry-After`` header's value."""
        return max(1, math.ceil((self.until - now).total_seconds()))

    def explain(self, now: datetime) -> str:
        wait = self.retry_after(now)
        minutes = f"{math.ceil(wait / 60)} minute(s)" if wait >= 60 else f"{wait} second(s)"
        what = "this account" if self.kind == "account" else "your address"
        return (f"Too many failed attempts for {what}: try again in {minutes}, "
                "or ask an admin to unlock it.")


def lockout_for(lockouts: int) -> timedelta:
    """How long the ``lockouts``-th lockout in a row lasts (1 min, 2, 4 … up to 1 h)."""
    doublings = min(max(lockouts - 1, 0), 16)
    return min(FIRST_LOCKOUT * (1 << doublings), MAX_LOCKOUT)


def _keys(account: str | None, address: str | None) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    if account:
        keys.append(("account", account[:MAX_NAME]))
    if address:
        keys.append(("address", address[:MAX_NAME]))
    return keys


class LoginThrottle:
    def __init__(self, store: SqlStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock

    def locked(self, *, account: str | None = None, address: str | None = None) -> Locked | None:
        """The lockout that refuses this attempt now (the longest), or None."""
        with self.store.read() as tx:
            return self.locked_txn(tx, account=account, address=address)

    def locked_txn(self, tx: People, *, account: str | None = None,
                   address: str | None = None) -> Locked | None:
        """:meth:`locked`, read in the caller's transaction."""
        now = self.clock.now()
        rows = tx.throttle_rows_txn(_keys(account, address))
        found = [Locked(r["kind"], r["name"], parse_iso(r["locked_until"]))
                 for r in rows if r["locked_until"] and parse_iso(r["locked_until"]) > now]
        return max(found, key=lambda lock: lock.until) if found else None

    def failed(self, *, account: str | None = None, address: str | None = None) -> Locked | None:
        """Count one failed attempt; the lockout it brought about, if it did."""
        now = self.clock.now()
        stamp = iso(now)
        caused: Locked | None = None
        with self.store.write() as tx:
            for kind, name in _keys(account, address):
                row = tx.lock_throttle_row_txn(kind, name, stamp)
                values = self._after_failure(row, now)
                tx.update_throttle_txn(kind, name, values)
                if values.get("locked_until") and values["locked_until"] != row["locked_until"]:
                    lock = Locked(kind, name, parse_iso(values["locked_until"]))  # type: ignore[arg-type]
                    caused = lock if caused is None or lock.until > caused.until else caused
                    tx.append_events_txn([self._event(
                        "login_locked", address or "anonymous", stamp,
                        {"kind": kind, "name": name, "address": address,
                         "until": values["locked_until"], "lockouts": values["lockouts"],
                         "failures": row["failures"] + 1})])
            for kind in LIMITS:  # forget what has been quiet for a day
                tx.delete_throttle_txn(kind, idle_before=iso(now - FORGET_AFTER))
        return caused

    @staticmethod
    def _after_failure(row: dict[str, Any], now: datetime) -> dict[str, Any]:
        stamp = iso(now)
        if row["locked_until"] and parse_iso(row["locked_until"]) > now:
            return {"updated_at": stamp}  # refused before it was checked: nothing to count
        failures, window_start = row["failures"], row["window_start"]
        if parse_iso(window_start) + WINDOW <= now:
            failures, window_start = 0, stamp
        failures += 1
        values: dict[str, Any] = {"failures": failures, "window_start": window_start,
                                  "updated_at": stamp}
        if failures >= LIMITS[row["kind"]]:
            lockouts = row["lockouts"] + 1
            values.update(failures=0, window_start=stamp, lockouts=lockouts,
                          locked_until=iso(now + lockout_for(lockouts)))
        return values

    def succeeded(self, account: str) -> None:
        """A correct password: the account's failures and lockouts are forgotten."""
        with self.store.write() as tx:
            tx.delete_throttle_txn("account", account[:MAX_NAME])

    def unlock(self, kind: Kind, name: str, actor: str) -> Locked | None:
        """Forget an account's (or address's) failures and lift its lockout; audited.
        Returns the lockout lifted, if one was in force."""
        now = self.clock.now()
        with self.store.write() as tx:
            rows = tx.throttle_rows_txn([(kind, name[:MAX_NAME])])
            tx.delete_throttle_txn(kind, name[:MAX_NAME])
            was = rows[0]["locked_until"] if rows else None
            lifted = Locked(kind, name, parse_iso(was)) if was and parse_iso(was) > now else None
            tx.append_events_txn([self._event(
                "login_unlocked", actor, iso(now),
                {"kind": kind, "name": name,
                 "was_locked_until": iso(lifted.until) if lifted else None})])
        return lifted

    @staticmethod
    def _event(type_: str, actor: str, at: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"at": at, "type": type_, "actor": actor[:MAX_NAME], "record_id": None,
                "run_id": None, "data": data}
