"""The transaction methods off the hot path: definitions, and the filtered listings and
counts of records, runs and work items the API, the UI and the CLI page through. Plain
SQLAlchemy Core statements; mixed into :class:`~baton.store.sql.tx.SqlTx`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, tuple_, update

from baton.errors import ConfigError
from baton.store import schema as s
from baton.store.base import DefinitionRow
from baton.store.sql.marks import reads, refused
from baton.store.sql.statements import DEFINITIONS_LOCK

_G = s.definitions_generation
_GENERATION = select(_G.c.n).where(_G.c.id == 1)
_BUMP_GENERATION = update(_G).where(_G.c.id == 1).values(n=_G.c.n + 1)
_NO_GENERATION = (
    "the database has no definitions generation (the row of id 1 in "
    "baton_definitions_generation, which migration 28 stores and nothing deletes): with every "
    "Baton process stopped, store it again (INSERT INTO baton_definitions_generation (id, n) "
    "VALUES (1, 0)), or restore the backup")


class DefinitionsSql:
    conn: Connection
    # True once this transaction wrote to the definitions (it may yet be rolled back):
    # what it reads of them is kept by no process's index (DefinitionRepo.refresh).
    definitions_changed = False

    def latest_definition_txn(self, kind: str, name: str) -> DefinitionRow | None:
        row = self.conn.execute(
            select(s.definitions)
            .where(s.definitions.c.kind == kind, s.definitions.c.name == name)
            .order_by(s.definitions.c.version.desc())
            .limit(1)
        ).first()
        return DefinitionRow(**row._mapping) if row else None

    def get_definition_txn(self, kind: str, name: str, version: int | None) -> DefinitionRow | None:
        if version is None:
            return self.latest_definition_txn(kind, name)
        row = self.conn.execute(
            select(s.definitions).where(
                s.definitions.c.kind == kind,
                s.definitions.c.name == name,
                s.definitions.c.version == version,
            )
        ).first()
        return DefinitionRow(**row._mapping) if row else None

    def list_definitions_txn(self, kind: str | None = None) -> list[DefinitionRow]:
        q = select(s.definitions).order_by(
            s.definitions.c.kind, s.definitions.c.name, s.definitions.c.version
        )
        if kind:
            q = q.where(s.definitions.c.kind == kind)
        return [DefinitionRow(**r._mapping) for r in self.conn.execute(q)]

    def orchestration_versions_in_progress_txn(self, names: Collection[str]
                                               ) -> dict[tuple[str, int], int]:
        """(orchestration, version) -> its runs in progress, for the orchestrations
        ``names`` (each read through ``ix_runs_orchestration``: a deploy that changes an
        object type asks, not a hot path)."""
        r = s.runs
        if not names:
            return {}
        q = select(r.c.orchestration, r.c.version, func.count()).where(
            r.c.orchestration.in_(sorted(names)), r.c.status == "in_progress",
        ).group_by(r.c.orchestration, r.c.version)
        return {(str(o), int(v)): int(n) for o, v, n in self.conn.execute(q)}

    def definitions_generation_txn(self) -> int:
        """The definitions generation: raised in the transaction of every write to the
        definitions (:meth:`insert_definition_txn`, :meth:`set_active_txn`), so it differs
        whenever the active versions may, and the higher of two is the newer (one row,
        one cheap read: each process looks at most once a second)."""
        row = self.conn.execute(_GENERATION).first()
        if row is None:
            raise ConfigError(_NO_GENERATION)
        return int(row[0])

    def _bump_definitions_generation(self) -> None:
        """A write to the definitions, in this transaction: every process reads them again
        at its next look, once it commits. (PostgreSQL: the row stays locked until then,
        so the definitions' writers commit in the order of their numbers.)"""
        if self.conn.execute(_BUMP_GENERATION).rowcount != 1:
            raise ConfigError(_NO_GENERATION)
        self.definitions_changed = True

    @refused("deploys a definition")
    def insert_definition_txn(self, row: dict[str, Any]) -> int:
        res = self.conn.execute(insert(s.definitions).values(**row))
        self._bump_definitions_generation()
        return int(res.inserted_primary_key[0])  # type: ignore[index]

    def lock_definitions_txn(self) -> None:
        """Deploys and activations that check one definition against the others (a queue
        has one routing rule) run one at a time: PostgreSQL holds an advisory lock until
        this transaction ends; SQLite's write transaction is exclusive already."""
        if self.conn.dialect.name == "postgresql":
            self.conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({DEFINITIONS_LOCK})")

    @refused("activates a definition")
    def set_active_txn(self, kind: str, name: str, version: int) -> None:
        t = s.definitions
        self.conn.execute(
            update(t).where(t.c.kind == kind, t.c.name == name).values(active=t.c.version == version)
        )
        self._bump_definitions_generation()


class ListingsSql:
    conn: Connection

    def list_records_txn(self, object_type: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        q = select(s.records).order_by(s.records.c.created_at.desc()).limit(limit).offset(offset)
        if object_type:
            q = q.where(s.records.c.object_type == object_type)
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def find_records_txn(self, object_type: str, fields: Mapping[str, Any],
                         limit: int) -> list[dict[str, Any]]:
        """Records of ``object_type`` whose stored fields equal ``fields`` (scalars as
        stored: text, whole numbers, booleans, numbers; None: empty), the newest first.
        A field that must name a record (a ref field's value) is read through
        ix_record_refs_target, in the list's order: the records that name it, and only
        those, are read. Otherwise through the object type's index, the fields compared on
        its rows."""
        t = s.records
        by_ref = next((name for name, value in fields.items() if s.is_record_ref(value)), None)
        if by_ref is not None:
            x = s.record_refs
            q = (select(t).select_from(x.join(t, t.c.id == x.c.record_id))
                 .where(x.c.target_id == fields[by_ref], x.c.object_type == object_type,
                        x.c.field == by_ref)
                 .order_by(x.c.created_at.desc(), x.c.record_id.desc()))
        else:
            q = (select(t).where(t.c.object_type == object_type)
                 .order_by(t.c.created_at.desc(), t.c.id.desc()))
        for name, value in fields.items():
            if name == by_ref:
                continue
            member = t.c.data[name]
            if value is None:
                q = q.where(member.as_string().is_(None))
            elif isinstance(value, bool):
                q = q.where(member.as_boolean() == value)
            elif isinstance(value, int):
                q = q.where(member.as_integer() == value)
            elif isinstance(value, float):
                q = q.where(member.as_float() == value)
            else:
                q = q.where(member.as_string() == str(value))
        return [dict(r._mapping) for r in self.conn.execute(q.limit(limit))]

    def scan_records_txn(self, object_type: str, after: tuple[str, str] | None,
                         limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` records of ``object_type``, oldest first, after the one whose
        ``(created_at, id)`` is ``after`` (None: from the first): reads every record of
        a type a batch at a time. The bound is a row value, which the indexes on
        ``(…, created_at, id)`` range on directly, however many records were created at
        one instant (an import's): each batch reads its rows only."""
        t = s.records
        q = select(t).where(t.c.object_type == object_type)
        if after is not None:
            q = q.where(tuple_(t.c.created_at, t.c.id) > tuple_(*after))
        q = q.order_by(t.c.created_at, t.c.id).limit(limit)
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def count_records_txn(self, object_type: str | None) -> int:
        q = select(func.count()).select_from(s.records)
        if object_type:
            q = q.where(s.records.c.object_type == object_type)
        return int(self.conn.execute(q).scalar_one())

    def list_runs_txn(self, filters: dict[str, Any], limit: int, offset: int) -> list[dict[str, Any]]:
        t = s.runs
        q = select(t).order_by(t.c.created_at.desc(), t.c.id.desc()).limit(limit).offset(offset)
        rows = [dict(r._mapping) for r in self.conn.execute(self._runs_where(q, filters))]
        split = [r for r in rows if r["state"].get("split")]
        if split:  # (their steps: store/sql/runsteps.py)
            self.merge_steps_txn(split)  # type: ignore[attr-defined]
        return rows

    def child_runs_txn(self, parent_run_id: str, limit: int) -> list[dict[str, Any]]:
        """The runs a run's steps started (their columns, not their state), oldest first:
        a range of ``ix_runs_parent``."""
        t = s.runs
        q = (select(t.c.id, t.c.orchestration, t.c.version, t.c.status, t.c.record_id,
                    t.c.current_stage, t.c.created_at, t.c.completed_at, t.c.parent_step)
             .where(t.c.parent_run_id == parent_run_id)
             .order_by(t.c.created_at, t.c.id).limit(limit))
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def count_runs_filtered_txn(self, filters: dict[str, Any]) -> int:
        q = self._runs_where(select(func.count()).select_from(s.runs), filters)
        return int(self.conn.execute(q).scalar_one())

    @staticmethod
    def _runs_where(q: Any, filters: dict[str, Any]) -> Any:
        t = s.runs
        for key in ("orchestration", "version", "status", "current_stage", "record_id"):
            if filters.get(key) is not None:
                q = q.where(t.c[key] == filters[key])
        if filters.get("attention") is not None:  # some of its values (the partial index)
            q = q.where(t.c.attention.in_(tuple(filters["attention"])))
        return q

    def count_in_progress_runs_txn(self) -> int:
        """Runs still in progress: an index range scan, cheap however many runs finished."""
        t = s.runs
        return int(self.conn.execute(
            select(func.count()).select_from(t).where(t.c.status == "in_progress")).scalar_one())

    def count_runs_txn(self) -> list[tuple[str, str, str | None, int]]:
        t = s.runs
        q = select(t.c.orchestration, t.c.status, t.c.current_stage, func.count()).group_by(
            t.c.orchestration, t.c.status, t.c.current_stage
        )
        return [(r[0], r[1], r[2], int(r[3])) for r in self.conn.execute(q)]

    @reads("work_items", "all", "list")
    def list_work_items_txn(self, filters: dict[str, Any], limit: int, offset: int,
                            order: str = "created") -> list[dict[str, Any]]:
        """Work items by filters. ``filters["scope"]`` = (user, groups, queues) keeps the items
        assigned to that user, claimed by them, or in one of their groups or queues.
        ``order``: ``created`` (oldest first), ``due`` (soonest due first, no due date last),
        ``priority`` (most urgent first)."""
        t = s.work_items
        q = self._work_items_where(select(t), filters)
        orders = {
            "created": (t.c.created_at, t.c.id),
            "due": (t.c.due_at.is_(None), t.c.due_at, t.c.priority.desc(), t.c.created_at, t.c.id),
            "priority": (t.c.priority.desc(), t.c.due_at.is_(None), t.c.due_at, t.c.created_at, t.c.id),
        }
        q = q.order_by(*orders[order]).limit(limit).offset(offset)
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def count_work_items_txn(self, filters: dict[str, Any]) -> int:
        t = s.work_items
        q = self._work_items_where(select(func.count()).select_from(t), filters)
        return int(self.conn.execute(q).scalar_one())

    @staticmethod
    def _work_items_where(q: Any, filters: dict[str, Any]) -> Any:
        t = s.work_items
        statuses = filters.get("statuses")
        if statuses:
            q = q.where(t.c.status.in_(list(statuses)))
        for key in ("run_id", "assignee_kind", "assignee", "claimed_by", "step", "record_id",
                    "orchestration"):
            if filters.get(key) is not None:
                q = q.where(t.c[key] == filters[key])
        scope = filters.get("scope")
        if scope is not None:
            user, groups, queues = scope
            terms = [t.c.claimed_by == user, and_(t.c.assignee_kind == "user", t.c.assignee == user)]
            if groups:
                terms.append(and_(t.c.assignee_kind == "group", t.c.assignee.in_(sorted(groups))))
            if queues:
                terms.append(and_(t.c.assignee_kind == "queue", t.c.assignee.in_(sorted(queues))))
            if filters.get("on_behalf"):  # approvals of whom the user acts for (delegate)
                terms.append(and_(t.c.assignee_kind == "user", t.c.step_type == "approval",
                                  t.c.assignee.in_(sorted(filters["on_behalf"]))))
            q = q.where(or_(*terms))
        return q
