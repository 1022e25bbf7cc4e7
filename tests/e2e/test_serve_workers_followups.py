"""``baton serve``, a real process: Ctrl-C twice stops it at once, whenever the second comes
(uvicorn took it during its own shutdown, and it then took a third); and a step whose flow
its workers do not have says so in the run the API answers.

The flow in hand waits for the test (a file) rather than a fixed time (see
tests/e2e/test_worker_signals.py, whose project and helpers these tests share).
"""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from baton.flows import registered_flows
from baton.runtime.engine import Engine
from baton.runtime.worker import FLOW_MISSING_CLAIMS
from tests.e2e.test_cli import baton, ok
from tests.e2e.test_worker_signals import (
    _in_hand,
    _left_behind,
    _project,
    _ran,
    _read_until,
    _runs,
    _start,
)
from tests.net import free_port
from tests.procs import eventually


@pytest.mark.parametrize("when", ["uvicorn_shutting_down", "workers_finishing"])
def test_a_second_ctrl_c_on_serve_stops_at_once(tmp_path: Path, when: str) -> None:
    proj, db = _project(tmp_path)
    ok(baton("--db", db, "start", "nap", cwd=proj))
    proc = _start(proj, db, "serve", "--port", str(free_port()))
    try:
        _in_hand(proc, proj)
        _read_until(proc, "Uvicorn running on")  # (its own handlers in place)
        proc.send_signal(signal.SIGINT)
        # uvicorn's shutdown (its handlers take the second), or serve's wait for the job
        _read_until(proc, "Shutting down" if when == "uvicorn_shutting_down"
                    else "the workers finish the job in hand")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)  # (the flow in hand waits up to 120 s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "stopped at once: the jobs in hand run again after the heartbeat timeout" in err, err
    assert [s for _, s in _runs(db)] == ["in_progress"]  # the flow never returned
    (proj / "go").touch()
    # Its worker is gone (its process, on this host): a worker takes the job over at once.
    ok(baton("--db", db, "worker", "--until-idle", cwd=proj))
    assert [s for _, s in _runs(db)] == ["completed"]
    assert _left_behind(db) == (0, 0)
    assert len(_ran(proj)) == 2  # the abandoned attempt, and the one that committed


LATE_YAML = """\
kind: orchestration
name: late
trigger: {type: autolaunched}
stages:
  - name: only
    steps:
      - {name: lost, type: background, flow: sig.late}
"""


def _get(url: str, token: str) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_the_api_of_serve_says_a_step_waits_for_a_worker_with_its_flow(tmp_path: Path) -> None:
    proj, db = _project(tmp_path)
    engine = Engine(db, migrate=False)
    try:
        # Deployed by a process that had the flow (known_flows): serve's workers have not.
        engine.deploy(texts={"late.yaml": LATE_YAML},
                      known_flows={"sig.late"} | registered_flows())
        engine.directory.add_user("opal", roles=["operator"], email="opal@example.com")
        token = engine.directory.create_token("opal", "tests")[1]
        run_id = engine.start("late", {}).id
    finally:
        engine.close()
    port = free_port()
    proc = _start(proj, db, "serve", "--port", str(port))
    said = ""
    try:
        said = _read_until(proc, "Uvicorn running on")
        url = f"http://127.0.0.1:{port}/api/runs/{run_id}"

        def waiting() -> Any:
            assert proc.poll() is None, proc.communicate()
            return _get(url, token)["steps"][0]["waiting"]
        wait = eventually(waiting, timeout=90, what="serve's worker to hand the job back")
        step = _get(url, token)["steps"][0]
        assert step["status"] == "running" and step["name"] == "lost"
        assert wait["flow"] == "sig.late" and wait["reason"] == "flow_not_in_worker"
        assert wait["tries"] == 1 and wait["max_tries"] == FLOW_MISSING_CLAIMS
        assert wait["next_try_at"] > wait["last_try_at"]
        # what the worker said, as its log says it
        assert "flow 'sig.late' is not registered in this worker" in wait["message"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (out, said + err)
    assert "handed back, tried again in 5 s (claim 1 of" in said + err
    assert "Traceback" not in said + err, said + err
