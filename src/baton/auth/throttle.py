"""Failed logins, counted per (account, client address) pair, per account and per client
address, and the lockouts they earn.

Every password check that fails (the web UI's login form) counts against the pair of the
account name tried and the client address, against the account from any address, and
against the address; every API token that is unknown counts against the address only.
Within ``WINDOW``, ``PAIR_LIMIT`` failures of one account from one address lock that pair
(that address may not try that account again; the account stays open elsewhere),
``ACCOUNT_LIMIT`` failures of one account from all addresses together lock the account (a
guessing attack spread over many addresses), and ``ADDRESS_LIMIT`` from one address lock
the address: for ``FIRST_LOCKOUT``, doubling with each lockout in a row up to
``MAX_LOCKOUT``. While locked, attempts are refused before any password or token is looked
at, so a correct password does not get in either, with one exception: a locked *account*
still lets in an address its user logged in from successfully within ``KNOWN_FOR`` (that
pair's own lock, and the address's, still hold). So a stranger who knows a user's name can
lock that user out only of the stranger's own address, until the high account limit. (A
client whose address is unknown, ``""``, counts as one address for its pairs, and has no
address limit, as before.)

A successful login clears its pair's count and marks the address as known for the account;
an admin can clear an account (and every pair of it) or an address (``baton users unlock``,
``POST /api/users/{name}/unlock``). Lockouts and unlocks are audit events; the counts live
in the database, so restarting ``baton serve`` forgives nothing and every process sees them.

The rows (``baton_login_throttle``, keyed by kind and name): ``account`` and ``address``
(the name tried, the address); ``pair`` (name: the account's unlock generation and a digest
of account and address, so that an unlock, which cannot list the pairs, leaves the old ones
behind unread; they are forgotten when idle like the rest); ``pairs`` (name: the account;
``lockouts`` holds its unlock generation, ``locked_until`` the latest end of a pair lock in
that generation, so a check reads the pair's row only while some pair of the account is
locked); ``known`` (name: the pair's digest; ``updated_at``: the last successful login).
Rows idle for ``FORGET_AFTER`` (``known``: ``KNOWN_FOR``) are deleted as failures are
counted. A pair's row is only ever written in a transaction that also writes its account's
``pairs`` row (locked first, same time), and both kinds are swept in one transaction, so
the ``pairs`` row, and with it the generation, is never forgotten while a pair row of an
older generation remains to be found again.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from baton.clock import Clock, iso, parse_iso
from baton.store.ports import People
from baton.store.sql import SqlStore

Kind = Literal["account", "address"]  # what an admin unlocks
LockKind = Literal["account", "address", "pair"]  # what a lockout holds
PAIR_LIMIT = 5  # one account from one address
ACCOUNT_LIMIT = 50  # one account from all addresses together
ADDRESS_LIMIT = 20  # several people may share an address (an office behind one NAT)
WINDOW = timedelta(minutes=15)
FIRST_LOCKOUT = timedelta(minutes=1)
MAX_LOCKOUT = timedelta(hours=1)
FORGET_AFTER = timedelta(hours=24)  # a key idle this long starts again from nothing
KNOWN_FOR = timedelta(days=30)  # an address a user logged in from passes an account lock
LIMITS: dict[str, int] = {"pair": PAIR_LIMIT, "account": ACCOUNT_LIMIT, "address": ADDRESS_LIMIT}
MAX_NAME = 200
_MARKS = "pairs"  # the row of an account's pair generation and latest pair lock
_KNOWN = "known"


@dataclass(frozen=True)
class Locked:
    """An account, an address, or an account from one address (``pair``: ``name`` is the
    account) that may not try again until ``until``."""

    kind: LockKind
    name: str
    until: datetime

    def retry_after(self, now: datetime) -> int:
        """Whole seconds to wait (at least 1): the ``Retry-After`` header's value."""
        return max(1, math.ceil((self.until - now).total_seconds()))

    def explain(self, now: datetime) -> str:
        wait = self.retry_after(now)
        minutes = f"{math.ceil(wait / 60)} minute(s)" if wait >= 60 else f"{wait} second(s)"
        what = {"account": "this account", "address": "your address",
                "pair": "this account from your address"}[self.kind]
        return (f"Too many failed attempts for {what}: try again in {minutes}, "
                "or ask an admin to unlock it.")


def lockout_for(lockouts: int) -> timedelta:
    """How long the ``lockouts``-th lockout in a row lasts (1 min, 2, 4 … up to 1 h)."""
    doublings = min(max(lockouts - 1, 0), 16)
    return min(FIRST_LOCKOUT * (1 << doublings), MAX_LOCKOUT)


def _digest(account: str, address: str) -> str:
    """The pair's key: fixed length whatever the name tried (both are cut to ``MAX_NAME``
    first, as the account's and the address's own keys are)."""
    text = f"{account[:MAX_NAME]}\n{address[:MAX_NAME]}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _pair_name(generation: int, account: str, address: str) -> str:
    return f"{generation}:{_digest(account, address)}"


def _until(row: dict[str, Any] | None, now: datetime) -> datetime | None:
    """The end of the row's lockout, if one is in force."""
    if row is None or not row["locked_until"]:
        return None
    until = parse_iso(row["locked_until"])
    return until if until > now else None


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
        """:meth:`locked`, read in the caller's transaction. An address alone (an API token)
        reads just the address's row; an account reads its row and its pairs' marks, then
        the pair's row only while a pair of it is locked, and whether the address is known
        only while the account is locked."""
        now = self.clock.now()
        keys: list[tuple[str, str]] = []
        if account:
            account = account[:MAX_NAME]
            keys += [("account", account), (_MARKS, account)]
        if address is not None:
            address = address[:MAX_NAME]
        if address:
            keys.append(("address", address))
        rows = {r["kind"]: r for r in tx.throttle_rows_txn(keys)}
        found: list[Locked] = []
        named: list[tuple[LockKind, str | None]] = [("account", account), ("address", address)]
        for kind, name in named:
            until = _until(rows.get(kind), now)
            if name and until is not None:
                found.append(Locked(kind, name, until))
        marks = rows.get(_MARKS)
        if account and address is not None and _until(marks, now) is not None:
            assert marks is not None
            pair = tx.throttle_rows_txn([("pair", _pair_name(marks["lockouts"], account, address))])
            until = _until(pair[0] if pair else None, now)
            if until is not None:
                found.append(Locked("pair", account, until))
        if account and address is not None and any(lock.kind == "account" for lock in found):
            known = tx.throttle_rows_txn([(_KNOWN, _digest(account, address))])
            if known and parse_iso(known[0]["updated_at"]) + KNOWN_FOR > now:
                found = [lock for lock in found if lock.kind != "account"]
        return max(found, key=lambda lock: lock.until) if found else None

    def failed(self, *, account: str | None = None, address: str | None = None) -> Locked | None:
        """Count one failed attempt; the lockout it brought about, if it did."""
        now = self.clock.now()
        stamp = iso(now)
        caused: Locked | None = None
        account = account[:MAX_NAME] if account else None
        address = address[:MAX_NAME] if address is not None else None
        with self.store.write() as tx:
            # (rows locked in one order: an account's marks, the pair, the account, the address)
            keys: list[tuple[LockKind, str, str]] = []  # kind, the row's name, the name shown
            marks: dict[str, Any] | None = None
            if account and address is not None:  # ("": a client of unknown address)
                marks = tx.lock_throttle_row_txn(_MARKS, account, stamp)
                keys.append(("pair", _pair_name(marks["lockouts"], account, address), account))
            if account:
                keys.append(("account", account, account))
            if address:
                keys.append(("address", address, address))
            pair_until: str | None = None
            for kind, key, name in keys:
                row = tx.lock_throttle_row_txn(kind, key, stamp)
                values = self._after_failure(row, now)
                tx.update_throttle_txn(kind, key, values)
                if values.get("locked_until") and values["locked_until"] != row["locked_until"]:
                    lock = Locked(kind, name, parse_iso(values["locked_until"]))
                    # (of two as long, the wider: the account's over the pair's)
                    caused = lock if caused is None or lock.until >= caused.until else caused
                    pair_until = values["locked_until"] if kind == "pair" else pair_until
                    tx.append_events_txn([self._event(
                        "login_locked", address or "anonymous", stamp,
                        {"kind": kind, "name": name, "address": address,
                         "until": values["locked_until"], "lockouts": values["lockouts"],
                         "failures": row["failures"] + 1})])
            if marks is not None:  # touched with every pair of it (forgotten after them)
                marked = marks["locked_until"]
                if pair_until and (not marked or parse_iso(pair_until) > parse_iso(marked)):
                    marked = pair_until
                tx.update_throttle_txn(_MARKS, account or "", {"locked_until": marked,
                                                                "updated_at": stamp})
            forget = iso(now - FORGET_AFTER)  # forget what has been quiet for a day
            for swept in ("account", "address"):
                tx.delete_throttle_txn(swept, idle_before=forget)
            if marks is not None:  # (a password's failure: an API token's stays as cheap)
                for swept in ("pair", _MARKS):  # (together: see the module's notes)
                    tx.delete_throttle_txn(swept, idle_before=forget)
                tx.delete_throttle_txn(_KNOWN, idle_before=iso(now - KNOWN_FOR))
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

    def succeeded(self, account: str, address: str | None = None) -> None:
        """A correct password: the failures and lockouts of the account from this address are
        forgotten, and the address is known for the account (it passes an account lock for
        ``KNOWN_FOR``). The account's count from all addresses stays: a success here says
        nothing of the guesses made elsewhere."""
        if address is None:
            return
        account, address = account[:MAX_NAME], address[:MAX_NAME]
        stamp = iso(self.clock.now())
        known = _digest(account, address)
        with self.store.write() as tx:
            marks = tx.throttle_rows_txn([(_MARKS, account)])
            if marks:
                tx.delete_throttle_txn("pair", _pair_name(marks[0]["lockouts"], account, address))
            row = tx.lock_throttle_row_txn(_KNOWN, known, stamp)
            if row["updated_at"] != stamp:
                tx.update_throttle_txn(_KNOWN, known, {"updated_at": stamp})

    def unlock(self, kind: Kind, name: str, actor: str) -> Locked | None:
        """Forget an account's failures (from every address: its pairs too) or an address's
        and lift its lockout; audited. Returns the lockout lifted, if one was in force (for
        an account: the longest of its own and its pairs')."""
        now = self.clock.now()
        stamp = iso(now)
        name = name[:MAX_NAME]
        with self.store.write() as tx:
            ends: list[datetime | None] = []
            if kind == "account":  # a new generation of pairs: the old ones are never read again
                marks = tx.lock_throttle_row_txn(_MARKS, name, stamp)  # (first, as failed())
                ends.append(_until(marks, now))
                tx.update_throttle_txn(_MARKS, name, {"lockouts": marks["lockouts"] + 1,
                                                      "locked_until": None, "updated_at": stamp})
            rows = tx.throttle_rows_txn([(kind, name)])
            ends.append(_until(rows[0] if rows else None, now))
            tx.delete_throttle_txn(kind, name)
            was = max((end for end in ends if end is not None), default=None)
            lifted = Locked(kind, name, was) if was is not None else None
            tx.append_events_txn([self._event(
                "login_unlocked", actor, stamp,
                {"kind": kind, "name": name,
                 "was_locked_until": iso(lifted.until) if lifted else None})])
        return lifted

    @staticmethod
    def _event(type_: str, actor: str, at: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"at": at, "type": type_, "actor": actor[:MAX_NAME], "record_id": None,
                "run_id": None, "data": data}
