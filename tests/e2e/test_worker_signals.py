"""Ctrl-C on ``baton worker`` (and ``baton serve``) keeps the promise ``--help`` makes: each
worker finishes the job in hand, commits it, and releases the rest; the command says so on
stderr, counts only what it committed and exits 130 (SIGTERM: 0). A second Ctrl-C stops at
once, saying so; the job it abandoned runs again once the heartbeat times out, exactly once.

Real processes on a real project: the signal is sent to a ``baton worker`` whose SIGINT is at
its default disposition, as a terminal's Ctrl-C finds it (a shell's background job starts
with it ignored). The flow in hand waits for the test (a file) rather than a fixed time, so
nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli import baton, ok
from tests.net import free_port
from tests.procs import baton_command, baton_env, eventually

NAP_YAML = """\
kind: orchestration
name: nap
trigger: {type: autolaunched}
stages:
  - name: only
    steps:
      - {name: nap, type: background, flow: sig.nap}
"""

FLOWS = """\
import time
from pathlib import Path

from baton import flow

HERE = Path(__file__).parent


@flow("sig.nap")
def nap(ctx):
    with (HERE / "ran.txt").open("a") as f:
        f.write(ctx.run_id + "\\n")
    deadline = time.monotonic() + 120
    while not (HERE / "go").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the job in hand: until the test lets it finish
    return {"slept": True}
"""

# Start the command with SIGINT at its default disposition (as a terminal starts it), then
# become it: the disposition stays through exec.
_DEFAULT_SIGINT = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                   "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])")


def _project(tmp_path: Path) -> tuple[Path, str]:
    proj = tmp_path / "proj"
    (proj / "definitions").mkdir(parents=True)
    (proj / "baton.toml").write_text('flows = ["flows"]\n')
    (proj / "flows.py").write_text(FLOWS)
    (proj / "definitions" / "nap.yaml").write_text(NAP_YAML)
    db = f"sqlite:///{tmp_path / 'baton.db'}"
    ok(baton("--db", db, "deploy", cwd=proj))
    return proj, db


def _start(proj: Path, db: str, *args: str) -> subprocess.Popen[str]:
    command = baton_command(proj, db, *args)
    return subprocess.Popen([sys.executable, "-c", _DEFAULT_SIGINT, *command[1:]], cwd=proj,
                            env=baton_env(COLUMNS="400"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _runs(db: str) -> list[tuple[str, str]]:
    con = sqlite3.connect(db.removeprefix("sqlite:///"))
    try:
        return con.execute("SELECT id, status FROM baton_runs ORDER BY id").fetchall()
    finally:
        con.close()


def _left_behind(db: str) -> tuple[int, int]:
    """(workers registered, jobs in the queue)."""
    con = sqlite3.connect(db.removeprefix("sqlite:///"))
    try:
        return (con.execute("SELECT count(*) FROM baton_workers").fetchone()[0],
                con.execute("SELECT count(*) FROM baton_jobs").fetchone()[0])
    finally:
        con.close()


def _ran(proj: Path) -> list[str]:
    ran = proj / "ran.txt"
    return ran.read_text().split() if ran.exists() else []


def _in_hand(proc: subprocess.Popen[str], proj: Path, n: int = 1) -> None:
    def started() -> bool:
        assert proc.poll() is None, proc.communicate()
        return len(_ran(proj)) >= n
    eventually(started, timeout=90, what="the worker to be in the flow")


def _read_until(proc: subprocess.Popen[str], needle: str) -> str:
    """stderr of ``proc`` up to the line holding ``needle`` (it blocks: the deadline is the
    test's; a process that exits first fails the test with what it said)."""
    seen = ""
    assert proc.stderr is not None
    for line in proc.stderr:
        seen += line
        if needle in line:
            return seen
    raise AssertionError(f"{needle!r} never said; exit {proc.wait()}:\n{seen}")


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_ctrl_c_finishes_the_job_in_hand_commits_it_and_exits_130(
        tmp_path: Path, concurrency: str) -> None:
    proj, db = _project(tmp_path)
    ok(baton("--db", db, "start", "nap", cwd=proj))
    ok(baton("--db", db, "start", "nap", cwd=proj))  # (a second job: released, not run)
    proc = _start(proj, db, "worker", "--concurrency", concurrency, "--batch", "1")
    try:
        _in_hand(proc, proj, 1 if concurrency == "1" else 2)
        proc.send_signal(signal.SIGINT)
        told = _read_until(proc, "stopping after the job in hand")
        assert "Ctrl-C again to stop at once" in told
        (proj / "go").touch()
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, out, told + err)
    assert "Traceback" not in told + err, told + err
    in_hand = len(_ran(proj))
    # The summary counts what was committed: the flows in hand, each completed.
    assert f"{in_hand} steps completed, 0 failed" in out, out
    statuses = [status for _, status in _runs(db)]
    assert statuses.count("completed") == in_hand, statuses
    assert _left_behind(db) == (0, 2 - in_hand)  # unregistered; the rest released
    # Nothing in hand was abandoned to run again: a worker runs what is left, once.
    ok(baton("--db", db, "worker", "--until-idle", cwd=proj))
    assert [s for _, s in _runs(db)] == ["completed", "completed"]
    assert sorted(_ran(proj)) == sorted(run_id for run_id, _ in _runs(db))  # each once


def test_sigterm_finishes_the_job_in_hand_and_exits_0(tmp_path: Path) -> None:
    proj, db = _project(tmp_path)
    ok(baton("--db", db, "start", "nap", cwd=proj))
    proc = _start(proj, db, "worker")
    try:
        _in_hand(proc, proj)
        proc.send_signal(signal.SIGTERM)
        told = _read_until(proc, "stopping after the job in hand")
        assert "Ctrl-C" not in told
        (proj / "go").touch()
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (out, err)
    assert "1 jobs, 1 steps completed, 0 failed" in out, out
    assert [s for _, s in _runs(db)] == ["completed"]
    assert _left_behind(db) == (0, 0)


def test_a_second_ctrl_c_stops_at_once_and_the_job_runs_again_once(tmp_path: Path) -> None:
    proj, db = _project(tmp_path)
    ok(baton("--db", db, "start", "nap", cwd=proj))
    proc = _start(proj, db, "worker", "--heartbeat-timeout", "1")
    try:
        _in_hand(proc, proj)
        proc.send_signal(signal.SIGINT)
        _read_until(proc, "stopping after the job in hand")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert "stopped at once: the jobs in hand run again after the heartbeat timeout" in err
    assert "steps completed" not in out  # no summary: nothing it could vouch for
    assert [s for _, s in _runs(db)] == ["in_progress"]  # the flow never returned
    (proj / "go").touch()

    # Once its heartbeat is older than the timeout, another worker takes the job over.
    def finished() -> bool:
        ok(baton("--db", db, "worker", "--until-idle", "--heartbeat-timeout", "1", cwd=proj))
        return [s for _, s in _runs(db)] == ["completed"]
    eventually(finished, timeout=90, what="the abandoned job to run again")
    assert len(_ran(proj)) == 2  # the abandoned attempt, and the one that committed


def test_ctrl_c_on_serve_finishes_the_job_in_hand(tmp_path: Path) -> None:
    proj, db = _project(tmp_path)
    ok(baton("--db", db, "start", "nap", cwd=proj))
    proc = _start(proj, db, "serve", "--port", str(free_port()))
    try:
        _in_hand(proc, proj)
        _read_until(proc, "Uvicorn running on")  # (its own handlers in place)
        proc.send_signal(signal.SIGINT)
        told = _read_until(proc, "the workers finish the job in hand")
        (proj / "go").touch()
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (out, told + err)  # (serve: a stop asked for, as SIGTERM)
    assert "Traceback" not in told + err
    assert [s for _, s in _runs(db)] == ["completed"]
    assert _left_behind(db) == (0, 0)
    assert len(_ran(proj)) == 1
