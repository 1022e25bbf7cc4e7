"""Routing's tables as transaction methods: people's routing profiles and loads, the
round-robin cursors, the items waiting for routing. The rules (who is eligible, who wins)
live in :mod:`baton.work.routing` and :mod:`baton.work.router`, which call these.

Capacity is kept by compare-and-set: :meth:`take_load_txn` raises a person's load only
where it is still under their capacity (and they are still available), in the statement
that checks it, so two workers routing at once on PostgreSQL can never both take the last
unit. A worker's planned batch never routes: each write here is refused, and the batch
commits under the write lock the usual way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, delete, or_, select, update

from baton.store import schema as s
from baton.store.sql.marks import refused
from baton.store.sql.statements import insert_or_ignore

_a, _q, _w = s.agents, s.agent_queues, s.work_items
# What routing reads of a waiting item (not its form or input: a pass reads thousands).
WAITING_COLUMNS = ("id", "run_id", "record_id", "step", "iteration", "status", "version",
                   "assignee_kind", "assignee", "priority", "due_at", "created_at", "routing",
                   "routing_status", "title")


class RoutingSql:
    conn: Connection

    # ---- profiles -------------------------------------------------------------------------
    def agent_rows_txn(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The routing profiles of these people (those that have one), or everyone's."""
        q = select(_a).order_by(_a.c.user_name)
        if names is not None:
            if not names:
                return []
            q = q.where(_a.c.user_name.in_(list(names)))
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def agent_queue_rows_txn(self, names: Sequence[str] | None = None,
                             queue: str | None = None) -> list[dict[str, Any]]:
        q = select(_q).order_by(_q.c.user_name, _q.c.queue)
        if names is not None:
            if not names:
                return []
            q = q.where(_q.c.user_name.in_(list(names)))
        if queue is not None:
            q = q.where(_q.c.queue == queue)
        return [dict(r._mapping) for r in self.conn.execute(q)]

    @refused("writes a routing profile")
    def ensure_agents_txn(self, names: Sequence[str], now: str) -> None:
        """Give each person a profile row (available, no limit, no skills) unless they have one."""
        if not names:
            return
        rows: list[dict[str, Any]] = [{"user_name": n, "availability": "available", "capacity": None, "skills": {},
                 "calendar": None, "load": 0, "idle_since": None, "updated_at": now}
                for n in names]
        self.conn.execute(_upsert_nothing(self.conn, _a), rows)

    @refused("writes a routing profile")
    def ensure_agent_queues_txn(self, pairs: Sequence[tuple[str, str]]) -> None:
        if not pairs:
            return
        rows = [{"user_name": u, "queue": q, "capacity": None, "load": 0} for u, q in pairs]
        self.conn.execute(_upsert_nothing(self.conn, _q), rows)

    @refused("writes a routing profile")
    def update_agent_txn(self, name: str, values: dict[str, Any]) -> None:
        self.conn.execute(update(_a).where(_a.c.user_name == name).values(**values))

    @refused("writes a routing profile")
    def set_queue_capacity_txn(self, name: str, queue: str, capacity: int | None) -> None:
        self.ensure_agent_queues_txn([(name, queue)])
        self.conn.execute(update(_q).where(_q.c.user_name == name, _q.c.queue == queue)
                          .values(capacity=capacity))

    @refused("clears per-queue capacities")
    def clear_queue_capacities_txn(self, name: str) -> None:
        self.conn.execute(update(_q).where(_q.c.user_name == name).values(capacity=None))
        self.conn.execute(delete(_q).where(_q.c.user_name == name, _q.c.load == 0))

    # ---- load: compare-and-set ------------------------------------------------------------
    @refused("routes a work item")
    def take_load_txn(self, name: str, queue: str, now: str, *, available: bool,
                      under_capacity: bool) -> bool:
        """One more open item for ``name`` (and in ``queue``): only while under capacity
        (and available), checked by the same statement that raises it. False: no room."""
        cond = [_a.c.user_name == name]
        if under_capacity:
            cond.append(or_(_a.c.capacity.is_(None), _a.c.load < _a.c.capacity))
        if available:
            cond.append(_a.c.availability == "available")
        done = self.conn.execute(update(_a).where(and_(*cond))
                                 .values(load=_a.c.load + 1, idle_since=now))
        if done.rowcount != 1:
            return False
        qcond = [_q.c.user_name == name, _q.c.queue == queue]
        if under_capacity:
            qcond.append(or_(_q.c.capacity.is_(None), _q.c.load < _q.c.capacity))
        if self.conn.execute(update(_q).where(and_(*qcond)).values(load=_q.c.load + 1)
                             ).rowcount != 1:
            self.conn.execute(update(_a).where(_a.c.user_name == name)
                              .values(load=_a.c.load - 1))
            return False
        return True

    @refused("gives a load back")
    def give_back_load_txn(self, name: str, queue: str) -> None:
        """Undo :meth:`take_load_txn` (the item could not be assigned after all)."""
        self.conn.execute(update(_a).where(_a.c.user_name == name, _a.c.load > 0)
                          .values(load=_a.c.load - 1))
        self.conn.execute(update(_q).where(_q.c.user_name == name, _q.c.queue == queue,
                                           _q.c.load > 0).values(load=_q.c.load - 1))

    @refused("frees a routed work item's load")
    def release_load_txn(self, item_id: str, now: str) -> tuple[str, str] | None:
        """The item stops counting in its person's load: (person, queue), or None when it
        did not count (not routed, or already freed). The item's row is locked and cleared by
        a compare-and-set first, so of two transactions freeing it only one frees it."""
        row = self.conn.execute(select(_w.c.routed_to, _w.c.routing)
                                .where(_w.c.id == item_id).with_for_update()).first()
        if row is None or row[0] is None:
            return None
        if self.conn.execute(update(_w).where(_w.c.id == item_id, _w.c.routed_to == row[0])
                             .values(routed_to=None)).rowcount != 1:
            return None
        user, queue = str(row[0]), str((row[1] or {}).get("from", "")).partition(":")[2]
        self.conn.execute(update(_a).where(_a.c.user_name == user, _a.c.load > 0)
                          .values(load=_a.c.load - 1, idle_since=now))
        self.conn.execute(update(_q).where(_q.c.user_name == user, _q.c.queue == queue,
                                           _q.c.load > 0).values(load=_q.c.load - 1))
        return user, queue

    # ---- round robin ----------------------------------------------------------------------
    def routing_cursor_txn(self, rule: str) -> str | None:
        t = s.routing_cursors
        return self.conn.execute(select(t.c.last_user).where(t.c.rule == rule)).scalar()

    @refused("moves a round-robin cursor")
    def set_routing_cursor_txn(self, rule: str, user: str) -> None:
        t = s.routing_cursors
        if self.conn.execute(update(t).where(t.c.rule == rule).values(last_user=user)
                             ).rowcount == 0:
            self.conn.execute(_upsert_nothing(self.conn, t), [{"rule": rule, "last_user": user}])

    # ---- items ----------------------------------------------------------------------------
    def waiting_items_txn(self, kind: str, pool: str, limit: int,
                          after: tuple[int, str, str, str] | None = None
                          ) -> list[dict[str, Any]]:
        """Items waiting for routing in a queue or group, most urgent first, then earliest
        due, then oldest (keyset: after the (priority, due key, created, id) given)."""
        due = s.due_key(_w.c.due_at)
        q = (select(*(_w.c[c] for c in WAITING_COLUMNS)).where(_w.c.routing_status == "waiting", _w.c.assignee_kind == kind,
                              _w.c.assignee == pool, _w.c.status == "open")
             .order_by(_w.c.priority.desc(), due, _w.c.created_at, _w.c.id).limit(limit))
        if after is not None:
            p, d, c, i = after
            q = q.where(or_(_w.c.priority < p,
                            and_(_w.c.priority == p, or_(
                                due > d, and_(due == d, or_(
                                    _w.c.created_at > c,
                                    and_(_w.c.created_at == c, _w.c.id > i)))))))
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def waiting_pools_txn(self) -> list[tuple[str, str]]:
        """Every (kind, name) with an item waiting for routing."""
        q = (select(_w.c.assignee_kind, _w.c.assignee).where(_w.c.routing_status == "waiting")
             .distinct())
        return sorted((str(r[0]), str(r[1])) for r in self.conn.execute(q))

    def record_handlers_txn(self, record_id: str) -> list[str]:
        """Who completed this record's items, latest first (stickiness)."""
        q = (select(_w.c.completed_by).where(_w.c.record_id == record_id,
                                             _w.c.completed_by.isnot(None))
             .order_by(_w.c.completed_at.desc()).limit(5))
        return [str(r[0]) for r in self.conn.execute(q)]

    def routing_figures_txn(self, since: str) -> list[dict[str, Any]]:
        """Per queue or group that routes: items waiting and the oldest of them; items
        routed since ``since`` with their creation and routing times (the caller takes
        the median)."""
        waiting = self.conn.execute(
            select(_w.c.assignee_kind, _w.c.assignee, _w.c.created_at)
            .where(_w.c.routing_status == "waiting", _w.c.status == "open")).all()
        routed = self.conn.execute(
            select(_w.c.routing, _w.c.created_at, _w.c.routed_at)
            .where(_w.c.routed_at.isnot(None), _w.c.routed_at >= since)).all()
        out = [{"pool": f"{r[0]}:{r[1]}", "waiting_since": r[2]} for r in waiting]
        out += [{"pool": (r[0] or {}).get("from", "?"), "created_at": r[1], "routed_at": r[2]}
                for r in routed]
        return out


def _upsert_nothing(conn: Connection, table: Any) -> Any:
    """INSERT … ON CONFLICT DO NOTHING in this connection's dialect."""
    return insert_or_ignore(conn, table).on_conflict_do_nothing()

