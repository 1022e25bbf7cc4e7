"""A worker that meets a database error in the middle of a batch, or is stopped in one, on
both databases.

* A batch's commit fails (the server went away, SQLite's lock wait ran out), or is written
  with its answer lost (with the next batch it claimed), or a claim's answer is lost: the
  jobs this live worker holds go back to the queue once the database answers again, and
  every run completes, each step's result committed once, with no restart.
* ``stop()`` (SIGTERM) while a batch of slow flows runs: the flow in hand is finished and
  committed; the others are not run, their jobs go back to the queue with no attempt
  counted, and another worker runs each of them once.
* Each attempt is timed on its own (``baton_step_duration_seconds``, the step's
  ``ran_at``), not from the start of its batch.
* A worker stopped while it waits for a database that is down returns cleanly.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from baton import flow
from baton.clock import parse_iso
from baton.flows import FlowContext
from baton.runtime import metrics
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.steps import registry
from baton.steps.base import JobStepType, StepOutput, StepWork
from baton.store import schema as s

from ..procs import eventually

STEPS = ("a", "b", "c", "d")
CALLS: Counter[tuple[str, str]] = Counter()  # (run id, step) -> times its flow ran
SLOW = {"seconds": 0.0}  # how long t_outage.slow sleeps
STARTED = threading.Event()  # set when a t_outage.slow flow starts


@flow("t_outage.step")
def _step(ctx: FlowContext) -> dict[str, Any]:
    CALLS[(ctx.run_id, ctx.step)] += 1
    return {"step": ctx.step}


@flow("t_outage.slow")
def _slow(ctx: FlowContext) -> dict[str, Any]:
    CALLS[(ctx.run_id, ctx.step)] += 1
    STARTED.set()
    time.sleep(SLOW["seconds"])
    return {"slept": SLOW["seconds"]}


DEFS = """
kind: object
name: Ticket
fields:
  n: {type: int}
---
kind: orchestration
name: t_outage
trigger: {type: record, object: Ticket, on: [create], when: '=record.n >= 0'}
stages:
  - name: work
    steps:
      - {name: a, type: background, flow: t_outage.step}
      - {name: b, type: background, flow: t_outage.step, after: [a]}
      - {name: c, type: background, flow: t_outage.step, after: [b]}
      - {name: d, type: background, flow: t_outage.step, after: [c]}
---
kind: orchestration
name: t_outage_slow
trigger: {type: record, object: Ticket, on: [create], when: '=record.n < 0'}
stages:
  - name: work
    steps:
      - {name: nap, type: background, flow: t_outage.slow}
"""


@pytest.fixture
def engine(tmp_path: Path, db_url: str) -> Iterator[Engine]:
    CALLS.clear()
    STARTED.clear()
    SLOW["seconds"] = 0.0
    (tmp_path / "defs.yaml").write_text(DEFS)
    eng = Engine(db_url)
    eng.deploy([tmp_path / "defs.yaml"], known_flows=None)
    yield eng
    eng.close()


def _db_error(engine: Engine) -> OperationalError:
    """What SQLAlchemy raises when the server went away, or SQLite's lock wait ran out."""
    cause = ("database is locked" if engine.store.dialect == "sqlite"
             else "server closed the connection unexpectedly")
    return OperationalError("COMMIT", {}, Exception(cause))


class _Thread:
    """``Worker.run`` in a thread; what it raised, if anything, is kept."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="t-outage-worker", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            self.error = exc

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the worker did not stop"
        assert self.error is None, f"the worker raised {self.error!r}"


def _jobs(engine: Engine, status: str) -> list[tuple[int, str | None, int]]:
    with engine.store.read() as tx:
        return [(r.id, r.claimed_by, r.attempts) for r in tx.conn.execute(
            select(s.jobs.c.id, s.jobs.c.claimed_by, s.jobs.c.attempts)
            .where(s.jobs.c.status == status))]


def _workers(engine: Engine) -> list[str]:
    with engine.store.read() as tx:
        return [r.id for r in tx.conn.execute(select(s.workers.c.id))]


def _all_completed(engine: Engine, n: int) -> Callable[[], bool]:
    def probe() -> bool:
        runs = engine.list_runs(limit=n + 10)
        return len(runs) == n and all(r.status.value == "completed" for r in runs)
    return probe


def _completions(engine: Engine, record_id: str | None, run_id: str) -> list[dict[str, Any]]:
    return [e["data"] for e in engine.timeline(record_id or "")
            if e["type"] == "step_completed" and e["run_id"] == run_id]


def _assert_each_step_committed_once(engine: Engine, n: int, steps: tuple[str, ...]) -> None:
    runs = engine.list_runs(limit=n + 10)
    assert len(runs) == n
    for run in runs:
        assert run.status.value == "completed", run.id
        for step in steps:
            sr = run.steps[step]
            assert sr.status.value == "completed" and sr.attempts == 1, (run.id, step)
        done = Counter(d["step"] for d in _completions(engine, run.record_id, run.id))
        assert done == dict.fromkeys(steps, 1), (run.id, done)
    assert _jobs(engine, "claimed") == [] and _jobs(engine, "ready") == []


@pytest.mark.parametrize("where", ["commit_rolled_back", "commit_answer_lost",
                                   "claim_answer_lost"])
def test_jobs_held_by_a_batch_that_met_a_database_error_go_back_to_the_queue(
        engine: Engine, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``commit_rolled_back``: two batch commits fail, nothing of them is written (their
    jobs stay claimed by this worker). ``commit_answer_lost``: two are written but raise
    (the jobs they claimed ahead for the next batch are this worker's, unknown to it).
    ``claim_answer_lost``: the first claim is written but raises.

    40 runs are five batches of 8: one committed as usual, the two that fail, and two more
    after them, so each failing batch has claimed the next one ahead (60 ran three more
    batches that proved nothing more)."""
    n, batch, failures = 40, 8, 2
    worker = Worker(engine, batch=batch)
    store = engine.store
    left = {"n": failures if where != "claim_answer_lost" else 1}
    in_commit = threading.local()
    real_commit, real_write, real_claim = worker._commit_batch, store.write, store.claim_jobs

    def commit_batch(*args: Any, **kwargs: Any) -> None:
        in_commit.on = worker.stats.jobs > 0  # (the first batch commits as usual)
        try:
            real_commit(*args, **kwargs)
        finally:
            in_commit.on = False

    @contextmanager
    def write() -> Iterator[Any]:
        fail = getattr(in_commit, "on", False) and left["n"] > 0
        with real_write() as tx:
            yield tx
            if fail and where == "commit_rolled_back":
                left["n"] -= 1
                raise _db_error(engine)
        if fail and where == "commit_answer_lost":
            left["n"] -= 1
            raise _db_error(engine)

    def claim_jobs(*args: Any, **kwargs: Any) -> Any:
        claimed = real_claim(*args, **kwargs)
        if claimed and left["n"] > 0:
            left["n"] -= 1
            raise _db_error(engine)
        return claimed

    monkeypatch.setattr(worker, "_commit_batch", commit_batch)
    monkeypatch.setattr(store, "write", write)
    if where == "claim_answer_lost":
        monkeypatch.setattr(store, "claim_jobs", claim_jobs)
    engine.create_records("Ticket", [{"n": i} for i in range(n)], actor="t")
    running = _Thread(worker)
    try:
        eventually(_all_completed(engine, n), timeout=60, what=f"{n} runs completed")
    finally:
        running.stop()
    assert left["n"] == 0, "the failure was not injected"
    _assert_each_step_committed_once(engine, n, STEPS)
    assert _workers(engine) == []
    # A flow ran again only for a result that was never committed: at most once per failed
    # batch (8 jobs, each with the 3 steps chained after it in the batch's plan).
    assert set(CALLS) == {(r.id, st) for r in engine.list_runs(limit=n + 10) for st in STEPS}
    assert max(CALLS.values()) <= 1 + failures
    assert sum(CALLS.values()) - len(CALLS) <= failures * batch * len(STEPS)


def test_a_worker_taken_for_dead_registers_again_and_hands_back_what_it_holds(
        engine: Engine) -> None:
    """Silent longer than the heartbeat timeout (the database was away), a worker is taken
    for dead by another and its row removed: once it can beat again it registers again, so
    the jobs it claims are not taken for orphans."""
    # (idle, it sleeps up to poll_interval: it registers again before it claims anything)
    worker = Worker(engine, heartbeat_interval=0.05, poll_interval=0.2, idle_poll=0.2)
    running = _Thread(worker)
    try:
        eventually(lambda: worker.id in _workers(engine), timeout=30, what="registered")
        with engine.store.write() as tx:  # another worker's reaper found it silent
            tx.conn.execute(s.workers.delete().where(s.workers.c.id == worker.id))
        eventually(lambda: worker.id in _workers(engine), timeout=30, what="registered again")
        engine.create_records("Ticket", [{"n": i} for i in range(10)], actor="t")
        eventually(_all_completed(engine, 10), timeout=60, what="10 runs completed")
    finally:
        running.stop()
    _assert_each_step_committed_once(engine, 10, STEPS)
    assert _workers(engine) == []


def test_a_stopped_worker_finishes_the_flow_in_hand_and_hands_back_the_rest(
        engine: Engine) -> None:
    n = 6
    SLOW["seconds"] = 0.5
    engine.create_records("Ticket", [{"n": -1 - i} for i in range(n)], actor="t")
    queued = {job_id: attempts for job_id, _, attempts in _jobs(engine, "ready")}
    assert len(queued) == n
    worker = Worker(engine, batch=32)
    running = _Thread(worker)
    assert STARTED.wait(30), "no flow started"
    stopped_at = time.monotonic()
    running.stop()  # as SIGTERM does, while the batch's first flow sleeps
    took = time.monotonic() - stopped_at
    assert sum(CALLS.values()) == 1, "flows after the one in hand were run"
    runs = engine.list_runs(limit=n + 10)
    assert sorted(r.status.value for r in runs) == ["completed"] + ["in_progress"] * (n - 1)
    # The rest are ready again, claimed by no one, their claim not counted as an attempt.
    back = _jobs(engine, "ready")
    assert _jobs(engine, "claimed") == [] and len(back) == n - 1
    assert all(holder is None and attempts == queued[job_id]
               for job_id, holder, attempts in back), back
    assert _workers(engine) == []
    assert took < 0.5 * (n - 1), f"the stop took {took:.1f} s: the batch's flows were run"
    # Another worker runs each of them, once (no need to sleep in them now: 2.5 s saved).
    SLOW["seconds"] = 0.0
    Worker(engine).run(until_idle=True)
    _assert_each_step_committed_once(engine, n, ("nap",))
    assert set(CALLS.values()) == {1} and len(CALLS) == n


class _Call(JobStepType):
    """``type: t_outage_call``: a step whose work, like a callout's, starts when its job is
    begun (``begin_job``) and is waited for when it is finished."""

    name = "t_outage_call"
    job_kind = "t_outage_call"
    keys = ()

    def __init__(self, on_first_finish: Callable[[], None]) -> None:
        self.begun: list[str] = []
        self.finished: list[str] = []
        self.on_first_finish = on_first_finish

    def begin_job(self, work: StepWork) -> Callable[[], StepOutput]:
        self.begun.append(work.run.id)

        def finish() -> StepOutput:
            if not self.finished:
                self.on_first_finish()
            self.finished.append(work.run.id)
            return StepOutput({"called": True})

        return finish

    def run_job(self, work: StepWork) -> StepOutput:
        return self.begin_job(work)()


CALL_DEFS = """
kind: orchestration
name: t_outage_call
trigger: {type: autolaunched}
stages:
  - name: work
    steps: [{name: call, type: t_outage_call}]
"""


def test_a_stopped_worker_keeps_the_answers_of_calls_in_flight(
        engine: Engine, tmp_path: Path) -> None:
    """Stopped while it waits for the first answer of a batch whose calls are all in flight
    (begun together), the worker waits for the others too and commits them all: none is
    made again by another worker."""
    worker = Worker(engine, batch=8)
    step_type = _Call(worker.stop)  # SIGTERM while the first answer is awaited
    registry.register(step_type)
    try:
        (tmp_path / "call.yaml").write_text(CALL_DEFS)
        engine.deploy([tmp_path / "call.yaml"], known_flows=None)
        runs = [engine.start("t_outage_call").id for _ in range(4)]
        running = _Thread(worker)
        running.thread.join(60)
        running.stop()
    finally:
        registry.unregister(step_type.name)
    assert sorted(step_type.begun) == sorted(step_type.finished) == sorted(runs)
    assert {engine.get_run(r).status.value for r in runs} == {"completed"}
    assert _jobs(engine, "ready") == [] and _jobs(engine, "claimed") == []


def _step_seconds() -> tuple[float, float]:
    """(count, sum) of this process's baton_step_duration_seconds for background steps."""
    found = {x.name: x.value for m in metrics.STEP_SECONDS.collect() for x in m.samples
             if x.labels.get("step_type") == "background"}
    return (found.get("baton_step_duration_seconds_count", 0.0),
            found.get("baton_step_duration_seconds_sum", 0.0))


def test_each_attempt_is_timed_on_its_own(engine: Engine) -> None:
    """Three slow flows run one after the other in one batch: each attempt's duration and
    ``ran_at`` are its own, not counted from the start of the batch."""
    n = 3
    SLOW["seconds"] = 0.3
    engine.create_records("Ticket", [{"n": -1 - i} for i in range(n)], actor="t")
    count0, sum0 = _step_seconds()
    began = time.perf_counter()
    Worker(engine, batch=8).run(until_idle=True)
    wall = time.perf_counter() - began
    count1, sum1 = _step_seconds()
    assert count1 - count0 == n
    # The attempts did not overlap: their durations add up to less than the whole (from
    # the batch's start, they would add up to 0.3 + 0.6 + 0.9 s).
    assert SLOW["seconds"] * n <= sum1 - sum0 <= wall
    ran_at = sorted(parse_iso(d["ran_at"]) for r in engine.list_runs(limit=10)
                    for d in _completions(engine, r.record_id, r.id))
    assert len(ran_at) == n
    gaps = [(b - a).total_seconds() for a, b in pairwise(ran_at)]
    assert min(gaps) >= SLOW["seconds"] * 0.9, ran_at


@pytest.mark.parametrize("phase", ["starting", "running"])
def test_a_worker_stopped_while_the_database_is_down_stops_cleanly(
        engine: Engine, phase: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``starting``: the database is down when the worker starts (it waits to read the
    definitions); ``running``: it went down after (the worker backs off between claims).
    Stopped then (SIGTERM), ``run()`` returns; it raised before (a traceback)."""
    tries = Counter[str]()

    def down(*args: Any, **kwargs: Any) -> Any:
        tries[phase] += 1
        raise _db_error(engine)

    if phase == "starting":
        monkeypatch.setattr(engine, "warm", down)
    else:
        monkeypatch.setattr(engine.store, "claim_jobs", down)
    worker = Worker(engine)
    running = _Thread(worker)
    eventually(lambda: tries[phase] >= 2, timeout=30, what="the worker tried twice")
    running.stop()
    if phase == "starting":
        assert _workers(engine) == []  # it never registered
