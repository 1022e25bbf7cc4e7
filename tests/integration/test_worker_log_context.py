"""A job's ids are bound for its log lines when logs are JSON (they carry them), and not
at all with text logs (which do not show them: the worker skips the binding, ~7 µs a job)."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.contextvars import get_contextvars

from baton import flow, logs
from baton.flows import FlowContext

SEEN: list[dict[str, Any]] = []


@flow("t_logctx.look")
def _look(ctx: FlowContext) -> dict[str, Any]:
    SEEN.append(dict(get_contextvars()))
    return {}


DEFS = """
kind: orchestration
name: t_logctx
trigger: {type: autolaunched}
stages:
  - name: s
    steps:
      - {name: look, type: background, flow: t_logctx.look}
"""


@pytest.mark.parametrize("json_logs", [True, False], ids=["json", "text"])
def test_a_jobs_ids_are_bound_only_for_json_logs(harness: Any, json_logs: bool,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "_context", json_logs)  # what configure("json"/"text") sets
    assert logs.binds_context() is json_logs
    harness.deploy_text(DEFS)
    SEEN.clear()
    run = harness.engine.start("t_logctx", {}, actor="test")
    harness.work()
    assert harness.step_status(run.id) == {"look": "completed"}
    (seen,) = SEEN
    if json_logs:
        assert seen["run_id"] == run.id and seen["step"] == "look" and seen["job_kind"] == "step"
    else:
        assert "run_id" not in seen
    assert get_contextvars() == {}  # unbound after the job
