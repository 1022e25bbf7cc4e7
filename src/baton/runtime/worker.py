"""The worker: claim jobs, run flows outside transactions, commit results atomically.

A job is deleted in the same transaction that commits its result, and only by
the worker that holds it, so a result is committed at most once; a job held by
a worker that died goes back to the queue, so it is committed at least once.
Flows may therefore run more than once (at-least-once); their effects on Baton
(record updates, vars, the step's output) are committed exactly once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError

from baton.clock import iso
from baton.engine.events import (
    ConditionEvaluated,
    RecordChanged,
    StepCompleted,
    StepFailed,
    TimerFired,
)
from baton.engine.state import Run, copy_json
from baton.engine.status import RunStatus, StepStatus
from baton.errors import BatonError, StepFailure, TransitionConflict
from baton.flows import FlowContext, StepView, get_flow
from baton.runtime.apply import event_row
from baton.runtime.engine import Engine, record_view
from baton.store.base import Job
from baton.store.sql import PlanAborted, PlanTx, worker_host
from baton.work import notify

log = logging.getLogger("baton.worker")

MAX_BACKOFF = 30.0  # seconds between tries while the database is down
MAX_CONFLICT_ATTEMPTS = 5
CHAIN_LIMIT = 256  # background steps a batch may run beyond its claimed jobs (loops end)
CHAIN_SECONDS = 0.2  # and only while its plan is younger than this

FAULT_ENV = "BATON_FAULT"
"""Fault injection for durability tests: ``after_claim@N`` / ``after_flow@N`` /
``after_commit@N`` SIGKILLs this worker the N-th time it reaches that point."""


class _Faults:
    def __init__(self) -> None:
        spec = os.environ.get(FAULT_ENV, "")
        self.point, _, n = spec.partition("@")
        self.remaining = int(n) if n else 1
        self.lock = threading.Lock()

    def hit(self, point: str) -> None:
        if point != self.point:
            return
        with self.lock:
            self.remaining -= 1
            if self.remaining == 0:
                os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class WorkerStats:
    jobs: int = 0
    steps_completed: int = 0
    steps_failed: int = 0
    stale: int = 0
    chained: int = 0  # steps run in the batch that made them ready (no job row)
    planned_commits: int = 0  # batches committed from a plan made before taking the lock
    unplanned_commits: int = 0  # batches whose plan could not be used (committed under the lock)


class Worker:
    def __init__(self, engine: Engine, *, batch: int = 32, poll_interval: float = 0.2,
                 idle_poll: float = 10.0, heartbeat_interval: float | None = None,
                 heartbeat_timeout: float = 30.0) -> None:
        self.engine = engine
        self.store = engine.store
        self.batch = batch
        self.poll_interval = poll_interval  # SQLite: how often an idle worker looks
        self.idle_poll = idle_poll  # PostgreSQL: fallback poll when no NOTIFY arrives
        # Beat at least three times per timeout, so a live worker is never taken for dead.
        self.heartbeat_interval = heartbeat_interval or min(5.0, heartbeat_timeout / 3)
        self.heartbeat_timeout = heartbeat_timeout
        self.id = engine.ids.new("wrk")
        self.stats = WorkerStats()
        self.stopping = threading.Event()
        self._faults = _Faults()
        # Plan each batch's commit before taking the write lock (PlanTx). BATON_PLAN_COMMITS=0
        # turns it off: every batch is then worked out under the lock.
        self.plan_commits = os.environ.get("BATON_PLAN_COMMITS", "1") != "0"
        self._chainable: dict[tuple[str, int, str, str], bool] = {}  # definitions are immutable

    # ---- lifecycle ----------------------------------------------------------------------
    def run(self, *, until_idle: bool = False) -> WorkerStats:
        """Process jobs until stopped, or (``until_idle``) until nothing is ready now.

        A database that is down does not kill the worker: it logs, backs off (up to
        30 s) and tries again. With ``until_idle`` the error is raised instead.
        """
        self.stopping.clear()
        self._with_db(self._register, retry=not until_idle)
        hb = threading.Thread(target=self._heartbeat_loop, daemon=True, name="baton-heartbeat")
        hb.start()
        next_reap = 0.0
        delay = 0.0
        idle_since: float | None = None
        try:
            while not self.stopping.is_set():
                try:
                    if time.monotonic() >= next_reap:  # hand back jobs of dead workers
                        self.store.release_jobs_of_dead_workers(
                            iso(self.engine.clock.now()), self.heartbeat_timeout)
                        next_reap = time.monotonic() + self.heartbeat_interval
                    seen = self.store.change_counter()  # SQLite: to sleep until a commit
                    processed = self.run_once()
                    delay = 0.0
                except DBAPIError as exc:
                    if until_idle:
                        raise
                    delay = min(max(delay * 2, 0.5), MAX_BACKOFF)
                    log.warning("database unavailable (%s); retrying in %.1f s",
                                str(exc).splitlines()[0], delay)
                    self.stopping.wait(delay)
                    continue
                if processed:
                    idle_since = None
                    continue
                if until_idle:
                    break
                now_m = time.monotonic()
                idle_since = idle_since or now_m
                self._idle_wait(seen, now_m - idle_since)
        finally:
            self.stopping.set()
            try:  # releases jobs claimed but not processed (graceful stop)
                self.store.unregister_worker(self.id)
            except DBAPIError:
                log.warning("could not unregister worker %s; its jobs return after the "
                            "heartbeat timeout", self.id)
        return self.stats

    def _register(self) -> None:
        now = iso(self.engine.clock.now())
        self.store.register_worker(self.id, worker_host(), os.getpid(), now)

    def _with_db(self, fn: Any, *, retry: bool) -> None:
        delay = 0.5
        while True:
            try:
                fn()
                return
            except DBAPIError as exc:
                if not retry or self.stopping.is_set():
                    raise
                log.warning("database unavailable (%s); retrying in %.1f s",
                            str(exc).splitlines()[0], delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, MAX_BACKOFF)

    def _idle_wait(self, seen: int | None, idle_for: float) -> None:
        """Sleep until work may be there: a NOTIFY (PostgreSQL); a commit by any process
        (SQLite's data_version) or an in-process wake-up; at the latest the fallback poll
        (due timers and retries become ready without a commit)."""
        if self.store.dialect == "postgresql":
            self.store.wait_for_jobs(self.idle_poll)
        else:
            self.store.wait_for_change(seen, self.poll_interval, self.engine.work_available,
                                       idle_for=idle_for)
            self.engine.work_available.clear()

    def stop(self) -> None:
        """Stop after the job in hand; jobs claimed but not started are released."""
        self.stopping.set()
        self.engine.work_available.set()

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(self.heartbeat_interval):
            try:
                self.store.heartbeat(self.id, iso(self.engine.clock.now()))
            except Exception:  # the database may be busy or down; the next beat tries again
                log.warning("heartbeat failed", exc_info=True)

    def run_once(self) -> int:
        """Claim one batch, run its flows, and commit all their results in ONE transaction.

        Group commit: a batch of results shares one commit (and one fsync), while each
        result is applied in its own savepoint, so one that cannot be committed does not
        take the others down with it.
        """
        jobs = self.store.claim_jobs(self.id, iso(self.engine.clock.now()), self.batch)
        if not jobs:
            return 0
        results: list[_Result] = []
        snapshots, read = self._read_batch(jobs)
        for job in jobs:
            if self.stopping.is_set():
                break  # the rest is released by unregister_worker
            self._faults.hit("after_claim")
            results.append(self._execute(job, snapshots.get(job.run_id or "")))
        self._commit_batch(results, read)
        self.stats.jobs += len(results)
        return len(results)

    def _conflict(self, job: Job, exc: TransitionConflict) -> None:
        """A result could not be committed because something changed underneath (or the job
        was handed to another worker). Try again later, a few times, then drop it."""
        if job.id is None:  # a chained step: committed with its batch or not at all
            return
        if job.attempts < MAX_CONFLICT_ATTEMPTS:
            log.info("job %s (run %s) conflicted, will retry: %s", job.id, job.run_id, exc)
            self.store.release_job(job.id, self.id, iso(self.engine.clock.now()))
        else:
            log.error("job %s (run %s) dropped after %d conflicts: %s", job.id, job.run_id,
                      job.attempts, exc)
            self.store.drop_job(job.id, self.id)

    # ---- outside the transaction: read, run flows ------------------------------------------
    def _read_batch(self, jobs: list[Job]
                    ) -> tuple[dict[str, tuple[Run, dict[str, Any] | None]], _BatchCache]:
        """The state of every run the batch touches: one read transaction, two statements.

        Also returned as read, for the commit: a run or record whose ``seq``/``version`` has
        not moved since is not read and decoded again while the write lock is held."""
        ids = [j.run_id for j in jobs if j.kind in _RUN_JOBS and j.run_id]
        with self.store.read() as tx:
            rows = tx.get_runs_txn(ids)
            runs = {rid: Run.from_json(row["state"]) for rid, row in rows.items()}
            recs = tx.get_records_txn([r.record_id for r in runs.values() if r.record_id])
        snapshots = {rid: (run, record_view(recs[run.record_id]) if run.record_id in recs else None)
                     for rid, run in runs.items()}
        return snapshots, _BatchCache(runs, recs)

    def _context(self, run: Run, step: str, iteration: int, record: dict[str, Any] | None) -> FlowContext:
        # Copies: the run and record read for the batch are committed from, so whatever a
        # flow does to what it was given must not reach them.
        steps = {n: StepView(n, sr.status.value, copy_json(sr.output) or {}) for n, sr in run.steps.items()}
        logger = logging.LoggerAdapter(logging.getLogger(f"baton.flow.{step}"),
                                       {"run_id": run.id, "step": step})
        return FlowContext(run_id=run.id, step=step, iteration=iteration, record=copy_json(record),
                           vars=copy_json(run.vars), input=copy_json(run.input), steps=steps, logger=logger)

    def _execute(self, job: Job, snapshot: tuple[Run, dict[str, Any] | None] | None) -> _Result:
        """Run the job's flow (if any) and return what to commit."""
        if job.kind == "evaluate":
            return _Result(job, RecordChanged())
        if job.kind == "timer":
            p = job.payload
            return _Result(job, TimerFired(p["kind"], p["step"], p["iteration"], p.get("data") or {}))
        if job.kind == "email":
            return self._execute_email(job)
        if job.kind not in _RUN_JOBS or snapshot is None:
            if job.kind not in _RUN_JOBS:
                log.error("unknown job kind %r (job %s) dropped", job.kind, job.id)
            return _Result(job, None)
        run, record = snapshot
        if job.kind == "condition":
            return self._execute_condition(job, run, record)
        if job.kind == "escalation":
            return self._execute_escalation(job, run, record)
        step, iteration = job.payload["step"], job.payload["iteration"]
        attempt = job.payload.get("attempt")
        sr = run.steps.get(step)
        if run.status is not RunStatus.IN_PROGRESS or sr is None or sr.iteration != iteration \
                or sr.status is not StepStatus.RUNNING \
                or (attempt is not None and attempt != sr.attempts):
            return _Result(job, None)  # the step moved on (canceled, stage exited): drop
        ctx = self._context(run, step, iteration, record)
        event: StepCompleted | StepFailed
        fn = get_flow(job.payload["flow"])
        ran_at = iso(self.engine.clock.now())
        try:
            if fn is None:
                raise StepFailure(f"flow {job.payload['flow']!r} is not registered in this worker "
                                  "(is its module listed under flows in baton.toml?)", retryable=False)
            output = _call_with_timeout(fn, ctx, job.payload.get("timeout_ms"))
            if output is None:
                output = {}
            if not isinstance(output, dict):
                raise StepFailure(f"flow {job.payload['flow']!r} returned {type(output).__name__}, "
                                  "not a dict", retryable=False)
            changed_vars = {k: v for k, v in ctx.vars.items() if run.vars.get(k, _UNSET) != v}
            event = StepCompleted(step, iteration, _jsonable(output),
                                  vars=_jsonable(changed_vars) if changed_vars else None,
                                  ran_at=ran_at, attempt=attempt)
        except Exception as exc:  # noqa: BLE001 - a failing flow fails its step, never the worker
            event = StepFailed(step, iteration, _error(exc), attempt=attempt)
        self._faults.hit("after_flow")
        updates = ctx.record_updates if isinstance(event, StepCompleted) else {}
        return _Result(job, event, updates)

    def _execute_escalation(self, job: Job, run: Run, record: dict[str, Any] | None) -> _Result:
        """Run an SLA escalation flow; what it returned (or raised) is audited on the run."""
        p = job.payload
        fn = get_flow(p["flow"])
        data: dict[str, Any] = {"flow": p["flow"], "step": p["step"], "reason": p["reason"]}
        try:
            if fn is None:
                raise StepFailure(f"flow {p['flow']!r} is not registered in this worker")
            data["output"] = _jsonable(fn(self._context(run, p["step"], p["iteration"], record)))
            kind = "escalation_flow_ran"
        except Exception as exc:  # noqa: BLE001 - audited on the run; never the worker's problem
            data["error"] = _error(exc)
            kind = "escalation_flow_failed"
        row = event_row(kind, "system", iso(self.engine.clock.now()), run.record_id, run.id, data)
        return _Result(job, None, audit=[row])

    def _execute_email(self, job: Job) -> _Result:
        """Send a queued e-mail (no transaction is open). A failure is audited and the job
        retried with backoff; after the last attempt it is dropped. Never fails a run."""
        p = job.payload
        now_dt = self.engine.clock.now()
        data: dict[str, Any] = {"recipients": p["recipients"], "subject": p["subject"],
                                "step": p.get("step"), "attempt": job.attempts}
        if p.get("work_item"):  # an assignment e-mail
            data["work_item"] = p["work_item"]

        def audit(kind: str, **extra: Any) -> dict[str, Any]:
            return event_row(kind, "system", iso(now_dt), p.get("record_id"), job.run_id,
                             {**data, **extra})

        try:
            notify.send_email(p["recipients"], p["subject"], p["text"], job.run_id,
                              link=p.get("link"), html_body=p.get("html"))
        except Exception as exc:  # noqa: BLE001 - SMTP, network, configuration: not the worker's problem
            error = f"{type(exc).__name__}: {exc}"
            if job.attempts >= notify.MAX_ATTEMPTS:
                log.error("email job %s (run %s) dropped after %d attempts: %s", job.id,
                          job.run_id, job.attempts, error)
                return _Result(job, None, audit=[audit("email_failed", error=error),
                                                 audit("email_dropped", error=error)])
            retry_at = iso(now_dt + timedelta(seconds=notify.retry_delay(job.attempts)))
            log.warning("email job %s (run %s) failed (attempt %d), retry at %s: %s", job.id,
                        job.run_id, job.attempts, retry_at, error)
            return _Result(job, None, audit=[audit("email_failed", error=error,
                                                   retry_at=retry_at)], release_at=retry_at)
        return _Result(job, None, audit=[audit("email_sent")])

    def _execute_condition(self, job: Job, run: Run, record: dict[str, Any] | None) -> _Result:
        name = job.payload["flow"]
        if run.status is not RunStatus.IN_PROGRESS:
            return _Result(job, None)
        fn = get_flow(name)
        try:
            value = bool(fn(self._context(run, name, 0, record))) if fn else False
        except Exception:
            log.exception("evaluation flow %s failed for run %s; treated as false", name, run.id)
            value = False
        return _Result(job, ConditionEvaluated(name, value))

    # ---- inside the transaction: commit the batch --------------------------------------
    def _commit_batch(self, results: list[_Result], read: _BatchCache | None = None) -> None:
        """Commit every result of the batch in one transaction.

        The common case (every result applies) costs one commit and no savepoints. If any
        result cannot be applied, that transaction is rolled back and the batch is
        committed again one result per savepoint, so the bad one is handled on its own.
        """
        now_dt = self.engine.clock.now()
        stats = dataclasses.replace(self.stats)
        if read is not None and self.plan_commits:
            try:
                self._commit_planned(results, read, now_dt)
                self.stats.planned_commits += 1
                self._faults.hit("after_commit")
                return
            except Exception as exc:  # nothing was committed: the usual way
                # below, from fresh reads (the plan changed the runs it read in place). An
                # error that is not about the plan itself will show again there.
                if isinstance(exc, DBAPIError) and not self.store.is_transient(exc):
                    raise
                log.log(logging.DEBUG if isinstance(exc, PlanAborted | BatonError | DBAPIError)
                        else logging.WARNING, "planned commit not used (%s); committing under the "
                        "write lock", exc, exc_info=not isinstance(exc, PlanAborted | BatonError))
                self.stats = dataclasses.replace(stats, unplanned_commits=stats.unplanned_commits + 1)
                read = None
        try:
            with self.store.write() as tx:
                cache = self._prefetch_txn(tx, results, read)
                tx.deferred = True  # rows are locked and cached: write each one once, at the end
                for res in results:
                    self._apply_txn(tx, res, now_dt, cache)
        except BatonError:
            self.stats = stats  # nothing of that attempt was committed
            self._commit_one_by_one(results, now_dt)
            return
        self._faults.hit("after_commit")

    def _commit_planned(self, results: list[_Result], read: _BatchCache, now_dt: Any) -> None:
        """Work out the whole batch's commit on a read snapshot, then take the write lock only
        to check that what it read is still current and to write it: decide(), the record
        updates and the rows to write are made while other processes may hold the lock.
        Raises (with nothing committed) when the plan cannot be made or no longer holds."""
        cache = _BatchCache(dict(read.runs), dict(read.records))
        pending = list(results)
        budget = CHAIN_LIMIT
        deadline = time.monotonic() + CHAIN_SECONDS
        with self.store.plan() as plan:
            i = 0
            while i < len(pending):
                self._apply_txn(plan, pending[i], now_dt, cache)
                i += 1
                if budget > 0 and time.monotonic() < deadline:
                    more = self._chain(plan, cache, now_dt, budget)
                    budget -= len(more)
                    pending.extend(more)
        with self.store.write() as tx:
            plan.commit_into(tx)
        chained = len(pending) - len(results)
        self.stats.jobs += chained
        self.stats.chained += chained

    def _chain(self, plan: Any, cache: _BatchCache, now_dt: Any, budget: int) -> list[_Result]:
        """Run now, in this plan, the background steps the plan has just made ready (a step
        after a step): no job row is written, claimed and deleted for them and their run is
        not read again; their results commit with the batch. Flows still run outside any
        write lock and at least once (if this plan is dropped, they run again from a job)."""
        now = iso(now_dt)

        def wanted(j: dict[str, Any]) -> bool:
            nonlocal budget
            if budget <= 0 or j["kind"] != "step" or j["run_after"] > now or j["run_id"] not in cache.runs:
                return False
            run = cache.runs[j["run_id"]]
            key = (run.orchestration, run.version, j["payload"]["step"], j["payload"]["flow"])
            ok = self._chainable.get(key)
            if ok is None:
                found = self.engine.definitions.orchestration(run.orchestration, run.version)[0] \
                    .find_step(key[2])
                # Callouts, AI steps and the like wait for a worker slot as jobs.
                ok = self._chainable[key] = found is not None and found[1].type == "background" \
                    and get_flow(key[3]) is not None
            if ok:
                budget -= 1
            return ok

        results = []
        for j in plan.take_new_jobs(wanted):
            run = cache.runs[j["run_id"]]
            row = cache.records.get(run.record_id or "")
            job = Job(None, "step", j["run_id"], j["payload"], 1)
            results.append(self._execute(job, (run, record_view(row) if row else None)))
        return results

    def _commit_one_by_one(self, results: list[_Result], now_dt: Any) -> None:
        conflicts: list[tuple[Job, TransitionConflict]] = []
        with self.store.write() as tx:
            for res in results:
                try:
                    with tx.conn.begin_nested():
                        self._apply_txn(tx, res, now_dt)
                except TransitionConflict as exc:
                    conflicts.append((res.job, exc))
                except BatonError as exc:
                    if not isinstance(res.event, StepCompleted):
                        raise
                    # The result cannot be committed (e.g. the flow's record update is
                    # invalid): the step fails with that reason instead.
                    failed = StepFailed(res.event.step, res.event.iteration, _error(exc))
                    with tx.conn.begin_nested():
                        self._apply_txn(tx, _Result(res.job, failed), now_dt)
        self._faults.hit("after_commit")
        for job, exc in conflicts:
            self._conflict(job, exc)

    def _prefetch_txn(self, tx: Any, results: list[_Result], read: _BatchCache | None) -> _BatchCache:
        """Lock every run and record the batch writes, and have their current state: what
        was read before the flows ran where it is still current (same ``seq`` / ``version``,
        the compare-and-set guards of their writes), else read again."""
        read = read or _BatchCache({}, {})
        run_ids = [r.job.run_id for r in results if r.event is not None and r.job.run_id]
        heads = tx.run_heads_txn(run_ids, for_update=True)
        runs = {rid: read.runs[rid] for rid, h in heads.items()
                if rid in read.runs and read.runs[rid].seq == h["seq"]}
        moved = [rid for rid in heads if rid not in runs]
        if moved:
            runs.update((rid, Run.from_json(row["state"]))
                        for rid, row in tx.get_runs_txn(moved).items())
        record_ids = [h["record_id"] for h in heads.values() if h["record_id"]]
        versions = tx.record_versions_txn(record_ids, for_update=True)
        records = {rid: read.records[rid] for rid, v in versions.items()
                   if rid in read.records and read.records[rid]["version"] == v}
        moved = [rid for rid in versions if rid not in records]
        if moved:
            records.update(tx.get_records_txn(moved))
        return _BatchCache(runs, records)

    def _apply_txn(self, tx: Any, res: _Result, now_dt: Any, cache: _BatchCache | None = None) -> None:
        eng, job, event = self.engine, res.job, res.event
        if job.id is not None:  # (a chained step, run in the plan that made it ready, has none)
            if res.release_at is not None:  # to be tried again later
                tx.release_job_txn(job.id, self.id, res.release_at)
            else:
                tx.finish_job_txn(job.id, self.id)
        if res.audit:
            tx.append_events_txn(res.audit)
        if event is None:
            if not res.audit:
                self.stats.stale += 1
            return
        if cache is not None and job.run_id in cache.runs:
            run = cache.runs[job.run_id]  # decide() updates it in place: the next result sees it
            defn, _ = eng.definitions.orchestration(run.orchestration, run.version, tx=tx)
            record_row = cache.records.get(run.record_id or "")
        else:
            run, defn, record_row = eng.runs.load_row_txn(tx, job.run_id or "")
        if isinstance(tx, PlanTx):  # read before the plan: it must be unchanged under the lock
            tx.saw_run(run.id, run.seq)
            if record_row is not None:
                tx.saw_record(record_row["id"], record_row["version"])
        record = record_view(record_row) if record_row else None
        if not _still_waiting(run, event):
            # The step was canceled (run canceled, stage exited) while its flow ran:
            # its result, record updates included, is dropped with the job.
            self.stats.stale += 1
            return
        if res.record_updates and record_row is not None and isinstance(event, StepCompleted):
            new = eng.records.update_txn(tx, record_row, res.record_updates, f"flow:{event.step}", now_dt,
                                         exclude_run=run.id)
            record = record_view(new)
            if cache is not None:
                cache.records[new["id"]] = new
        decision = eng.runs.decide_and_apply_txn(tx, defn, run, event, now_dt, record)
        if decision.stale:
            self.stats.stale += 1
        elif isinstance(event, StepCompleted):
            self.stats.steps_completed += 1
        elif isinstance(event, StepFailed):
            self.stats.steps_failed += 1


_UNSET = object()


@dataclass
class _BatchCache:
    """Rows a batch commit read (locked) at its start, kept current as results apply."""

    runs: dict[str, Run]
    records: dict[str, dict[str, Any]]


@dataclass
class _Result:
    """What running one job produced, waiting to be committed with its batch."""

    job: Job
    event: StepCompleted | StepFailed | ConditionEvaluated | RecordChanged | TimerFired | None
    record_updates: dict[str, Any] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)  # events to append with it
    release_at: str | None = None  # ISO time: the job goes back to the queue, not away


_RUN_JOBS = ("step", "condition", "escalation")  # jobs that read their run's state first


class StepTimeout(StepFailure):
    """An attempt overran its step's ``timeout`` (retryable)."""


def _call_with_timeout(fn: Any, ctx: FlowContext, timeout_ms: int | None) -> Any:
    """Call the flow; with a timeout, in a helper thread that is abandoned when it overruns.

    The worker stops waiting after ``timeout_ms`` (real time: it bounds how long a worker
    slot is held) and the attempt fails; whatever the abandoned thread does later is
    ignored (its record updates are never read). Python cannot kill a thread, so a flow
    that never returns keeps that helper thread, but no longer the worker.
    """
    if not timeout_ms:
        return fn(ctx)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(ctx)
        except BaseException as exc:  # noqa: BLE001 - handed to the worker thread below
            box["error"] = exc

    helper = threading.Thread(target=target, daemon=True, name="baton-flow")
    helper.start()
    helper.join(timeout_ms / 1000)
    if helper.is_alive():
        raise StepTimeout(f"attempt overran its timeout of {timeout_ms} ms", retryable=True)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _still_waiting(run: Run, event: StepCompleted | StepFailed | ConditionEvaluated
                   | RecordChanged | TimerFired) -> bool:
    """Is the step this result belongs to still waiting for it (same iteration, running)?"""
    if run.status is not RunStatus.IN_PROGRESS:
        return False
    if isinstance(event, ConditionEvaluated | RecordChanged | TimerFired):
        return True  # decide() sorts out a timer whose step moved on
    sr = run.steps.get(event.step)
    return sr is not None and sr.iteration == event.iteration and sr.status is StepStatus.RUNNING


def _error(exc: BaseException) -> dict[str, Any]:
    tb = traceback.format_exception(exc)
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        # Baton's own errors (invalid data, a bad expression) fail the same way every time.
        "retryable": getattr(exc, "retryable", not isinstance(exc, BatonError)),
        **({"retry_after": exc.retry_after} if getattr(exc, "retry_after", None) else {}),
        "traceback": "".join(tb[-3:])[-2000:],  # a summary: the last frames
    }


_JSONABLE_OPTS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
                  | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS)


def _jsonable(value: Any) -> Any:
    """A copy of what a flow returned as JSON would store it (tuples as lists, keys as
    strings, an Enum as its value, anything else as its ``str``)."""
    try:
        return orjson.loads(orjson.dumps(value, default=str, option=_JSONABLE_OPTS))
    except (orjson.JSONEncodeError, TypeError):  # e.g. an int beyond 64 bits
        return json.loads(json.dumps(value, default=str))


def run_workers(engine: Engine, concurrency: int, *, until_idle: bool = False,
                _created: list[Worker] | None = None, **options: Any) -> list[Worker]:
    """Run ``concurrency`` workers in threads of this process until they stop.

    Threads help flows that wait on I/O (callouts, other systems); CPU-bound flows
    scale with more processes (``baton worker`` on more cores or machines).
    """
    workers = [Worker(engine, **options) for _ in range(max(1, concurrency))]
    if _created is not None:  # lets a caller (a signal handler) reach them while they run
        _created.extend(workers)
    if len(workers) == 1:
        workers[0].run(until_idle=until_idle)
        return workers
    threads = [threading.Thread(target=w.run, kwargs={"until_idle": until_idle},
                                name=f"baton-worker-{i}") for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        for w in workers:
            w.stop()
        for t in threads:
            t.join()
    return workers
