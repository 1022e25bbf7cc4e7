"""The people tables (users, group and queue memberships, API tokens, UI sessions, failed
logins) as transaction methods: the SQL of :mod:`baton.auth.directory` and
:mod:`baton.auth.throttle`, which keep the rules (validation, hashing, expiry, lockouts)
and call these.

Rows are plain dicts of the table's columns. A plan never writes here (each write is
refused): the directory is changed by people, not by a worker's batch. The directory's
audit events (a delegation's changes, lockouts) are events of no run and no record, read
back by :meth:`PeopleSql.people_events_txn`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from baton.store import schema as s
from baton.store.codec import unpack_event_row
from baton.store.sql.marks import refused

# Read on every request an API token or a session cookie authenticates: compiled once and
# run on the DB-API cursor (:class:`~baton.store.sql.statements.Hot`), like the engine's
# hot path; SQLAlchemy's per-statement work was most of an API request's authentication.
_t, _m, _lt = s.api_tokens, s.memberships, s.login_throttle
GET_USER = select(s.users).where(s.users.c.name == bindparam("_name"))
TOKEN_USER = (select(_t.c.id.label("token_id"), _t.c.revoked_at.label("token_revoked_at"),
                     _t.c.last_used_at.label("token_last_used_at"), s.users)
              .join(s.users, s.users.c.name == _t.c.user_name)
              .where(_t.c.secret_hash == bindparam("_hash")))
MEMBERSHIPS = select(_m.c.kind, _m.c.name).where(_m.c.user_name == bindparam("_user"))
DELEGATORS = select(s.users.c.name, s.users.c.active, s.users.c.delegate_from,
                    s.users.c.delegate_until).where(s.users.c.delegate == bindparam("_delegate"))
THROTTLE_ROW = select(_lt).where(_lt.c.kind == bindparam("_kind"), _lt.c.name == bindparam("_name"))

# The same reads reached from a token's or a session's hash (joins), so the web app's lookup
# on PostgreSQL sends them all at once, in one round trip (:mod:`baton.web.lookups`).
_u, _se = s.users, s.sessions
TOKEN_MEMBERSHIPS = (select(*MEMBERSHIPS.selected_columns)
                     .join(_t, _t.c.user_name == _m.c.user_name)
                     .where(_t.c.secret_hash == bindparam("_hash")))
TOKEN_DELEGATORS = (select(*DELEGATORS.selected_columns)
                    .join(_t, _t.c.user_name == _u.c.delegate)
                    .where(_t.c.secret_hash == bindparam("_hash")))
SESSION_ROW = select(_se).where(_se.c.secret_hash == bindparam("_hash"))
SESSION_USER = (select(_u).join(_se, _se.c.user_name == _u.c.name)
                .where(_se.c.secret_hash == bindparam("_hash")))
SESSION_MEMBERSHIPS = (select(*MEMBERSHIPS.selected_columns)
                       .join(_se, _se.c.user_name == _m.c.user_name)
                       .where(_se.c.secret_hash == bindparam("_hash")))
SESSION_DELEGATORS = (select(*DELEGATORS.selected_columns)
                      .join(_se, _se.c.user_name == _u.c.delegate)
                      .where(_se.c.secret_hash == bindparam("_hash")))


PEOPLE_EVENTS_SCAN = 500  # event rows read at a time by people_events_txn


class PeopleSql:
    conn: Connection
    bump_routing_generation_txn: Callable[[], None]  # RoutingSql's (a change to a pool's people)
    flush_txn: Callable[[], None]  # SqlTx's (the events appended so far are written)

    # SqlTx's: a hot statement's single row, or all its rows.
    def _fetch_one(self, key: Any, stmt: Any, values: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError  # pragma: no cover - SqlTx's

    def _fetch_all(self, key: Any, stmt: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError  # pragma: no cover - SqlTx's

    # ---- users and memberships ----------------------------------------------------------
    def user_row_txn(self, name: str) -> dict[str, Any] | None:
        return self._fetch_one("get_user", GET_USER, {"_name": name})

    def token_user_row_txn(self, secret_hash: str) -> dict[str, Any] | None:
        """The token with this secret's hash and its user, in one row: the user's columns,
        and the token's as ``token_id``, ``token_revoked_at``, ``token_last_used_at``."""
        return self._fetch_one("token_user", TOKEN_USER, {"_hash": secret_hash})

    def user_rows_txn(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The users named (in no particular order), or every user by name."""
        if names is None:
            q = select(s.users).order_by(s.users.c.name)
        elif not names:
            return []
        else:
            q = select(s.users).where(s.users.c.name.in_(list(names)))
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def count_users_txn(self) -> int:
        return int(self.conn.execute(select(func.count()).select_from(s.users)).scalar_one())

    def memberships_txn(self, user_name: str) -> list[tuple[str, str]]:
        """(kind, name) of each group and queue the user is in."""
        return [(r["kind"], r["name"])
                for r in self._fetch_all("memberships", MEMBERSHIPS, {"_user": user_name})]

    def member_names_txn(self, kind: str, name: str) -> list[str]:
        """The users in one group or queue, by name."""
        m = s.memberships
        return [r[0] for r in self.conn.execute(
            select(m.c.user_name).where(m.c.kind == kind, m.c.name == name).order_by(m.c.user_name))]

    def membership_names_txn(self, kind: str) -> list[str]:
        """Every group (or queue) anyone is in, active or not, by name."""
        m = s.memberships
        return [r[0] for r in self.conn.execute(
            select(m.c.name).where(m.c.kind == kind).distinct().order_by(m.c.name))]

    def delegator_rows_txn(self, delegate: str) -> list[dict[str, Any]]:
        """The users who name ``delegate`` as theirs (``name``, ``active`` and the dates),
        whether or not the delegation is in force today."""
        return self._fetch_all("delegators", DELEGATORS, {"_delegate": delegate})

    @refused("writes the user directory")
    def insert_user_txn(self, row: dict[str, Any]) -> None:
        """A new user. Any delegation that names them is ended: it was made before they
        existed (a user without the right to list users may name anyone: see
        :mod:`baton.auth.directory`), so it meant someone else, or no one."""
        u = s.users
        self.conn.execute(update(u).where(u.c.delegate == row["name"]).values(
            delegate=None, delegate_from=None, delegate_until=None))
        self.conn.execute(insert(u).values(**row))
        self.bump_routing_generation_txn()  # (routing keeps who is active)

    @refused("writes the user directory")
    def update_user_txn(self, name: str, values: dict[str, Any]) -> None:
        """Change a user's columns. Deactivated (``active`` false), they are signed out of
        every UI session too, whoever deactivates them (``baton import`` as well): a later
        reactivation does not bring an old session back."""
        self.conn.execute(update(s.users).where(s.users.c.name == name).values(**values))
        if "active" in values and not values["active"]:
            self.delete_sessions_txn(user_name=name)
        if "active" in values or "roles" in values:
            self.bump_routing_generation_txn()  # (routing keeps who is active and may work)

    @refused("writes the user directory")
    def set_memberships_txn(self, user_name: str, kind: str, names: Sequence[str]) -> None:
        """The user's groups (or queues) become exactly ``names``."""
        m = s.memberships
        self.conn.execute(delete(m).where(m.c.user_name == user_name, m.c.kind == kind))
        if names:
            self.conn.execute(insert(m), [{"user_name": user_name, "kind": kind, "name": n}
                                          for n in names])
        self.bump_routing_generation_txn()  # (routing keeps the members of each pool)

    # ---- the directory's audit trail ----------------------------------------------------
    def people_events_txn(self, types: Sequence[str],
                          match: Callable[[dict[str, Any]], bool] | None = None,
                          limit: int = 100) -> list[dict[str, Any]]:
        """The latest ``limit`` events of these ``types`` that belong to no run and no
        record (the people directory's: ``delegation_changed``…) and that ``match``
        accepts (default: all), newest first, each as appended plus its ``id``.

        Events are stored packed (several to a row, their types inside the row's data), so
        no index finds them by type: the rows of no run and no record are read newest
        first, ``PEOPLE_EVENTS_SCAN`` at a time (``ix_events_run`` holds the rows of no run
        in id order), until ``limit`` are found or none are left. That is the directory's
        audit trail, deploys' and imports' events, and the records' events written outside
        a run: read for an admin's look at one user, never per run or per request."""
        self.flush_txn()
        t, wanted = s.events, set(types)
        base = (select(t).where(t.c.run_id.is_(None), t.c.record_id.is_(None))
                .order_by(t.c.id.desc()).limit(PEOPLE_EVENTS_SCAN))
        out: list[dict[str, Any]] = []
        q = base
        while True:
            rows = self.conn.execute(q).all()
            for r in rows:
                for e in reversed(unpack_event_row(r._mapping)):
                    if e["type"] in wanted and (match is None or match(e)):
                        out.append(e)
                        if len(out) >= limit:
                            return out
            if len(rows) < PEOPLE_EVENTS_SCAN:
                return out
            q = base.where(t.c.id < rows[-1].id)

    # ---- API tokens ---------------------------------------------------------------------
    @refused("writes the user directory")
    def insert_token_txn(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(s.api_tokens).values(**row))

    def token_rows_txn(self, user_name: str | None = None) -> list[dict[str, Any]]:
        t = s.api_tokens
        q = select(t).order_by(t.c.created_at, t.c.id)
        if user_name is not None:
            q = q.where(t.c.user_name == user_name)
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def token_row_txn(self, *, token_id: str | None = None,
                      secret_hash: str | None = None) -> dict[str, Any] | None:
        """One token by its id or by its secret's hash."""
        t = s.api_tokens
        cond = t.c.id == token_id if token_id is not None else t.c.secret_hash == secret_hash
        row = self.conn.execute(select(t).where(cond)).first()
        return dict(row._mapping) if row else None

    @refused("writes the user directory")
    def update_token_txn(self, token_id: str, values: dict[str, Any]) -> None:
        t = s.api_tokens
        self.conn.execute(update(t).where(t.c.id == token_id).values(**values))

    # ---- UI sessions --------------------------------------------------------------------
    @refused("writes the user directory")
    def insert_session_txn(self, row: dict[str, Any], *, sweep_before: str) -> None:
        """A new session; the sessions expired before ``sweep_before`` are deleted first."""
        t = s.sessions
        self.conn.execute(delete(t).where(t.c.expires_at < sweep_before))
        self.conn.execute(insert(t).values(**row))

    def session_row_txn(self, secret_hash: str) -> dict[str, Any] | None:
        t = s.sessions
        row = self.conn.execute(select(t).where(t.c.secret_hash == secret_hash)).first()
        return dict(row._mapping) if row else None

    @refused("writes the user directory")
    def delete_sessions_txn(self, *, user_name: str | None = None,
                            secret_hash: str | None = None) -> None:
        """One session (by its secret's hash) or all of a user's (signed out everywhere)."""
        t = s.sessions
        cond = t.c.user_name == user_name if user_name is not None else t.c.secret_hash == secret_hash
        self.conn.execute(delete(t).where(cond))

    # ---- failed logins (the throttle) ---------------------------------------------------
    def throttle_rows_txn(self, keys: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        """The throttle rows of these (kind, name) keys that exist."""
        rows: list[dict[str, Any]] = []
        for kind, name in keys:
            row = self._fetch_one("throttle_row", THROTTLE_ROW, {"_kind": kind, "_name": name})
            if row is not None:
                rows.append(row)
        return rows

    @refused("writes the user directory")
    def lock_throttle_row_txn(self, kind: str, name: str, now: str) -> dict[str, Any]:
        """The (kind, name) row, locked until the transaction ends (created empty if none)."""
        t = s.login_throttle
        q = select(t).where(t.c.kind == kind, t.c.name == name).with_for_update()
        row = self.conn.execute(q).first()
        if row is None:
            try:
                with self.conn.begin_nested():  # a concurrent first failure may insert it too
                    self.conn.execute(insert(t).values(
                        kind=kind, name=name, failures=0, window_start=now, lockouts=0,
                        locked_until=None, updated_at=now))
            except IntegrityError:
                pass
            row = self.conn.execute(q).first()
        assert row is not None
        return dict(row._mapping)

    @refused("writes the user directory")
    def update_throttle_txn(self, kind: str, name: str, values: dict[str, Any]) -> None:
        t = s.login_throttle
        self.conn.execute(update(t).where(t.c.kind == kind, t.c.name == name).values(**values))

    @refused("writes the user directory")
    def delete_throttle_txn(self, kind: str, name: str | None = None, *,
                            idle_before: str | None = None) -> int:
        """Forget one key's failures and lockouts (``name``), or every key of ``kind`` idle
        since before ``idle_before`` and not locked then. Returns how many rows went."""
        t = s.login_throttle
        if name is not None:
            cond = (t.c.kind == kind) & (t.c.name == name)
        else:
            assert idle_before is not None
            cond = ((t.c.kind == kind) & (t.c.updated_at < idle_before)
                    & ((t.c.locked_until.is_(None)) | (t.c.locked_until < idle_before)))
        return int(self.conn.execute(delete(t).where(cond)).rowcount)
