"""A step waiting for a worker that has its flow says so in the run's view.

A worker that claims a background step whose flow it does not have hands the job back
(tests/integration/test_flow_changes.py); the step stays ``running``. The API's run (and
``baton runs show``) tells an operator why: the flow, how many tries of how many, when the
next is, and what the worker said. Real workers (``Worker.run``) on a real database (SQLite
and PostgreSQL), virtual time; the API through the whole ASGI app.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from baton import flows
from baton.clock import iso
from baton.engine.state import Run, StepRun
from baton.engine.status import StepStatus
from baton.flows import FlowContext, registered_flows
from baton.runtime.waiting import HANDED_BACK, waiting_text, waits_from_events
from baton.runtime.worker import FLOW_MISSING_CLAIMS
from baton.steps import background
from tests.api.conftest import Api

LATE = """
kind: orchestration
name: late_flow
trigger: {type: autolaunched}
stages:
  - name: only
    steps:
      - {name: first, type: background, flow: api_tests.ok}
      - {name: lost, type: background, flow: wf_followups.late, after: [first]}
"""


@pytest.fixture
def no_project_flows() -> Iterator[None]:
    """No project told this process its flow modules; the late flow is not registered."""
    saved, background.FLOW_FILES = background.FLOW_FILES, None
    try:
        yield
    finally:
        background.FLOW_FILES = saved
        flows._REGISTRY.pop("wf_followups.late", None)


def _steps(api: Api, run_id: str) -> dict[str, dict[str, Any]]:
    r = api.get("opal", f"/api/runs/{run_id}")
    assert r.status_code == 200, r.text
    return {s["name"]: s for s in r.json()["steps"]}


def test_the_run_view_says_a_step_waits_for_a_worker_with_its_flow(
        api: Api, no_project_flows: None) -> None:
    # Deployed by a process that has the flow (known_flows): the workers here have not.
    api.engine.deploy(texts={"late.yaml": LATE},
                      known_flows={"wf_followups.late"} | registered_flows())
    r = api.post("opal", "/api/runs", {"orchestration": "late_flow"})
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    assert all(s["waiting"] is None for s in r.json()["steps"])

    first_at = api.clock.now()
    api.work()  # first runs; lost is claimed, and handed back
    steps = _steps(api, run_id)
    assert steps["first"]["status"] == "completed" and steps["first"]["waiting"] is None
    lost = steps["lost"]
    assert lost["status"] == "running" and lost["attempts"] == 1
    wait = lost["waiting"]
    assert wait["reason"] == "flow_not_in_worker"
    assert wait["flow"] == "wf_followups.late"
    assert (wait["tries"], wait["max_tries"]) == (1, FLOW_MISSING_CLAIMS)
    assert wait["next_try_at"] == iso(first_at + timedelta(seconds=5))
    assert wait["worker"] == api.worker.id
    assert "is not registered in this worker" in wait["message"]
    since = wait["since"]

    api.clock.advance(timedelta(seconds=6))  # due again: claimed, still not here
    second_at = api.clock.now()
    assert api.work() == 1
    wait = _steps(api, run_id)["lost"]["waiting"]
    assert wait["tries"] == 2 and wait["since"] == since  # the same wait, one try more
    assert wait["last_try_at"] == iso(second_at)
    assert wait["next_try_at"] == iso(second_at + timedelta(seconds=10))
    # Each hand-back is on the run's timeline.
    r = api.get("opal", f"/api/runs/{run_id}/events?limit=200")
    kinds = [e["type"] for e in r.json()["items"]]
    assert kinds.count(HANDED_BACK) == 2

    # A worker that has the flow (here: registered now) runs it; nothing waits any more.
    @flows.flow("wf_followups.late")
    def late(ctx: FlowContext) -> dict[str, Any]:
        return {"late": True}

    api.clock.advance(timedelta(seconds=11))
    assert api.work() == 1
    lost = _steps(api, run_id)["lost"]
    assert lost["status"] == "completed" and lost["output"] == {"late": True}
    assert lost["waiting"] is None
    assert lost["attempts"] == 1  # the hand-backs used none of its attempts


def test_a_step_that_runs_out_of_tries_fails_and_no_longer_waits(
        api: Api, no_project_flows: None) -> None:
    api.engine.deploy(texts={"late.yaml": LATE},
                      known_flows={"wf_followups.late"} | registered_flows())
    run_id = api.post("opal", "/api/runs", {"orchestration": "late_flow"}).json()["id"]
    for _ in range(FLOW_MISSING_CLAIMS):
        api.work()
        api.clock.advance(timedelta(minutes=6))  # past the longest wait
    lost = _steps(api, run_id)["lost"]
    assert lost["status"] == "fallout", lost
    assert lost["waiting"] is None
    # (its last try's wait, read from the same events, is gone with the running step)
    run = api.engine.get_run(run_id)
    assert waits_from_events(run, api.engine.run_events(run_id)) == {}


def test_a_wait_belongs_to_its_attempt_and_reads_as_one_line() -> None:
    run = Run("run_1", "o", 1, None, steps={
        "lost": StepRun("lost", "only", 1, StepStatus.RUNNING, attempts=2)})

    def back(at: str, attempt: int, claim: int) -> dict[str, Any]:
        return {"type": HANDED_BACK, "at": at, "data": {
            "step": "lost", "iteration": 1, "attempt": attempt, "flow": "x.y",
            "claim": claim, "claims": 9, "worker": "wrk_1",
            "error": {"type": "FlowNotHere", "message": "flow 'x.y' is not registered"},
            "next_retry_at": f"{at}+"}}

    events = [back("t1", 1, 1), back("t2", 1, 2), {"type": "step_failed", "data": {}},
              back("t3", 2, 1), back("t4", 2, 2)]
    wait = waits_from_events(run, events)["lost"]
    # attempt 2's hand-backs (attempt 1's were before its retry): since its first
    assert (wait["tries"], wait["since"], wait["last_try_at"]) == (2, "t3", "t4")
    assert waiting_text(wait) == ("waiting for a worker that has flow 'x.y' (2 tries of 9, "
                                  "next at t4+): flow 'x.y' is not registered")
    assert waits_from_events(run, events[:2]) == {}  # an earlier attempt's: not this one's
