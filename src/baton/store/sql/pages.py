"""The paged lists of runs, work items and records (keyset pagination, bounded counts).

Each list turns its filters into *probes* — equality terms one of the indexes of migration
8 starts with, that index going on in the list's order — and *residual* filters no index
holds, checked on the rows a probe reads (:mod:`baton.store.sql.keyset` merges the probes
and bounds the residual reading). Which index serves which filters:

runs, newest first (``created_at, id`` descending):
  record_id → ix_runs_record; else attention → ix_runs_attention (partial: only the runs
  that need an operator; one probe per attention value); else current_stage → ix_runs_stage (one probe per status);
  else orchestration → ix_runs_orchestration (per status); else status → ix_runs_status;
  else ix_runs_created. ``version``, and the filters beside a record or stage, are residual.
work items (``created``: ``created_at, id``; ``due``: due time, no due time last, then
  priority, created, id; ``priority``: priority descending, then due, created, id):
  run_id → ix_work_items_run and record_id → ix_work_items_record (a handful of rows,
  sorted); an agent's scope → ix_work_items_assignee[_urgent] per status and assignee (their
  user, each group, each queue) plus ix_work_items_claimed; everyone's → ix_work_items_
  created / _urgent per status. ``due``/``priority`` read one probe per priority (0–3).
records, newest first: object_type → ix_records_object_type, else ix_records_created.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, not_, or_

from baton.engine.attention import VALUES as ATTENTION_VALUES
from baton.engine.status import RunStatus
from baton.store import schema as s
from baton.store.base import KeyPage, Total
from baton.store.sql.keyset import (
    Contains,
    Order,
    Predicate,
    Probe,
    count,
    decode_cursor,
    read_page,
)
from baton.store.sql.marks import reads

RUN_COLUMNS = ("id", "orchestration", "version", "status", "record_id", "current_stage",
               "created_at", "completed_at", "attention")
RUN_FILTERS = ("orchestration", "version", "status", "current_stage", "record_id", "attention")
PRIORITY_VALUES = (0, 1, 2, 3)  # baton.definitions.model.PRIORITIES, by index
APPROVAL = "approval"  # the step type of the items a delegate may act on

_r, _w, _rec = s.runs.c, s.work_items.c, s.records.c
_RUN_COLS = tuple(_r[c] for c in RUN_COLUMNS)
_WORK_COLS, _RECORD_COLS = tuple(s.work_items.c), tuple(s.records.c)
_due = s.due_key(_w.due_at)
RUNS_ORDER = Order("runs", ((_r.created_at, True), (_r.id, True)))
RECORDS_ORDER = Order("records", ((_rec.created_at, True), (_rec.id, True)))
WORK_ORDERS = {
    "created": Order("work.created", ((_w.created_at, False), (_w.id, False))),
    "due": Order("work.due", ((_due, False), (_w.priority, True), (_w.created_at, False),
                              (_w.id, False))),
    "priority": Order("work.priority", ((_w.priority, True), (_due, False),
                                        (_w.created_at, False), (_w.id, False))),
}


@dataclass(frozen=True)
class SlaState(Predicate):
    """A work item's SLA is in ``state`` at ``now`` (ISO), by the instants it keeps: overdue
    from ``due_at``, in_jeopardy from ``jeopardy_at``, on_track before; no SLA, none."""

    state: str
    now: str
    columns = ("due_at", "jeopardy_at")

    def matches(self, row: dict[str, Any]) -> bool:
        due, jeopardy = row["due_at"], row["jeopardy_at"]
        if due is None:
            return False
        if self.state == "overdue":
            return bool(due <= self.now)
        jeopardized = jeopardy is not None and jeopardy <= self.now
        return bool(due > self.now and (jeopardized if self.state == "in_jeopardy"
                                        else not jeopardized))

    def clause(self, c: Any) -> Any:
        due, jeopardy = c["due_at"], c["jeopardy_at"]
        if self.state == "overdue":
            return and_(due.is_not(None), due <= self.now)
        jeopardized = and_(jeopardy.is_not(None), jeopardy <= self.now)
        return and_(due.is_not(None), due > self.now,
                    jeopardized if self.state == "in_jeopardy" else not_(jeopardized))


def run_probes(filters: dict[str, Any]) -> tuple[list[Probe], dict[str, Any]]:
    """The probes and residual filters of a runs list (see the module's table)."""
    f = {k: filters[k] for k in RUN_FILTERS if filters.get(k) is not None}
    if f.pop("attention", False):  # any of the values (a filter of false is no filter)
        f["attention"] = ATTENTION_VALUES
    if "record_id" in f:
        return [Probe(((_r.record_id, f.pop("record_id")),))], f
    if "attention" in f:  # few runs: the others are checked on them
        return [Probe(((_r.attention, v),)) for v in f.pop("attention")], f
    statuses = [f.pop("status")] if "status" in f else [st.value for st in RunStatus]
    if "current_stage" in f:
        stage = f.pop("current_stage")
        return [Probe(((_r.current_stage, stage), (_r.status, st))) for st in statuses], f
    if "orchestration" in f:
        name = f.pop("orchestration")
        return [Probe(((_r.orchestration, name), (_r.status, st))) for st in statuses], f
    if len(statuses) == 1 and "status" in filters and filters["status"] is not None:
        return [Probe(((_r.status, statuses[0]),))], f
    return [Probe(())], f


def work_probes(filters: dict[str, Any], order: str) -> tuple[list[Probe], dict[str, Any]]:
    """The probes and residual filters of a work-items list.

    ``filters``: ``statuses``; ``scope`` = (user, groups, queues): items assigned to the
    user, one of their groups or queues, or claimed by them; ``assignee_kind`` +
    ``assignee`` (a queue or group); ``user``: assigned to or claimed by that user;
    ``run_id``, ``record_id``, ``claimed_by``, ``step``, ``orchestration``; ``search``:
    text in the title or summary; ``sla``: (state, now), the SLA's state at ``now``;
    ``on_behalf``: names of users whose approvals the scope's (or ``user``'s) items take in
    too, as their delegate's.
    """
    statuses = tuple(filters.get("statuses") or ())
    residual: dict[str, Any] = {k: filters[k] for k in ("claimed_by", "step", "orchestration")
                                if filters.get(k) is not None}
    if filters.get("search"):
        residual["_search"] = Contains(("title", "summary"), filters["search"])
    if filters.get("sla") is not None:
        residual["_sla"] = SlaState(*filters["sla"])
    urgent = order in ("due", "priority")
    narrow = (filters["assignee_kind"], filters["assignee"]) \
        if filters.get("assignee_kind") is not None else None
    small_by = next(((col, filters[key]) for key, col in (("run_id", _w.run_id),
                                                           ("record_id", _w.record_id))
                     if filters.get(key) is not None), None)
    if small_by is not None:  # a run's or a record's items: a handful
        col, value = small_by
        if filters.get("record_id") is not None and col is _w.run_id:
            residual["record_id"] = filters["record_id"]
        residual["status"] = statuses
        if filters.get("scope") is not None or filters.get("user") is not None:
            return _scoped_small(filters, (col, value), residual, narrow)
        if narrow is not None:
            residual.update(assignee_kind=narrow[0], assignee=narrow[1])
        return [Probe(((col, value),), small=True)], residual
    pairs: list[tuple[str, str]] | None = None
    claimer: str | None = None
    if filters.get("scope") is not None:
        user, groups, queues = filters["scope"]
        pairs = [("user", user), *(("group", g) for g in sorted(groups)),
                 *(("queue", q) for q in sorted(queues))]
        claimer = user
    elif filters.get("user") is not None:
        pairs, claimer = [("user", filters["user"])], filters["user"]
    if narrow is not None:
        if pairs is None:
            pairs = [narrow]
        else:  # within the scope: that queue or group, if the user is in it
            pairs = [p for p in pairs if p == narrow]
            residual.update(assignee_kind=narrow[0], assignee=narrow[1])
    delegated = _delegated(filters) if pairs is not None and narrow is None else ()
    probes = []
    for st in statuses:
        heads: list[tuple[tuple[Any, Any], ...]] = [((_w.status, st),)] if pairs is None else [
            ((_w.status, st), (_w.assignee_kind, k), (_w.assignee, a)) for k, a in pairs]
        heads += [((_w.status, st), (_w.assignee_kind, "user"), (_w.assignee, a),
                   (_w.step_type, APPROVAL)) for a in delegated]
        for head in heads:
            probes += [Probe((*head, (_w.priority, p)), fixed=((_w.priority, p),))
                       for p in PRIORITY_VALUES] if urgent \
                else [Probe(head)]
        if claimer is not None:
            # `status || ''`: no index can take that term, so the planner reads the user's
            # claimed items by ix_work_items_claimed (SQLite, without statistics, would
            # rather walk ix_work_items_created in order and test claimed_by on each item)
            # (not the items the assignee probes read too: counted once)
            probes.append(Probe(((_w.claimed_by, claimer),), (
                _w.status + "" == st, *_not_in(pairs or [], delegated)), small=True))
    if claimer is not None and narrow is not None:
        residual.update(assignee_kind=narrow[0], assignee=narrow[1])
    return probes, residual


def _scoped_small(filters: dict[str, Any], head: tuple[Any, Any], residual: dict[str, Any],
                  narrow: tuple[str, str] | None) -> tuple[list[Probe], dict[str, Any]]:
    """A run's or record's items within a user's scope: read them all (a handful), keep
    the scope's, probe by probe (one per assignee, one for the items they claimed)."""
    if filters.get("scope") is not None:
        user, groups, queues = filters["scope"]
        pairs = [("user", user), *(("group", g) for g in sorted(groups)),
                 *(("queue", q) for q in sorted(queues))]
    else:
        user = filters["user"]
        pairs = [("user", user)]
    delegated = _delegated(filters) if narrow is None else ()
    if narrow is not None:
        pairs = [p for p in pairs if p == narrow]
    probes = [Probe((head, (_w.assignee_kind, k), (_w.assignee, a)), small=True)
              for k, a in pairs]
    probes += [Probe((head, (_w.assignee_kind, "user"), (_w.assignee, a),
                      (_w.step_type, APPROVAL)), small=True) for a in delegated]
    claimed = dict(residual)
    if narrow is not None:
        claimed.update(assignee_kind=narrow[0], assignee=narrow[1])
    probes.append(Probe((head, (_w.claimed_by, user)), _not_in(pairs, delegated), small=True))
    return probes, claimed if narrow is not None else residual


def _delegated(filters: dict[str, Any]) -> tuple[str, ...]:
    """The users whose approvals the list takes in, as their delegate's (``on_behalf``)."""
    return tuple(sorted(set(filters.get("on_behalf") or ())))


def _not_in(pairs: Sequence[tuple[str, str]], delegated: Sequence[str] = ()
            ) -> tuple[Any, ...]:
    """Not assigned to any of ``pairs`` (kind, name), nor an approval of one of the
    ``delegated`` users: the claimed items another probe does not read already (a count
    adds its probes up)."""
    terms = [and_(_w.assignee_kind == k, _w.assignee == a) for k, a in pairs]
    terms += [and_(_w.assignee_kind == "user", _w.assignee == a, _w.step_type == APPROVAL)
              for a in delegated]
    if not terms:
        return ()
    return (not_(or_(*terms)),)


class PagesSql:
    """Keyset-paginated lists and bounded counts; mixed into :class:`~baton.store.sql.tx.SqlTx`."""

    conn: Connection

    # SqlTx's: a hot statement's rows (compiled once under ``key``).
    def _fetch_all(self, key: Any, stmt: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError  # pragma: no cover - SqlTx's

    _hot: dict[Any, Any]  # SqlTx's: the store's hot statements, by key

    def _hot_rows(self, key: Any, build: Callable[[], Any], values: dict[str, Any],
                  ) -> list[dict[str, Any]]:
        """A keyset read kept compiled: built the first time its key is seen."""
        return self._fetch_all(key, None if key in self._hot else build(), values)

    def page_runs_txn(self, filters: dict[str, Any], after: str | None, offset: int,
                      limit: int) -> KeyPage:
        """Run summaries (not their state), newest first, after the cursor ``after``."""
        probes, residual = run_probes(filters)
        key = decode_cursor(RUNS_ORDER, after) if after is not None else None
        return read_page(self.conn, _RUN_COLS, RUNS_ORDER, probes, residual, key, offset,
                         limit, self._hot_rows)

    def count_runs_bounded_txn(self, filters: dict[str, Any]) -> Total:
        probes, residual = run_probes(filters)
        return count(self.conn, s.runs, RUNS_ORDER, probes, residual)

    @reads("work_items", "all", "list")
    def page_work_items_txn(self, filters: dict[str, Any], order: str, after: str | None,
                            offset: int, limit: int) -> KeyPage:
        probes, residual = work_probes(filters, order)
        key = decode_cursor(WORK_ORDERS[order], after) if after is not None else None
        return read_page(self.conn, _WORK_COLS, WORK_ORDERS[order], probes, residual, key,
                         offset, limit, self._hot_rows)

    def count_work_items_bounded_txn(self, filters: dict[str, Any]) -> Total:
        probes, residual = work_probes(filters, "created")
        return count(self.conn, s.work_items, WORK_ORDERS["created"], probes, residual)

    def page_records_txn(self, object_type: str | None, after: str | None, offset: int,
                         limit: int) -> KeyPage:
        key = decode_cursor(RECORDS_ORDER, after) if after is not None else None
        return read_page(self.conn, _RECORD_COLS, RECORDS_ORDER, _record_probes(object_type),
                         {}, key, offset, limit, self._hot_rows)

    def count_records_bounded_txn(self, object_type: str | None) -> Total:
        return count(self.conn, s.records, RECORDS_ORDER, _record_probes(object_type), {})


def _record_probes(object_type: str | None) -> Sequence[Probe]:
    return [Probe(((_rec.object_type, object_type),) if object_type else ())]
