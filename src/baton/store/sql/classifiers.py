"""Trained classifiers as transaction methods: the SQL of :mod:`baton.ai.trained`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from baton.errors import TransitionConflict
from baton.store import schema as s
from baton.store.sql.marks import refused


class ClassifiersSql:
    conn: Connection

    @refused("stores a trained classifier (the CLI writes, never a worker's plan)")
    def insert_classifier_txn(self, row: dict[str, Any]) -> None:
        """Store a version; the same version stored by someone else first (two trainings at
        once) raises TransitionConflict and the transaction must roll back."""
        try:
            self.conn.execute(insert(s.classifiers).values(**row))
        except IntegrityError as exc:
            raise TransitionConflict(f"classifier {row['name']!r} v{row['version']} was "
                                     "stored by another training first: train again") from exc

    def classifier_txn(self, name: str, version: int | None = None, *,
                       data: bool = True) -> dict[str, Any] | None:
        """A version of classifier ``name`` (None: the latest), with its training data or
        without (``data=False``)."""
        t = s.classifiers
        cols = [c for c in t.c if data or c.name != "data"]
        if version is None:
            version = self.conn.execute(select(func.max(t.c.version))
                                        .where(t.c.name == name)).scalar()
            if version is None:
                return None
        row = self.conn.execute(select(*cols).where(t.c.name == name,
                                                    t.c.version == version)).first()
        return dict(row._mapping) if row else None

    def list_classifiers_txn(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every version of every classifier (or of ``name``), without its data but with
        ``bytes``, the size of what it stores: by name, newest first."""
        t = s.classifiers
        query = select(*[c for c in t.c if c.name != "data"],
                       func.length(t.c.data).label("bytes"))
        if name is not None:
            query = query.where(t.c.name == name)
        rows = self.conn.execute(query.order_by(t.c.name, t.c.version.desc()))
        return [dict(r._mapping) for r in rows]

    @refused("removes trained classifiers (the CLI writes, never a worker's plan)")
    def delete_classifier_versions_txn(self, name: str, keep: int) -> list[dict[str, Any]]:
        """Delete the versions of ``name`` older than its newest ``keep`` (at least one is
        kept: an ai step uses the latest); returns the deleted ones as listed."""
        if keep < 1:
            raise ValueError("keep at least one version")
        t = s.classifiers
        old = self.list_classifiers_txn(name)[keep:]
        if old:
            self.conn.execute(delete(t).where(t.c.name == name,
                                              t.c.version <= old[0]["version"]))
        return old
