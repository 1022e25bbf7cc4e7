"""Trained classifiers as transaction methods: the SQL of :mod:`baton.ai.trained`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, insert, select
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

    def list_classifiers_txn(self) -> list[dict[str, Any]]:
        """Every version of every classifier, without its data: by name, newest first."""
        t = s.classifiers
        rows = self.conn.execute(select(*[c for c in t.c if c.name != "data"])
                                 .order_by(t.c.name, t.c.version.desc()))
        return [dict(r._mapping) for r in rows]
