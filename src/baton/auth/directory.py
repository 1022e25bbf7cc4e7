"""The user directory: users, roles, group and queue memberships, API tokens, UI sessions.

Passwords are argon2 hashes (pwdlib). API tokens and session cookies are long random
secrets; only their SHA-256 is stored (a fast hash is right for high-entropy secrets:
nothing to brute-force), so a copy of the database gives no one a way in.

Credentials after a change (:meth:`Directory.update_user`, whoever makes it: the user, an
admin over the API, ``baton users update``):

* a new password ends every UI session of the user at once, but the one that made the
  change when it was the user's own (``keep_session``): whoever held an old session must
  log in again, with the new password;
* deactivating a user ends all their UI sessions, and refuses their API tokens while they
  are inactive (every token lookup reads ``active``); reactivating them brings the tokens
  back, not the sessions;
* API tokens are credentials of their own: a new password leaves them working. They end
  when revoked (``baton tokens revoke``, ``DELETE /api/tokens/{id}``).

Which user names exist is told only to who may list users (``users``, or ``team``: the
Team page lists everyone). Naming a delegate is open to every user, so for anyone else an
unknown name is not refused: it is kept as named, and acts for no one (see
:meth:`Directory.update_user`, ``may_list_users``); a user added later under that name does
not inherit it (the people store clears it when the user is added).

Who gave whom approval power is audited: every change of a user's delegation (named,
changed, its dates changed, ended, or cleared because a user of the delegate's name was
added since) appends a ``delegation_changed`` event in the transaction that makes it, with
the actor, the user and the delegation before and after (:func:`delegation_changed`);
:meth:`Directory.delegation_history` reads them back (``baton users show``,
``GET /api/users/{name}``).
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from baton.auth.roles import ROLES, Permission, permissions
from baton.auth.throttle import Locked, LoginThrottle
from baton.clock import Clock, iso, parse_iso
from baton.errors import NotFound, TransitionConflict, ValidationError
from baton.ids import IdGenerator
from baton.store.ports import People
from baton.store.sql import SqlStore

if TYPE_CHECKING:
    from pwdlib import PasswordHash

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,199}$"
"""User, group and queue names (the API declares it; checked with ``fullmatch``, so a
trailing newline, which ``$`` lets through ``re.match``, is refused too)."""
_NOT_IN_EMAIL = r"@\x00-\x20\x7f-\xa0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000\ufeff"
EMAIL_PATTERN = rf"^[^{_NOT_IN_EMAIL}]+@[^{_NOT_IN_EMAIL}]+$"
r"""An address: no spaces, controls or second ``@``. Spelled out rather than ``\s``, whose
meaning differs between Python, JSON Schema and pydantic's regex engine (U+0085, U+001C…)."""
NAME_RE = re.compile(NAME_PATTERN)
EMAIL_RE = re.compile(EMAIL_PATTERN)
TOKEN_PREFIX = "baton_"
SESSION_TTL = timedelta(hours=12)
TOKEN_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at is refreshed at most this often
MIN_PASSWORD = 8
ROUTE_JOB = "route"  # (baton.work.router's: route what waits in a person's queues and groups)



@functools.cache
def _hasher() -> PasswordHash:
    """argon2 through pwdlib, loaded when a password is hashed or checked (not by a CLI read)."""
    from pwdlib import PasswordHash

    return PasswordHash.recommended()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the user does not exist, so a wrong name costs as long as a
    wrong password. Made on first use: hashing costs ~0.2 s of CPU, which every CLI command
    paid at import."""
    return _hasher().hash("baton-dummy-password")


APPROVAL = "approval"  # the step type whose items a delegate may act on
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Delegation:
    """Who may act on a user's approvals for them, from ``start`` to ``until`` (dates,
    both inclusive, UTC; None: open-ended)."""

    to: str
    start: str | None = None
    until: str | None = None

    def in_force(self, today: str) -> bool:
        """Is it in force on ``today`` (YYYY-MM-DD)?"""
        return (self.start is None or self.start <= today) and (
            self.until is None or today <= self.until)


def delegation_of(row: Mapping[str, Any]) -> Delegation | None:
    """A user row's delegation, in force or not (None when it names no delegate)."""
    to = row.get("delegate")
    return Delegation(to, row.get("delegate_from"), row.get("delegate_until")) if to else None


DELEGATION_CHANGED = "delegation_changed"
"""The audit event of a change of a user's delegation (no run, no record): ``data`` holds
``user``, ``change`` (``set``: from none; ``changed``: another delegate or other dates;
``ended``: to none), ``before`` and ``after`` (``delegate``, ``delegate_from``,
``delegate_until``, or null for none) and, when the directory ended it on its own, a
``reason``; the ``actor`` is who made the change."""
HISTORY_LIMIT = 50  # the latest delegation changes a user's history shows


def delegation_json(d: Delegation | None) -> dict[str, str | None] | None:
    """A delegation as the audit event and the API say it (None: no delegate)."""
    return None if d is None else {"delegate": d.to, "delegate_from": d.start,
                                   "delegate_until": d.until}


def delegation_changed(user: str, actor: str, at: str, before: Delegation | None,
                       after: Delegation | None, reason: str | None = None) -> dict[str, Any]:
    """The ``delegation_changed`` audit event row of ``user``'s delegation going from
    ``before`` to ``after`` (they differ), made by ``actor``."""
    change = "set" if before is None else "ended" if after is None else "changed"
    data: dict[str, Any] = {"user": user, "change": change, "before": delegation_json(before),
                            "after": delegation_json(after)}
    if reason:
        data["reason"] = reason
    return {"at": at, "type": DELEGATION_CHANGED, "actor": actor[:200], "record_id": None,
            "run_id": None, "data": data}


def ended_by_new_user_txn(tx: People, name: str, actor: str, at: str) -> list[dict[str, Any]]:
    """The ``delegation_changed`` events of the delegations the people store ends when a
    user ``name`` is added (read before the insert that ends them: they named ``name``
    before that user existed, so they meant someone else, or no one). For whoever adds
    users: :meth:`Directory.add_user`, a bundle's import."""
    reason = (f"a user {name!r} was added: a delegation to that name made before they "
              "existed does not pass to them")
    return [delegation_changed(r["name"], actor, at,
                               Delegation(name, r["delegate_from"], r["delegate_until"]),
                               None, reason)
            for r in sorted(tx.delegator_rows_txn(name), key=lambda r: str(r["name"]))]


@dataclass(frozen=True)
class DelegationChange:
    """One ``delegation_changed`` audit event, as the history of a user shows it."""

    id: int
    at: str
    actor: str  # who made the change
    user: str  # whose delegation it is
    change: str  # set, changed, ended
    before: Mapping[str, str | None] | None  # delegate, delegate_from, delegate_until
    after: Mapping[str, str | None] | None
    reason: str | None = None  # why the directory ended it on its own

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> DelegationChange:
        d = event.get("data") or {}
        return cls(int(event["id"]), str(event["at"]), str(event["actor"]),
                   str(d.get("user")), str(d.get("change")), d.get("before"), d.get("after"),
                   d.get("reason"))

    def to_json(self) -> dict[str, Any]:
        """What ``GET /api/users/{name}`` and ``baton users show --json`` give."""
        return {"id": self.id, "at": self.at, "actor": self.actor, "user": self.user,
                "change": self.change, "before": self.before, "after": self.after,
                "reason": self.reason}

    def describe(self) -> str:
        return describe_delegation_change(self.to_json())


def describe_delegation_change(data: Mapping[str, Any]) -> str:
    """A ``delegation_changed`` event's data as one line: ``ann names bob (until
    2026-12-24) as delegate``, ``ann's delegate: bob (until 2026-12-24) → cyd``, ``ann's
    delegation to cyd ended`` (and the directory's reason, when it ended it)."""
    def said(d: Any) -> str:
        if not isinstance(d, Mapping) or not d.get("delegate"):
            return "nobody"
        start, until = d.get("delegate_from"), d.get("delegate_until")
        when = (f" (from {start} to {until})" if start and until else f" (from {start})"
                if start else f" (until {until})" if until else "")
        return f"{d['delegate']}{when}"

    user, before, after = data.get("user"), data.get("before"), data.get("after")
    if data.get("change") == "set":
        text = f"{user} names {said(after)} as delegate"
    elif data.get("change") == "ended":
        text = f"{user}'s delegation to {said(before)} ended"
    else:
        text = f"{user}'s delegate: {said(before)} → {said(after)}"
    return text + (f" ({data['reason']})" if data.get("reason") else "")


@dataclass(frozen=True)
class User:
    name: str
    display_name: str
    email: str | None
    roles: frozenset[str]
    groups: frozenset[str] = field(default_factory=frozenset)
    queues: frozenset[str] = field(default_factory=frozenset)
    active: bool = True
    has_password: bool = False
    delegation: Delegation | None = None  # who may act on my approvals (and when)
    # whose approvals I may act on today, as their delegate (when I was read)
    acting_for: frozenset[str] = field(default_factory=frozenset)

    @property
    def permissions(self) -> frozenset[Permission]:
        return permissions(self.roles) if self.active else frozenset()

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    @property
    def may_list_users(self) -> bool:
        """May this user learn which user names exist? (``users``: the users list;
        ``team``: the Team lists everyone.)"""
        return self.can(Permission.USERS) or self.can(Permission.TEAM)

    def in_scope(self, item: Mapping[str, Any]) -> bool:
        """Is this work item assigned to me, to one of my groups or one of my queues
        (or claimed by me)?"""
        kind, assignee = item.get("assignee_kind"), item.get("assignee")
        return bool(
            item.get("claimed_by") == self.name
            or (kind == "user" and assignee == self.name)
            or (kind == "group" and assignee in self.groups)
            or (kind == "queue" and assignee in self.queues)
            or self.delegated(item)
        )

    def delegated(self, item: Mapping[str, Any]) -> bool:
        """Is this an approval of someone I act for as their delegate today?"""
        return bool(item.get("assignee_kind") == "user" and item.get("assignee") in self.acting_for
                    and item.get("step_type") == APPROVAL)

    def is_member(self, item: Mapping[str, Any]) -> bool:
        """Is this work item assigned to me, or to a group or queue I belong to now? (Not
        "claimed by me": acting on an item needs the membership it was given through.)"""
        kind, assignee = item.get("assignee_kind"), item.get("assignee")
        return bool((kind == "user" and assignee == self.name)
                    or (kind == "group" and assignee in self.groups)
                    or (kind == "queue" and assignee in self.queues))

    def may_see_item(self, item: Mapping[str, Any]) -> bool:
        return self.can(Permission.WORK_ALL) or (self.can(Permission.WORK) and self.in_scope(item))

    def to_json(self) -> dict[str, Any]:
        d = self.delegation
        return {"name": self.name, "display_name": self.display_name, "email": self.email,
                "roles": sorted(self.roles), "groups": sorted(self.groups),
                "queues": sorted(self.queues), "active": self.active,
                "delegate": d.to if d else None, "delegate_from": d.start if d else None,
                "delegate_until": d.until if d else None,
                "acting_for": sorted(self.acting_for)}


@dataclass(frozen=True)
class TokenInfo:
    id: str
    user_name: str
    label: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


secret_digest = _digest
"""What an API token or a session cookie is stored under: its SHA-256, in hex (what
:mod:`baton.web.lookups` reads ahead by)."""


def _check_names(what: str, names: Iterable[str], problems: dict[str, str]) -> list[str]:
    out = sorted(set(names))
    bad = [n for n in out if not NAME_RE.fullmatch(n)]
    if bad:
        problems[what] = f"invalid name(s) {', '.join(map(repr, bad))}: use letters, digits, _ . @ -"
    return out


class Directory:
    def __init__(self, store: SqlStore, clock: Clock, ids: IdGenerator) -> None:
        self.store = store
        self.clock = clock
        self.ids = ids
        self.throttle = LoginThrottle(store, clock)  # failed logins and lockouts

    def _now(self) -> str:
        return iso(self.clock.now())

    # ---- users --------------------------------------------------------------------------
    def add_user(self, name: str, *, roles: Iterable[str], groups: Iterable[str] = (),
                 queues: Iterable[str] = (), email: str | None = None,
                 password: str | None = None, display_name: str | None = None,
                 actor: str = "system") -> User:
        """A new user. Delegations that named ``name`` before (made by someone who may not
        list users) end, audited as by ``actor``."""
        problems: dict[str, str] = {}
        if not NAME_RE.fullmatch(name or ""):
            problems["name"] = f"invalid user name {name!r}: use letters, digits, _ . @ - (max 200)"
        role_list = self._check_roles(roles, problems)
        group_list = _check_names("groups", groups, problems)
        queue_list = _check_names("queues", queues, problems)
        self._check_email(email, problems)
        if password is not None:
            self._check_password(password, problems)
        if problems:
            raise ValidationError(f"user {name!r}", problems)
        now = self._now()
        with self.store.write() as tx:
            if tx.user_row_txn(name) is not None:
                raise TransitionConflict(
                    f"user {name!r} already exists; change it with `baton users update {name}`")
            tx.append_events_txn(ended_by_new_user_txn(tx, name, actor, now))
            tx.insert_user_txn({
                "name": name, "display_name": display_name or name, "email": email or None,
                "roles": role_list, "password_hash": _hasher().hash(password) if password else None,
                "active": True, "created_at": now, "updated_at": now})
            tx.set_memberships_txn(name, "group", group_list)
            tx.set_memberships_txn(name, "queue", queue_list)
            if group_list or queue_list:  # what waits in their pools may be theirs now
                tx.enqueue_job_txn(ROUTE_JOB, None, {"user": name}, now, now)
            return self.user_txn(tx, name)

    def update_user(self, name: str, *, roles: Iterable[str] | None = None,
                    groups: Iterable[str] | None = None, queues: Iterable[str] | None = None,
                    email: str | None = None, display_name: str | None = None,
                    active: bool | None = None, password: str | None = None,
                    delegate: str | None = None, delegate_from: str | None = None,
                    delegate_until: str | None = None, may_list_users: bool = True,
                    keep_session: str | None = None, actor: str = "system") -> User:
        """Change what is given (None: unchanged). ``delegate`` names who may act on the
        user's approvals ("" ends the delegation), from ``delegate_from`` until
        ``delegate_until`` (YYYY-MM-DD, inclusive; "" or not given with a new delegate:
        open-ended); dates alone change the current delegation's.

        ``may_list_users``: whether whoever asks may learn which user names exist. If not
        (a user naming their own delegate without ``users`` or ``team``), a delegate who is
        not a user is kept as named rather than refused, so the answer is the same for a
        name that exists and one that does not; it acts for no one.

        A new password or ``active=False`` ends the user's UI sessions, but
        ``keep_session`` (the session cookie of the user's own request that made the
        change). API tokens stay (see the module's docstring).

        A change of the delegation is audited (``delegation_changed``, by ``actor``: who
        asks) in the same transaction; asking for the delegation the user has already
        changes nothing and is not. The user's row is locked first when the delegation is
        asked about, so two changes at once are told apart (each one's ``before`` is what
        the other left)."""
        problems: dict[str, str] = {}
        values: dict[str, Any] = {}
        if roles is not None:
            values["roles"] = self._check_roles(roles, problems)
        group_list = _check_names("groups", groups, problems) if groups is not None else None
        queue_list = _check_names("queues", queues, problems) if queues is not None else None
        if email is not None:
            self._check_email(email, problems)
            values["email"] = email or None
        if password is not None:
            self._check_password(password, problems)
            values["password_hash"] = _hasher().hash(password)
        if display_name is not None:
            values["display_name"] = display_name
        if active is not None:
            values["active"] = active
        if problems:
            raise ValidationError(f"user {name!r}", problems)
        now = self._now()
        delegating = not (delegate is None and delegate_from is None and delegate_until is None)
        with self.store.write() as tx:
            if delegating:  # (an UPDATE: the row is locked until the commit, PostgreSQL too)
                tx.update_user_txn(name, {"updated_at": now})
            current = self.user_txn(tx, name)  # NotFound
            delegation = self._delegation_txn(tx, current, delegate, delegate_from,
                                              delegate_until, may_list_users)
            values.update(delegation)
            if values:
                tx.update_user_txn(name, {**values, "updated_at": now})
            after = delegation_of(delegation) if delegation else current.delegation
            if after != current.delegation:
                tx.append_events_txn([delegation_changed(name, actor, now, current.delegation,
                                                         after)])
            if group_list is not None:
                tx.set_memberships_txn(name, "group", group_list)
            if queue_list is not None:
                tx.set_memberships_txn(name, "queue", queue_list)
            if active is False or password is not None:  # sign the user out everywhere
                self._end_sessions_txn(tx, name, keep=keep_session)
            if group_list is not None or queue_list is not None or active \
                    or "roles" in values:  # (joined a pool, back, or may work items now:
                now = self._now()         # what waits there may be theirs)
                tx.enqueue_job_txn(ROUTE_JOB, None, {"user": name}, now, now)
            return self.user_txn(tx, name)

    def _end_sessions_txn(self, tx: People, user_name: str, *, keep: str | None) -> None:
        """End every UI session of the user but ``keep`` (a session cookie), if it is one
        of theirs and still live: deleted with the rest, and written back as it was (same
        cookie, CSRF token and expiry)."""
        kept = tx.session_row_txn(_digest(keep)) if keep else None
        tx.delete_sessions_txn(user_name=user_name)
        now = self.clock.now()
        if (kept is not None and kept["user_name"] == user_name
                and parse_iso(kept["expires_at"]) > now):
            tx.insert_session_txn(dict(kept), sweep_before=iso(now))

    def get_user(self, name: str) -> User:
        with self.store.read() as tx:
            return self.user_txn(tx, name)

    def find_user(self, name: str) -> User | None:
        with self.store.read() as tx:
            row = tx.user_row_txn(name)
            return self._to_user_txn(tx, row) if row is not None else None

    def delegation_history(self, name: str, limit: int = HISTORY_LIMIT) -> list[DelegationChange]:
        """The latest ``limit`` changes (newest first) of the delegation of user ``name``
        and of the delegations naming them as the delegate (their ``delegation_changed``
        audit events). NotFound if no such user."""
        def names(e: Mapping[str, Any]) -> bool:
            d = e.get("data") or {}
            return d.get("user") == name or any(
                isinstance(side, Mapping) and side.get("delegate") == name
                for side in (d.get("before"), d.get("after")))

        with self.store.read() as tx:
            self.user_txn(tx, name)
            events = tx.people_events_txn([DELEGATION_CHANGED], match=names, limit=limit)
        return [DelegationChange.of(e) for e in events]

    def list_users(self) -> list[User]:
        with self.store.read() as tx:
            return [self._to_user_txn(tx, row) for row in tx.user_rows_txn()]

    def count_users(self) -> int:
        with self.store.read() as tx:
            return tx.count_users_txn()

    def members_txn(self, tx: People, kind: str, name: str) -> list[User]:
        """Active users in a group or queue (``kind`` group|queue), or the user ``name``."""
        if kind == "user":
            row = tx.user_row_txn(name)
            users = [self._to_user_txn(tx, row)] if row is not None else []
        else:
            rows = tx.user_rows_txn(tx.member_names_txn(kind, name))
            users = [self._to_user_txn(tx, row) for row in rows]
        return [u for u in users if u.active]

    def members(self, kind: str, name: str) -> list[User]:
        with self.store.read() as tx:
            return self.members_txn(tx, kind, name)

    @staticmethod
    def has_group_txn(tx: People, name: str) -> bool:
        """Is anyone in group ``name``, active or not? A group whose people are all
        deactivated is still known: work may wait there until they are back."""
        return bool(tx.member_names_txn("group", name))

    @staticmethod
    def group_names_txn(tx: People) -> list[str]:
        """Every group someone is in (active or not), by name."""
        return tx.membership_names_txn("group")

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the name and password match an active user with a password. (No
        throttling here: the login edge asks :attr:`throttle` first and tells it after.)"""
        with self.store.read() as tx:
            row = tx.user_row_txn(name)
            user = self._to_user_txn(tx, row) if row is not None else None
        stored = row["password_hash"] if row is not None else None
        ok = _hasher().verify(password, stored or _dummy_hash())
        return user if ok and stored and user is not None and user.active else None

    # ---- API tokens ---------------------------------------------------------------------
    def create_token(self, user_name: str, label: str = "") -> tuple[TokenInfo, str]:
        """A new token for the user: returns its info and the secret (shown once, never stored)."""
        token_id = self.ids.new("tok")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = self._now()
        with self.store.write() as tx:
            self.user_txn(tx, user_name)
            tx.insert_token_txn({
                "id": token_id, "user_name": user_name, "label": label or "", "secret_hash": _digest(secret),
                "created_at": now, "last_used_at": None, "revoked_at": None})
        return TokenInfo(token_id, user_name, label or "", now, None, None), secret

    def list_tokens(self, user_name: str | None = None) -> list[TokenInfo]:
        with self.store.read() as tx:
            return [TokenInfo(r["id"], r["user_name"], r["label"], r["created_at"],
                              r["last_used_at"], r["revoked_at"])
                    for r in tx.token_rows_txn(user_name)]

    def revoke_token(self, token_id: str) -> TokenInfo:
        with self.store.write() as tx:
            row = tx.token_row_txn(token_id=token_id)
            if row is None:
                raise NotFound("API token", token_id, "see `baton tokens list`")
            if row["revoked_at"] is None:
                tx.update_token_txn(token_id, {"revoked_at": self._now()})
        return next(i for i in self.list_tokens(row["user_name"]) if i.id == token_id)

    def user_for_token(self, secret: str) -> User | None:
        """The active user a live API token belongs to, else None."""
        found = self.token_login(secret)
        return found if isinstance(found, User) else None

    def token_login(self, secret: str, address: str | None = None, *,
                    later: Callable[[Callable[[Any], None]], None] | None = None
                    ) -> User | Locked | None:
        """Who an API token authenticates, in one read: the lockout of the client
        ``address`` if it is locked out (then the token is not looked at); else the active
        user of a live token; else None (unknown, revoked, or the user is deactivated).

        The token's ``last_used_at`` is refreshed (at most every ``TOKEN_TOUCH_EVERY``) in
        a write of its own, or by ``later(write_txn)`` when given (the web app's group
        committer: the request does not wait for the write lock for it).

        Tokens are 256-bit random secrets, so the unsalted SHA-256 they are stored under is
        the right hash (nothing to brute-force) and one indexed lookup finds them."""
        touches: list[Callable[[Any], None]] = []
        with self.store.read() as tx:
            found = self.token_login_txn(tx, secret, address,
                                         later=later if later is not None else touches.append)
        for touch_txn in touches:  # (after the read: a write of its own)
            with self.store.write() as tx:
                touch_txn(tx)
        return found

    def token_login_txn(self, tx: People, secret: str, address: str | None, *,
                        later: Callable[[Callable[[Any], None]], None]) -> User | Locked | None:
        """:meth:`token_login` read in the caller's transaction (or from rows read ahead:
        :mod:`baton.web.lookups`), the ``last_used_at`` touch handed to ``later``. What it
        reads: the address's throttle row (``throttle_rows_txn``), the token and its user
        (``token_user_row_txn``), the user's memberships and delegators."""
        if address is not None:
            lock = self.throttle.locked_txn(tx, address=address)
            if lock is not None:
                return lock
        if not secret.startswith(TOKEN_PREFIX):
            return None
        row = tx.token_user_row_txn(_digest(secret))
        if row is None or row["token_revoked_at"] is not None or not row["active"]:
            return None
        user = self._to_user_txn(tx, row)
        now = self.clock.now()
        used = row["token_last_used_at"]
        if used is None or parse_iso(used) + TOKEN_TOUCH_EVERY < now:
            token_id, stamp = row["token_id"], iso(now)

            def touch_txn(tx: People) -> None:
                tx.update_token_txn(token_id, {"last_used_at": stamp})

            later(touch_txn)
        return user

    # ---- UI sessions --------------------------------------------------------------------
    def create_session(self, user_name: str, ttl: timedelta = SESSION_TTL, *,
                       replacing: str | None = None) -> tuple[str, str]:
        """A new session: returns (cookie value, CSRF token). ``replacing``: the session
        cookie the browser had (a login on top of a session): that session ends, in the
        same write, so a browser never leaves one behind that its cookie no longer names."""
        secret, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = self.clock.now()
        with self.store.write() as tx:
            if replacing:
                tx.delete_sessions_txn(secret_hash=_digest(replacing))
            tx.insert_session_txn({  # expired ones are swept first
                "secret_hash": _digest(secret), "user_name": user_name, "csrf_token": csrf,
                "created_at": iso(now), "expires_at": iso(now + ttl)}, sweep_before=iso(now))
        return secret, csrf

    def session(self, secret: str) -> tuple[User, str] | None:
        """(user, CSRF token) for a live session cookie, else None."""
        with self.store.read() as tx:
            return self.session_txn(tx, secret)

    def session_txn(self, tx: People, secret: str) -> tuple[User, str] | None:
        """:meth:`session` read in the caller's transaction (or from rows read ahead:
        :mod:`baton.web.lookups`): the session (``session_row_txn``), its user
        (``user_row_txn``), the user's memberships and delegators."""
        row = tx.session_row_txn(_digest(secret))
        if row is None or parse_iso(row["expires_at"]) <= self.clock.now():
            return None
        user_row = tx.user_row_txn(row["user_name"])
        if user_row is None:
            return None
        user = self._to_user_txn(tx, user_row)
        return (user, row["csrf_token"]) if user.active else None

    def delete_session(self, secret: str) -> None:
        with self.store.write() as tx:
            tx.delete_sessions_txn(secret_hash=_digest(secret))

    def _delegation_txn(self, tx: People, user: User, delegate: str | None,
                        start: str | None, until: str | None,
                        may_list_users: bool = True) -> dict[str, Any]:
        """The columns a delegation change writes (checked: ValidationError naming them).
        A delegate who is not a user is refused only if ``may_list_users``."""
        if delegate is None and start is None and until is None:
            return {}
        problems: dict[str, str] = {}
        if delegate == "":
            if start or until:
                problems["delegate"] = "dates need a delegate: give --delegate NAME with them"
                raise ValidationError(f"user {user.name!r}", problems)
            return {"delegate": None, "delegate_from": None, "delegate_until": None}
        if delegate is None:
            if user.delegation is None:
                raise ValidationError(f"user {user.name!r}", {
                    "delegate": "dates need a delegate: this user names none (give one)"})
            delegate = user.delegation.to
            start = user.delegation.start if start is None else start
            until = user.delegation.until if until is None else until
        if delegate == user.name:
            problems["delegate"] = "a user cannot be their own delegate"
        elif not NAME_RE.fullmatch(delegate):
            problems["delegate"] = (f"invalid user name {delegate!r}: use letters, digits, "
                                    "_ . @ - (max 200)")
        elif may_list_users:
            row = tx.user_row_txn(delegate)
            if row is None:
                problems["delegate"] = f"no user {delegate!r} (see `baton users list`)"
            elif not row["active"]:
                problems["delegate"] = (f"user {delegate!r} is deactivated, so they could not "
                                        "act on the approvals: choose an active user")
            elif Permission.WORK not in permissions(row["roles"] or ()):
                problems["delegate"] = (
                    f"user {delegate!r} ({', '.join(sorted(row['roles'] or ())) or 'no role'}) "
                    "may not work items, so they could not act on the approvals: choose "
                    "someone whose role has the 'work' permission (admin, operator, agent)")
        for key, value in (("delegate_from", start), ("delegate_until", until)):
            if value and not _is_date(value):
                problems[key] = f"{value!r} is not a date: expected YYYY-MM-DD"
        if start and until and not problems and start > until:
            problems["delegate_until"] = f"{until} is before the start, {start}"
        if problems:
            raise ValidationError(f"user {user.name!r}", problems)
        return {"delegate": delegate, "delegate_from": start or None,
                "delegate_until": until or None}

    def today(self) -> str:
        """Today's date (UTC), against which delegations are in force."""
        return self.clock.now().date().isoformat()

    def acting_for_txn(self, tx: People, name: str) -> frozenset[str]:
        """Whose approvals ``name`` may act on today, as their delegate."""
        today = self.today()
        return frozenset(r["name"] for r in tx.delegator_rows_txn(name)
                         if Delegation(name, r["delegate_from"], r["delegate_until"])
                         .in_force(today))

    # ---- internals ----------------------------------------------------------------------
    @staticmethod
    def _check_roles(roles: Iterable[str], problems: dict[str, str]) -> list[str]:
        out = sorted(set(roles))
        bad = [r for r in out if r not in ROLES]
        if bad:
            problems["roles"] = f"unknown role(s) {', '.join(map(repr, bad))}; roles: {', '.join(ROLES)}"
        elif not out:
            problems["roles"] = f"at least one role is needed: {', '.join(ROLES)}"
        return out

    @staticmethod
    def _check_email(email: str | None, problems: dict[str, str]) -> None:
        if email and not EMAIL_RE.fullmatch(email):
            problems["email"] = f"{email!r} is not an e-mail address"

    @staticmethod
    def _check_password(password: str, problems: dict[str, str]) -> None:
        if len(password) < MIN_PASSWORD:
            problems["password"] = f"too short: at least {MIN_PASSWORD} characters"

    def user_txn(self, tx: People, name: str) -> User:
        """The user as stored now, read in the caller's transaction; NotFound if none."""
        row = tx.user_row_txn(name)
        if row is None:
            raise NotFound("user", name, "see `baton users list`")
        return self._to_user_txn(tx, row)

    def _to_user_txn(self, tx: People, row: Mapping[str, Any]) -> User:
        groups: set[str] = set()
        queues: set[str] = set()
        for kind, name in tx.memberships_txn(row["name"]):
            (groups if kind == "group" else queues).add(name)
        return User(name=row["name"], display_name=row["display_name"], email=row["email"],
                    roles=frozenset(row["roles"] or ()), groups=frozenset(groups),
                    queues=frozenset(queues), active=bool(row["active"]),
                    has_password=bool(row["password_hash"]), delegation=delegation_of(row),
                    acting_for=self.acting_for_txn(tx, row["name"]))


def _is_date(text: str) -> bool:
    if not DATE_RE.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True
