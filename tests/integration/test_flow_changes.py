"""A flow added or changed while workers run: a worker keeps the code it imported at start
(no hot reloading), so

* a step whose flow it does not have is not failed at once: its job goes back to the queue
  (its attempt not used up), for a worker that has the flow, this one restarted; the log
  says why, naming this worker's PID and start, and what to do (restart the workers);
* a worker that does not get one in time fails the step, retryable, with that hint when the
  project's flow modules name the flow (else: is its module listed under flows?);
* a worker tells, once, in its log, that a flow module's file changed since it imported it.
"""

from __future__ import annotations

import os
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

from baton.flows import registered_flows
from baton.runtime.engine import Engine
from baton.runtime.worker import FLOW_MISSING_CLAIMS
from baton.steps import background
from baton.steps.background import FlowFiles
from tests.e2e.test_cli import baton, ok
from tests.procs import BatonProcess, baton_env, eventually

FIRST = """\
kind: orchestration
name: first
trigger: {type: autolaunched}
stages:
  - name: only
    steps: [{name: one, type: background, flow: fc.first}]
"""

ADDED = """\
kind: orchestration
name: added
trigger: {type: autolaunched}
stages:
  - name: only
    steps: [{name: two, type: background, flow: fc.added}]
"""

FLOWS = """\
from baton import flow


@flow("fc.first")
def first(ctx):
    return {"first": True}
"""

MORE = """

@flow("fc.added")
def added(ctx):
    return {"added": True}
"""


def _touch_later(path: Path) -> None:
    """Make sure ``path``'s mtime moved (a file system may keep whole seconds)."""
    st = path.stat()
    os.utime(path, (st.st_atime, st.st_mtime + 5))


def _steps(engine: Engine, orchestration: str) -> list[Any]:
    """The only step of each run of ``orchestration`` (as committed)."""
    return [next(iter(engine.get_run(r.id).steps.values()))
            for r in engine.list_runs(orchestration=orchestration)]


def test_a_flow_added_while_a_worker_runs_waits_for_a_restart_and_then_runs(
        tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "definitions").mkdir(parents=True)
    (proj / "baton.toml").write_text('flows = ["flows"]\n')
    (proj / "flows.py").write_text(FLOWS)
    (proj / "definitions" / "first.yaml").write_text(FIRST)
    db = f"sqlite:///{tmp_path / 'baton.db'}"
    ok(baton("--db", db, "deploy", cwd=proj))
    engine = Engine(db, migrate=False)
    worker = BatonProcess("worker", proj, db, ["worker", "--heartbeat-timeout", "3"], tmp_path,
                          env=baton_env(COLUMNS="400"))
    worker.start()
    try:
        ok(baton("--db", db, "start", "first", cwd=proj))
        eventually(lambda: [s.status.value for s in _steps(engine, "first")] == ["completed"],
                   timeout=90, what="the worker to run a flow it has")

        # The flow module gains a flow, and a process deployed after uses it.
        with (proj / "flows.py").open("a") as f:
            f.write(MORE)
        _touch_later(proj / "flows.py")
        (proj / "definitions" / "added.yaml").write_text(ADDED)
        ok(baton("--db", db, "deploy", cwd=proj))
        # The worker tells, once, that the file changed (its heartbeat looks every second).
        eventually(lambda: "flow module flows.py changed since this worker" in worker.tail(20000),
                   timeout=60, what="the warning that flows.py changed")
        ok(baton("--db", db, "start", "added", cwd=proj))
        hint = (f"flow 'fc.added' was not there when this worker started (PID {worker.pid}, "
                "started at ")
        eventually(lambda: hint in worker.tail(20000), timeout=60, what="the hint in the log")
        log = worker.tail(20000)
        assert "restart the workers after changing flow modules" in log
        assert "handed back, tried again in 5 s (claim 1 of" in log
        (step,) = _steps(engine, "added")
        assert step.status.value == "running", step  # not failed: waiting for a worker with it

        assert worker.stop(sig=signal.SIGTERM) == 0, worker.tail()
        worker.start()  # the restart: it imports flows.py as it is now
        eventually(lambda: [s.status.value for s in _steps(engine, "added")] == ["completed"],
                   timeout=90, what="the restarted worker to run the added flow")
        (step,) = _steps(engine, "added")
        assert step.output == {"added": True}
        assert step.attempts == 1, step  # the hand-backs used none of its attempts
        assert worker.tail(20000).count("flow module flows.py changed") == 1
    finally:
        worker.stop(sig=signal.SIGTERM)
        engine.close()
    assert "Traceback" not in worker.tail(50000), worker.tail(50000)


MISSING = """
kind: orchestration
name: missing
trigger: {type: autolaunched}
stages:
  - name: only
    steps: [{name: lost, type: background, flow: fc.nowhere}]
"""


def test_a_flow_no_worker_has_fails_its_step_after_the_hand_backs(harness: Any) -> None:
    # Deployed by a process that has the flow (known_flows): this one has not.
    harness.engine.deploy(texts={"missing.yaml": MISSING},
                          known_flows={"fc.nowhere"} | registered_flows())
    run = harness.engine.start("missing", {})
    saved, background.FLOW_FILES = background.FLOW_FILES, None  # (no project in this process)
    try:
        _fail_after_hand_backs(harness, run.id)
    finally:
        background.FLOW_FILES = saved


def _fail_after_hand_backs(harness: Any, run_id: str) -> None:
    run = harness.engine.get_run(run_id)
    claims = 0
    while harness.engine.get_run(run.id).steps["lost"].status.value == "running":
        assert claims < FLOW_MISSING_CLAIMS, "never failed"
        assert harness.work() == 1
        claims += 1
        harness.clock.advance(timedelta(minutes=6))  # past the longest wait
    assert claims == FLOW_MISSING_CLAIMS
    lost = harness.engine.get_run(run.id).steps["lost"]
    assert lost.status.value == "fallout" and lost.attempts == 1
    assert lost.error["retryable"] is True  # (a retry policy would try it again)
    # No project told this process its flow modules: the hint asks whether it is listed.
    assert "is its module listed under flows in baton.toml?" in lost.error["message"]


def test_the_hint_names_a_restart_when_a_listed_module_names_the_flow(tmp_path: Path) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from . import more\n")
    (tmp_path / "pkg" / "more.py").write_text("")
    saved = background.FLOW_FILES
    try:
        files = background.watch_flow_files(tmp_path, ["flows", "pkg"])
        assert set(files.listed) == {(tmp_path / "flows.py").resolve(),
                                     (tmp_path / "pkg" / "__init__.py").resolve(),
                                     (tmp_path / "pkg" / "more.py").resolve()}
        assert "is its module listed" in background.missing_flow_message("fc.elsewhere")
        # named in a listed module (a package's module too): the worker predates it
        (tmp_path / "pkg" / "more.py").write_text(MORE.replace("fc.added", "fc.elsewhere"))
        told = background.missing_flow_message("fc.elsewhere")
        assert f"(PID {os.getpid()}, started at {files.started_at})" in told
        assert "restart the workers after changing flow modules" in told
        # a flow module changed since (the flow in a module it imports): a restart too
        assert "restart the workers" in background.missing_flow_message("fc.unnamed")
    finally:
        background.FLOW_FILES = saved


def test_a_changed_file_is_told_once(tmp_path: Path, caplog: Any) -> None:
    (tmp_path / "flows.py").write_text(FLOWS)
    files = FlowFiles(tmp_path, ["flows", "absent"])
    files.check()
    assert "changed since" not in caplog.text
    _touch_later(tmp_path / "flows.py")
    files.check()
    files.check()
    assert caplog.text.count("flow module flows.py changed since this worker") == 1
