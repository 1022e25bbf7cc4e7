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

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    literal,
    or_,
    select,
    update,
)

from baton.store import schema as s
from baton.store.codec import json_loads
from baton.store.sql.marks import refused
from baton.store.sql.statements import insert_or_ignore

_a, _q, _w = s.agents, s.agent_queues, s.work_items
_m, _u, _g = s.memberships, s.users, s.routing_generation
# What routing reads of a waiting item (not its form or input: a pass reads thousands).
WAITING_COLUMNS = ("id", "run_id", "record_id", "step", "iteration", "status", "version",
                   "assignee_kind", "assignee", "priority", "due_at", "created_at", "routing",
                   "routing_status", "title")


# The hot statements of routing, compiled once per dialect and run on the DB-API cursor
# (:class:`~baton.store.sql.statements.Hot`, as the engine's other hot writes are).
GENERATION = select(_g.c.n).where(_g.c.id == 1)
BUMP_GENERATION = update(_g).where(_g.c.id == 1).values(n=_g.c.n + 1)
_POOL = (_m.outerjoin(_a, _a.c.user_name == _m.c.user_name)
         .outerjoin(_q, and_(_q.c.user_name == _m.c.user_name, _q.c.queue == _m.c.name)))
_IN_POOL = (_m.c.kind == bindparam("_kind"), _m.c.name == bindparam("_pool"))
# What a process may keep of a pool between transactions (the routing generation says
# when it changed): its members, whether they are active, their skills, capacities and
# calendars.
POOL_STATIC = (select(_m.c.user_name, _u.c.active, _a.c.capacity, _a.c.skills, _a.c.calendar,
                      _q.c.capacity.label("queue_capacity"))
               .select_from(_POOL.outerjoin(_u, _u.c.name == _m.c.user_name))
               .where(*_IN_POOL).order_by(_m.c.user_name))
# What is read again at every pass: availability and loads (changed by every routed,
# completed or released item, and by presence), and whether the rows exist yet.
POOL_LIVE = (select(_m.c.user_name, _a.c.user_name.label("has_agent"), _a.c.availability,
                    _a.c.load, _a.c.idle_since, _q.c.user_name.label("has_queue"),
                    _q.c.load.label("queue_load"))
             .select_from(_POOL).where(*_IN_POOL).order_by(_m.c.user_name))
AGENT_ROW = select(_a).where(_a.c.user_name == bindparam("_name"))
AGENT_QUEUE_ROWS = select(_q).where(_q.c.user_name == bindparam("_name")).order_by(_q.c.queue)
_CAPACITY_OK = or_(_a.c.capacity.is_(None), _a.c.load < _a.c.capacity)
_QUEUE_CAPACITY_OK = or_(_q.c.capacity.is_(None), _q.c.load < _q.c.capacity)
_ONE_AGENT = _a.c.user_name == bindparam("_name")
_ONE_QUEUE = and_(_q.c.user_name == bindparam("_name"), _q.c.queue == bindparam("_queue"))
# take_load_txn's compare-and-set, one statement per combination of the rule's filters.
TAKE_LOAD = {(available, under): update(_a).where(
    _ONE_AGENT, *([_a.c.availability == literal("available")] if available else []),
    *([_CAPACITY_OK] if under else [])).values(load=_a.c.load + 1, idle_since=bindparam("_now"))
    for available in (False, True) for under in (False, True)}
TAKE_QUEUE_LOAD = {under: update(_q).where(_ONE_QUEUE, *([_QUEUE_CAPACITY_OK] if under else []))
                   .values(load=_q.c.load + 1) for under in (False, True)}
UNDO_LOAD = update(_a).where(_ONE_AGENT).values(load=_a.c.load - 1)
GIVE_BACK_LOAD = update(_a).where(_ONE_AGENT, _a.c.load > 0).values(load=_a.c.load - 1)
FREE_LOAD = (update(_a).where(_ONE_AGENT, _a.c.load > 0)
             .values(load=_a.c.load - 1, idle_since=bindparam("_now")))
GIVE_BACK_QUEUE_LOAD = update(_q).where(_ONE_QUEUE, _q.c.load > 0).values(load=_q.c.load - 1)
CLEAR_ROUTED_TO = update(_w).where(_w.c.id == bindparam("_id"),
                                   _w.c.routed_to == bindparam("_to")).values(routed_to=None)
@functools.cache
def waiting_items(limit: int, after: bool, skipped: int = 0) -> Any:
    """The hot statement of :meth:`RoutingSql.waiting_items_txn` (keyset: ``after``;
    ``skipped``: how many rules' texts are left out)."""
    due = s.due_key(_w.c.due_at)
    text = cast(_w.c.routing, Text)
    columns = [text.label(c) if c == "routing" else _w.c[c]
               for c in WAITING_COLUMNS]  # (decoded by the caller: see waiting_items_txn)
    q = (select(*columns)
         .where(_w.c.routing_status == "waiting", _w.c.assignee_kind == bindparam("_kind"),
                _w.c.assignee == bindparam("_pool"), _w.c.status == "open")
         .order_by(_w.c.priority.desc(), due, _w.c.created_at, _w.c.id).limit(limit))
    if skipped:
        q = q.where(or_(_w.c.routing.is_(None),
                        text.not_in([bindparam(f"_x{k}") for k in range(skipped)])))
    if not after:
        return q
    p: Any = bindparam("_p")
    d: Any = bindparam("_d")
    c: Any = bindparam("_c")
    i: Any = bindparam("_i")
    return q.where(or_(_w.c.priority < p, and_(_w.c.priority == p, or_(
        due > d, and_(due == d, or_(_w.c.created_at > c,
                                    and_(_w.c.created_at == c, _w.c.id > i)))))))


MAX_SKIPPED = 32  # rules' texts a page of waiting items may leave out (more: the first ones)
# (The static keys of a profile: a change to any of them raises the routing generation.)
STATIC_PROFILE = frozenset({"capacity", "skills", "calendar"})


class RoutingSql:
    conn: Connection

    # SqlTx's: a hot statement's rows, and a hot write's row count.
    def _fetch_one(self, key: Any, stmt: Any, values: dict[str, Any]) -> dict[str, Any] | None:
        raise NotImplementedError  # pragma: no cover - SqlTx's

    def _fetch_all(self, key: Any, stmt: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError  # pragma: no cover - SqlTx's

    def _hot_write(self, key: Any, stmt: Any, values: dict[str, Any]) -> int:
        raise NotImplementedError  # pragma: no cover - SqlTx's

    # ---- the routing generation -----------------------------------------------------------
    def routing_generation_txn(self) -> int | None:
        """The routing generation now (None: not stored, so nothing may be kept)."""
        row = self._fetch_one("routing_generation", GENERATION, {})
        return None if row is None else int(row["n"])

    @refused("changes a pool's people")
    def bump_routing_generation_txn(self) -> None:
        """What routing keeps of pools changed (in this transaction): every process reads
        them again at its next decision."""
        self._hot_write("bump_routing_generation", BUMP_GENERATION, {})
        self.routing_changed = True

    routing_changed = False
    """This transaction raised the routing generation: what it reads of pools is its own
    uncommitted change, not to be kept by the process (it may yet be rolled back)."""

    def pool_static_txn(self, kind: str, pool: str) -> list[dict[str, Any]]:
        """The members of a queue or group with what routing keeps of them (by name)."""
        return self._fetch_all("pool_static", POOL_STATIC, {"_kind": kind, "_pool": pool})

    def pool_live_txn(self, kind: str, pool: str) -> list[dict[str, Any]]:
        """The members of a queue or group with their availability and loads (by name)."""
        return self._fetch_all("pool_live", POOL_LIVE, {"_kind": kind, "_pool": pool})

    # ---- profiles -------------------------------------------------------------------------
    def agent_rows_txn(self, names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The routing profiles of these people (those that have one), or everyone's."""
        if names is not None and len(names) == 1:
            row = self._fetch_one("agent_row", AGENT_ROW, {"_name": names[0]})
            return [] if row is None else [row]
        q = select(_a).order_by(_a.c.user_name)
        if names is not None:
            if not names:
                return []
            q = q.where(_a.c.user_name.in_(list(names)))
        return [dict(r._mapping) for r in self.conn.execute(q)]

    def agent_queue_rows_txn(self, names: Sequence[str] | None = None,
                             queue: str | None = None) -> list[dict[str, Any]]:
        if names is not None and len(names) == 1 and queue is None:
            return self._fetch_all("agent_queue_rows", AGENT_QUEUE_ROWS, {"_name": names[0]})
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
        if STATIC_PROFILE.intersection(values):
            self.bump_routing_generation_txn()

    @refused("writes a routing profile")
    def set_queue_capacity_txn(self, name: str, queue: str, capacity: int | None) -> None:
        self.ensure_agent_queues_txn([(name, queue)])
        self.conn.execute(update(_q).where(_q.c.user_name == name, _q.c.queue == queue)
                          .values(capacity=capacity))
        self.bump_routing_generation_txn()

    @refused("clears per-queue capacities")
    def clear_queue_capacities_txn(self, name: str) -> None:
        self.conn.execute(update(_q).where(_q.c.user_name == name).values(capacity=None))
        self.conn.execute(delete(_q).where(_q.c.user_name == name, _q.c.load == 0))
        self.bump_routing_generation_txn()

    # ---- load: compare-and-set ------------------------------------------------------------
    @refused("routes a work item")
    def take_load_txn(self, name: str, queue: str, now: str, *, available: bool,
                      under_capacity: bool) -> bool:
        """One more open item for ``name`` (and in ``queue``): only while under capacity
        (and available), checked by the same statement that raises it. False: no room."""
        if self._hot_write(("take_load", available, under_capacity),
                           TAKE_LOAD[available, under_capacity], {"_name": name, "_now": now}) != 1:
            return False
        if self._hot_write(("take_queue_load", under_capacity), TAKE_QUEUE_LOAD[under_capacity],
                           {"_name": name, "_queue": queue}) != 1:
            self._hot_write("undo_load", UNDO_LOAD, {"_name": name})
            return False
        return True

    @refused("gives a load back")
    def give_back_load_txn(self, name: str, queue: str) -> None:
        """Undo :meth:`take_load_txn` (the item could not be assigned after all)."""
        self._hot_write("give_back_load", GIVE_BACK_LOAD, {"_name": name})
        self._hot_write("give_back_queue_load", GIVE_BACK_QUEUE_LOAD,
                        {"_name": name, "_queue": queue})

    @refused("frees a routed work item's load")
    def release_load_txn(self, item_id: str, now: str) -> tuple[str, str] | None:
        """The item stops counting in its person's load: (person, queue), or None when it
        did not count (not routed, or already freed). The item's row is locked and cleared by
        a compare-and-set first, so of two transactions freeing it only one frees it."""
        row = self.conn.execute(select(_w.c.routed_to, _w.c.routing)
                                .where(_w.c.id == item_id).with_for_update()).first()
        if row is None or row[0] is None:
            return None
        if self._hot_write("clear_routed_to", CLEAR_ROUTED_TO,
                           {"_id": item_id, "_to": row[0]}) != 1:
            return None
        user, queue = str(row[0]), str((row[1] or {}).get("from", "")).partition(":")[2]
        self._hot_write("free_load", FREE_LOAD, {"_name": user, "_now": now})
        self._hot_write("give_back_queue_load", GIVE_BACK_QUEUE_LOAD,
                        {"_name": user, "_queue": queue})
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
                          after: tuple[int, str, str, str] | None = None, *,
                          skip: Sequence[str] = (), texts: dict[int, str] | None = None
                          ) -> list[dict[str, Any]]:
        """Items waiting for routing in a queue or group, most urgent first, then earliest
        due, then oldest (keyset: after the (priority, due key, created, id) given).
        ``skip``: leave out the items whose rule is one of these texts (as ``texts`` gave
        them); ``texts``: filled with each returned rule's text, by the rule's id."""
        skip = list(skip)[:MAX_SKIPPED]
        params: dict[str, Any] = {"_kind": kind, "_pool": pool}
        params.update({f"_x{k}": text for k, text in enumerate(skip)})
        if after is None:
            rows = self._fetch_all(("waiting_items", limit, len(skip)),
                                   waiting_items(limit, False, len(skip)), params)
        else:
            p, d, c, i = after
            params.update({"_p": p, "_d": d, "_c": c, "_i": i})
            rows = self._fetch_all(("waiting_items_after", limit, len(skip)),
                                   waiting_items(limit, True, len(skip)), params)
        # The items of a pool mostly carry one of a few rules (a rule, the skills their
        # record asks for): each text is decoded once a page, and the items that carry
        # the same one share it (read-only: a change is made to a copy, as routing does).
        decoded: dict[str, dict[str, Any]] = {}
        for row in rows:
            text = row["routing"]
            if text is not None:
                rule = decoded.get(text)
                if rule is None:
                    rule = decoded[text] = json_loads(text)
                    if texts is not None:
                        texts[id(rule)] = text
                row["routing"] = rule
        return rows

    def waiting_pools_txn(self) -> list[tuple[str, str]]:
        """Every (kind, name) with an item waiting for routing."""
        q = (select(_w.c.assignee_kind, _w.c.assignee)
             .where(_w.c.routing_status == "waiting", _w.c.status == "open").distinct())
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

