"""PlanTx: a commit worked out on a read snapshot, checked and replayed under the write lock.

What a plan does with each :class:`SqlTx` method comes from the method's declaration
(:mod:`baton.store.sql.marks`): :class:`PlanTx` wraps every declared method when the class
is defined, from the table it touches (:data:`TABLES`). A new method is declared once, on
``SqlTx``; a new table the plan must check is one line of :data:`TABLES`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from baton.store import schema as s
from baton.store.sql.marks import ATTR, Mark, Read, Refuse, Write
from baton.store.sql.runsteps import StepsSeen
from baton.store.sql.statements import Hot
from baton.store.sql.tx import SqlTx


class PlanAborted(Exception):
    """A planned commit met something it cannot do without the write lock (a read of a row
    it wrote, a flush), or found under the lock that what it read has changed: nothing was
    committed, and the caller commits the usual way instead."""


@dataclass(frozen=True, slots=True)
class Table:
    """How a plan keeps track of one table's rows."""

    sql: Any  # the schema's table
    label: str  # one row, in messages
    version: str | None = None  # a read row must still have this column's value at commit
    parent: str | None = None  # the column naming the row this one belongs to
    parent_label: str = ""
    buffer: str | None = None  # the SqlTx attribute holding its deferred updates, by id


# Reads kept whole ("ids") with a method that reads many keys in one statement, returning
# key -> sorted ids: under the lock, a plan checks all it read with one round trip.
BATCHED: dict[str, str] = {
    "active_run_ids_for_record_txn": "active_run_ids_for_records_txn",
}

TABLES: dict[str, Table] = {
    "runs": Table(s.runs, "run", version="seq", parent="record_id", parent_label="record",
                  buffer="_run_writes"),
    "records": Table(s.records, "record", version="version", buffer="_record_writes"),
    "work_items": Table(s.work_items, "work item", parent="run_id", parent_label="run"),
    "jobs": Table(s.jobs, "job"),
}


class _Rows:
    """One table as a plan has seen it."""

    __slots__ = ("parent_of", "parents_written", "unknown", "versions", "written")

    def __init__(self) -> None:
        self.versions: dict[str, Any] = {}  # row read -> its version then
        self.written: set[str] = set()  # rows this plan inserted or updated
        self.parents_written: set[str] = set()  # parents of those
        self.parent_of: dict[str, str] = {}  # row read -> its parent (for writes by id)
        self.unknown = False  # a row of unknown parent was written: no reads by parent


class PlanTx(SqlTx):
    """A commit worked out on a read snapshot before the write lock is taken, then checked
    and replayed under the lock in a few statements (:meth:`commit_into`).

    Reads run on the snapshot, and the ``seq`` of every run and the ``version`` of every
    record read are remembered (:meth:`saw_run`, :meth:`saw_record` add rows read
    elsewhere). Writes are not executed: run and record updates, events, jobs and finished
    jobs are buffered as in a deferred :class:`SqlTx`; the other writes (records, runs and
    work items created, a work item's compare-and-set, stored timers deleted) are recorded
    in order and made again at replay. Reading a row this plan wrote raises
    :class:`PlanAborted`, as does anything that would flush or write otherwise.

    Under the lock, :meth:`commit_into` checks that every run and record read is unchanged
    and that no run of a record read for its runs started or ended, then writes. Every
    update keeps its compare-and-set guard as well: a stale plan cannot be committed.
    """

    flush_on_read = False

    def __init__(self, conn: Connection, hot: dict[Any, Hot] | None = None,
                 seen: StepsSeen | None = None) -> None:
        super().__init__(conn, hot, seen)
        self.deferred = True
        self._calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._rows = {name: _Rows() for name in TABLES}
        # Reads kept whole (the active runs of a record): (method, key) -> what it returned.
        self._lists: dict[tuple[str, Any], Any] = {}
        # Answers read ahead in one statement (:meth:`prefetch_active_runs`), taken into
        # ``_lists`` only when the plan reads them: the check covers what it read.
        self._ahead: dict[tuple[str, Any], Any] = {}

    def prefetch_active_runs(self, record_ids: Sequence[str]) -> None:
        """Read the runs in progress of all these records in one statement; the plan's reads
        of them (:meth:`active_run_ids_for_record_txn`) are answered from it, not with a
        round trip each. A worker calls it with its batch's records."""
        wanted = [r for r in record_ids if ("active_run_ids_for_record_txn", r) not in self._lists]
        for rid, ids in self.active_run_ids_for_records_txn(wanted).items():
            self._ahead[("active_run_ids_for_record_txn", rid)] = ids

    def saw_run(self, run_id: str, seq: int) -> None:
        self._rows["runs"].versions.setdefault(run_id, seq)

    def saw_record(self, record_id: str, version: int) -> None:
        self._rows["records"].versions.setdefault(record_id, version)

    def flush_txn(self) -> None:
        if self._run_writes or self._record_writes or self._events or self._jobs or self._finished_jobs:
            raise PlanAborted("needs a flush")

    def _write(self, key: Any, stmt: Any, values: dict[str, Any]) -> int:
        raise PlanAborted(f"a write ({key}) this plan does not know how to defer")

    def _hot_write(self, key: Any, stmt: Any, values: dict[str, Any]) -> int:
        raise PlanAborted(f"a write ({key}) this plan does not know how to defer")

    def _write_many(self, key: Any, stmt: Any, rows: Sequence[dict[str, Any]]) -> int:
        raise PlanAborted(f"a write ({key}) this plan does not know how to defer")

    def take_new_jobs(self, wanted: Any) -> list[dict[str, Any]]:
        """Remove and return the jobs buffered since the last call that ``wanted(job)``
        accepts (a worker runs them in this same plan: they are never written)."""
        start, self._scanned = self._scanned, len(self._jobs)
        if start >= len(self._jobs):
            return []
        new = self._jobs[start:]
        taken = [wanted(j) for j in new]
        if not any(taken):
            return []
        self._jobs[start:] = [j for j, t in zip(new, taken, strict=True) if not t]
        self._scanned = len(self._jobs)
        return [j for j, t in zip(new, taken, strict=True) if t]

    # ---- under the lock ------------------------------------------------------------------
    def commit_into(self, tx: SqlTx) -> None:
        """In ``tx`` (a write transaction): check that what this plan read is unchanged
        (:class:`PlanAborted` if not: roll ``tx`` back), then make its writes; they are
        flushed when ``tx`` commits. Rows are locked in id order (PostgreSQL)."""
        for name, table in TABLES.items():
            seen = self._rows[name].versions
            if seen and table.version is not None:
                rows = tx._by_ids_txn(table.sql, list(seen), True, ("id", table.version))
                moved = [rid for rid, v in seen.items()
                         if rid not in rows or rows[rid][table.version] != v]
                if moved:
                    raise PlanAborted(f"{table.label}(s) {', '.join(moved[:3])} changed since they were read")
        by_method: dict[str, dict[Any, Any]] = {}
        for (method, key), value in self._lists.items():
            by_method.setdefault(method, {})[key] = value
        for method, seen_lists in by_method.items():
            many = BATCHED.get(method)
            if many is not None:  # one statement for every key (each key was a round trip)
                now_lists = getattr(tx, many)(list(seen_lists))
                changed = [k for k, v in seen_lists.items() if sorted(v) != now_lists.get(k, [])]
            else:
                changed = [k for k, v in seen_lists.items() if getattr(tx, method)(k) != v]
            if changed:
                table = TABLES[_read_marks[method].table]
                raise PlanAborted(f"{table.label}s of {table.parent_label} {changed[0]} started "
                                  "or ended since they were read")
        self.replay_into(tx)

    def replay_into(self, tx: SqlTx) -> None:
        """Make this plan's writes in ``tx`` without checking what it read (the caller has);
        they are flushed when ``tx`` commits."""
        tx.deferred = True
        calls, i = self._calls, 0
        while i < len(calls):
            name, args, kw = calls[i]
            j = i + 1
            if name == "insert_work_item_txn":  # consecutive new items: one executemany
                while j < len(calls) and calls[j][0] == name:
                    j += 1
            if j - i > 1:
                tx.insert_work_items_txn([c[1][0] if c[1] else c[2]["row"] for c in calls[i:j]])
            else:
                getattr(tx, name)(*args, **kw)
            i = j
        tx._finished_jobs.extend(self._finished_jobs)
        for rid, (row, seq) in self._run_writes.items():
            first = tx._run_writes.get(rid)
            tx._run_writes[rid] = (row, first[1] if first else seq)
        for rid, params in self._record_writes.items():
            first_rec = tx._record_writes.get(rid)
            tx._record_writes[rid] = {**params, "_version": first_rec["_version"]} if first_rec else params
        tx._events.extend(self._events)
        tx._jobs.extend(self._jobs)
        tx._buffered_timer_runs.update(self._buffered_timer_runs)
        tx.enqueued = tx.enqueued or self.enqueued
        tx.runs_moved.extend(self.runs_moved)  # (counted when tx commits: moved, not copied)
        self.runs_moved = []


# ---- the wrappers, built from the declarations on SqlTx ------------------------------------
def _first_param(fn: Callable[..., Any]) -> str:
    """The name of ``fn``'s first argument after ``self`` (when passed by name)."""
    return list(inspect.signature(fn).parameters)[1]


def _reader(name: str, fn: Callable[..., Any], mark: Read) -> Callable[..., Any]:
    table, by, returns = TABLES[mark.table], mark.by, mark.returns
    first = _first_param(fn) if by != "all" else ""
    track_parent = table.parent if mark.table in _parents_needed else None
    tname, buffer_attr, version = mark.table, table.buffer, table.version

    def refuse(what: str) -> PlanAborted:
        return PlanAborted(f"reads {what} after writing it")

    @functools.wraps(fn)
    def read(self: PlanTx, *args: Any, **kw: Any) -> Any:
        rows = self._rows[tname]
        key = args[0] if args else kw.get(first)
        buffer = getattr(self, buffer_attr) if buffer_attr else ()
        # Never a row this plan wrote: the snapshot does not have the write.
        if by == "id":
            if rows.unknown or key in rows.written or key in buffer:
                raise refuse(f"{table.label} {key}")
        elif by == "ids":
            for k in key or ():
                if k in rows.written or k in buffer:
                    raise refuse(f"{table.label} {k}")
            if rows.unknown:
                raise refuse(f"a {table.label}")
        elif by == "parent":
            if rows.unknown or key in rows.parents_written:
                raise refuse(f"the {table.label}s of {table.parent_label} {key}")
        elif rows.unknown or rows.written or buffer:
            raise refuse(f"{table.label}s")
        kw.pop("for_update", None)  # the snapshot's rows: the lock is taken at commit
        if returns == "ids" and (name, key) in self._lists:
            # Read before in this plan, on the same snapshot, and not written since (above):
            # the same answer without another round trip.
            return list(self._lists[(name, key)])
        ahead = self._ahead.pop((name, key), None) if returns == "ids" else None
        result: Any = list(ahead) if ahead is not None else fn(self, *args, **kw)
        if returns == "ids":
            self._lists.setdefault((name, key), list(result))
            return result
        if returns == "list":
            return result
        if returns == "versions":
            for k, v in result.items():
                rows.versions.setdefault(k, v)
            return result
        for row in (result.values() if returns == "rows" else (result,) if result is not None else ()):
            if version is not None:
                rows.versions.setdefault(row["id"], row[version])
            if track_parent is not None:
                rows.parent_of[row["id"]] = row[track_parent]
        return result

    return read


def _writer(name: str, fn: Callable[..., Any], mark: Write) -> Callable[..., Any]:
    table_name = mark.table or ""
    table = TABLES[table_name] if table_name else None
    first = _first_param(fn) if mark.by is not None else ""
    replay, now, result = mark.replay or name, mark.now, mark.result

    @functools.wraps(fn)
    def write(self: PlanTx, *args: Any, **kw: Any) -> Any:
        if first and table is not None:
            rows = self._rows[table_name]
            key = args[0] if args else kw[first]
            if mark.by == "row":  # a new row: its id and its parent
                rows.written.add(key["id"])
                if table.parent and key.get(table.parent):
                    rows.parents_written.add(key[table.parent])
            else:  # an update by id: its parent if this plan read the row, else unknown
                rows.written.add(key)
                parent = rows.parent_of.get(key)
                if parent is None:
                    rows.unknown = True
                else:
                    rows.parents_written.add(parent)
        self._calls.append((replay, args, kw))
        return getattr(self, now)(*args, **kw) if now is not None else result

    return write


def _refuser(fn: Callable[..., Any], mark: Refuse) -> Callable[..., Any]:
    @functools.wraps(fn)
    def refuse(self: PlanTx, *args: Any, **kw: Any) -> Any:
        raise PlanAborted(mark.reason)

    return refuse


def _declared() -> dict[str, tuple[Callable[..., Any], Mark]]:
    out: dict[str, tuple[Callable[..., Any], Mark]] = {}
    for klass in reversed(SqlTx.__mro__):
        for name, fn in vars(klass).items():
            mark = getattr(fn, ATTR, None)
            if mark is not None:
                out[name] = (fn, mark)
    return out


_marks = _declared()
_read_marks = {n: m for n, (_f, m) in _marks.items() if isinstance(m, Read)}
# Tables written by id: a plan remembers the parent of each of their rows it reads, so that
# such a write tells which reads by parent it spoils.
_parents_needed = {m.table for _f, m in _marks.values() if isinstance(m, Write) and m.by == "id"}
for _name, (_fn, _mark) in _marks.items():
    if isinstance(_mark, Read):
        setattr(PlanTx, _name, _reader(_name, _fn, _mark))
    elif isinstance(_mark, Write):
        setattr(PlanTx, _name, _writer(_name, _fn, _mark))
    else:
        setattr(PlanTx, _name, _refuser(_fn, _mark))
