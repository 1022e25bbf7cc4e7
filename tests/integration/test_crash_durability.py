"""Crash durability (DESIGN §3): a worker SIGKILLed at any point loses nothing and
commits nothing twice.

Real ``baton worker --until-idle`` processes run the case_triage example on one
SQLite file with ``BATON_FAULT=<point>@<k>``: the k-th time a worker reaches
``after_claim`` / ``after_flow`` / ``after_commit`` it SIGKILLs itself. The next
worker hands the dead worker's jobs back (its pid is gone) and carries on. Between
worker lives this process plays the agents (claim + complete the triage items;
20 % escalate at tier 1). Once every run has completed, the audit log must show
every (step, iteration) of every run completed exactly once, the record updates
of the flows committed exactly once each and atomically with their step, no
job left behind and no work item open.

The worker lives are forked from one Python that has imported Baton once (``BatonForks``):
each is still its own process running ``baton worker`` from the command line's entry point
(``baton.cli.main.main``) with its own environment, SIGKILLed by its own fault point, and
reaped before the next starts; only the ~0.5 s of imports every fresh interpreter repeats is
shared (it was most of each life's cost). The deploy and the last worker are fresh processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select as io_select
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from baton import flow
from baton.clock import VirtualClock
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.store import schema as s

# A long durability test: CI runs it; ./scripts/test locally leaves it out (README).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "case_triage"

N_CASES = 210
POINTS = ("after_claim", "after_flow", "after_commit")
MAX_LIVES = 400
SEED = 20260105

CLOSED_FIRST_TIME = {("classify", 1), ("find_agent", 1), ("triage", 1), ("close_case", 1),
                     ("send_survey", 1)}
ESCALATED = CLOSED_FIRST_TIME | {("raise_level", 1), ("classify", 2), ("find_agent", 2),
                                 ("triage", 2)}
BACKGROUND = {"classify", "find_agent", "raise_level", "close_case", "send_survey"}


def _env(fault: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_FAULT", "BATON_DB")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    if fault is not None:
        env["BATON_FAULT"] = fault
    return env


def _baton(project: Path, db_url: str, *args: str, fault: str | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "baton.cli.main", "--project", str(project), "--db", db_url, *args],
        env=_env(fault), capture_output=True, text=True, timeout=timeout, cwd=project,
        check=False,
    )


# The fork server: imports what every ``baton worker`` life imports, then forks one child per
# request. The child leaves the loop and runs the command as ``python -m baton.cli.main``
# would (its own cwd, environment, argv, stdout and stderr files), ending the interpreter
# normally (exit status, traceback, atexit) or by its fault point's SIGKILL. The server
# answers each request with the child's pid, then its exit status once reaped.
_FORK_SERVER = """
import json, os, sys
import baton.cli.commands, baton.cli.main, baton.runtime.worker
while True:
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        break
    print(pid, flush=True)
    print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), flush=True)
os.chdir(req["cwd"])
os.environ.clear()
os.environ.update(req["env"])
for fd, path in ((0, os.devnull), (1, req["stdout"]), (2, req["stderr"])):
    f = os.open(path, os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(f, fd)
    os.close(f)
sys.argv = [baton.cli.main.__file__, *req["args"]]
baton.cli.main.main()
"""


class BatonForks:
    """``baton`` commands, each in its own process forked from one that imported Baton once:
    a worker life costs its work, not a fresh interpreter's imports."""

    def __init__(self, project: Path, db_url: str, out_dir: Path) -> None:
        self.project, self.db_url, self.out_dir = project, db_url, out_dir
        out_dir.mkdir(exist_ok=True)
        self.calls = 0
        self.pid = 0  # the last command's process
        self._read = b""  # the server's answers read and not yet taken
        self.server = subprocess.Popen(
            [sys.executable, "-c", _FORK_SERVER], env=_env(None), cwd=project,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def _answer(self, timeout: float) -> int:
        """The server's next answer line (unbuffered reads: a deadline that holds)."""
        assert self.server.stdout is not None
        fd = self.server.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._read:
            left = deadline - time.monotonic()
            if left <= 0 or not io_select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"no answer from the fork server in {timeout} s")
            chunk = os.read(fd, 4096)
            assert chunk, f"the fork server exited {self.server.poll()}"
            self._read += chunk
        line, _, self._read = self._read.partition(b"\n")
        return int(line)

    def run(self, *args: str, fault: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``baton --project P --db URL ARGS`` in a forked process, as ``_baton`` runs it."""
        self.calls += 1
        stdout, stderr = (self.out_dir / f"{self.calls}.{n}" for n in ("out", "err"))
        argv = ["--project", str(self.project), "--db", self.db_url, *args]
        assert self.server.stdin is not None
        self.server.stdin.write(json.dumps({
            "cwd": str(self.project), "env": _env(fault), "args": argv,
            "stdout": str(stdout), "stderr": str(stderr)}).encode() + b"\n")
        self.server.stdin.flush()
        self.pid = pid = self._answer(timeout)
        try:
            code = self._answer(timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)  # the server reaps it and answers
            self._answer(30)
            raise
        return subprocess.CompletedProcess(argv, code, stdout.read_text(), stderr.read_text())

    def close(self) -> None:
        if self.server.stdin is not None:
            self.server.stdin.close()
        try:
            self.server.wait(30)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        if self.server.stdout is not None:
            self.server.stdout.close()


def _pick_k(rng: random.Random) -> int:
    # Mostly early deaths (many kills at all three points; a worker commits a whole batch
    # at once, so it reaches after_commit only once per batch), sometimes longer lives so
    # the test does not spend all its time starting worker lives.
    return rng.randint(1, 8) if rng.random() < 0.85 else rng.randint(9, 60)


def _act_as_agents(engine: Engine) -> int:
    """Claim and complete every open triage item; number % 5 == 0 escalates at tier 1."""
    n = 0
    for item in engine.list_work(limit=10_000):
        assert item["step"] == "triage", item
        case = engine.get_record(item["record_id"])
        assert item["assignee_kind"] == "queue" and item["assignee"] == f"tier{case['level']}", item
        escalate = case["number"] % 5 == 0 and case["level"] == 1
        agent = "ann" if case["level"] == 1 else "cyd"
        if item["status"] == "open":
            engine.claim(item["id"], agent)
        engine.complete(item["id"], agent, {"resolution": "escalate" if escalate else "close"})
        n += 1
    return n


def _run_statuses(engine: Engine) -> Counter[str]:
    with engine.store.read() as tx:
        return Counter({status: c for _o, status, _s, c in tx.count_runs_txn()})


def test_sigkilled_workers_lose_nothing_and_commit_nothing_twice(tmp_path: Path) -> None:
    project = tmp_path / "case_triage"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", "*.db*"))
    db_url = f"sqlite:///{tmp_path / 'baton.db'}"

    deployed = _baton(project, db_url, "deploy")
    assert deployed.returncode == 0, deployed.stderr

    engine = Engine(db_url)
    forks = BatonForks(project, db_url, tmp_path / "lives")
    try:
        _run_and_check(engine, project, db_url, forks)
    finally:
        forks.close()
        engine.close()


def _run_and_check(engine: Engine, project: Path, db_url: str, forks: BatonForks) -> None:
    # (One transaction for all: the cases and their runs are there before any worker lives.)
    created = engine.create_records("Case", [
        {"subject": f"invoice question {i}" if i % 2 else f"inverter fault {i}", "number": i}
        for i in range(1, N_CASES + 1)], actor="test")
    records = {rec["id"]: rec["number"] for rec in created}
    assert sorted(records.values()) == list(range(1, N_CASES + 1))
    assert _run_statuses(engine) == {"in_progress": N_CASES}

    # ---- workers die and are replaced until every run has completed ----------------------
    rng = random.Random(SEED)
    kills: Counter[str] = Counter()
    lives: list[tuple[str, int, int]] = []
    for life in range(MAX_LIVES):
        if _run_statuses(engine) == {"completed": N_CASES}:
            break
        point = POINTS[life % len(POINTS)]
        k = _pick_k(rng)
        # Small batches: many group commits to crash around (a batch is one commit).
        proc = forks.run("worker", "--until-idle", "--batch", "4", fault=f"{point}@{k}")
        lives.append((point, k, proc.returncode))
        assert proc.returncode in (0, -signal.SIGKILL), (
            f"worker life {life} ({point}@{k}) exited {proc.returncode}:\n{proc.stderr}")
        assert "Traceback" not in proc.stderr, proc.stderr
        if proc.returncode == -signal.SIGKILL:
            kills[point] += 1
            continue
        # The worker went idle: every run is waiting for a person, or done.
        worked = _act_as_agents(engine)
        if not worked and _run_statuses(engine) != {"completed": N_CASES}:
            raise AssertionError(f"stuck: runs {_run_statuses(engine)}, nothing to do for agents; "
                                 f"lives so far {lives}")
    else:
        raise AssertionError(f"runs did not finish in {MAX_LIVES} worker lives: {_run_statuses(engine)}")

    # Every point was hit, many times (else this test proves little).
    assert all(kills[p] >= 8 for p in POINTS), (kills, lives)

    # A last worker without faults finds nothing to do and cleans up after the dead ones.
    last = _baton(project, db_url, "worker", "--until-idle")
    assert last.returncode == 0, last.stderr
    assert ": 0 jobs" in last.stdout, last.stdout

    # ---- the audit log ----------------------------------------------------------------
    assert _run_statuses(engine) == {"completed": N_CASES}
    runs = engine.list_runs(limit=10_000)
    assert len(runs) == N_CASES
    assert {r.record_id for r in runs} == set(records)
    escalated = 0
    with engine.store.read() as tx:
        for run in runs:
            number = records[run.record_id]
            expect_escalation = number % 5 == 0
            escalated += expect_escalation
            expected = ESCALATED if expect_escalation else CLOSED_FIRST_TIME
            where = f"run {run.id} (case {number})"

            completed = Counter((e["data"]["step"], e["data"]["iteration"])
                                for e in tx.events_txn(run_id=run.id, types=["step_completed"]))
            duplicated = {k: c for k, c in completed.items() if c != 1}
            assert not duplicated, f"{where}: completed more than once: {duplicated}"
            assert set(completed) == expected, f"{where}: {sorted(completed)}"

            started = Counter((e["data"]["step"], e["data"]["iteration"])
                              for e in tx.events_txn(run_id=run.id, types=["step_started"]))
            assert started == Counter(expected), f"{where}: steps started {started}"
            bad = tx.events_txn(run_id=run.id, types=["step_failed", "step_fallout", "run_failed",
                                                     "step_canceled"])
            assert bad == [], f"{where}: {bad}"
            assert [(d["stage"], d["goto"]) for d in run.decisions] == (
                [("triage", "escalate"), ("escalate", "triage"), ("triage", "close"), ("close", "end")]
                if expect_escalation else [("triage", "close"), ("close", "end")]), where
            assert all(sr.status.value == "completed" for sr in run.steps.values()), where
            assert run.vars["level"] == (2 if expect_escalation else 1), where

            # The record: each flow's update committed once, right before its step's completion
            # (one transaction). classify/find_agent write the same values on the second
            # iteration, which changes nothing and so logs nothing.
            timeline = tx.events_txn(record_id=run.record_id)
            updates = Counter(e["actor"] for e in timeline if e["type"] == "record_updated")
            expected_updates = Counter({"flow:classify": 1, "flow:find_agent": 1, "flow:close_case": 1})
            if expect_escalation:
                expected_updates["flow:raise_level"] = 1
            assert updates == expected_updates, f"{where}: record updates {updates}"
            for i, e in enumerate(timeline):
                if e["type"] == "record_updated":  # same transaction: same time, next event id
                    nxt = timeline[i + 1]
                    assert nxt["type"] == "step_completed" and nxt["id"] == e["id"] + 1 and \
                        nxt["at"] == e["at"] and f"flow:{nxt['data']['step']}" == e["actor"], \
                        f"{where}: {e} then {nxt}"
            assert [e["type"] for e in timeline].count("run_completed") == 1, where
            assert [e["type"] for e in timeline].count("work_item_completed") == (
                2 if expect_escalation else 1), where

            rec = tx.get_record_txn(run.record_id)
            assert rec is not None
            level = 2 if expect_escalation else 1
            assert rec["version"] == 1 + sum(expected_updates.values()), f"{where}: {rec}"
            data = rec["data"]
            assert data["status"] == "Closed" and data["level"] == level, f"{where}: {data}"
            assert data["category"] == ("billing" if number % 2 else "tech"), f"{where}: {data}"
            assert data["resolution"] == {"by": data["agent"], "level": level}, f"{where}: {data}"

            items = tx.list_work_items_txn({"run_id": run.id}, 100, 0)
            assert sorted((i["iteration"], i["status"], i["assignee"]) for i in items) == (
                [(1, "completed", "tier1"), (2, "completed", "tier2")] if expect_escalation
                else [(1, "completed", "tier1")]), f"{where}: {items}"

        assert tx.count_jobs_txn() == {}, "jobs left behind"
        assert tx.conn.execute(select(func.count()).select_from(s.workers)).scalar_one() == 0
        assert tx.conn.execute(
            select(func.count()).select_from(s.work_items).where(s.work_items.c.status != "completed")
        ).scalar_one() == 0
    assert escalated == N_CASES // 5


# ---- a result nobody waits for any more commits nothing -----------------------------------
_CANCEL_WHILE_RUNNING: dict[str, Engine] = {}


@flow("test_crash_durability.canceled_while_running")
def _canceled_while_running(ctx: Any) -> dict[str, Any]:
    # An operator cancels the run while this flow runs (between the worker's read and commit).
    _CANCEL_WHILE_RUNNING["engine"].cancel_run(ctx.run_id, "canceled while the flow ran", actor="op")
    ctx.update_record({"status": "Done"})
    ctx.vars["touched"] = True
    return {"ok": True}


def test_flow_result_of_a_canceled_step_commits_nothing(tmp_path: Path) -> None:
    """A flow's record updates commit with its step's completion or not at all: when the step
    was canceled while the flow ran, the late result is dropped with its record updates."""
    engine = Engine(f"sqlite:///{tmp_path / 'baton.db'}", clock=VirtualClock())
    _CANCEL_WHILE_RUNNING["engine"] = engine
    try:
        defs = tmp_path / "defs.yaml"
        defs.write_text(textwrap.dedent("""\
            kind: object
            name: Thing
            fields:
              title:  {type: string, required: true}
              status: {type: string}
            ---
            kind: orchestration
            name: thing_flow
            trigger: {type: record, object: Thing, on: [create]}
            stages:
              - name: only
                steps:
                  - {name: slow, type: background, flow: test_crash_durability.canceled_while_running}
            """))
        engine.deploy([defs])
        rec = engine.create_record("Thing", {"title": "x"})
        worker = Worker(engine)
        worker.run(until_idle=True)

        assert worker.stats.stale == 1 and worker.stats.steps_completed == 0
        assert "status" not in engine.get_record(rec["id"])
        assert engine.get_record(rec["id"])["version"] == 1
        (run,) = engine.list_runs()
        assert run.status.value == "canceled" and run.steps["slow"].status.value == "canceled"
        assert "touched" not in run.vars
        types = [e["type"] for e in engine.timeline(rec["id"])]
        assert "record_updated" not in types and "step_completed" not in types, types
        with engine.store.read() as tx:
            assert tx.count_jobs_txn() == {}
    finally:
        _CANCEL_WHILE_RUNNING.clear()
        engine.close()


# ---- a worker killed while it holds claimed jobs: another process runs them ---------------
HELD_DEFS = """
kind: object
name: Thing
fields:
  title: {type: string, required: true}
---
kind: orchestration
name: held_jobs
trigger: {type: record, object: Thing, on: [create]}
stages:
  - name: only
    steps:
      - {name: work, type: background, flow: held.work}
"""

HELD_FLOWS = """
import os
from baton import flow


@flow("held.work")
def work(ctx):
    with open({log!r}, "a") as log:  # which process ran which step, one line each
        log.write(f"{{os.getpid()}} {{ctx.run_id}} {{ctx.iteration}}\\n")
    return {{"ok": True}}
"""


def test_jobs_claimed_by_a_killed_worker_are_run_by_another_process(tmp_path: Path) -> None:
    """BATON_FAULT=after_claim@1 kills the worker right after it claimed its first batch,
    before it ran any of it: those jobs are in the database, claimed by it, when it dies.
    The next worker hands them back (the claimer's pid is gone) and runs every step once."""
    project = tmp_path / "proj"
    (project / "definitions").mkdir(parents=True)
    (project / "definitions" / "defs.yaml").write_text(HELD_DEFS)
    log = tmp_path / "exec.log"
    (project / "held_flows.py").write_text(HELD_FLOWS.format(log=str(log)))
    (project / "baton.toml").write_text('flows = ["held_flows"]\n')
    db_url = f"sqlite:///{tmp_path / 'baton.db'}"
    assert _baton(project, db_url, "deploy").returncode == 0
    engine = Engine(db_url)
    lives = BatonForks(project, db_url, tmp_path / "lives")
    try:
        engine.create_records("Thing", [{"title": f"t{i}"} for i in range(8)])
        killed = lives.run("worker", "--until-idle", "--batch", "4", fault="after_claim@1")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        with engine.store.read() as tx:
            held = [j for j in tx.conn.execute(select(s.jobs)) if j.status == "claimed"]
        assert len(held) == 4, held  # the killed worker held its first batch
        assert not log.exists()  # and ran none of it

        survivor = lives.run("worker", "--until-idle", "--batch", "4")
        assert survivor.returncode == 0, survivor.stderr
        assert lives.pid != 0  # its pid, to tell who ran what

        ran = Counter(tuple(line.split()) for line in log.read_text().splitlines())
        runs = {r.id for r in engine.list_runs(limit=100)}
        assert ran == Counter({(str(lives.pid), run_id, "1"): 1 for run_id in runs}), ran
        held_runs = {j.run_id for j in held}
        assert held_runs <= runs and len(held_runs) == 4
        assert {r.status.value for r in engine.list_runs(limit=100)} == {"completed"}
        with engine.store.read() as tx:
            assert tx.count_jobs_txn() == {}
    finally:
        lives.close()
        engine.close()
