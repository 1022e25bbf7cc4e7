"""The worker: claim jobs, run flows outside transactions, commit results atomically.

A job is deleted in the same transaction that commits its result, and only by
the worker that holds it, so a result is committed at most once; a job held by
a worker that died goes back to the queue, so it is committed at least once.
Flows may therefore run more than once (at-least-once); their effects on Baton
(record updates, vars, the step's output) are committed exactly once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import traceback
from dataclasses import dataclass
from typing import Any

from baton.clock import iso
from baton.engine.events import ConditionEvaluated, StepCompleted, StepFailed
from baton.engine.state import Run
from baton.engine.status import RunStatus, StepStatus
from baton.errors import BatonError, StepFailure, TransitionConflict
from baton.flows import FlowContext, StepView, get_flow
from baton.runtime.engine import Engine, record_view
from baton.store.base import Job

log = logging.getLogger("baton.worker")

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


class Worker:
    def __init__(self, engine: Engine, *, batch: int = 32, poll_interval: float = 0.5,
                 heartbeat_interval: float = 5.0, heartbeat_timeout: float = 30.0) -> None:
        self.engine = engine
        self.store = engine.store
        self.batch = batch
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.id = engine.ids.new("wrk")
        self.stats = WorkerStats()
        self.stopping = threading.Event()
        self._faults = _Faults()

    # ---- lifecycle ----------------------------------------------------------------------
    def run(self, *, until_idle: bool = False) -> WorkerStats:
        """Process jobs until stopped, or (``until_idle``) until nothing is ready now."""
        self.stopping.clear()
        now = iso(self.engine.clock.now())
        self.store.register_worker(self.id, socket.gethostname(), os.getpid(), now)
        hb = threading.Thread(target=self._heartbeat_loop, daemon=True, name="baton-heartbeat")
        hb.start()
        try:
            while not self.stopping.is_set():
                self.store.release_jobs_of_dead_workers(iso(self.engine.clock.now()), self.heartbeat_timeout)
                if self.run_once():
                    continue
                if until_idle:
                    break
                self.engine.work_available.wait(self.poll_interval)
                self.engine.work_available.clear()
        finally:
            self.stopping.set()
            self.store.unregister_worker(self.id)
        return self.stats

    def stop(self) -> None:
        self.stopping.set()
        self.engine.work_available.set()

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(self.heartbeat_interval):
            try:
                self.store.heartbeat(self.id, iso(self.engine.clock.now()))
            except Exception:  # the database may be busy; the next beat tries again
                log.warning("heartbeat failed", exc_info=True)

    def run_once(self) -> int:
        """Claim and process one batch; returns how many jobs were processed."""
        jobs = self.store.claim_jobs(self.id, iso(self.engine.clock.now()), self.batch)
        for job in jobs:
            self._faults.hit("after_claim")
            try:
                self.process(job)
            except TransitionConflict as exc:
                log.info("job %s dropped: %s", job.id, exc)
            self.stats.jobs += 1
        return len(jobs)

    # ---- one job ------------------------------------------------------------------------
    def process(self, job: Job) -> None:
        if job.kind == "step":
            self._run_step(job)
        elif job.kind == "condition":
            self._run_condition(job)
        elif job.kind == "evaluate":
            with self.store.write() as tx:
                tx.finish_job_txn(job.id, self.id)
                self.engine.evaluate_run_txn(tx, job.run_id or "", self.engine.clock.now())
            self._faults.hit("after_commit")
        else:
            log.error("unknown job kind %r (job %s) dropped", job.kind, job.id)
            with self.store.write() as tx:
                tx.finish_job_txn(job.id, self.id)

    def _context(self, run: Run, step: str, iteration: int, record: dict[str, Any] | None) -> FlowContext:
        steps = {n: StepView(n, sr.status.value, sr.output or {}) for n, sr in run.steps.items()}
        logger = logging.LoggerAdapter(logging.getLogger(f"baton.flow.{step}"),
                                       {"run_id": run.id, "step": step})
        return FlowContext(run_id=run.id, step=step, iteration=iteration, record=record,
                           vars=dict(run.vars), input=run.input, steps=steps, logger=logger)

    def _read(self, run_id: str) -> tuple[Run, dict[str, Any] | None]:
        with self.store.read() as tx:
            row = tx.get_run_txn(run_id)
            if row is None:
                raise TransitionConflict(f"run {run_id} is gone")
            run = Run.from_json(row["state"])
            rec = tx.get_record_txn(run.record_id) if run.record_id else None
        return run, record_view(rec) if rec else None

    def _run_step(self, job: Job) -> None:
        step, iteration = job.payload["step"], job.payload["iteration"]
        run, record = self._read(job.run_id or "")
        sr = run.steps.get(step)
        if run.status is not RunStatus.IN_PROGRESS or sr is None or sr.iteration != iteration \
                or sr.status is not StepStatus.RUNNING:
            with self.store.write() as tx:  # the step moved on (canceled, stage exited): drop
                tx.finish_job_txn(job.id, self.id)
            self.stats.stale += 1
            return
        ctx = self._context(run, step, iteration, record)
        event: StepCompleted | StepFailed
        fn = get_flow(job.payload["flow"])
        try:
            if fn is None:
                raise StepFailure(f"flow {job.payload['flow']!r} is not registered in this worker "
                                  "(is its module listed under flows in baton.toml?)", retryable=False)
            output = fn(ctx)
            if output is None:
                output = {}
            if not isinstance(output, dict):
                raise StepFailure(f"flow {job.payload['flow']!r} returned {type(output).__name__}, "
                                  "not a dict", retryable=False)
            event = StepCompleted(step, iteration, _jsonable(output), vars=ctx.vars)
        except Exception as exc:  # a failing flow fails its step, never the worker
            event = StepFailed(step, iteration, _error(exc))
        self._faults.hit("after_flow")
        self._commit(job, event, ctx.record_updates)

    def _commit(self, job: Job, event: StepCompleted | StepFailed | ConditionEvaluated,
                record_updates: dict[str, Any]) -> None:
        eng = self.engine
        now_dt = eng.clock.now()
        try:
            with self.store.write() as tx:
                tx.finish_job_txn(job.id, self.id)
                run, defn, record = eng._load_run_txn(tx, job.run_id or "")
                if not _still_waiting(run, event):
                    # The step was canceled (run canceled, stage exited) while its flow ran:
                    # its result, record updates included, is dropped with the job.
                    self.stats.stale += 1
                    return
                if record_updates and run.record_id and isinstance(event, StepCompleted):
                    row = tx.get_record_txn(run.record_id)
                    assert row is not None
                    new = eng._update_record_txn(tx, row, record_updates, f"flow:{event.step}", now_dt,
                                                 exclude_run=run.id)
                    record = record_view(new)
                decision = eng.applier.decide_and_apply_txn(tx, defn, run, event, now_dt, record)
        except BatonError as exc:
            if isinstance(exc, TransitionConflict):
                raise
            # The result cannot be committed (e.g. the flow's record update is invalid):
            # fail the step with that reason instead, in a fresh transaction.
            if isinstance(event, StepCompleted):
                self._commit_failure(job, event, exc)
                return
            raise
        self._faults.hit("after_commit")
        if decision.stale:
            self.stats.stale += 1
        elif isinstance(event, StepCompleted):
            self.stats.steps_completed += 1
        elif isinstance(event, StepFailed):
            self.stats.steps_failed += 1

    def _commit_failure(self, job: Job, event: StepCompleted, exc: BatonError) -> None:
        failed = StepFailed(event.step, event.iteration, _error(exc))
        self._commit(job, failed, {})

    def _run_condition(self, job: Job) -> None:
        name = job.payload["flow"]
        run, record = self._read(job.run_id or "")
        if run.status is not RunStatus.IN_PROGRESS:
            with self.store.write() as tx:
                tx.finish_job_txn(job.id, self.id)
            return
        fn = get_flow(name)
        try:
            value = bool(fn(self._context(run, name, 0, record))) if fn else False
        except Exception:
            log.exception("evaluation flow %s failed for run %s; treated as false", name, run.id)
            value = False
        self._commit(job, ConditionEvaluated(name, value), {})


def _still_waiting(run: Run, event: StepCompleted | StepFailed | ConditionEvaluated) -> bool:
    """Is the step this result belongs to still waiting for it (same iteration, running)?"""
    if run.status is not RunStatus.IN_PROGRESS:
        return False
    if isinstance(event, ConditionEvaluated):
        return True
    sr = run.steps.get(event.step)
    return sr is not None and sr.iteration == event.iteration and sr.status is StepStatus.RUNNING


def _error(exc: BaseException) -> dict[str, Any]:
    tb = traceback.format_exception(exc)
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "retryable": getattr(exc, "retryable", True),
        "traceback": "".join(tb[-3:])[-2000:],
    }


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))
