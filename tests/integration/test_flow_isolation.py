"""Flows a worker can stop (issue 17, item 5): a step's ``timeout`` and ``isolation =
"process"`` run flows in flow processes, killed when they overrun, optionally with a memory
limit. Real processes, no mocks; each engine test runs on SQLite and on PostgreSQL, on
virtual time (``harness.clock.advance`` then ``harness.work()``). Deadlines below only bound
how long a broken build would hang; they are never what a test asserts.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from baton import flow
from baton.flows import FlowContext
from baton.runtime.flowpool import FlowPool

# ---- flows ------------------------------------------------------------------------------------


def _note_pid(ctx: FlowContext) -> None:
    with open(ctx.record["path"], "a") as f:
        f.write(f"{os.getpid()}\n")


@flow("t_iso.spin")
def _spin(ctx: FlowContext) -> dict[str, Any]:
    _note_pid(ctx)
    while True:  # burns a CPU until killed
        pass


@flow("t_iso.hog")
def _hog(ctx: FlowContext) -> dict[str, Any]:
    _note_pid(ctx)
    blocks = []
    for _ in range(300):  # 3 GiB, touched (bytes * n writes every page)
        blocks.append(b"x" * (10 * 2**20))
    return {"blocks": len(blocks)}


@flow("t_iso.crash")
def _crash(ctx: FlowContext) -> dict[str, Any]:
    os.kill(os.getpid(), signal.SIGKILL)
    return {}


@flow("t_iso.classify")
def _classify(ctx: FlowContext) -> dict[str, Any]:
    ctx.log.info("classifying %s", ctx.record["subject"])
    category = "billing" if "invoice" in ctx.record["subject"] else "tech"
    ctx.update_record({"status": "Triaged", "category": category})
    ctx.vars["level"] = ctx.vars.get("level", 1) + 1
    ctx.vars["seen"] = [ctx.steps["first"].output["n"], ctx.input.get("origin", "none")]
    return {"category": category, "pid": os.getpid()}


@flow("t_iso.first")
def _first(ctx: FlowContext) -> dict[str, Any]:
    return {"n": 7, "pid": os.getpid()}


CASE = """
kind: object
name: Case
fields:
  subject:  {type: string, required: true}
  path:     {type: string}
  status:   {type: choice, choices: [New, Triaged], default: New}
  category: {type: string}
---
"""


def deploy(harness: Any, steps: str, name: str = "t_iso") -> None:
    harness.deploy_text(CASE + textwrap.dedent(f"""
        kind: orchestration
        name: {name}
        trigger: {{type: record, object: Case, on: [create]}}
        stages:
          - name: s
            steps:
        """) + textwrap.indent(textwrap.dedent(steps), "      "))


def start(harness: Any, subject: str, path: Path | None = None) -> Any:
    rec = harness.engine.create_record("Case", {"subject": subject, "path": str(path or "")})
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    return run


def attempts_failed(harness: Any, run_id: str) -> list[dict[str, Any]]:
    with harness.engine.store.read() as tx:
        return [e["data"]["error"] for e in tx.events_txn(run_id=run_id)
                if e["type"] == "step_attempt_failed"]


def gone(pid: int) -> bool:
    """No such process, or a zombie (it runs nothing; its parent may not have reaped it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


# ---- tests ------------------------------------------------------------------------------------


def test_a_flow_that_overruns_is_killed_retried_and_ends_in_fallout(harness: Any,
                                                                     tmp_path: Path) -> None:
    deploy(harness, """
        - {name: spin, type: background, flow: t_iso.spin, timeout: 1s, retry: {max: 1, initial: 1m}}
        """)
    pidfile = tmp_path / "spin.pids"
    run = start(harness, "busy", pidfile)
    t0 = time.monotonic()
    harness.work()  # returns once the 1 s timeout has passed: the flow never would
    assert time.monotonic() - t0 < 30  # (a safety bound, not the assertion)
    (first,) = attempts_failed(harness, run.id)
    assert first["type"] == "StepTimeout" and first["retryable"] is True
    assert "t_iso.spin" in first["message"] and "1000 ms" in first["message"]
    (pid,) = pids(pidfile)
    assert pid != os.getpid() and gone(pid)  # killed and reaped: no CPU burned after
    harness.clock.advance(timedelta(minutes=1))  # the retry policy's backoff
    harness.work()
    assert [e["type"] for e in attempts_failed(harness, run.id)] == ["StepTimeout"] * 2
    assert harness.step_status(run.id) == {"spin": "fallout"}
    first_pid, second_pid = pids(pidfile)
    assert second_pid != first_pid and gone(second_pid)  # a new process, gone as well
    assert harness.worker._pool is None  # the worker's pool closed with its run()


def test_the_worker_keeps_working_after_a_kill(harness: Any, tmp_path: Path) -> None:
    harness.deploy_text(CASE + textwrap.dedent("""
        kind: orchestration
        name: t_iso_spin
        trigger: {type: record, object: Case, on: [create], when: '=record.subject == "busy"'}
        stages:
          - name: s
            steps:
              - {name: spin, type: background, flow: t_iso.spin, timeout: 1s, retry: {max: 0}}
        ---
        kind: orchestration
        name: t_iso_ok
        trigger: {type: record, object: Case, on: [create], when: '=record.subject != "busy"'}
        stages:
          - name: s
            steps:
              - {name: first, type: background, flow: t_iso.first, timeout: 30s}
              - {name: classify, type: background, flow: t_iso.classify, after: [first]}
        """))
    spin_run = start(harness, "busy", tmp_path / "spin.pids")
    ok_run = start(harness, "an invoice")
    harness.work()
    assert harness.step_status(spin_run.id) == {"spin": "fallout"}
    (pid,) = pids(tmp_path / "spin.pids")
    assert gone(pid)
    run = harness.engine.get_run(ok_run.id)
    assert run.status.value == "completed"
    assert run.steps["first"].output["pid"] not in (os.getpid(), pid)  # a flow process
    assert run.steps["classify"].output["pid"] == os.getpid()  # no timeout: this thread
    assert harness.engine.get_record(run.record_id)["category"] == "billing"
    later = start(harness, "a later invoice")  # and after the kill, on the next call
    harness.work()
    assert harness.engine.get_run(later.id).status.value == "completed"


def test_a_flow_past_its_memory_limit_fails_without_growing_the_worker(harness: Any,
                                                                        tmp_path: Path) -> None:
    harness.setenv(BATON_FLOW_MEMORY_MB="200")
    deploy(harness, """
        - {name: hog, type: background, flow: t_iso.hog, timeout: 60s, retry: {max: 0}}
        """)
    before = rss_mib()
    run = start(harness, "greedy", tmp_path / "hog.pids")
    harness.work()
    (error,) = attempts_failed(harness, run.id)
    assert "memory limit of 200 MiB" in error["message"] and error["retryable"] is True
    assert harness.step_status(run.id) == {"hog": "fallout"}
    assert rss_mib() - before < 150  # the 3 GiB were asked of the flow process only
    (pid,) = pids(tmp_path / "hog.pids")
    assert gone(pid)


def test_a_flow_process_that_dies_fails_the_attempt_naming_flow_and_signal(harness: Any) -> None:
    harness.setenv(BATON_ISOLATION="process")
    deploy(harness, """
        - {name: crash, type: background, flow: t_iso.crash, retry: {max: 0}}
        """)
    run = start(harness, "crash")
    harness.work()
    (error,) = attempts_failed(harness, run.id)
    assert error["type"] == "FlowProcessDied" and error["retryable"] is True
    assert "t_iso.crash" in error["message"] and "SIGKILL" in error["message"]


def _committed(harness: Any, subject: str) -> tuple[dict[str, Any], dict[str, Any], list[int]]:
    rec = harness.engine.create_record("Case", {"subject": subject}, actor="ann")
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    harness.work()
    run = harness.engine.get_run(run.id)
    assert run.status.value == "completed"
    data = harness.engine.get_record(rec["id"])
    outputs = {n: dict(sr.output) for n, sr in run.steps.items()}
    pids = [out.pop("pid") for out in outputs.values()]
    return {"record": {k: data[k] for k in ("status", "category")}, "vars": run.vars,
            "outputs": outputs}, data, pids


def test_process_isolation_commits_what_the_thread_does(harness: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    deploy(harness, """
        - {name: first, type: background, flow: t_iso.first}
        - {name: classify, type: background, flow: t_iso.classify, after: [first]}
        """)
    in_thread, _, thread_pids = _committed(harness, "an invoice")
    assert set(thread_pids) == {os.getpid()}
    harness.setenv(BATON_ISOLATION="process")
    caplog.set_level(logging.INFO, logger="baton.flow")
    in_process, _, process_pids = _committed(harness, "an invoice")
    assert os.getpid() not in process_pids
    assert in_process == in_thread
    assert in_process["record"] == {"status": "Triaged", "category": "billing"}
    assert in_process["vars"] == {"level": 2, "seen": [7, "none"]}
    # the flow's log record reached the worker's logging, with its run and step
    (rec,) = [r for r in caplog.records if r.getMessage() == "classifying an invoice"]
    assert rec.name == "baton.flow.classify" and rec.step == "classify"  # type: ignore[attr-defined]
    assert rec.process in process_pids


CHILD_OF_DEAD_PARENT = """
import os, sys, threading
from baton import flow
from baton.flows import FlowContext
from baton.runtime.flowpool import FlowPool
from baton.runtime.flowpool import FlowPool

@flow("t_iso.orphan")
def spin(ctx):
    with open(sys.argv[1], "a") as f:
        f.write(f"{os.getpid()}\\n")
    while True:
        pass

ctx = FlowContext(run_id="r", step="s", iteration=0, record=None, vars={}, input={},
                  steps={}, logger=None)
FlowPool(1).call("t_iso.orphan", ctx, None)
"""


def test_flow_processes_do_not_outlive_their_worker(tmp_path: Path) -> None:
    script, pidfile = tmp_path / "parent.py", tmp_path / "orphan.pids"
    script.write_text(CHILD_OF_DEAD_PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(pidfile)])
    try:
        deadline = time.monotonic() + 30
        while not pids(pidfile) and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.05)
        (child,) = pids(pidfile)
        assert not gone(child)
        parent.kill()  # SIGKILL: the pool gets no chance to clean up
        parent.wait()
        deadline = time.monotonic() + 30
        while not gone(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(child)
    finally:
        parent.kill()
        for pid in pids(pidfile):
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def _isolated_call_in_a_daemon(answers: Any) -> None:
    pool = FlowPool(1)
    try:
        ctx = FlowContext(run_id="r", step="s", iteration=0, record=None, vars={}, input={},
                          steps={}, logger=logging.getLogger("t_iso"))
        answers.put(pool.call("t_iso.first", ctx, 30_000))
    except Exception as exc:  # noqa: BLE001 - handed to the test
        answers.put(repr(exc))
    finally:
        pool.close()


def test_a_daemonic_process_can_run_flows_in_flow_processes() -> None:
    """The benchmark's workers (and anyone's multiprocessing workers) are daemonic, and
    multiprocessing will not start children from those: flow processes are plain forks."""
    mp = multiprocessing.get_context("fork")
    answers = mp.Queue()
    proc = mp.Process(target=_isolated_call_in_a_daemon, args=(answers,), daemon=True)
    proc.start()
    try:
        answer = answers.get(timeout=60)
    finally:
        proc.join(60)
    assert isinstance(answer, dict), answer
    assert answer["n"] == 7 and answer["pid"] not in (os.getpid(), proc.pid)
