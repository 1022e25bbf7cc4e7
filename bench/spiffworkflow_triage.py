"""SpiffWorkflow side of the "case triage" benchmark (/work/shared/bench/WORKLOAD.md).

Runs the workload's process, modelled in BPMN 2.0 (bench/case_triage.bpmn), on
SpiffWorkflow 3.x, in one of three modes:

* ``memory``: workflows live only in this process (no durability at all);
* ``durable-per-step`` (``durable``): after every step the whole workflow state is
  serialized with SpiffWorkflow's ``BpmnWorkflowSerializer`` to JSON and UPSERTed into one
  SQLite row per case (WAL, ``synchronous=FULL``, one committed transaction per write);
* ``durable-batched``: the same serialized state and the same SQLite settings, but written
  as Baton writes its own: many cases per transaction, at each wait point only, with
  Baton's batch sizes. New cases are stored 100 per transaction (Baton creates records 100
  per transaction, each with its started run); the engine steps of up to 256 cases (Baton's
  worker batch) run to their next wait point (the triage task, or the end) and those cases
  are stored in one transaction (Baton's worker commits a batch of results in one); ready
  triage tasks are completed 250 per transaction (Baton's driver completes work items 250
  per transaction). Nothing is lost on a crash that a SpiffWorkflow application would
  need: every case's state at each wait point is committed before it is acted on again.

In both durable modes a case waiting at its triage task lives only in the database: the
driver loads (deserializes) it to complete the task, as a SpiffWorkflow application serving
the person's form would.

How the driver runs the cases (what a SpiffWorkflow application does, single process):
all N cases are created first (the burst of Case records of the workload); creating a case
starts its workflow and runs its engine steps (classify, find_agent) until it waits at its
triage user task. The driver then completes ready triage tasks first-in first-out, each as
soon as it is its turn (a person working through the triage queue); completing one runs the
engine steps that follow it (close_case and send_survey, or raise_level, classify and
find_agent, after which the case joins the back of the queue again). SpiffWorkflow is a
library without workers of its own, so everything runs in this one thread. (In
``durable-batched`` mode the same work is grouped into the batches described above.)

CPU: ``cpu_s`` is this process's CPU time (user + system, ``time.process_time``) over the
timed part, the same span as ``seconds``; ``cpu_ms_per_run`` divides it by the runs.

Step bodies are plain Python functions given to the script engine's environment; the BPMN
script tasks call them (``classify_out = classify(case)``).

Meant to be launched as a subprocess (so that peak RSS is this engine's own):

    python bench/spiffworkflow_triage.py --runs 2000 --mode durable-batched --json
"""

# SpiffWorkflow ships no type information (no py.typed): its objects are Any here.
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sqlite3
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, Literal

from SpiffWorkflow.bpmn.parser import BpmnParser, BpmnValidator
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.bpmn_process_spec import BpmnProcessSpec
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

Mode = Literal["memory", "durable-per-step", "durable-batched"]
MODES: tuple[str, ...] = ("memory", "durable-per-step", "durable-batched")
MODE_ALIASES = {"durable": "durable-per-step"}  # the name before durable-batched existed
SaveEvery = Literal["step", "task"]
Case = dict[str, Any]

BPMN_FILE = Path(__file__).with_name("case_triage.bpmn")
PROCESS_ID = "case_triage"
# durable-batched: Baton's batch sizes (bench/triage.py CHUNK, COMPLETE_CHUNK, --batch)
CREATE_CHUNK = 100  # new cases stored per transaction
ENGINE_BATCH = 256  # cases whose engine steps run (and are stored) per transaction
COMPLETE_CHUNK = 250  # triage tasks completed per transaction

# --- step bodies (WORKLOAD.md, "Step bodies"); each updates the case record and returns
# the step's output, as the flows of examples/case_triage/flows.py do in Baton ---------------

AGENT_POOLS: dict[str, list[str]] = {"billing": ["ann", "bob"], "tech": ["cyd", "dan", "eve"]}


def _category(subject: str) -> str:
    return "billing" if "invoice" in subject else "tech"


def classify(case: Case) -> dict[str, Any]:
    category = _category(case["subject"])
    priority = 1 + len(case["subject"]) % 3
    case.update(category=category, priority=priority)
    return {"category": category, "priority": priority, "tags": sorted({category, "triaged"})}


def find_agent(case: Case) -> dict[str, Any]:
    # Runs in parallel with classify (its own branch of the task data), so it derives the
    # category from the subject by the same rule instead of reading classify's output.
    pool = AGENT_POOLS[_category(case["subject"])]
    agent = pool[case["case_id"] % len(pool)]
    case["agent"] = agent
    return {"agent": agent, "queue": f"L{case['level']}"}


def raise_level(case: Case) -> dict[str, Any]:
    case.update(level=case["level"] + 1, status="escalated")
    return {"level": case["level"]}


def close_case(case: Case) -> dict[str, Any]:
    resolution = {"by": case["agent"], "level": case["level"]}
    case.update(status="closed", resolution=resolution)
    return {"status": "closed", "resolution": resolution}


def send_survey(case: Case) -> dict[str, Any]:
    return {"survey": {"to": f"customer-{case['case_id']}", "sent": True}}


STEP_FUNCTIONS: dict[str, Callable[[Case], dict[str, Any]]] = {
    f.__name__: f for f in (classify, find_agent, raise_level, close_case, send_survey)
}

# Counted steps (WORKLOAD.md): the background steps of stages triage and close, and each
# completed triage work item; raise_level is not counted.
COUNTED_BACKGROUND = frozenset({"classify", "find_agent", "close_case", "send_survey"})
# Tasks after which durable mode saves with save_every="step": every step of the workload
# (raise_level included: it is a step, only not counted), not gateways and events.
STEP_TASKS = frozenset(STEP_FUNCTIONS) | {"triage"}


def expected_steps(case_id: int) -> int:
    return 8 if case_id % 5 == 0 else 5


def new_case(case_id: int) -> Case:
    subject = f"invoice question {case_id}" if case_id % 2 else f"login broken {case_id}"
    return {"case_id": case_id, "subject": subject, "level": 1}


def load_spec() -> BpmnProcessSpec:
    parser = BpmnParser(validator=BpmnValidator())  # also checks the file against the XSD
    parser.add_bpmn_file(str(BPMN_FILE))
    return parser.get_spec(PROCESS_ID)


# --- durable storage --------------------------------------------------------------------------


class StateStore:
    """One row per case holding its serialized workflow; every write is its own transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # isolation_level=None: no implicit transactions; each UPSERT below is one
        # autocommitted (hence fsynced, synchronous=FULL) transaction.
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute(
            "CREATE TABLE workflow_state ("
            " case_id INTEGER PRIMARY KEY,"
            " completed INTEGER NOT NULL,"
            " state TEXT NOT NULL)"
        )

    def save(self, case_id: int, state: str, completed: bool) -> None:
        self.conn.execute(
            "INSERT INTO workflow_state (case_id, completed, state) VALUES (?, ?, ?)"
            " ON CONFLICT (case_id) DO UPDATE SET completed = excluded.completed,"
            " state = excluded.state",
            (case_id, int(completed), state),
        )

    def save_many(self, rows: list[tuple[int, str, bool]]) -> None:
        """Store many cases' states in ONE transaction (one commit, one fsync)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            self.conn.executemany(
                "INSERT INTO workflow_state (case_id, completed, state) VALUES (?, ?, ?)"
                " ON CONFLICT (case_id) DO UPDATE SET completed = excluded.completed,"
                " state = excluded.state",
                [(case_id, int(completed), state) for case_id, state, completed in rows],
            )
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def load_many(self, case_ids: list[int]) -> dict[int, str]:
        """The stored states of ``case_ids``, read with one statement."""
        marks = ",".join("?" * len(case_ids))
        rows = self.conn.execute(
            f"SELECT case_id, state FROM workflow_state WHERE case_id IN ({marks})", case_ids
        ).fetchall()
        found = {int(r[0]): str(r[1]) for r in rows}
        missing = [c for c in case_ids if c not in found]
        if missing:
            raise KeyError(f"no stored workflow for cases {missing[:5]}")
        return found

    def load(self, case_id: int) -> str:
        row = self.conn.execute(
            "SELECT state FROM workflow_state WHERE case_id = ?", (case_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no stored workflow for case {case_id}")
        return str(row[0])

    def completed_count(self) -> int:
        query = "SELECT count(*) FROM workflow_state WHERE completed"
        return int(self.conn.execute(query).fetchone()[0])

    def size_bytes(self) -> int:
        """Database size once the WAL is checkpointed into the main file."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal")) if p.exists())

    def close(self) -> None:
        self.conn.close()


# --- the driver -------------------------------------------------------------------------------


class TriageDriver:
    """Starts cases and completes their triage tasks; counts and checks the steps."""

    def __init__(
        self,
        spec: BpmnProcessSpec,
        store: StateStore | None,
        save_every: SaveEvery,
        *,
        batched: bool = False,
    ) -> None:
        self.spec = spec
        self.store = store
        self.save_every = save_every
        # batched: nothing is saved per step; the batch methods below store each case's
        # state at its wait points, many cases per transaction.
        self.batched = batched
        self.engine = PythonScriptEngine(environment=TaskDataEnvironment(dict(STEP_FUNCTIONS)))
        self.serializer = BpmnWorkflowSerializer()
        self.live: dict[int, BpmnWorkflow] = {}  # memory mode: the workflows themselves
        self.steps: dict[int, int] = {}  # counted steps per case
        self.total_steps = 0

    # state handling: in memory, or serialized to SQLite after each step

    def _save(self, case_id: int, workflow: BpmnWorkflow) -> None:
        assert self.store is not None
        self.store.save(case_id, self.serializer.serialize_json(workflow), workflow.completed)

    def _workflow(self, case_id: int) -> BpmnWorkflow:
        if self.store is None:
            return self.live[case_id]
        workflow = self.serializer.deserialize_json(self.store.load(case_id))
        workflow.script_engine = self.engine  # the engine (functions) is not part of the state
        return workflow

    def _after_task(self, case_id: int, workflow: BpmnWorkflow, task: Task) -> None:
        name = task.task_spec.bpmn_id  # None for Spiff's internal Root/Start/End tasks
        if name in COUNTED_BACKGROUND or name == "triage":
            self.steps[case_id] += 1
            self.total_steps += 1
        if self.batched or self.store is None:
            return
        if self.save_every == "task" or name in STEP_TASKS:
            self._save(case_id, workflow)

    def _run_engine(self, case_id: int, workflow: BpmnWorkflow) -> None:
        """Run engine tasks until the workflow waits at a user task or completes."""

        def did_complete(task: Task) -> None:
            self._after_task(case_id, workflow, task)

        workflow.do_engine_steps(did_complete_task=did_complete)
        if self.store is not None and self.save_every == "step" and not self.batched:
            # Also store the settled state (gateways/events run after the last step), so the
            # stored state at every wait point is exactly the in-memory one.
            self._save(case_id, workflow)

    # the workload

    def start(self, case_id: int) -> None:
        """Create case ``case_id`` and run it up to its first triage task."""
        workflow = BpmnWorkflow(self.spec, script_engine=self.engine)
        workflow.task_tree.data["case"] = new_case(case_id)  # the root's data flows to the tasks
        self.steps[case_id] = 0
        if self.store is None:
            self.live[case_id] = workflow
        self._run_engine(case_id, workflow)

    def complete_triage(self, case_id: int) -> bool:
        """Complete the case's ready triage task; True when the case has completed."""
        workflow = self._workflow(case_id)
        self._complete_task(case_id, workflow)
        self._run_engine(case_id, workflow)
        if not workflow.completed:
            return False
        self._verify(case_id, workflow)
        self.live.pop(case_id, None)
        return True

    # durable-batched: the same work, many cases per transaction at their wait points

    def create_batch(self, case_ids: list[int]) -> list[tuple[int, BpmnWorkflow]]:
        """Create cases and store their started workflows in ONE transaction (Baton: records
        and their runs, 100 per transaction). Their engine steps run in :meth:`engine_batch`."""
        assert self.store is not None
        made = []
        for case_id in case_ids:
            workflow = BpmnWorkflow(self.spec, script_engine=self.engine)
            workflow.task_tree.data["case"] = new_case(case_id)
            self.steps[case_id] = 0
            made.append((case_id, workflow))
        self.store.save_many(
            [(c, self.serializer.serialize_json(w), w.completed) for c, w in made]
        )
        return made

    def engine_batch(self, batch: list[tuple[int, BpmnWorkflow]]) -> list[int]:
        """Run each workflow's engine steps to its next wait point and store them all in ONE
        transaction (Baton: a worker batch of results, one commit). Returns the cases that
        now wait at a triage task; completed cases are verified and forgotten."""
        assert self.store is not None
        rows: list[tuple[int, str, bool]] = []
        waiting: list[int] = []
        for case_id, workflow in batch:
            self._run_engine(case_id, workflow)
            rows.append((case_id, self.serializer.serialize_json(workflow), workflow.completed))
            if workflow.completed:
                self._verify(case_id, workflow)
            else:
                waiting.append(case_id)
        self.store.save_many(rows)
        return waiting

    def triage_batch(self, case_ids: list[int]) -> list[tuple[int, BpmnWorkflow]]:
        """Load waiting cases (one read), complete their triage tasks and store them in ONE
        transaction (Baton: work items completed 250 per transaction). The engine steps that
        follow run in the next :meth:`engine_batch`."""
        assert self.store is not None
        states = self.store.load_many(case_ids)
        done: list[tuple[int, BpmnWorkflow]] = []
        for case_id in case_ids:
            workflow = self.serializer.deserialize_json(states[case_id])
            workflow.script_engine = self.engine
            self._complete_task(case_id, workflow)
            done.append((case_id, workflow))
        self.store.save_many(
            [(c, self.serializer.serialize_json(w), w.completed) for c, w in done]
        )
        return done

    def _complete_task(self, case_id: int, workflow: BpmnWorkflow) -> None:
        task = workflow.get_next_task(state=TaskState.READY, manual=True)
        if task is None or task.task_spec.bpmn_id != "triage":
            raise RuntimeError(f"case {case_id}: no ready triage task")
        first_triage = task.data["case"]["level"] == 1
        task.data["resolution"] = "escalate" if case_id % 5 == 0 and first_triage else "close"
        task.run()
        self._after_task(case_id, workflow, task)

    def _verify(self, case_id: int, workflow: BpmnWorkflow) -> None:
        escalated = case_id % 5 == 0
        if self.steps[case_id] != expected_steps(case_id):
            raise RuntimeError(
                f"case {case_id}: {self.steps[case_id]} steps, expected {expected_steps(case_id)}"
            )
        case, level = workflow.data["case"], 2 if escalated else 1
        survey = workflow.data.get("send_survey_out", {}).get("survey")
        if (
            case["level"] != level
            or case["status"] != "closed"
            or case["resolution"] != {"by": case["agent"], "level": level}
            or survey != {"to": f"customer-{case_id}", "sent": True}
        ):
            raise RuntimeError(f"case {case_id}: unexpected final data {workflow.data}")


def _drive_one_by_one(driver: TriageDriver, n: int) -> int:
    """memory and durable-per-step: each case started, then triaged first-in first-out."""
    queue: deque[int] = deque()  # cases waiting at a ready triage task, oldest first
    for case_id in range(1, n + 1):
        driver.start(case_id)
        queue.append(case_id)
    completed = 0
    while queue:
        case_id = queue.popleft()
        if driver.complete_triage(case_id):
            completed += 1
        else:
            queue.append(case_id)  # escalated: triaged again at the next level
    return completed


def _drive_batched(driver: TriageDriver, n: int) -> int:
    """durable-batched: the same order of work as Baton's driver and worker, in their batch
    sizes: create a chunk, run every pending case's engine steps, triage a chunk, again."""
    pending: deque[tuple[int, BpmnWorkflow]] = deque()  # engine steps to run
    waiting: deque[int] = deque()  # at a ready triage task (stored only), oldest first
    next_id, completed = 1, 0
    while next_id <= n or pending or waiting:
        if next_id <= n:
            ids = list(range(next_id, min(n, next_id + CREATE_CHUNK - 1) + 1))
            next_id += len(ids)
            pending.extend(driver.create_batch(ids))
        while pending:
            batch = [pending.popleft() for _ in range(min(ENGINE_BATCH, len(pending)))]
            now_waiting = driver.engine_batch(batch)
            completed += len(batch) - len(now_waiting)
            waiting.extend(now_waiting)
        if waiting:
            ids = [waiting.popleft() for _ in range(min(COMPLETE_CHUNK, len(waiting)))]
            pending.extend(driver.triage_batch(ids))
    return completed


def settle() -> None:
    """The garbage-collector settings Baton's processes run with (``baton.runtime.heap``:
    what exists at start frozen, young collections every 50,000 new objects instead of
    700), applied to this process too, so neither engine is measured with the other's
    collector handicap."""
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(50_000, gen1, gen2)


def run(
    n: int, mode: str, db_path: str | None = None, *, save_every: SaveEvery = "step"
) -> dict[str, Any]:
    """Run ``n`` cases of the workload and return the figures.

    ``db_path`` (durable modes) must not exist yet; without it a temporary file is used.
    ``save_every`` (durable-per-step): "step" saves after every workload step (classify,
    find_agent, triage, raise_level, close_case, send_survey) and once more when the engine
    settles; "task" saves after every task SpiffWorkflow completes, gateways and events too.
    """
    mode = MODE_ALIASES.get(mode, mode)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    spec = load_spec()  # deploying the process is not part of the timed run
    store: StateStore | None = None
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if mode != "memory":
        if db_path is None:
            tmp = tempfile.TemporaryDirectory(prefix="spiff-bench-")
            path = Path(tmp.name) / "spiffworkflow.sqlite"
        else:
            path = Path(db_path)
            if path.exists() and path.stat().st_size > 0:
                raise FileExistsError(f"{path} exists; give a fresh database path")
        store = StateStore(path)
    batched = mode == "durable-batched"
    driver = TriageDriver(spec, store, save_every, batched=batched)
    settle()

    cpu = time.process_time()
    started = time.perf_counter()
    completed = _drive_batched(driver, n) if batched else _drive_one_by_one(driver, n)
    seconds = time.perf_counter() - started
    cpu_s = time.process_time() - cpu

    expected_total = sum(expected_steps(i) for i in range(1, n + 1))
    if completed != n or driver.total_steps != expected_total:
        raise RuntimeError(
            f"{completed}/{n} cases completed, {driver.total_steps}/{expected_total} steps"
        )
    result: dict[str, Any] = {
        "engine": "spiffworkflow",
        "version": package_version("SpiffWorkflow"),
        "mode": mode,
        "durable": store is not None,
        "runs": completed,
        "steps": driver.total_steps,
        "seconds": round(seconds, 3),
        "runs_per_s": round(completed / seconds, 1),
        "steps_per_s": round(driver.total_steps / seconds, 1),
        "cpu_s": round(cpu_s, 3),
        "cpu_ms_per_run": round(cpu_s * 1000 / completed, 3),
        "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        # ru_maxrss is in KiB on Linux
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if store is not None:
        if store.completed_count() != n:
            raise RuntimeError("not every stored workflow is marked completed")
        result["db_bytes"] = store.size_bytes()
        if batched:
            result["batches"] = {"create": CREATE_CHUNK, "engine": ENGINE_BATCH,
                                 "complete": COMPLETE_CHUNK}
        else:
            result["save_every"] = save_every
        store.close()
    if tmp is not None:
        tmp.cleanup()
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=2000, help="number of cases (default 2000)")
    parser.add_argument("--mode", choices=[*MODES, *MODE_ALIASES], default="memory",
                        help="durable is durable-per-step")
    parser.add_argument(
        "--db", help="durable modes: SQLite file to create (default: a temporary file)"
    )
    parser.add_argument(
        "--save-every",
        choices=["step", "task"],
        default="step",
        help="durable-per-step: save after every workload step (default) or every SpiffWorkflow task",
    )
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = parser.parse_args(argv)
    result = run(args.runs, args.mode, args.db, save_every=args.save_every)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>13}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
