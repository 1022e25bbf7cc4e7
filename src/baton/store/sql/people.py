"""The people tables (users, group and queue memberships, API tokens, UI sessions) as
transaction methods: the SQL of :mod:`baton.auth.directory`, which keeps the rules
(validation, hashing, expiry) and calls these.

Rows are plain dicts of the table's columns. A plan never writes here (each write is
refused): the directory is changed by people, not by a worker's batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from baton.store import schema as s
from baton.store.sql.marks import refused


class PeopleSql:
    conn: Connection

    # ---- users and memberships ----------------------------------------------------------
    def user_row_txn(self, name: str) -> dict[str, Any] | None:
        row = self.conn.execute(select(s.users).where(s.users.c.name == name)).first()
        return dict(row._mapping) if row else None

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
        m = s.memberships
        return [(r[0], r[1]) for r in self.conn.execute(
            select(m.c.kind, m.c.name).where(m.c.user_name == user_name))]

    def member_names_txn(self, kind: str, name: str) -> list[str]:
        """The users in one group or queue, by name."""
        m = s.memberships
        return [r[0] for r in self.conn.execute(
            select(m.c.user_name).where(m.c.kind == kind, m.c.name == name).order_by(m.c.user_name))]

    @refused("writes the user directory")
    def insert_user_txn(self, row: dict[str, Any]) -> None:
        self.conn.execute(insert(s.users).values(**row))

    @refused("writes the user directory")
    def update_user_txn(self, name: str, values: dict[str, Any]) -> None:
        self.conn.execute(update(s.users).where(s.users.c.name == name).values(**values))

    @refused("writes the user directory")
    def set_memberships_txn(self, user_name: str, kind: str, names: Sequence[str]) -> None:
        """The user's groups (or queues) become exactly ``names``."""
        m = s.memberships
        self.conn.execute(delete(m).where(m.c.user_name == user_name, m.c.kind == kind))
        if names:
            self.conn.execute(insert(m), [{"user_name": user_name, "kind": kind, "name": n}
                                          for n in names])

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
