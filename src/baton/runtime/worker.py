"""The worker: claim jobs, run flows outside transactions, commit results atomically.

A job is deleted in the same transaction that commits its result, and only by
the worker that holds it, so a result is committed at most once; a job held by
a worker that died goes back to the queue, so it is committed at least once.
Flows may therefore run more than once (at-least-once); their effects on Baton
(record updates, vars, the step's output) are committed exactly once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from enum import Enum
from typing import Any, cast
from uuid import UUID

import orjson
from sqlalchemy.exc import DBAPIError

from baton import decimals, logs
from baton.ai.trained import TrainedSets
from baton.clock import iso, parse_iso
from baton.definitions.model import (
    ObjectTypeDefinition,
    OrchestrationDefinition,
    StepDefinition,
)
from baton.engine import sla
from baton.engine.events import (
    CancelRequested,
    ChildRunFinished,
    ConditionEvaluated,
    RecordChanged,
    StepCompleted,
    StepFailed,
    TimerFired,
)
from baton.engine.state import SPLIT_STEPS, Run
from baton.engine.status import RUN_FAILED, RUN_IN_PROGRESS, STEP_RUNNING
from baton.errors import BatonError, StepFailure, TransitionConflict
from baton.flows import FlowContext, FlowFn, get_flow
from baton.rows import CALL_EVENT
from baton.runtime import callbacks, heap, incidents, jobs, metrics, schedules, waiting
from baton.runtime.apply import event_row
from baton.runtime.callouts import urls_for_log
from baton.runtime.definitions import PLAN_PREFIX
from baton.runtime.engine import Engine, record_view
from baton.runtime.flowpool import FlowPool
from baton.runtime.reader import StoreRecords
from baton.runtime.runs import count_committed, moved_txn
from baton.steps import background, registry
from baton.steps.background import FlowNotHere, missing_flow_message
from baton.steps.base import StepOutput, StepServices, StepType, StepTypeBase, StepWork
from baton.steps.callout import waiting as callout_waits_step
from baton.steps.flowrun import FlowRaised, run_flow
from baton.storable import first_problem
from baton.store.base import Job
from baton.store.sql import PlanAborted, PlanTx
from baton.work import notify
from baton.work.emails import stale_assignment

log = logging.getLogger("baton.worker")

MAX_BACKOFF = 30.0  # seconds between tries while the database is down
MAX_CONFLICT_ATTEMPTS = 5
# A job whose result the database refuses on its own, for its values (a constraint, a value
# out of range, a trigger: see Worker._refused), is run this many times in all (its claims),
# each after a longer wait (2, 4, 8 ... s, at most REFUSED_BACKOFF_MAX); then an operator
# sees it: its step fails (fallout), or an incident is opened.
MAX_REFUSED_ATTEMPTS = MAX_CONFLICT_ATTEMPTS
REFUSED_BACKOFF_MAX = 300.0
REFUSED_PARKED = timedelta(hours=1)  # when even the failure cannot be written: tried again then
# A step whose flow this worker does not have (added since it started): its job is handed
# back this many claims in all, after waits of 5, 10, 20 ... s (at most the max: ~15 min in
# all), for a worker that has it (this one, restarted); then the step fails (its retry
# policy applies: the failure is retryable).
FLOW_MISSING_CLAIMS = 9
FLOW_MISSING_WAIT_MAX = 300.0
CHAIN_LIMIT = 256  # step jobs a batch may run beyond its claimed jobs (loops end)
CHAIN_SECONDS = 0.2  # and only while its plan is younger than this
# A batch's results are invisible until it commits, and a worker killed before that leaves
# all its flows to run again: so a batch that has run its jobs for longer than this starts
# no more of them. It commits what is done (the calls in flight are waited for first) and
# keeps the jobs not begun, still claimed, as its next batch (no attempt counted, no write:
# see Worker._cut_batch). Quick flows fill their whole batch long before it is reached.
BATCH_HOLD = 1.0
_NOT_YET = (float("-inf"), "")  # Worker._last_ran_at before a batch's first flow
_NEVER = float("inf")
IDLE_WAIT_MAX = 5.0  # an idle worker's longest sleep without news (a safety net)
IDLE_WAIT_MIN = 0.002  # and its shortest, when the next job is due already

class _Faults:
    """Fault injection for durability tests (``Settings.fault``, ``BATON_FAULT``):
    ``after_claim@N`` / ``after_flow@N`` / ``after_commit@N`` SIGKILLs this worker the N-th
    time it reaches that point."""

    def __init__(self, spec: str) -> None:
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
    def __init__(self, engine: Engine, *, batch: int = 32, poll_interval: float = IDLE_WAIT_MAX,
                 idle_poll: float = IDLE_WAIT_MAX, heartbeat_interval: float | None = None,
                 heartbeat_timeout: float = 30.0, flow_pool: FlowPool | None = None,
                 batch_hold: float = BATCH_HOLD) -> None:
        self.engine = engine
        self.store = engine.store
        self.batch = batch
        # The longest a batch runs jobs before it commits what is done (BATCH_HOLD); only
        # while run() loops (a caller of run_once() alone has every job of its batch run).
        self.batch_hold = batch_hold
        # The longest an idle worker sleeps when nothing tells it of work (SQLite /
        # PostgreSQL): a safety net. It wakes at once on a commit (SQLite) or a NOTIFY
        # (PostgreSQL), and when the next job falls due (a timer, a retry).
        self.poll_interval = poll_interval
        self.idle_poll = idle_poll
        # Beat at least three times per timeout, so a live worker is never taken for dead.
        self.heartbeat_interval = heartbeat_interval or min(5.0, heartbeat_timeout / 3)
        self.heartbeat_timeout = heartbeat_timeout
        self.id = engine.ids.new("wrk")
        self.stats = WorkerStats()
        self.stopping = threading.Event()
        self._faults = _Faults(engine.settings.fault)
        # Plan each batch's commit before taking the write lock (PlanTx). BATON_PLAN_COMMITS=0
        # (Settings.plan_commits) turns it off: every batch is then worked out under the lock.
        self.plan_commits = engine.settings.plan_commits
        # Definitions are immutable: what a (orchestration, version, step) is, found once.
        self._chainable: dict[tuple[str, int, str], bool] = {}
        self._step_defs: dict[tuple[str, int, str], StepDefinition | None] = {}
        # Job kind -> (its step type, that type's own begin_job or None: see _begin_job).
        self._begins: dict[str, tuple[StepType, Callable[[StepWork], Callable[[], StepOutput]]
                                      | None]] = {}
        # Flow processes (see _call_flow): shared with the other threads of this process
        # when given (run_workers), else this worker's own, made on first use and closed
        # when run() ends.
        self._pool = flow_pool
        self._own_pool = flow_pool is None
        self._records = StoreRecords(engine.store, engine.definitions)  # ctx.records
        # The next batch, claimed in the transaction that committed the last one (only while
        # run() loops: a caller of run_once() alone gets one claimed batch per call).
        self._claim_ahead = False
        self._claimed: list[Job] = []
        # Jobs of the batch in hand that it held too long to begin (BATCH_HOLD): still
        # claimed, they are the next batch (with what its commit claims ahead, up to batch).
        self._carried: list[Job] = []
        # Set when this worker may hold jobs in the database that it does not have in hand
        # (a batch failed on a database error; a commit's answer was lost; it was taken for
        # dead): the run loop hands them all back before its next batch (_hand_back).
        self._mend = False
        # Jobs of the batch it was stopped in that it did not start: released with no
        # attempt counted.
        self._unrun: list[int] = []
        # Split runs (plans: baton.store.sql.runsteps) as this worker's last batch committed
        # them: the next batch reads only their seq, not every step, while it is unchanged.
        self._kept: dict[str, Run] = {}
        # The definitions a batch uses, looked up once per batch (each lookup checks whether
        # anything was deployed and finds the parsed version: several per result otherwise).
        self._batch_defs: dict[tuple[str, str, int], Any] = {}
        self._last_ran_at = _NOT_YET  # (perf_counter, ISO instant) of a flow's start: _ran_at
        self._classifiers = TrainedSets(engine.store.read)  # ai steps' classifier:
        # This worker's metrics (jobs, step attempts and their durations), added to the
        # process's once per batch (run_once).
        self._tally = metrics.BatchTally()

    # ---- lifecycle ----------------------------------------------------------------------
    def run(self, *, until_idle: bool = False) -> WorkerStats:
        """Process jobs until stopped, or (``until_idle``) until nothing is ready now.

        A database that is down does not kill the worker: it logs, backs off (up to
        30 s) and tries again; the jobs of a batch that failed on it go back to the queue
        once it answers again. With ``until_idle`` the error is raised instead. Stopped
        while it waits for the database to start, it returns (registered nowhere).
        """
        self.stopping.clear()
        self._unrun = []
        if not until_idle:  # a process that serves from now on (not a test's short run)
            if not self._with_db(self.engine.warm, retry=True):  # definitions parsed first
                return self.stats
            # the offline models of its classify steps trained beside the first jobs, not in
            # the first such step (once per engine: baton serve's workers share one)
            self.engine.warm_ai(self._classifiers, self.stopping)
            heap.settle()
        self._claim_ahead = True
        if not self._with_db(self._register, retry=not until_idle):
            return self.stats
        hb = threading.Thread(target=self._heartbeat_loop, daemon=True, name="baton-heartbeat")
        hb.start()
        next_reap = 0.0
        delay = 0.0
        idle_since: float | None = None
        try:
            while not self.stopping.is_set():
                try:
                    if self._mend:  # the database answers again: what was held goes back
                        self._hand_back()
                    if time.monotonic() >= next_reap:  # hand back jobs of dead workers
                        self.store.release_jobs_of_dead_workers(
                            iso(self.engine.clock.now()), self.heartbeat_timeout)
                        next_reap = time.monotonic() + self.heartbeat_interval
                    # What commits after this wakes the idle wait (which until_idle never has).
                    seen = None if until_idle else self.store.arm_wakeup()
                    processed = self.run_once()
                    delay = 0.0
                except DBAPIError as exc:
                    if until_idle:
                        raise  # (unregister_worker, below, releases what it held)
                    # Nothing is in hand now, but the batch that failed, or a commit whose
                    # answer was lost, may have left jobs claimed by this worker: handed back
                    # once the database answers (no other worker would: this one is alive).
                    self._mend = True
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
            # Jobs claimed ahead and not run are released with the others, just below, and
            # like the unrun jobs of a batch with no attempt counted: none of them began.
            # (and those a batch kept for the next, if its commit failed: none began either)
            self._unrun.extend(j.id for j in self._claimed + self._carried if j.id is not None)
            self._claim_ahead, self._claimed, self._carried = False, [], []
            if self._own_pool and self._pool is not None:
                self._pool.close()  # no flow process outlives its worker
                self._pool = None
            if self._own_pool:  # a worker on its own: its MCP servers stop with it
                _close_mcp_sessions()
            try:  # releases jobs claimed but not processed (graceful stop)
                self.store.unregister_worker(self.id, unrun=self._unrun)
            except DBAPIError:
                log.warning("could not unregister worker %s; its jobs return after the "
                            "heartbeat timeout", self.id)
            self._unrun = []
        return self.stats

    def _register(self) -> None:
        now = iso(self.engine.clock.now())
        self.store.register_worker(self.id, self.store.host(), os.getpid(), now)

    def _with_db(self, fn: Any, *, retry: bool) -> bool:
        """Call ``fn``; with ``retry``, again (backing off) while the database is down. False
        when the worker was stopped before it could (a clean stop, not an error)."""
        delay = 0.5
        while True:
            try:
                fn()
                return True
            except DBAPIError as exc:
                if not retry:
                    raise
                if self.stopping.is_set():
                    return False
                log.warning("database unavailable (%s); retrying in %.1f s",
                            str(exc).splitlines()[0], delay)
                if self.stopping.wait(delay):
                    return False
                delay = min(delay * 2, MAX_BACKOFF)

    def _idle_wait(self, seen: int | None, idle_for: float) -> None:
        """Block until work may be there: a NOTIFY (PostgreSQL); a commit by any process
        (SQLite) or an in-process wake-up; the moment the next job falls due (due timers
        and retries become ready without a commit); at the latest the safety-net wait."""
        if self.stopping.is_set():
            return
        postgres = self.store.dialect == "postgresql"
        timeout = self._until_next_due(self.idle_poll if postgres else self.poll_interval)
        if postgres:
            self.store.wait_for_jobs(timeout)
        else:
            self.store.wait_for_change(seen, timeout, self.engine.work_available,
                                       idle_for=idle_for)
            self.engine.work_available.clear()

    def _until_next_due(self, longest: float) -> float:
        """Seconds until the earliest ready job falls due (at most ``longest``; at least
        IDLE_WAIT_MIN, so a job due now but not yet claimable cannot make the loop spin)."""
        try:
            with self.store.read() as tx:
                due = tx.next_job_due_txn()
        except DBAPIError:  # the database is down: the loop's next try backs off
            return min(longest, 1.0)
        if due is None:
            return longest
        wait = (parse_iso(due) - self.engine.clock.now()).total_seconds()
        return min(longest, max(IDLE_WAIT_MIN, wait))

    def stop(self) -> None:
        """Stop after the job in hand; jobs claimed but not started are released."""
        self.stopping.set()
        self.engine.work_available.set()
        self.store.interrupt_waits()  # an idle wait blocks: end it now

    def _call_flow(self, name: str, fn: FlowFn, ctx: FlowContext, timeout_ms: int | None) -> Any:
        """Call a flow where it can be stopped if it must be (``FlowRunner``): with a
        ``timeout``, or everywhere under ``isolation = "process"``, in a flow process the
        timeout kills; else, the hot path, in this thread."""
        if not timeout_ms and self.engine.settings.isolation != "process":
            return fn(ctx)
        if self._pool is None:
            self._pool = FlowPool(1, self.engine.settings.flow_memory_mb)
        return self._pool.call(name, ctx, timeout_ms)

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(self.heartbeat_interval):
            watched = background.FLOW_FILES  # (a flow module changed since: told once)
            if watched is not None:
                try:
                    watched.check()
                except Exception:  # (never the heartbeat's end: a bug, with its traceback)
                    log.warning("checking the flow modules failed", exc_info=True)
            try:
                if not self.store.heartbeat(self.id, iso(self.engine.clock.now())) \
                        and not self.stopping.is_set():  # (not unregistered just now)
                    # Its row is gone: silent longer than the timeout (the database was
                    # away), it was taken for dead and its jobs handed back. It registers
                    # again (and hands back what it claimed since) before its next batch.
                    log.warning("worker %s was taken for dead; registering again", self.id)
                    self._mend = True
            except DBAPIError as exc:  # the database busy or down: the next beat tries again
                log.warning("heartbeat failed: %s", str(exc.orig or exc).strip().split("\n")[0])
            except Exception:  # (anything else: a bug, with its traceback)
                log.warning("heartbeat failed", exc_info=True)

    def _hand_back(self) -> None:
        """Between batches, after a database error (or when taken for dead): nothing is in
        hand, so every job this worker still holds in the database goes back to the queue,
        to be run once by whichever worker claims it (a job whose result was committed is
        gone already), and the worker is registered again if its row was removed."""
        self._claimed = []  # (claimed ahead: among those handed back)
        self._mend = False  # (a database error here sets it again: the run loop's handler)
        n = self.store.hand_back_jobs(self.id, iso(self.engine.clock.now()), os.getpid())
        if n:
            log.warning("worker %s handed back %d job(s) it held, not in hand, to the queue",
                        self.id, n)

    def run_once(self) -> int:
        """Claim one batch, run its flows, and commit all their results in ONE transaction.

        Group commit: a batch of results shares one commit (and one fsync), while each
        result is applied in its own savepoint, so one that cannot be committed does not
        take the others down with it. In the run loop a batch of slow jobs commits after
        BATCH_HOLD (``batch_hold``) with the jobs it ran, keeping the rest for the next.
        """
        jobs, self._claimed, self._carried = self._claimed, [], []
        self._last_ran_at = _NOT_YET
        self._batch_defs.clear()  # (a deploy since the last batch is seen from this one on)
        if not jobs:  # (none claimed ahead, or the queue was empty then: claim now)
            jobs = self.store.claim_jobs(self.id, iso(self.engine.clock.now()), self.batch)
        if not jobs:
            return 0
        try:
            return self._run_batch(jobs)
        finally:  # what ran is counted, committed or not (as attempts always were)
            self._tally.flush()

    def _run_batch(self, jobs: list[Job]) -> int:
        # Past this instant the batch starts no more jobs (BATCH_HOLD): one monotonic
        # reading per job at most (after a job whose work ran: a flow, an e-mail), ~0.1 µs.
        monotonic = time.monotonic
        hold_until = monotonic() + self.batch_hold if self._claim_ahead else _NEVER
        snapshots, read = self._read_batch(jobs)
        # Every job is begun before the first is finished: the calls of a batch's callouts
        # are in flight together (on the process's HTTP loop), while flows run one by one
        # as they are finished, in order.
        begun: list[_Result | Callable[[], _Result]] = []
        stopping = self.stopping.is_set
        held = False
        for job in jobs:
            if stopping():
                break
            self._faults.hit("after_claim")
            b = self._begin(job, snapshots.get(job.run_id or ""))
            begun.append(b)
            # (a job done when begun: an e-mail sent, an evaluation flow run, a timer)
            if isinstance(b, _Result) and monotonic() > hold_until:
                held = True
                break
        # Stopped (SIGTERM): the job in hand is finished, the flows not yet run are not.
        results: list[_Result] = []
        for b in begun:
            if held or stopping():
                break
            if isinstance(b, _Result):
                results.append(b)
                continue
            results.append(b())  # (a flow runs now)
            held = monotonic() > hold_until
        if len(results) < len(jobs):
            results = self._cut_batch(jobs, begun, results)
            if not results:
                return 0
        self._commit_batch(results, read)
        self.stats.jobs += len(results)
        if self._carried:  # the jobs it held too long to begin: the next batch, first
            self._claimed = self._carried + self._claimed
            self._carried = []
        return len(results)

    def _cut_batch(self, jobs: list[Job], begun: list[_Result | Callable[[], _Result]],
                   results: list[_Result]) -> list[_Result]:
        """The batch ends early, its first ``len(results)`` jobs run: the worker was stopped,
        or the batch has run for longer than BATCH_HOLD. Of the rest, what is done already
        (a result made when begun) and the calls in flight (a callout's, waited for
        together: about one call's time) are committed with them; a step whose work has not
        started (a flow) is not run, nor is a job not begun.

        Stopped: those jobs go back to the queue when the worker unregisters, with no
        attempt counted. Held too long: they stay claimed by this worker (its heartbeat
        keeps them, as any job it holds) and are its next batch (``_carried``), read
        afresh: their claim is the one attempt counted, and a worker killed meanwhile
        leaves them to the others as it leaves any job it holds. So the results of slow
        flows are seen (and the steps after them start) a BATCH_HOLD after they ran at the
        latest, not after the whole batch's flows, and a worker killed repeats only the
        flows it ran since its last commit."""
        stopped = self.stopping.is_set()
        carried = self._carried
        tally = self._tally.jobs
        for i in range(len(results), len(jobs)):
            job = jobs[i]
            b = begun[i] if i < len(begun) else None
            if isinstance(b, _Result):
                results.append(b)
            elif b is not None and job.kind in self._begins \
                    and self._begins[job.kind][1] is not None:
                results.append(b())  # its call is in flight: its answer is kept
            else:
                if b is not None:  # (counted when begun: counted again when it is)
                    tally[job.kind] -= 1
                if job.id is None:  # (a row-less SLA job: claimed again from its run)
                    continue
                if stopped:
                    self._unrun.append(job.id)
                else:
                    carried.append(job)
        if stopped:
            log.info("stopping: %d job(s) of the batch run, %d handed back unrun",
                     len(results), len(jobs) - len(results))
        else:
            log.debug("batch held for %.1f s: %d job(s) committed, %d kept for the next batch",
                      self.batch_hold, len(results), len(carried))
        return results

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
        """The state of every run the batch touches: one read transaction, two statements
        (and the definitions of the steps it runs, the first time a worker meets one).

        Also returned as read, for the commit: a run or record whose ``seq``/``version`` has
        not moved since is not read and decoded again while the write lock is held."""
        ids = [j.run_id for j in jobs if j.run_id and _reads_run(j.kind)]
        kept, self._kept = self._kept, {}
        with self.store.read() as tx:
            reuse = {}
            if kept:
                heads = tx.run_heads_txn([i for i in ids if i in kept])
                reuse = {rid: kept[rid] for rid, h in heads.items() if kept[rid].seq == h["seq"]}
            rows = tx.get_runs_txn([i for i in ids if i not in reuse] if reuse else ids)
            runs = {rid: Run.from_json(row["state"]) for rid, row in rows.items()}
            if reuse:
                runs.update(reuse)
            recs = tx.get_records_txn([r.record_id for r in runs.values() if r.record_id])
            for j in jobs:
                if j.kind in registry.job_kinds() and j.run_id in runs:
                    self._step_definition(runs[j.run_id], j.payload["step"], tx)
            read = _BatchCache(runs, recs)
            snapshots = {rid: (run, self._record_view(recs[run.record_id], tx, read)
                               if run.record_id in recs else None)
                         for rid, run in runs.items()}
        return snapshots, read

    def _execute(self, job: Job, snapshot: _Snapshot | None) -> _Result:
        """Run the job (a flow, an e-mail, a step type's work…) and return what to commit."""
        begun = self._begin(job, snapshot)
        return begun if isinstance(begun, _Result) else begun()

    def _begin(self, job: Job, snapshot: _Snapshot | None) -> _Result | Callable[[], _Result]:
        """Start the job; returns its result, or what finishes it (a step type's work that
        waits on I/O: see ``StepType.begin_job``).

        Dispatch is by job kind: the runtime's own kinds in ``_ENGINE_JOBS``, then the kinds
        step types enqueue (``baton.steps.registry``)."""
        self._tally.job(job.kind)
        if not logs.binds_context():  # (text logs do not show the ids: ~7 µs a job saved)
            return self._dispatch(job, snapshot)
        context = {"job_id": job.id, "job_kind": job.kind, "run_id": job.run_id,
                   "record_id": snapshot[0].record_id if snapshot is not None else None,
                   "step": job.payload.get("step")}
        with logs.job_context(**context):
            begun = self._dispatch(job, snapshot)
        if isinstance(begun, _Result):
            return begun

        def finish() -> _Result:
            with logs.job_context(**context):
                return begun()

        return finish

    def _dispatch(self, job: Job, snapshot: _Snapshot | None
                  ) -> _Result | Callable[[], _Result]:
        own = _ENGINE_JOBS.get(job.kind)
        if own is not None:
            handler, reads_run = own
            if reads_run and snapshot is None:
                return _Result(job, None)  # the run is gone
            return handler(self, job, snapshot)
        step_type = registry.for_job(job.kind)
        if step_type is None:
            log.error("unknown job kind %r (job %s) dropped", job.kind, job.id)
            return _Result(job, None)
        if snapshot is None:
            return _Result(job, None)
        return self._execute_step(job, snapshot, step_type)

    def _execute_step(self, job: Job, snapshot: _Snapshot, step_type: StepType
                      ) -> _Result | Callable[[], _Result]:
        """An attempt of a step: its type does the work; a raise fails the attempt.

        A type whose work waits on I/O (a callout) starts it here (``begin_job``: a batch's
        calls are in flight together), and its attempt is timed from here. A type whose
        work all runs when it is finished (a flow) is timed, and its ``ran_at`` taken, when
        it is: a batch's flows run one after the other, and each attempt's time is its own."""
        run, record = snapshot
        step, iteration = job.payload["step"], job.payload["iteration"]
        attempt = job.payload.get("attempt")
        sr = run.steps.get(step)
        if run.status is not RUN_IN_PROGRESS or sr is None or sr.iteration != iteration \
                or sr.status is not STEP_RUNNING \
                or (attempt is not None and attempt != sr.attempts):
            return _Result(job, None)  # the step moved on (canceled, stage exited): drop
        definition = self._step_definition(run, step)  # (read with the batch: no query here)
        begins = self._begins.get(job.kind)
        if begins is None or begins[0] is not step_type:
            begins = self._begins[job.kind] = (step_type, _begin_job(step_type))
        begin = begins[1]
        ran_at = ""
        started = 0.0
        finish: Callable[[], StepOutput] | None = None
        failure: Exception | None = None
        if begin is not None:  # its work starts now
            ran_at = _iso_ms(self.engine.clock.now())
            started = time.perf_counter()
            try:
                finish = begin(self._work(run, record, definition, step, iteration, attempt,
                                          job.payload, ran_at))
            except Exception as exc:  # noqa: BLE001 - a failing step fails its step, never the worker
                failure = exc

        def done() -> _Result:
            nonlocal ran_at, started
            event: StepCompleted | StepFailed
            updates: dict[str, Any] = {}
            audit: tuple[Mapping[str, Any], ...] = ()
            try:
                if begin is None:  # its work all runs now: the attempt starts now
                    started = time.perf_counter()
                    ran_at = self._ran_at(started)
                    out = step_type.run_job(self._work(run, record, definition, step, iteration,
                                                       attempt, job.payload, ran_at))
                else:
                    if failure is not None:
                        raise failure
                    assert finish is not None
                    out = finish()
                output = out.output
                event = StepCompleted(step, iteration, _jsonable(
                                          output if type(output) is dict else dict(output)),
                                      vars=_jsonable(dict(out.vars), "vars") if out.vars
                                      else None,
                                      ran_at=ran_at, attempt=attempt)
                updates = dict(out.record_updates)
                audit = out.audit
            except Exception as exc:  # noqa: BLE001 - a failing step fails its step, never the worker
                if isinstance(exc, FlowNotHere) and job.id is not None \
                        and job.attempts < FLOW_MISSING_CLAIMS:
                    return self._flow_not_here(job, exc, run, step, iteration, attempt)
                event = StepFailed(step, iteration, _error(exc), attempt=attempt)
                audit = getattr(exc, "audit", ())
                # (a callout's message names the URL it called: logged without its query)
                log.warning("step %s of run %s failed (attempt %s): %s: %s", step, run.id,
                            attempt, type(exc).__name__, urls_for_log(str(exc)))
            self._tally.step(step_type.name, time.perf_counter() - started,
                             isinstance(event, StepFailed))
            self._faults.hit("after_flow")
            return _Result(job, event, updates, audit=self._audit_rows(run, audit))

        return done

    def _flow_not_here(self, job: Job, exc: FlowNotHere, run: Run, step: str, iteration: int,
                       attempt: int | None) -> _Result:
        """A step's flow is not in this worker (added since it started, most likely): its
        job goes back to the queue, for this worker restarted or another that has the
        flow, after a wait (5, 10, 20 ... s, at most FLOW_MISSING_WAIT_MAX; the step's
        attempt is not used up). Claimed FLOW_MISSING_CLAIMS times, the step fails (see
        :class:`~baton.steps.background.FlowNotHere`). Each hand-back is audited on the run
        (``step_handed_back``: what the run view shows of the step meanwhile, see
        :mod:`baton.runtime.waiting`)."""
        delay = min(FLOW_MISSING_WAIT_MAX, 5.0 * 2.0 ** max(0, job.attempts - 1))
        log.warning("%s; job %s (run %s) handed back, tried again in %.0f s (claim %d of %d)",
                    exc, job.id, job.run_id, delay, job.attempts, FLOW_MISSING_CLAIMS)
        now = self.engine.clock.now()
        again = iso(now + timedelta(seconds=delay))
        row = waiting.handed_back_row(run, step, iteration, attempt, flow=exc.flow,
                                      claim=job.attempts, claims=FLOW_MISSING_CLAIMS,
                                      next_at=again, worker=self.id, message=str(exc),
                                      now=iso(now))
        return _Result(job, None, audit=[row], release_at=again, quiet=True)

    def _ran_at(self, started: float) -> str:
        """The clock's instant (ISO, to the millisecond) of an attempt that starts at
        ``started`` (``perf_counter``): the last one's when it started less than 1 ms
        before, in this batch (a batch's quick flows share one reading and formatting)."""
        last, text = self._last_ran_at
        if started - last < 0.001:
            return text
        text = _iso_ms(self.engine.clock.now())
        self._last_ran_at = (started, text)
        return text

    def _work(self, run: Run, record: dict[str, Any] | None, definition: StepDefinition | None,
              step: str, iteration: int, attempt: int | None, payload: Mapping[str, Any],
              now: str) -> StepWork:
        """What a step type is handed for one attempt of ``step`` (an attempt of a step that
        is no longer in its run's version fails, not retried)."""
        if definition is None:
            raise StepFailure(f"step {step!r} is not in {run.orchestration} "
                              f"v{run.version}", retryable=False)
        return StepWork(run, record, definition, iteration, attempt, payload,
                        self._call_flow, self._orchestration(run), self._records,
                        now=now, services=self._services(),
                        ai_provider=self.engine.settings.ai_provider,
                        ai_connection=self.engine.settings.ai_connection,
                        ai_model=self.engine.settings.ai_model,
                        classifiers=self._classifiers)

    def _services(self) -> StepServices:
        return self.engine.connections

    def _audit_rows(self, run: Run, audit: Any) -> list[dict[str, Any]]:
        """A step type's audit events (a callout's calls) as rows for the batch's commit."""
        if not audit:
            return []
        rows = []
        now = iso(self.engine.clock.now())
        for entry in audit:
            data = dict(entry)
            kind = data.pop("type")
            if kind == CALL_EVENT:
                metrics.CALLOUTS.labels(data.get("connection", ""),
                                        str(data.get("status") or "error")).inc()
            rows.append(event_row(kind, "system", now, run.record_id, run.id, data))
        return rows

    def _step_definition(self, run: Run, step: str, tx: Any = None) -> StepDefinition | None:
        """The definition of a step of the run's pinned version (immutable: kept; a plan's
        are not: each order has its own, kept by the definitions' bounded plan cache, and
        keeping them here too would grow with every order the worker ever ran)."""
        key = (run.orchestration, run.version, step)
        if run.orchestration.startswith(PLAN_PREFIX):
            found = self._orchestration(run, tx).find_step(step)
            return found[1] if found is not None else None
        if key not in self._step_defs:
            found = self._orchestration(run, tx).find_step(step)
            self._step_defs[key] = found[1] if found is not None else None
        return self._step_defs[key]

    def _orchestration(self, run: Run, tx: Any = None) -> OrchestrationDefinition:
        """The run's pinned version (parsed once: types ``ctx.input`` and form outputs)."""
        key = ("orchestration", run.orchestration, run.version)
        found: OrchestrationDefinition | None = self._batch_defs.get(key)
        if found is None:
            found = self._batch_defs[key] = self.engine.definitions.orchestration(
                run.orchestration, run.version, tx=tx)[0]
        return found

    def _object_type(self, name: str, tx: Any = None) -> ObjectTypeDefinition:
        """The active version of an object type, looked up once per batch."""
        key = ("object", name, 0)
        found: ObjectTypeDefinition | None = self._batch_defs.get(key)
        if found is None:
            found = self._batch_defs[key] = self.engine.definitions.object_type(name, tx)
        return found

    def _execute_evaluate(self, job: Job, snapshot: _Snapshot | None) -> _Result:
        return _Result(job, RecordChanged())

    def _execute_child(self, job: Job, snapshot: _Snapshot | None) -> _Result:
        """A child run of this run ended: its parent's step hears of it (a parent that is
        gone or has moved on drops it)."""
        p = cast(jobs.ChildPayload, job.payload)
        return _Result(job, ChildRunFinished(p["step"], p["iteration"], p["index"], p["run_id"],
                                             p["status"], p.get("output"), p.get("error")))

    def _execute_cancel(self, job: Job, snapshot: _Snapshot | None) -> _Result:
        """Cancel a child run whose parent's step was canceled (a run already over drops it)."""
        p = cast(jobs.CancelPayload, job.payload)
        return _Result(job, CancelRequested(p["reason"], "system"))

    def _execute_timer(self, job: Job, snapshot: _Snapshot | None) -> _Result:
        p = cast(jobs.TimerPayload, job.payload)
        return _Result(job, TimerFired(p["kind"], p["step"], p["iteration"], p.get("data") or {}))

    def _execute_sla(self, job: Job, snapshot: _Snapshot | None) -> _Result:
        """A run whose ``sla_at`` came (claimed from the runs, not a job row): fire the
        earliest SLA instant that has come, as a timer would have (``baton.engine.sla``)."""
        assert snapshot is not None
        run, _record = snapshot
        now = iso(self.engine.clock.now())
        fired = sla.due_timer(run, max(now, job.payload["at"]))
        if fired is not None:
            return _Result(job, fired)
        if run.status is RUN_IN_PROGRESS:
            # Its stored sla_at did not match its state (written by other code): decided
            # again, the run is written with the sla_at its state gives, so it is not
            # handed out again and again.
            log.warning("run %s was due for an SLA instant at %s but none has come; "
                        "its sla_at is written again", run.id, job.payload["at"])
            return _Result(job, RecordChanged())
        return _Result(job, None)

    def _execute_escalation(self, job: Job, snapshot: _Snapshot | None) -> _Result:
        """Run an SLA escalation flow; what it returned (or raised) is audited on the run."""
        assert snapshot is not None
        run, record = snapshot
        p = cast(jobs.EscalationPayload, job.payload)
        fn = get_flow(p["flow"])
        data: dict[str, Any] = {"flow": p["flow"], "step": p["step"], "reason": p["reason"]}
        try:
            if fn is None:
                raise StepFailure(missing_flow_message(p["flow"]))
            # (run_flow: ctx.steps read when the flow reads them, not every step first)
            data["output"] = _jsonable(run_flow(
                self._call_flow, p["flow"], fn, None, run, p["step"], p["iteration"], record,
                self._orchestration(run), records=self._records).output)
            kind = "escalation_flow_ran"
        except Exception as exc:  # noqa: BLE001 - audited on the run; never the worker's problem
            data["error"] = _error(exc)
            kind = "escalation_flow_failed"
        row = event_row(kind, "system", iso(self.engine.clock.now()), run.record_id, run.id, data)
        return _Result(job, None, audit=[row])

    def _execute_email(self, job: Job, snapshot: _Snapshot | None) -> _Result:
        """Send a queued e-mail (no transaction is open). A failure is audited and the job
        retried with backoff; after the last attempt it is dropped. Never fails a run."""
        p = cast(jobs.EmailPayload, job.payload)
        now_dt = self.engine.clock.now()
        data: dict[str, Any] = {"recipients": p["recipients"], "subject": p["subject"],
                                "step": p.get("step"), "attempt": job.attempts}
        if p.get("work_item"):  # an assignment e-mail
            data["work_item"] = p["work_item"]

        def audit(kind: str, **extra: Any) -> dict[str, Any]:
            return event_row(kind, "system", iso(now_dt), p.get("record_id"), job.run_id,
                             {**data, **extra})

        if p.get("work_item"):  # not for an item done or given to others since it was queued
            with self.store.read() as tx:
                why = stale_assignment(tx.get_work_item_txn(p["work_item"]), p)
            if why is not None:
                return _Result(job, None, audit=[audit("email_withdrawn", reason=why)])
        smtp = self.engine.settings.smtp
        try:  # (one Message-ID for every attempt of the job: a copy sent again is known)
            refused = notify.send_email(
                p["recipients"], p["subject"], p["text"], job.run_id, smtp,
                link=p.get("link"), html_body=p.get("html"), at=now_dt,
                msg_id=notify.message_id(smtp, f"baton.{job.run_id}.{job.id}"))
        except Exception as exc:  # noqa: BLE001 - SMTP, network, configuration: not the worker's problem
            error = f"{type(exc).__name__}: {exc}"
            metrics.EMAILS.labels("failed").inc()
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
        metrics.EMAILS.labels("sent").inc()
        if refused:  # the others have it: not sent again, the refused ones said
            log.warning("email job %s (run %s) sent, but the server refused %s", job.id,
                        job.run_id, ", ".join(f"{a} ({r})" for a, r in refused.items()))
            return _Result(job, None, audit=[audit("email_sent", refused=refused)])
        return _Result(job, None, audit=[audit("email_sent")])

    def _execute_schedule(self, job: Job, snapshot: _Snapshot | None) -> _Result:
        """A cron tick: its run is started, and the next tick armed, in the commit."""
        p = cast(jobs.SchedulePayload, job.payload)
        eng = self.engine

        def fire(tx: Any, now_dt: Any) -> None:
            if schedules.fire_txn(tx, p, now_dt, eng.definitions, eng.runs, eng.ids) is None:
                self.stats.stale += 1
            else:
                eng.work_available.set()

        return _Result(job, None, apply=fire)

    def _execute_route(self, job: Job, snapshot: _Snapshot | None) -> _Result:
        """Route what waits (a calendar opened, a person has room again), in the commit."""
        eng = self.engine

        def route(tx: Any, now_dt: Any) -> None:
            eng.router.run_job_txn(tx, dict(job.payload), now_dt)

        return _Result(job, None, apply=route)

    def _execute_condition(self, job: Job, snapshot: _Snapshot | None) -> _Result:
        """Ask an evaluation flow for the condition at the job's site, with its input. A
        flow that raises (or an input that could not be evaluated) gives no answer: an
        incident is opened, and the condition has none until the flow is asked again (an
        operator's retry, or the next record or step change)."""
        assert snapshot is not None
        run, record = snapshot
        p = cast(jobs.ConditionPayload, job.payload)
        name, site = p["flow"], p.get("site")
        if run.status is not RUN_IN_PROGRESS:
            return _Result(job, None)
        fn = get_flow(name)
        try:
            if p.get("error"):
                raise StepFailure(f"the input of evaluation flow {name!r} could not be "
                                  f"evaluated: {p['error']}", retryable=False)
            if fn is None:
                raise StepFailure(missing_flow_message(name))
            value = bool(run_flow(self._call_flow, name, fn, None, run, name, 0, record,
                                  self._orchestration(run), p.get("input"), self._records).output)
        except Exception as exc:  # noqa: BLE001 - a definition's bug: an incident, not the worker's
            error = _error(exc)
            log.warning("evaluation flow %s raised for run %s at %s (no answer; incident "
                        "opened): %s", name, run.id, site or "every site", error["message"])
            now = iso(self.engine.clock.now())
            incident = incidents.incident_row(
                self.engine.ids.new("inc"), incidents.CONDITION_FLOW_FAILED,
                orchestration=run.orchestration, version=run.version, record_id=run.record_id,
                run_id=run.id, expression=incidents.condition_expression(name, site),
                error=f"{error['type']}: {error['message']}", now=now)
            incident["detail"] = {"error": error, "job": dict(p)}
            return _Result(job, ConditionEvaluated(name, None, site), incident=incident)
        return _Result(job, ConditionEvaluated(name, value, site))

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
            chained: list[_Result] = []
            try:
                self._commit_planned(results, read, now_dt, chained)
                self.stats.planned_commits += 1
                self._faults.hit("after_commit")
                return
            except Exception as exc:  # nothing was committed: the usual way
                # below, from fresh reads (the plan changed the runs it read in place). An
                # error that is not about the plan itself will show again there.
                if isinstance(exc, DBAPIError):
                    # (its COMMIT may have been written with its answer lost: the jobs it
                    # claimed ahead would be this worker's, unknown to it)
                    self._mend = True
                    if self.store.refuses_data(exc):  # refused: the same under the lock
                        self.stats = stats
                        self._commit_apart(results + chained, now_dt, exc)
                        return
                    if not self.store.is_transient(exc):
                        raise
                log.log(logging.DEBUG if isinstance(exc, PlanAborted | BatonError | DBAPIError)
                        else logging.WARNING, "planned commit not used (%s); committing under the "
                        "write lock", exc, exc_info=not isinstance(exc, PlanAborted | BatonError))
                self.stats = dataclasses.replace(stats, unplanned_commits=stats.unplanned_commits + 1)
                read = None
                # Steps the plan chained have run: their results are committed below like
                # the others, not run again. (The way below schedules those steps afresh,
                # then these results complete them; a job it queued for one finds the step
                # done and is dropped. A result no longer awaited is dropped as stale.)
                results = results + chained
        try:
            with self.store.write() as tx:
                cache = self._prefetch_txn(tx, results, read)
                tx.deferred = True  # rows are locked and cached: write each one once, at the end
                for res in results:
                    self._apply_txn(tx, res, now_dt, cache)
        except (BatonError, DBAPIError) as exc:
            self.stats = stats  # nothing of that attempt was committed
            self._commit_apart(results, now_dt, exc)
            return
        count_committed(tx)  # (the runs it started and ended: only once it committed)
        self._kept = _split_runs(cache.runs)
        self._faults.hit("after_commit")

    def _commit_planned(self, results: list[_Result], read: _BatchCache, now_dt: Any,
                        chained_out: list[_Result]) -> None:
        """Work out the whole batch's commit on a read snapshot, then take the write lock only
        to check that what it read is still current and to write it: decide(), the record
        updates and the rows to write are made while other processes may hold the lock.
        Raises (with nothing committed) when the plan cannot be made or no longer holds;
        ``chained_out`` then holds the results of the steps it chained (they ran)."""
        cache = _BatchCache(dict(read.runs), dict(read.records), read.views, read.read_at)
        pending = list(results)
        # (stopping, or past its hold with jobs kept for the next batch: no more steps run
        # in this one; those it makes ready are jobs, claimed ahead below with them)
        budget = 0 if self.stopping.is_set() or self._carried else CHAIN_LIMIT
        if budget and (time.monotonic() - read.read_at > CHAIN_SECONDS
                       or any(self._begins.get(r.job.kind, (None, None))[1] is not None
                              for r in results)) and self._moved(read):
            budget = 0  # (runs read before the batch's calls or long flows: see _moved)
        deadline = time.monotonic() + CHAIN_SECONDS
        with self.store.plan() as plan:
            # The runs in progress of the batch's records, read in one statement: each record
            # update reads them (to wake the others), a round trip apiece otherwise.
            plan.prefetch_active_runs(list(cache.records))
            i = 0
            while i < len(pending):
                self._apply_txn(plan, pending[i], now_dt, cache)
                i += 1
                if budget > 0 and time.monotonic() < deadline:
                    more = self._chain(plan, cache, now_dt, budget)
                    budget -= len(more)
                    pending.extend(more)
                    chained_out.extend(more)
        claimed: list[Job] = []
        with self.store.write() as tx:
            plan.commit_into(tx)
            room = self.batch - len(self._carried)  # (its jobs kept for the next batch)
            if self._claim_ahead and not self.stopping.is_set() and room > 0:
                # The next batch, claimed in this transaction: no BEGIN IMMEDIATE and fsync
                # of its own; claimed only if this commits (else the usual claim next time).
                claimed = self.store.claim_jobs_txn(tx, self.id, iso(self.engine.clock.now()),
                                                    room)
        count_committed(plan)  # (its decisions listed the runs they started and ended)
        self._claimed = claimed
        self._kept = _split_runs(cache.runs)
        chained = len(pending) - len(results)
        self.stats.jobs += chained
        self.stats.chained += chained

    def _moved(self, read: _BatchCache) -> bool:
        """Has a run the batch read moved on since (canceled, amended, an operator's action)?
        Then the plan will not hold, and the steps it would chain must not run (a rollback's
        flow after the order was canceled, again in its compensation run). Asked of a batch
        that waited on other systems' answers (a callout's) or on long flows, which read its
        runs before: one read of their ``seq``. (A batch of quick flows is not asked.)"""
        with self.store.read() as tx:
            heads = tx.run_heads_txn(list(read.runs))
        return any(heads.get(rid, {}).get("seq") != run.seq for rid, run in read.runs.items())

    def _chain(self, plan: Any, cache: _BatchCache, now_dt: Any, budget: int) -> list[_Result]:
        """Run now, in this plan, the step jobs the plan has just made ready (a step after a
        step) whose step type says they may be (short work: a background step's flow): no job
        row is written, claimed and deleted for them and their run is not read again; their
        results commit with the batch. Their work still runs outside any write lock, and
        once: if this plan is dropped, their results are committed the usual way
        (:meth:`_commit_batch`); only a worker that dies before committing leaves them to run
        again from a job."""
        now = iso(now_dt)

        def wanted(j: dict[str, Any]) -> bool:
            nonlocal budget
            if budget <= 0 or j["run_after"] > now or j["run_id"] not in cache.runs:
                return False
            step_type = registry.for_job(j["kind"])
            if step_type is None:
                return False
            run = cache.runs[j["run_id"]]
            key = (run.orchestration, run.version, j["payload"]["step"])
            ok = self._chainable.get(key)
            if ok is None:
                # Callouts, AI steps and the like wait for a worker slot as jobs.
                definition = self._step_definition(run, key[2])
                ok = self._chainable[key] = definition is not None \
                    and registry.get(definition.type) is step_type \
                    and step_type.chainable(definition)
            if ok:
                budget -= 1
            return ok

        results = []
        for j in plan.take_new_jobs(wanted):
            run = cache.runs[j["run_id"]]
            row = cache.records.get(run.record_id or "")
            job = Job(None, j["kind"], j["run_id"], j["payload"], 1)
            results.append(self._execute(job, (run, self._record_view(row, None, cache)
                                                    if row else None)))
        return results

    def _commit_apart(self, results: list[_Result], now_dt: Any,
                      exc: BatonError | DBAPIError) -> None:
        """The batch's transaction failed on ``exc``, having committed nothing.

        A result that cannot be applied (a ``BatonError``): the batch again in one
        transaction, each result in its own savepoint (:meth:`_commit_one_by_one`). A database
        error refusing the values written (a constraint, a value out of range, a row too big,
        a trigger: refused again every time; ``store.refuses_data``) may be any one result's:
        each is then committed in a transaction of its own, so the good ones land, and the one
        the database still refuses on its own is dealt with alone (:meth:`_refused`). Any
        other database error (transient, or a schema's, refusing every write alike) is
        raised: the run loop backs off and hands back what this worker holds, as before."""
        if isinstance(exc, BatonError):
            try:
                self._commit_one_by_one(results, now_dt)
                return
            except DBAPIError as refused:
                exc = refused
        if not self.store.refuses_data(exc):
            raise exc  # (transient, or a schema's: the run loop backs off, hands back, retries)
        # (a transaction below that fails may leave its job claimed: handed back next)
        self._mend = True
        log.warning("a batch of %d job(s) was refused by the database (%s); committing them "
                    "one by one", len(results), _refused_error(exc)["message"])
        for res in results:
            before = dataclasses.replace(self.stats)
            try:
                self._commit_one_by_one([res], now_dt)
            except DBAPIError as err:
                self.stats = before  # (nothing of it was committed)
                if not self.store.refuses_data(err):
                    raise
                self._refused(res, err)

    def _refused(self, res: _Result, exc: DBAPIError) -> None:
        """The database refused ``res`` on its own for the values it writes: they would be
        refused again (its flow may give another result next time, the
        rows it meets may change). Its job is handed back to run again after a wait, until
        it has been run MAX_REFUSED_ATTEMPTS times; then it goes where an operator sees it:
        a step's attempt fails its step (``on_failure``: fallout by default), with the
        error's class and message; any other job, or a step whose failure is refused too,
        opens a ``job_failed`` incident (retry queues the job again) and its job is dropped.
        What is shown or logged is never the statement or its parameters (personal data)."""
        job, job_id = res.job, res.job.id
        error = _refused_error(exc)
        where = f"job {job_id} ({job.kind}, run {job.run_id})"
        if job_id is None:
            # No row: a step chained in this batch (the job queued for it by the result
            # before it runs it again) or an SLA instant (claimed again from its run).
            log.error("%s: the database refused its result: %s: %s", where, error["type"],
                      error["message"])
            return
        now_dt = self.engine.clock.now()
        if job.attempts < MAX_REFUSED_ATTEMPTS:
            delay = min(REFUSED_BACKOFF_MAX, 2.0 ** job.attempts)
            log.warning("%s: the database refused its result (attempt %d of %d), run again "
                        "in %.0f s: %s: %s", where, job.attempts, MAX_REFUSED_ATTEMPTS, delay,
                        error["type"], error["message"])
            again = iso(now_dt + timedelta(seconds=delay))
            self._settle(lambda: self.store.release_job(job_id, self.id, again))
            return
        log.error("%s: the database refused its result %d times; an operator is told: %s: %s",
                  where, job.attempts, error["type"], error["message"])
        failure = {**error, "message": f"the database refused its result {job.attempts} times: "
                   f"{error['type']}: {error['message']}", "retryable": False}
        if isinstance(res.event, StepCompleted | StepFailed):  # a step's attempt: it fails
            failed = _Result(job, StepFailed(res.event.step, res.event.iteration, failure,
                                             attempt=res.event.attempt))
            if self._settle(lambda: self._commit_one_by_one([failed], now_dt)):
                return
        if self._settle(lambda: self._open_refused_incident(job, error, now_dt)):
            return
        parked = iso(now_dt + REFUSED_PARKED)
        log.error("%s: its incident could not be written either; run again at %s", where, parked)
        self._settle(lambda: self.store.release_job(job_id, self.id, parked))

    def _settle(self, write: Callable[[], None]) -> bool:
        """Run ``write`` (its own transaction); False when the database refuses its values
        (any other database error is raised: the run loop backs off)."""
        try:
            write()
        except DBAPIError as exc:
            if not self.store.refuses_data(exc):
                raise
            log.warning("the database refused it too: %s", _refused_error(exc)["message"])
            return False
        return True

    def _open_refused_incident(self, job: Job, error: dict[str, Any], now_dt: datetime) -> None:
        """Drop a job the database refused every time, opening a ``job_failed`` incident for
        it (with what queues it again: its kind and payload), in one transaction."""
        now = iso(now_dt)
        p, job_id = job.payload, job.id
        assert job_id is not None
        with self.store.write() as tx:
            run = tx.get_run_txn(job.run_id) if job.run_id else None
            record_id = run["record_id"] if run else p.get("record_id")
            step = p.get("step") if isinstance(p.get("step"), str) else None
            incident = incidents.incident_row(
                self.engine.ids.new("inc"), incidents.JOB_FAILED,
                orchestration=str(run["orchestration"] if run else p.get("orchestration") or ""),
                version=int(run["version"] if run else 0), record_id=record_id,
                run_id=job.run_id, expression=incidents.job_expression(job.kind, step),
                error=f"{error['type']}: {error['message']}", now=now,
                detail={"error": error, "job": {"kind": job.kind, "payload": p}})
            try:
                tx.finish_job_txn(job_id, self.id)
            except TransitionConflict:  # no longer this worker's (taken for dead): not its to tell
                return
            incident_id = incidents.open_incident_txn(tx, incident)
            try:  # on the run's timeline too, if the database takes it
                with tx.savepoint():
                    tx.append_events_txn([event_row(
                        incidents.JOB_FAILED, "system", now, record_id, job.run_id,
                        {"job": job.kind, "step": step, "error": error,
                         "incident": incident_id})])
            except DBAPIError as exc:
                if not self.store.refuses_data(exc):
                    raise

    def _commit_one_by_one(self, results: list[_Result], now_dt: Any) -> None:
        conflicts: list[tuple[Job, TransitionConflict]] = []
        with self.store.write() as tx:
            moved = moved_txn(tx)  # (what a savepoint rolled back is not counted)
            for res in results:
                kept = len(moved)
                try:
                    with tx.savepoint():
                        self._apply_txn(tx, res, now_dt)
                except TransitionConflict as exc:
                    del moved[kept:]
                    conflicts.append((res.job, exc))
                except BatonError as exc:
                    del moved[kept:]
                    if not isinstance(res.event, StepCompleted):
                        raise
                    # The result cannot be committed (e.g. the flow's record update is
                    # invalid): the step fails with that reason instead.
                    failed = StepFailed(res.event.step, res.event.iteration, _error(exc))
                    with tx.savepoint():
                        self._apply_txn(tx, _Result(res.job, failed), now_dt)
        count_committed(tx)
        self._faults.hit("after_commit")
        for job, conflict in conflicts:
            self._conflict(job, conflict)

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
        return _BatchCache(runs, records, read.views)

    def _record_view(self, row: Mapping[str, Any], tx: Any = None,
                     cache: _BatchCache | None = None) -> dict[str, Any]:
        """The record as flows and expressions see it: typed by its object type (a
        ``decimal`` field is a Decimal). With the batch's ``cache``: made once per row
        (a record's row is replaced, never changed, when a result updates it), so the
        results of a batch that leave a record as it was share its view."""
        if cache is None:
            return record_view(row, self._object_type(row["object_type"], tx))
        made = cache.views.get(row["id"])
        if made is not None and made[0] is row:
            return made[1]
        view = record_view(row, self._object_type(row["object_type"], tx))
        cache.views[row["id"]] = (row, view)
        return view

    def _apply_txn(self, tx: Any, res: _Result, now_dt: Any, cache: _BatchCache | None = None) -> None:
        eng, job, event = self.engine, res.job, res.event
        if job.id is not None:  # (a chained step, run in the plan that made it ready, has none)
            if res.release_at is not None:  # to be tried again later
                tx.release_job_txn(job.id, self.id, res.release_at)
            else:
                tx.finish_job_txn(job.id, self.id)
        if res.audit:
            tx.append_events_txn(res.audit)
        if res.incident is not None:
            inc = res.incident
            incident_id = incidents.open_incident_txn(tx, inc)
            tx.append_events_txn([event_row(
                inc["kind"], "system", inc["created_at"], inc["record_id"], inc["run_id"],
                {"flow": inc["detail"]["job"]["flow"], "site": inc["detail"]["job"].get("site"),
                 "error": inc["detail"]["error"], "incident": incident_id})])
        if res.apply is not None:
            res.apply(tx, now_dt)
            return
        if event is None:
            if not res.audit and not res.quiet:
                self.stats.stale += 1
            return
        if cache is not None and job.run_id in cache.runs:
            run = cache.runs[job.run_id]  # decide() updates it in place: the next result sees it
            defn = self._orchestration(run, tx)
            record_row = cache.records.get(run.record_id or "")
        else:
            run, defn, record_row = eng.runs.load_row_txn(tx, job.run_id or "")
        if isinstance(tx, PlanTx):  # read before the plan: it must be unchanged under the lock
            tx.saw_run(run.id, run.seq)
            if record_row is not None:
                tx.saw_record(record_row["id"], record_row["version"])
        if not _still_waiting(run, event):
            # The step was canceled (run canceled, stage exited) while its flow ran:
            # its result, record updates included, is dropped with the job (audited).
            self.stats.stale += 1
            if isinstance(event, StepCompleted | StepFailed):
                tx.append_events_txn([_stale_row(run, event, now_dt)])
            return
        if res.record_updates and record_row is not None and isinstance(event, StepCompleted):
            record_row = eng.records.update_txn(tx, record_row, res.record_updates,
                                                f"flow:{event.step}", now_dt, exclude_run=run.id)
            if cache is not None:
                cache.records[record_row["id"]] = record_row
        # (made once, from the record as decide() is to see it: after the flow's updates)
        record = self._record_view(record_row, tx, cache) if record_row else None
        decision = eng.runs.decide_and_apply_txn(tx, defn, run, event, now_dt, record)
        if isinstance(event, StepCompleted) and not decision.stale \
                and callout_waits(decision.run, event.step):
            # A callout now waits for its callback, which may have come already.
            after = callbacks.deliver_early_txn(tx, eng.runs, defn, decision.run, event.step,
                                                now_dt, record)
            if after is not None and cache is not None:
                cache.runs[after.id] = after
        if decision.stale:
            self.stats.stale += 1
        elif isinstance(event, StepCompleted):
            self.stats.steps_completed += 1
        elif isinstance(event, StepFailed):
            self.stats.steps_failed += 1


def _split_runs(runs: dict[str, Run]) -> dict[str, Run]:
    """The split runs (more than SPLIT_STEPS steps) of a batch just committed, as committed."""
    return {rid: run for rid, run in runs.items() if len(run.steps) > SPLIT_STEPS}


@dataclass
class _BatchCache:
    """Rows a batch commit read (locked) at its start, kept current as results apply."""

    runs: dict[str, Run]
    records: dict[str, dict[str, Any]]
    # record id -> (the row, its view): a view is read, never changed (flows get copies),
    # so the results of a batch that see the same row share one (see Worker._record_view).
    views: dict[str, tuple[Mapping[str, Any], dict[str, Any]]] = field(default_factory=dict)
    read_at: float = field(default_factory=time.monotonic)  # (perf_counter-like: its age)


@dataclass
class _Result:
    """What running one job produced, waiting to be committed with its batch."""

    job: Job
    event: (StepCompleted | StepFailed | ConditionEvaluated | RecordChanged | TimerFired
            | ChildRunFinished | CancelRequested | None)
    record_updates: dict[str, Any] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)  # events to append with it
    release_at: str | None = None  # ISO time: the job goes back to the queue, not away
    incident: dict[str, Any] | None = None  # an incident to open with it (a flow raised)
    # Work that is the job's whole effect, done in the commit (a schedule's tick).
    apply: Callable[[Any, Any], None] | None = None
    quiet: bool = False  # no event and nothing stale: a job handed back (_flow_not_here)


_Snapshot = tuple[Run, dict[str, Any] | None]  # a run and its record, read for the batch

# The runtime's own job kinds: handler, and whether it reads its run's state first. Step
# types' job kinds are looked up in ``baton.steps.registry`` (they all read their run).
_ENGINE_JOBS: dict[str, tuple[Callable[[Worker, Job, _Snapshot | None], _Result], bool]] = {
    jobs.EVALUATE: (Worker._execute_evaluate, False),
    jobs.TIMER: (Worker._execute_timer, False),
    jobs.EMAIL: (Worker._execute_email, False),
    jobs.CONDITION: (Worker._execute_condition, True),
    jobs.ESCALATION: (Worker._execute_escalation, True),
    jobs.SCHEDULE: (Worker._execute_schedule, False),
    jobs.SLA: (Worker._execute_sla, True),
    jobs.CHILD: (Worker._execute_child, True),
    jobs.CANCEL: (Worker._execute_cancel, True),
    jobs.ROUTE: (Worker._execute_route, False),
}
assert set(_ENGINE_JOBS) == set(jobs.RUNTIME_KINDS)
registry.reserve_job_kinds(frozenset(_ENGINE_JOBS))


def _reads_run(kind: str) -> bool:
    own = _ENGINE_JOBS.get(kind)
    return own[1] if own is not None else kind in registry.job_kinds()


# (a tuple: ``A | B | …`` written in the call builds a union object on every call)
_ANY_STEP = (ConditionEvaluated, RecordChanged, TimerFired, ChildRunFinished)


def _still_waiting(run: Run, event: StepCompleted | StepFailed | ConditionEvaluated
                   | RecordChanged | TimerFired | ChildRunFinished | CancelRequested) -> bool:
    """Is the step this result belongs to still waiting for it (same iteration, running)?"""
    if isinstance(event, CancelRequested):  # a failed run can be canceled too
        return run.status in (RUN_IN_PROGRESS, RUN_FAILED)
    if run.status is not RUN_IN_PROGRESS:
        return False
    if isinstance(event, _ANY_STEP):
        return True  # decide() sorts out a timer (or a child) whose step moved on
    sr = run.steps.get(event.step)
    return sr is not None and sr.iteration == event.iteration and sr.status is STEP_RUNNING


def _stale_row(run: Run, event: StepCompleted | StepFailed, now_dt: datetime) -> dict[str, Any]:
    """The audit event of a step's result that came after its step moved on (its run or
    step canceled, a new iteration begun): dropped, nothing changed (``step_result_stale``)."""
    sr = run.steps.get(event.step)
    return event_row("step_result_stale", "system", iso(now_dt), run.record_id, run.id, {
        "step": event.step, "iteration": event.iteration, "attempt": event.attempt,
        "result": "completed" if isinstance(event, StepCompleted) else "failed",
        "run_status": run.status.value, "step_status": None if sr is None else sr.status.value,
        "step_iteration": None if sr is None else sr.iteration})


def _begin_job(step_type: StepType) -> Callable[[StepWork], Callable[[], StepOutput]] | None:
    """The step type's own ``begin_job`` (its work starts when the job is begun); None when
    all its work runs when the job is finished (``run_job``: a flow)."""
    begin = getattr(step_type, "begin_job", None)  # (a plug-in may not have it)
    if begin is None or getattr(begin, "__func__", None) is StepTypeBase.begin_job:
        return None
    return cast(Callable[[StepWork], Callable[[], StepOutput]], begin)


def _iso_ms(dt: datetime) -> str:
    """``iso(dt)``, the same text, from ``dt`` cut to its millisecond (what ``iso`` keeps):
    the jobs a worker begins in one millisecond share one entry of ``iso``'s cache, where
    each exact instant missed it and was formatted again (~2 % of the worker's CPU)."""
    us = dt.microsecond
    return iso(dt.replace(microsecond=us - us % 1000) if us % 1000 else dt)


def callout_waits(run: Run, step: str) -> bool:
    sr = run.steps.get(step)
    return sr is not None and callout_waits_step(sr)


def _refused_error(exc: DBAPIError) -> dict[str, Any]:
    """A database error as an operator sees it (a step's error, an incident, the log): the
    driver's class, its primary message (first line) and its code (SQLSTATE, or SQLite's
    name). Never the statement or its parameters, nor PostgreSQL's DETAIL (the row it
    refused): they may hold personal data."""
    orig = exc.orig if exc.orig is not None else exc
    primary = getattr(getattr(orig, "diag", None), "message_primary", None)
    text = (primary or str(orig)).strip()
    error: dict[str, Any] = {"type": type(orig).__name__,
                             "message": text.splitlines()[0][:500] if text else "(no message)"}
    code = getattr(orig, "sqlstate", None) or getattr(orig, "sqlite_errorname", None)
    if code:
        error["code"] = code
    return error


def _error(exc: BaseException) -> dict[str, Any]:
    retry_after = getattr(exc, "retry_after", None)  # StepFailure's, or a flow's own error's
    if isinstance(exc, FlowRaised):  # raised in a flow process: as it was there
        return {"type": exc.type_name, "message": str(exc), "retryable": exc.retryable,
                **({"retry_after": retry_after} if retry_after else {}),
                "traceback": exc.traceback_text}
    tb = traceback.format_exception(exc)
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        # Baton's own errors (invalid data, a bad expression) fail the same way every time.
        "retryable": getattr(exc, "retryable", not isinstance(exc, BatonError)),
        **({"retry_after": retry_after} if retry_after else {}),
        **(getattr(exc, "details", None) or {}),  # e.g. a callout's call summary
        "traceback": "".join(tb[-3:])[-2000:],  # a summary: the last frames
    }


# datetime, date and time, and dataclasses, go to _json_default (orjson's own readings of
# them are not Baton's); a subclass of str, int, dict or list is written as its base type.
_JSONABLE_STR_KEYS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_JSONABLE_OPTS = _JSONABLE_STR_KEYS | orjson.OPT_NON_STR_KEYS
_INT_RANGE = range(-(2**63), 2**64)  # what orjson writes (and the stores read back exactly)


def _json_default(value: Any) -> Any:
    """What a step's output or vars hold for a value JSON has no type for, when it has an
    obvious reading: a datetime with a time zone as ISO 8601 text in UTC ("…Z", as record
    ``datetime`` fields are stored), a date as YYYY-MM-DD, a finite Decimal as its exact
    digits (as ``decimal`` fields are stored). Anything else raises TypeError: the step
    fails, saying where (see :func:`_not_json`)."""
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise TypeError("naive datetime")
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal) and value.is_finite():
        return decimals.canonical(value)
    raise TypeError(type(value).__name__)


def _jsonable(value: Any, what: str = "output") -> Any:
    """A copy of what a step returned (its output, or the vars its flow set) as it is stored:
    JSON, with tuples as lists, keys as strings, an Enum as its value, a UUID as its text, and
    a datetime, date or Decimal as :func:`_json_default` writes it.

    Fails the step (not retried: the same flow would return the same), naming where
    (``output.pages.2``) and what, when it holds what JSON does not (a set, bytes, an object
    of a class of one's own, a datetime without a time zone: once written as its ``str``,
    silently) or what no store keeps: a whole number beyond 64 bits (read back as an
    inexact float: the stores read JSON with orjson), a NUL character or a lone surrogate
    (PostgreSQL refuses the first, UTF-8 the second; refused on SQLite too, so a project
    behaves the same on both).
    """
    try:  # (string keys, the common case: without OPT_NON_STR_KEYS, ~1.8x as fast)
        data = orjson.dumps(value, default=_json_default, option=_JSONABLE_STR_KEYS)
    except TypeError:  # (orjson.JSONEncodeError is one)
        try:
            data = orjson.dumps(value, default=_json_default, option=_JSONABLE_OPTS)
        except TypeError as exc:
            if "surrogates" in str(exc):
                raise StepFailure(_unstorable(value, what), retryable=False) from None
            raise StepFailure(_not_json(value, what, exc), retryable=False) from None
    out = orjson.loads(data)
    if b"\\u0000" in data:  # (a NUL, or a backslash before "u0000": looked at closely)
        problem = first_problem(out, what)
        if problem:
            raise StepFailure(_unstorable(out, what), retryable=False)
    return out


# What to return instead, by type name, for the values a flow is likeliest to return.
_INSTEAD = {
    "set": "a list (sorted(...) or list(...))", "frozenset": "a list (sorted(...) or list(...))",
    "bytes": "text (decoded, or base64 for binary data)",
    "bytearray": "text (decoded, or base64 for binary data)",
    "timedelta": "a number of seconds (.total_seconds())",
    "time": "text (.isoformat())",
}


def _not_json(value: Any, what: str, exc: Exception) -> str:
    """Why :func:`_jsonable` refused ``value``: the first place in it that JSON does not
    hold, as ``output.items.2`` and its type, and what to return instead. (Walked only when
    orjson has refused it: the common case never pays for it.)"""
    found = _first_not_json(value, what, 0)
    if found is None:  # (orjson's own limit: nesting, say)
        return f"the step returned a value that cannot be stored as JSON ({exc})"
    where, problem, kind = found
    if problem == "int":
        return (f"the step returned a value that cannot be kept exactly: {where} is a whole "
                "number beyond 64 bits: whole numbers must fit in 64 bits; return wider ones "
                "as text")
    if problem == "naive":
        return (f"the step returned a value that is not JSON: {where} is a datetime without a "
                "time zone: give it one (tzinfo=datetime.UTC), or return ISO 8601 text")
    if problem == "key":
        return (f"the step returned a value that is not JSON: {where} has a key of type "
                f"{kind}: keys are text (or numbers, true/false, null)")
    if problem == "dataclass":
        return (f"the step returned a value that is not JSON: {where} is a dataclass, "
                f"{kind}; return a dict (dataclasses.asdict(...))")
    instead = _INSTEAD.get(kind, "text, numbers, true/false, null, lists or dicts "
                                 "(a datetime, date or Decimal is kept as its ISO 8601 text "
                                 "or exact digits)")
    return (f"the step returned a value that is not JSON: {where} is of type {kind}; "
            f"return {instead}")


_JSON_KEYS = (str, int, float, bool, type(None), Enum, UUID, date, time_of_day)


def _first_not_json(value: Any, where: str, depth: int) -> tuple[str, str, str] | None:
    """(where, problem, type name) of the first value under ``value`` that :func:`_jsonable`
    cannot store (problem: "type", "dataclass", "int", "naive" or "key"), or None."""
    if depth > 250:
        return None
    if value is None or isinstance(value, str | bool | float | UUID):
        return None
    if isinstance(value, Enum):
        return _first_not_json(value.value, where, depth + 1)
    if isinstance(value, int):
        return None if value in _INT_RANGE else (where, "int", "int")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, _JSON_KEYS):
                return (where, "key", _type_name(k))
            if isinstance(k, int) and not isinstance(k, bool) and k not in _INT_RANGE:
                return (f"{where}.{k}", "int", "int")
            found = _first_not_json(v, f"{where}.{k}", depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = _first_not_json(v, f"{where}.{i}", depth + 1)
            if found is not None:
                return found
        return None
    if isinstance(value, datetime):
        return None if value.utcoffset() is not None else (where, "naive", "datetime")
    if isinstance(value, date) or (isinstance(value, Decimal) and value.is_finite()):
        return None
    return (where, "dataclass" if dataclasses.is_dataclass(value) else "type", _type_name(value))


def _type_name(value: Any) -> str:
    t = type(value)
    if isinstance(value, Decimal):
        return f"Decimal ({value}: not a finite number)"
    module = t.__module__
    if module.startswith("baton_project_"):  # (a project's module: as baton.toml names it)
        module = module.partition(".")[2]
    return t.__qualname__ if module in ("builtins", "datetime") else f"{module}.{t.__qualname__}"


def _unstorable(value: Any, what: str) -> str:
    problem = first_problem(value, what) or f"{what}: text no store keeps"
    return (f"the step returned text no database keeps: {problem} (remove NUL characters and "
            "lone surrogates; return binary data as base64)")


def run_workers(engine: Engine, concurrency: int, *, until_idle: bool = False,
                _created: list[Worker] | None = None, **options: Any) -> list[Worker]:
    """Run ``concurrency`` workers in threads of this process until they stop.

    Threads help flows that wait on I/O (callouts, other systems); CPU-bound flows
    scale with more processes (``baton worker`` on more cores or machines).
    """
    pool = FlowPool(max(1, concurrency), engine.settings.flow_memory_mb)
    workers = [Worker(engine, flow_pool=pool, **options) for _ in range(max(1, concurrency))]
    try:
        _run_threads(workers, until_idle, _created)
    finally:
        pool.close()
        _close_mcp_sessions()  # the MCP servers (stdio) of this process stop with it
    return workers


def _close_mcp_sessions() -> None:
    """Stop this process's MCP sessions, if it has any: they live in
    :mod:`baton.connections.mcp`, imported by the first mcp step or check. A worker that
    never met one does not import it to find none (~19 M instructions at every start)."""
    mcp = sys.modules.get("baton.connections.mcp")
    if mcp is not None:
        mcp.close_shared_sessions()


def _run_threads(workers: list[Worker], until_idle: bool, _created: list[Worker] | None) -> None:
    if _created is not None:  # lets a caller (a signal handler) reach them while they run
        _created.extend(workers)
    if len(workers) == 1:
        workers[0].run(until_idle=until_idle)
        return
    ended = [threading.Event() for _ in workers]

    def run(w: Worker, done: threading.Event) -> None:
        try:
            w.run(until_idle=until_idle)
        finally:
            done.set()

    threads = [threading.Thread(target=run, args=(w, ended[i]), name=f"baton-worker-{i}")
               for i, w in enumerate(workers)]
    for t in threads:
        t.start()
    # Waited for on Events, not in Thread.join: a KeyboardInterrupt raised inside join()
    # (Ctrl-C in the main thread) marks a thread that still runs as stopped (CPython 3.11's
    # _wait_for_tstate_lock), so the join after it returned at once with the job in hand
    # unfinished. Ctrl-C here stops every worker after the job in hand and waits for them
    # (a second one is raised: not waited for).
    try:
        for done in ended:
            done.wait()
    except KeyboardInterrupt:
        for w in workers:
            w.stop()
        for done in ended:
            done.wait()
        raise
    for t in threads:
        t.join()  # (each has set its Event: ending now)
