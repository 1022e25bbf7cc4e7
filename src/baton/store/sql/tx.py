"""SqlTx: one open transaction, the repositories' methods on SQLAlchemy Core.

Every method runs inside the transaction and never commits. The hot ones run statements
compiled once (:mod:`baton.store.sql.statements`) on the DB-API cursor; what a plan makes of
each method is declared on it (:mod:`baton.store.sql.marks`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import (
    Connection,
    bindparam,
    delete,
    func,
    select,
    update,
)

from baton.engine.state import SPLIT_STEPS, SplitSteps
from baton.errors import TransitionConflict
from baton.store import schema as s
from baton.store.codec import EVENT_ID_SPAN, PACKED, pack_events, unpack_event_row
from baton.store.sql.callbacks import CallbacksSql
from baton.store.sql.classifiers import ClassifiersSql
from baton.store.sql.fallout import FalloutSql, with_fallout
from baton.store.sql.idempotency import IdempotencySql
from baton.store.sql.incidents import IncidentsSql
from baton.store.sql.marks import reads, refused, writes
from baton.store.sql.messages import MessagesSql
from baton.store.sql.pages import PagesSql
from baton.store.sql.people import PeopleSql
from baton.store.sql.plans import PlansSql
from baton.store.sql.queries import DefinitionsSql, ListingsSql
from baton.store.sql.routing import RoutingSql
from baton.store.sql.runsteps import (
    StepsSeen,
    StepTexts,
    StepWrites,
    merge_steps,
    read_steps_stmt,
    split_row,
    statements,
    step_rows_stmt,
)
from baton.store.sql.schedules import SchedulesSql
from baton.store.sql.statements import (
    ACTIVE_RUNS,
    DELETE_JOB,
    FIND_ITEM,
    FINISH_JOB,
    GET_ITEM,
    GET_ITEM_LOCKED,
    GET_RECORD,
    GET_RECORD_LOCKED,
    GET_RUN,
    GET_RUN_LOCKED,
    INSERT_EVENT,
    INSERT_ITEM,
    INSERT_JOB,
    INSERT_RECORD,
    INSERT_RUN,
    READY_TIMERS,
    UPDATE_RECORD,
    UPDATE_RUN,
    Hot,
    active_runs_of,
    by_ids,
    update_item_hot,
)


def _step_sla(step: str, n: int) -> Any:
    """A step's iteration and SLA out of ``n`` runs' states (a JSON path per dialect:
    json_extract on SQLite, #> on PostgreSQL)."""
    state = s.runs.c.state
    return select(s.runs.c.id,
                  state[("steps", step, "iteration")].as_integer().label("iteration"),
                  state[("steps", step, "sla")].label("sla"),
                  ).where(s.runs.c.id.in_([bindparam(f"_i{i}") for i in range(n)]))


class SqlTx(DefinitionsSql, ListingsSql, PagesSql, PeopleSql, IdempotencySql, IncidentsSql,
            SchedulesSql, MessagesSql, ClassifiersSql, CallbacksSql, PlansSql, RoutingSql,
            FalloutSql):
    """One open transaction; every method runs inside it and never commits."""

    def __init__(self, conn: Connection, hot: dict[Any, Hot] | None = None,
                 seen: StepsSeen | None = None) -> None:
        self.conn = conn
        self._hot = hot if hot is not None else {}
        # Split runs' step rows as this store read them last (runsteps.py): what a write
        # of such a run compares its steps with, to write only those that changed.
        self._seen = seen if seen is not None else StepsSeen()
        # ... and as this transaction wrote them (a run written twice in it: savepoints).
        self.steps_written: dict[str, tuple[int, StepTexts]] = {}
        self._cur: Any = None
        self.enqueued = False  # a job was enqueued: wake idle workers at commit (PostgreSQL)
        # Audit events and jobs are appended, never read back by the code that writes them,
        # so they are buffered and written with one statement each at commit (or before
        # anything in this transaction reads them).
        self._events: list[dict[str, Any]] = []
        self._jobs: list[dict[str, Any]] = []
        # Deferred writes (a worker's batch commit, which holds the rows locked and keeps
        # their current state itself): many updates of one run or record in the batch
        # become one write each, and all of them a few executemany statements.
        self.deferred = False
        # run id -> (its row, or what builds it at flush; the seq the first write expects)
        self._run_writes: dict[str, tuple[dict[str, Any] | Callable[[], dict[str, Any]], int]] = {}
        self._record_writes: dict[str, dict[str, Any]] = {}
        self._finished_jobs: list[dict[str, Any]] = []
        self._buffered_timer_runs: set[str | None] = set()
        self._scanned = 0  # buffered jobs a plan's take_new_jobs() has looked at
        # Pools whose routing re-check job this transaction enqueued (one each is enough).
        self.route_rechecks: set[tuple[str, str]] = set()
        # Rows read (and locked) ahead of their reads by id: (table, id) -> row. See
        # :meth:`read_ahead_txn`.
        self._ahead_rows: dict[tuple[str, str], dict[str, Any]] = {}
        # Runs this transaction started and ended, (orchestration, status) each (listed by
        # RunDriver.decide_and_apply_txn): counted once it has committed (SqlStore.write).
        self.runs_moved: list[tuple[str, str]] = []

    # A read of a row with a deferred write pending flushes the writes first; a plan reads
    # its snapshot instead (and never a row it wrote).
    flush_on_read = True

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested transaction (SAVEPOINT): what the block writes is rolled back alone on
        error, the audit events and jobs it buffered included (they would otherwise be
        written at commit, by the block that failed). Writes buffered before the block are
        written first, so the savepoint holds only the block's own; the block's are
        written before the savepoint is released, so an error in them is the block's."""
        self.flush_txn()
        nested = self.conn.begin_nested()
        moved = len(self.runs_moved)
        try:
            yield
            self.flush_txn()
        except BaseException:
            del self.runs_moved[moved:]  # (the runs the block moved did not move)
            self._events, self._jobs, self._finished_jobs = [], [], []
            self.route_rechecks.clear()  # (their jobs were buffered in the block, if any)
            self._run_writes, self._record_writes = {}, {}
            self._buffered_timer_runs.clear()
            self._ahead_rows.clear()  # (one read in the block may hold what it rolls back)
            self.steps_written.clear()  # (step rows written in the block are rolled back)
            if nested.is_active:
                nested.rollback()
            raise
        nested.commit()

    # ---- the hot path: compiled once, run on the DB-API cursor ----------------------------
    def _compiled(self, key: Any, stmt: Any, keys: Iterable[str] | None = None) -> Hot:
        h = self._hot.get(key)
        if h is None:
            if stmt is UPDATE_RUN and keys is not None:
                # A run's id is its WHERE's (``_id``: the same value), not SET: SQLite then
                # leaves the primary key's index entry alone (with id SET it deletes and
                # re-inserts it, and checks it unique, on every run written).
                keys = [k for k in keys if k != "id"]
            h = self._hot[key] = Hot(stmt, self.conn.dialect, keys)
        return h

    def _run(self, h: Hot, values: dict[str, Any]) -> Any:
        """Execute one hot statement; errors surface as SQLAlchemy's, as for conn.execute."""
        cur = self._cur
        if cur is None:
            cur = self._cur = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        params = h.params(values)
        try:
            cur.execute(h.sql, params)
        except self.conn.dialect.loaded_dbapi.Error as exc:
            self._raise(exc, h.sql, params, cur)
        return cur

    def _run_many(self, h: Hot, rows: Sequence[dict[str, Any]]) -> int:
        cur = self._cur
        if cur is None:
            cur = self._cur = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        params = [h.params(r) for r in rows]
        try:
            cur.executemany(h.sql, params)
        except self.conn.dialect.loaded_dbapi.Error as exc:
            self._raise(exc, h.sql, params, cur)
        return int(cur.rowcount)

    def _raise(self, exc: Exception, sql: str, params: Any, cur: Any) -> None:
        # The same wrapping (DBAPIError subclasses, connection invalidation on a lost
        # connection) as a statement SQLAlchemy executes itself; it closes the cursor, so
        # the transaction's next statement (after a savepoint's rollback) takes a new one.
        self._cur = None
        self.conn._handle_dbapi_exception(exc, sql, params, cur, None)  # always raises
        raise exc  # pragma: no cover

    def _fetch_one(self, key: Any, stmt: Any, values: dict[str, Any]) -> dict[str, Any] | None:
        h = self._compiled(key, stmt)
        raw = self._run(h, values).fetchone()
        return h.row(raw) if raw is not None else None

    def _fetch_all(self, key: Any, stmt: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
        h = self._compiled(key, stmt)
        return [h.row(raw) for raw in self._run(h, values).fetchall()]

    def _write(self, key: Any, stmt: Any, values: dict[str, Any]) -> int:
        h = self._compiled((key, tuple(values)), stmt, values)  # (its keys: read on a miss)
        return int(self._run(h, values).rowcount)

    def _hot_write(self, key: Any, stmt: Any, values: dict[str, Any]) -> int:
        """A statement whose SET values are its own (bound parameters in it): its row count."""
        self._ahead_rows.clear()  # (routing's writes: a work item's row may change)
        return int(self._run(self._compiled(key, stmt), values).rowcount)

    def _write_many(self, key: Any, stmt: Any, rows: Sequence[dict[str, Any]]) -> int:
        """One statement for many rows of the same keys (an executemany)."""
        n, start = 0, 0
        for i in range(1, len(rows) + 1):  # consecutive rows with the same keys, in order
            if i == len(rows) or rows[i].keys() != rows[start].keys():
                h = self._compiled((key, tuple(rows[start])), stmt, rows[start])
                n += self._run_many(h, rows[start:i])
                start = i
        return n

    def flush_txn(self) -> None:
        if self._finished_jobs:
            done, self._finished_jobs = self._finished_jobs, []
            if self._write_many("finish_job", FINISH_JOB, done) != len(done):
                raise TransitionConflict("a job of this batch is no longer held by this worker")
        if self._run_writes:
            rows = [{**(row() if callable(row) else row), "_id": rid, "_seq": seq}
                    for rid, (row, seq) in self._run_writes.items()]
            self._run_writes = {}
            whole = list(rows)  # (their steps, before a split run's are taken out)
            steps: list[StepWrites] = []
            for i, row in enumerate(rows):  # (a run of more than SPLIT_STEPS steps: split)
                if len(row["state"].get("steps") or ()) > SPLIT_STEPS:
                    split = split_row(row, self._steps_base(row["id"], row["_seq"]),
                                      expected=row["_seq"])
                    if split is not None:
                        rows[i] = split[0]
                        steps.append(split[1])
            if self._write_many("update_run", UPDATE_RUN, rows) != len(rows):
                raise TransitionConflict("a run of this batch changed concurrently")
            if steps:
                self._write_steps(steps)
            self._sync_fallout_txn(whole, with_fallout(whole))  # (fallout.py)
        if self._record_writes:
            rows = list(self._record_writes.values())
            self._record_writes = {}
            if self._write_many("update_record", UPDATE_RECORD, rows) != len(rows):
                raise TransitionConflict("a record of this batch changed concurrently")
        if self._events:
            self._write_many("insert_event", INSERT_EVENT, pack_events(self._events))
            self._events = []
        if self._jobs:
            self._write_many("insert_job", INSERT_JOB, self._jobs)
            self._jobs = []
            self._buffered_timer_runs.clear()

    @reads("runs", "ids", "rows")
    def get_runs_txn(self, run_ids: Sequence[str], *, for_update: bool = False) -> dict[str, dict[str, Any]]:
        """Several runs by id in one statement (locked in id order: no deadlocks)."""
        if not run_ids:
            return {}
        rows = self._by_ids_txn(s.runs, run_ids, for_update)
        split = [r for r in rows.values() if r["state"].get("split")]
        if split:
            self.merge_steps_txn(split)
        return rows

    # ---- split run states (format 4: runsteps.py) -----------------------------------------
    def merge_steps_txn(self, rows: Sequence[dict[str, Any]]) -> None:
        """Put the step rows of these split runs' rows back into their ``state`` (each row
        changed in place), one statement for all of them. Each run's ``seq`` is read with
        its steps: a run that moved between the two statements (PostgreSQL reads each at
        its own snapshot; a row locked cannot move) is read again, both statements."""
        want = {r["id"]: r for r in rows}
        texts = self.conn.dialect.name == "sqlite"
        for _ in range(8):
            ids = sorted(want)
            n = 1 << (len(ids) - 1).bit_length()
            key = ("run_steps", n)
            h = self._hot.get(key) or self._compiled(key, read_steps_stmt(n, self.conn.dialect.name))
            params = {f"_i{i}": ids[min(i, len(ids) - 1)] for i in range(n)}
            found: dict[str, tuple[int, list[tuple[str, int, Any]]]] = {}
            procs = h.row_procs  # (PostgreSQL's JSONB is decoded by the driver: none)
            for raw in self._run(h, params).fetchall():
                if procs:
                    raw = list(raw)
                    for i, p in procs:
                        raw[i] = p(raw[i])
                rid, step, pos, doc, seq = raw
                if rid not in found:
                    found[rid] = (seq, [])
                found[rid][1].append((step, pos, doc))
            moved = []
            for rid, row in want.items():
                got = found.get(rid)
                if got is None or got[0] != row["seq"]:
                    moved.append(rid)
                    continue
                self._seen.put(rid, got[0], merge_steps(row["state"], got[1], texts))
            if not moved:
                return
            again = self._by_ids_txn(s.runs, moved, False)
            left = {}
            for rid in moved:
                if rid not in again:  # (runs are never deleted)
                    raise TransitionConflict(f"run {rid} was deleted while read")
                row = want[rid]
                row.clear()
                row.update(again[rid])
                if row["state"].get("split"):
                    left[rid] = row
            want = left
            if not want:
                return
        raise TransitionConflict(f"runs {', '.join(sorted(want)[:3])} kept changing while read")

    def _steps_base(self, run_id: str, seq: int) -> StepTexts | None:
        """A split run's step rows as stored at ``seq``, if known (runsteps.py)."""
        wrote = self.steps_written.get(run_id)
        if wrote is not None and wrote[0] == seq:
            return wrote[1]
        return self._seen.get(run_id, seq)

    def _write_steps(self, writes: list[StepWrites]) -> None:
        """The step rows of split runs' writes: deletes, then one executemany upsert."""
        cur = self._cur
        if cur is None:
            cur = self._cur = self.conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        for sql, params in statements(writes, self.conn.dialect.name):
            try:
                cur.executemany(sql, params)
            except self.conn.dialect.loaded_dbapi.Error as exc:
                self._raise(exc, sql, params, cur)
        for w in writes:
            self.steps_written[w.run_id] = (w.seq, w.stored())

    @reads("records", "ids", "rows")
    def get_records_txn(self, record_ids: Sequence[str], *, for_update: bool = False) -> dict[str, dict[str, Any]]:
        if not record_ids:
            return {}
        return self._by_ids_txn(s.records, record_ids, for_update)

    @refused("reads rows ahead of their reads (a plan tracks what it reads read by read)")
    def read_ahead_txn(self, table: str, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Read and lock (PostgreSQL; in id order) the rows of ``table`` (``runs``,
        ``records`` or ``work_items``) with these ids in one statement, and keep each for
        this transaction's next read of it by id (:meth:`get_run_txn`,
        :meth:`get_record_txn`, :meth:`get_work_item_txn`): a batch of changes reads its
        rows with one round trip instead of one per row. A row kept is used once (the
        reader may change the dict it gets) and dropped as soon as this transaction writes
        it. Returns the rows read, by id."""
        if not ids:
            return {}
        self.flush_txn()  # (what is read is current: nothing of this table is pending)
        rows = self._by_ids_txn(_AHEAD_TABLES[table], ids, True)
        if table == "runs":
            split = [r for r in rows.values() if r["state"].get("split")]
            if split:
                self.merge_steps_txn(split)
        for rid, row in rows.items():
            self._ahead_rows[(table, rid)] = dict(row)
        return rows

    @reads("work_items", "ids", "list")
    def work_item_runs_txn(self, item_ids: Sequence[str]) -> dict[str, str]:
        """The run of each of these work items (id -> run id), read without a lock and
        without the rest of the row: what a change that locks runs before their items reads
        first (a work item's run never changes)."""
        if not item_ids:
            return {}
        rows = self._by_ids_txn(s.work_items, item_ids, False, ("id", "run_id"))
        return {rid: str(row["run_id"]) for rid, row in rows.items()}

    @reads("work_items", "ids", "rows")
    def get_work_items_txn(self, item_ids: Sequence[str], *, for_update: bool = False
                           ) -> dict[str, dict[str, Any]]:
        """Several work items by id in one statement (locked in id order)."""
        if not item_ids:
            return {}
        return self._by_ids_txn(s.work_items, item_ids, for_update)

    @reads("runs", "all", "list")
    def step_slas_txn(self, steps: Sequence[tuple[str, str]]
                      ) -> dict[tuple[str, str], tuple[int | None, dict[str, Any] | None]]:
        """The iteration and the SLA a run's state keeps for one of its steps: (run id,
        step) -> (iteration, sla), None where the state has none (a run not found is
        left out). Read out of the stored state by the database, a statement per step
        name: the whole state is neither sent nor decoded (a work list's SLA status)."""
        by_step: dict[str, set[str]] = {}
        for run_id, step in steps:
            by_step.setdefault(step, set()).add(run_id)
        out: dict[tuple[str, str], tuple[int | None, dict[str, Any] | None]] = {}
        for step, ids in by_step.items():
            wanted = sorted(ids)
            if '"' in step or "\\" in step:  # (not an identifier: no JSON path names it)
                for rid, row in self.get_runs_txn(wanted).items():
                    doc = ((row["state"] or {}).get("steps") or {}).get(step) or {}
                    out[(rid, step)] = (doc.get("iteration"), doc.get("sla"))
                continue
            n = 1 << (len(wanted) - 1).bit_length()
            key = ("step_sla", step, n)
            h = self._hot.get(key) or self._compiled(key, _step_sla(step, n))
            params = {f"_i{i}": wanted[min(i, len(wanted) - 1)] for i in range(n)}
            missing = []
            for raw in self._run(h, params).fetchall():
                row = h.row(raw)
                out[(row["id"], step)] = (row["iteration"], row["sla"])
                if row["iteration"] is None:  # not in the document: a split run's row?
                    missing.append(row["id"])
            if missing:
                n = 1 << (len(missing) - 1).bit_length()
                h = self._compiled(("step_rows", step, n), step_rows_stmt(step, n))
                params = {f"_i{i}": missing[min(i, len(missing) - 1)] for i in range(n)}
                for raw in self._run(h, params).fetchall():
                    row = h.row(raw)
                    if row["split"]:  # (rows of a run no longer split are not its steps)
                        doc = row["doc"]
                        out[(row["run_id"], step)] = (doc.get("iteration"), doc.get("sla"))
        return out

    @reads("runs", "ids", "rows")
    def run_heads_txn(self, run_ids: Sequence[str], *, for_update: bool = False) -> dict[str, dict[str, Any]]:
        """Several runs' ``seq`` and ``record_id`` (not their state): enough to tell whether
        a state read earlier is still current, and to lock the rows."""
        if not run_ids:
            return {}
        return self._by_ids_txn(s.runs, run_ids, for_update, ("id", "seq", "record_id"))

    @reads("records", "ids", "versions")
    def record_versions_txn(self, record_ids: Sequence[str], *, for_update: bool = False) -> dict[str, int]:
        if not record_ids:
            return {}
        rows = self._by_ids_txn(s.records, record_ids, for_update, ("id", "version"))
        return {rid: r["version"] for rid, r in rows.items()}

    def _by_ids_txn(self, table: Any, ids: Sequence[str], for_update: bool,
                    columns: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
        # One statement per power of two of ids (padded with the last id): a few compiled
        # variants serve every batch size.
        wanted = sorted(set(ids))
        n = 1 << (len(wanted) - 1).bit_length()
        key = ("by_ids", table.name, n, for_update, columns)
        h = self._hot.get(key) or self._compiled(key, by_ids(table, n, for_update, columns))
        params = {f"_i{i}": wanted[min(i, len(wanted) - 1)] for i in range(n)}
        return {r["id"]: r for r in map(h.row, self._run(h, params).fetchall())}

    # ---- records ------------------------------------------------------------------------
    @writes("records", "row")
    def insert_record_txn(self, row: dict[str, Any]) -> None:
        self._write("insert_record", INSERT_RECORD, row)

    @reads("records", "id", "row")
    def get_record_txn(self, record_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
        """``for_update`` locks the row until commit (PostgreSQL; SQLite's write lock covers it)."""
        if self._ahead_rows:
            ahead = self._ahead_rows.pop(("records", record_id), None)
            if ahead is not None:
                return ahead
        if self._record_writes and self.flush_on_read:
            self.flush_txn()
        q = GET_RECORD_LOCKED if for_update else GET_RECORD
        return self._fetch_one(("get_record", for_update), q, {"_id": record_id})

    def update_record_txn(
        self, record_id: str, data: dict[str, Any], expected_version: int, now: str
    ) -> int:
        params = {"_id": record_id, "_version": expected_version, "data": data,
                  "version": expected_version + 1, "updated_at": now}
        if self._ahead_rows:
            self._ahead_rows.pop(("records", record_id), None)
        if self.deferred:
            first = self._record_writes.get(record_id)
            if first is not None:  # written earlier in this batch: compare with the stored one
                params["_version"] = first["_version"]
            self._record_writes[record_id] = params
            return expected_version + 1
        if self._write("update_record", UPDATE_RECORD, params) != 1:
            raise TransitionConflict(
                f"record {record_id} is no longer at version {expected_version} "
                "(someone else changed it): read it again and retry"
            )
        return expected_version + 1

    # ---- runs ---------------------------------------------------------------------------
    @writes("runs", "row")
    def insert_run_txn(self, row: dict[str, Any]) -> None:
        """A new run, as one document even when it is large: it is split at its first
        write (a 10,000-line plan's 13,000 step rows cost its submit ~0.2 s of CPU more
        than one document; its worker's first commit pays them once instead)."""
        steps = row["state"].get("steps")
        if isinstance(steps, SplitSteps):  # (a run read split, inserted as another: whole)
            row = {**row, "state": {**row["state"], "steps": steps.docs()}}
        self._write("insert_run", INSERT_RUN, row)
        if (row.get("attention") or 0) & 1:  # a step in fallout already (fallout.py)
            self._sync_fallout_txn([row], [row])

    @reads("runs", "id", "row")
    def get_run_txn(self, run_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
        """``for_update`` serialises writers of one run (two of its steps finishing at once)."""
        if self._ahead_rows:
            ahead = self._ahead_rows.pop(("runs", run_id), None)
            if ahead is not None:
                return ahead
        if self._run_writes and self.flush_on_read:
            self.flush_txn()
        q = GET_RUN_LOCKED if for_update else GET_RUN
        row = self._fetch_one(("get_run", for_update), q, {"_id": run_id})
        if row is not None and row["state"].get("split"):
            self.merge_steps_txn([row])
        return row

    def update_run_txn(self, row: dict[str, Any], expected_seq: int) -> None:
        if self._ahead_rows:
            self._ahead_rows.pop(("runs", row["id"]), None)
        if self.deferred:
            first = self._run_writes.get(row["id"])
            self._run_writes[row["id"]] = (row, first[1] if first else expected_seq)
            return
        whole = row
        split = split_row(row, self._steps_base(row["id"], expected_seq), expected=expected_seq)
        if split is not None:
            row = split[0]
        if self._write("update_run", UPDATE_RUN, {**row, "_id": row["id"], "_seq": expected_seq}) != 1:
            raise TransitionConflict(f"run {row['id']} changed concurrently (expected seq {expected_seq})")
        if split is not None:
            self._write_steps([split[1]])
        self._sync_fallout_txn([whole], with_fallout([whole]))  # (fallout.py)

    def update_run_lazy_txn(self, run_id: str, build: Callable[[], dict[str, Any]],
                            expected_seq: int) -> None:
        """:meth:`update_run_txn` with the row built by ``build`` when it is written: in a
        deferred transaction at flush, so of several updates of one run in a batch only
        the last row is built (and encoded); else at once."""
        if self._ahead_rows:
            self._ahead_rows.pop(("runs", run_id), None)
        if self.deferred:
            first = self._run_writes.get(run_id)
            self._run_writes[run_id] = (build, first[1] if first else expected_seq)
            return
        self.update_run_txn(build(), expected_seq)

    @reads("runs", "parent", "ids")
    def active_run_ids_for_record_txn(self, record_id: str) -> list[str]:
        h = self._compiled("active_runs", ACTIVE_RUNS)
        return [r[0] for r in self._run(h, {"_record": record_id}).fetchall()]

    def active_run_ids_for_records_txn(self, record_ids: Sequence[str]) -> dict[str, list[str]]:
        """:meth:`active_run_ids_for_record_txn` of many records in one statement (a plan
        checks what it read under the lock this way): record id -> its runs in progress,
        sorted; a record without any maps to an empty list."""
        out: dict[str, list[str]] = {rid: [] for rid in record_ids}
        if not out:
            return out
        # One statement per power of two of ids (padded with the last id), compiled once:
        # not one built and compiled by SQLAlchemy on every call.
        wanted = list(out)
        n = 1 << (len(wanted) - 1).bit_length()
        key = ("active_runs_of", n)
        h = self._hot.get(key) or self._compiled(key, active_runs_of(n))
        last = wanted[-1]
        params = {f"_i{i}": wanted[i] if i < len(wanted) else last for i in range(n)}
        for record_id, run_id in self._run(h, params).fetchall():
            out[record_id].append(run_id)
        for ids in out.values():  # in Python's order: the database's collation may differ
            ids.sort()
        return out

    @refused("deletes a record")
    def delete_record_txn(self, record_id: str) -> None:
        self._ahead_rows.pop(("records", record_id), None)
        self.conn.execute(delete(s.records).where(s.records.c.id == record_id))

    # ---- work items ---------------------------------------------------------------------
    @writes("work_items", "row")
    def insert_work_item_txn(self, row: dict[str, Any]) -> None:
        self._write("insert_item", INSERT_ITEM, row)

    @refused("inserts work items in one statement (a plan records each insert_work_item_txn)")
    def insert_work_items_txn(self, rows: Sequence[dict[str, Any]]) -> None:
        """:meth:`insert_work_item_txn` of many rows: one executemany (rows of the same
        keys together, in order) instead of a round trip per item."""
        self._write_many("insert_item", INSERT_ITEM, rows)

    @reads("work_items", "id", "row")
    def get_work_item_txn(self, item_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
        if self._ahead_rows:
            ahead = self._ahead_rows.pop(("work_items", item_id), None)
            if ahead is not None:
                return ahead
        q = GET_ITEM_LOCKED if for_update else GET_ITEM
        return self._fetch_one(("get_item", for_update), q, {"_id": item_id})

    @reads("work_items", "parent", "row")
    def find_work_item_txn(self, run_id: str, step: str, iteration: int) -> dict[str, Any] | None:
        return self._fetch_one("find_item", FIND_ITEM,
                               {"_run": run_id, "_step": step, "_iteration": iteration})

    # A plan counts on it applying; at replay it must, or the whole plan is dropped.
    @writes("work_items", "id", replay="_update_work_item_or_conflict", result=True)
    def update_work_item_txn(
        self,
        item_id: str,
        expected_statuses: Sequence[str],
        expected_version: int | None,
        values: dict[str, Any],
    ) -> bool:
        if self._ahead_rows:
            self._ahead_rows.pop(("work_items", item_id), None)
        at_version = expected_version is not None
        params = {**values, "_id": item_id, **{f"_s{i}": st for i, st in enumerate(expected_statuses)}}
        if at_version:
            params["_version"] = expected_version
        key = ("update_item", len(expected_statuses), at_version, tuple(values))
        h = self._hot.get(key)
        if h is None:
            h = self._compiled(key, update_item_hot(len(expected_statuses), at_version), values)
        return bool(self._run(h, params).rowcount == 1)

    def _update_work_item_or_conflict(self, item_id: str, expected_statuses: Sequence[str],
                                      expected_version: int | None, values: dict[str, Any]) -> None:
        if not self.update_work_item_txn(item_id, expected_statuses, expected_version, values):
            raise TransitionConflict(f"work item {item_id} changed concurrently")

    # ---- jobs ---------------------------------------------------------------------------
    def enqueue_job_txn(
        self, kind: str, run_id: str | None, payload: dict[str, Any], run_after: str, now: str
    ) -> None:
        self._jobs.append({
            "kind": kind, "run_id": run_id, "payload": payload, "status": "ready",
            "run_after": run_after, "attempts": 0, "created_at": now,
        })
        if kind == "timer":
            self._buffered_timer_runs.add(run_id)
        self.enqueued = True

    def enqueue_jobs_txn(self, jobs: Sequence[tuple[str, str | None, dict[str, Any]]],
                         run_after: str, now: str) -> None:
        """Enqueue several jobs with one statement."""
        append = self._jobs.append  # (one loop: not two generators per decision applied)
        for kind, run_id, payload in jobs:
            append({"kind": kind, "run_id": run_id, "payload": payload, "status": "ready",
                    "run_after": run_after, "attempts": 0, "created_at": now})
            if kind == "timer":
                self._buffered_timer_runs.add(run_id)
        self.enqueued = True

    @writes("jobs", now="_drop_buffered_timers")
    def cancel_timers_txn(self, run_id: str, step: str, iteration: int) -> int:
        """Delete a step iteration's timers that have not fired (a timer being fired right
        now is claimed, not ready: it fires as a no-op). Returns how many were deleted."""
        dropped = self._drop_buffered_timers(run_id, step, iteration)
        h = self._compiled("ready_timers", READY_TIMERS)
        ids = [r["id"] for r in map(h.row, self._run(h, {"_run": run_id}).fetchall())
               if _is_timer_of(r["payload"], step, iteration)]
        if ids:
            self._write_many("delete_job", DELETE_JOB, [{"_id": i} for i in ids])
        return dropped + len(ids)

    def _drop_buffered_timers(self, run_id: str, step: str, iteration: int) -> int:
        """The share of :meth:`cancel_timers_txn` made in this transaction's own buffer."""
        if run_id not in self._buffered_timer_runs:  # only then can the buffer hold one of them
            return 0

        def mine(j: dict[str, Any]) -> bool:
            return bool(j["kind"] == "timer" and j["run_id"] == run_id
                        and _is_timer_of(j["payload"], step, iteration))

        before = len(self._jobs)
        if self._scanned:  # jobs a plan's take_new_jobs() already looked at
            self._scanned -= sum(1 for j in self._jobs[:self._scanned] if mine(j))
        self._jobs = [j for j in self._jobs if not mine(j)]
        return before - len(self._jobs)

    def finish_job_txn(self, job_id: int, worker_id: str) -> None:
        """Delete a claimed job; only its claimer may, exactly once."""
        if self.deferred:
            self._finished_jobs.append({"_id": job_id, "_worker": worker_id})
            return
        if self._write("finish_job", FINISH_JOB, {"_id": job_id, "_worker": worker_id}) != 1:
            raise TransitionConflict(f"job {job_id} is no longer held by worker {worker_id}")

    @writes("jobs")
    def release_job_txn(self, job_id: int, worker_id: str, run_after: str) -> None:
        """Hand a claimed job back to the queue, due again at ``run_after``."""
        t = s.jobs
        self.conn.execute(
            update(t)
            .where(t.c.id == job_id, t.c.claimed_by == worker_id)
            .values(status="ready", claimed_by=None, claimed_at=None, run_after=run_after)
        )
        self.enqueued = True  # idle workers (NOTIFY) look again and see when it falls due

    def count_jobs_txn(self) -> dict[str, int]:
        self.flush_txn()
        t = s.jobs
        return {r[0]: int(r[1]) for r in self.conn.execute(select(t.c.status, func.count()).group_by(t.c.status))}

    def next_job_due_txn(self) -> str | None:
        """When the next ready job, or the next SLA instant kept on a run (``sla_at``, which
        the claim hands out like a job), falls due; both are index reads."""
        self.flush_txn()
        t = s.jobs
        job = self.conn.execute(select(func.min(t.c.run_after)).where(t.c.status == "ready")).scalar()
        sla = self.conn.execute(select(func.min(s.runs.c.sla_at))).scalar()
        return min((x for x in (job, sla) if x is not None), default=None)

    # ---- events -------------------------------------------------------------------------
    def append_events_txn(self, rows: Sequence[dict[str, Any]]) -> None:
        self._events.extend(rows)

    def events_txn(
        self, *, record_id: str | None = None, run_id: str | None = None,
        types: Sequence[str] | None = None, after_id: int = 0, limit: int = 10_000,
    ) -> list[dict[str, Any]]:
        """Events in order, each as it was appended plus its ``id`` (packed rows are
        unpacked: see :func:`pack_events`); ``after_id`` is an event id seen before."""
        self.flush_txn()
        t = s.events
        base = select(t).order_by(t.c.id).limit(limit)
        if record_id is not None:
            base = base.where(t.c.record_id == record_id)
        if run_id is not None:
            base = base.where(t.c.run_id == run_id)
        wanted = set(types or ())
        if types:
            base = base.where(t.c.type.in_([*types, PACKED]))
        # A packed row holds the events after_id // EVENT_ID_SPAN * EVENT_ID_SPAN + j.
        q = base.where(((t.c.type != PACKED) & (t.c.id > after_id))
                       | ((t.c.type == PACKED) & (t.c.id >= after_id // EVENT_ID_SPAN)))
        out: list[dict[str, Any]] = []
        while True:
            rows = self.conn.execute(q).all()
            for r in rows:
                for e in unpack_event_row(r._mapping):
                    if e["id"] > after_id and (not wanted or e["type"] in wanted):
                        out.append(e)
                        if len(out) == limit:
                            return out
            if len(rows) < limit:
                return out
            q = base.where(t.c.id > rows[-1].id)  # rows of events of other types: read on


_AHEAD_TABLES = {"runs": s.runs, "records": s.records, "work_items": s.work_items}


def _is_timer_of(payload: dict[str, Any], step: str, iteration: int) -> bool:
    return bool(payload.get("step") == step and payload.get("iteration") == iteration)
