"""The worker's own flows (SLA escalation flows, evaluation flows of conditions) see the run
as background steps' flows do: ``ctx.steps`` read when the flow reads it (issue 13 item 9:
no snapshot of every step per call), with the same values as the snapshot they had, and a
context a flow keeps still shows the steps as they were during its call."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from baton import flow
from baton.flows import FlowContext
from baton.steps import flowrun

SEEN: dict[str, list[dict[str, Any]]] = {"escalate": [], "when": []}
KEPT: dict[str, FlowContext] = {}


def _look(ctx: FlowContext) -> dict[str, Any]:
    return {"step": ctx.step, "iteration": ctx.iteration, "subject": ctx.record["subject"],
            "input": dict(ctx.input),
            "prep": (ctx.steps["prep"].status, dict(ctx.steps["prep"].output)),
            "triage": ctx.steps["triage"].status, "gated": ctx.steps["gated"].status,
            "names": sorted(ctx.steps),
            "has_nope": "nope" in ctx.steps}


@flow("t_wfv.prep")
def _prep(ctx: FlowContext) -> dict[str, Any]:
    return {"score": 7, "nested": {"a": [1, 2]}}


@flow("t_wfv.escalate")
def _escalate(ctx: FlowContext) -> dict[str, Any]:
    SEEN["escalate"].append(_look(ctx))
    if ctx.record["subject"] == "keep":
        KEPT.setdefault("escalate", ctx)
    return {"escalated": ctx.step}


@flow("t_wfv.when")
def _when(ctx: FlowContext) -> bool:
    SEEN["when"].append(_look(ctx))
    if ctx.record["subject"] == "keep":
        KEPT.setdefault("when", ctx)
    return bool(ctx.input.get("go"))


CASE = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
---
kind: orchestration
name: t_wfv
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - {name: prep, type: background, flow: t_wfv.prep}
      - name: triage
        type: interactive
        after: [prep]
        assign: {queue: tier1}
        sla:
          duration: 4h
          jeopardy: 1h
          on_jeopardy: {flow: t_wfv.escalate}
      - name: gated
        type: background
        flow: t_wfv.prep
        after: [prep]
        when: {flow: t_wfv.when, input: {go: '=steps.prep.output.score > 5'}}
"""


@pytest.fixture(autouse=True)
def _clear() -> None:
    for v in SEEN.values():
        v.clear()
    KEPT.clear()


@pytest.mark.parametrize("keep", [False, True])
def test_escalation_and_evaluation_flows_see_the_run_as_it_is(harness: Any, monkeypatch: Any,
                                                              keep: bool) -> None:
    snapshots: list[int] = []
    real = flowrun.StepSnapshot._taken

    def counting(self: Any, steps: Any) -> Any:
        snapshots.append(len(steps))
        return real(self, steps)

    monkeypatch.setattr(flowrun.StepSnapshot, "_taken", counting)
    harness.deploy_text(CASE)
    eng = harness.engine
    subject = "keep" if keep else "drop"
    rec = eng.create_record("Case", {"subject": subject})
    (run,) = eng.list_runs(record_id=rec["id"])
    harness.work()
    assert SEEN["when"]  # (asked again as the run moves: each time the same answer)
    for when in SEEN["when"]:
        assert when == {"step": "t_wfv.when", "iteration": 0, "subject": subject,
                        "input": {"go": True},
                        "prep": ("completed", {"score": 7, "nested": {"a": [1, 2]}}),
                        "triage": when["triage"], "gated": when["gated"], "names": ["gated", "prep", "triage"],
                        "has_nope": False}
        assert when["triage"] in ("not_started", "waiting_for_person")
    assert eng.get_run(run.id).steps["gated"].status.value == "completed"
    harness.clock.advance(timedelta(hours=3))
    harness.work()
    (esc,) = SEEN["escalate"]
    assert esc == {"step": "triage", "iteration": 1, "subject": subject, "input": {},
                   "prep": ("completed", {"score": 7, "nested": {"a": [1, 2]}}),
                   "triage": "waiting_for_person", "gated": "completed", "names": ["gated", "prep", "triage"],
                   "has_nope": False}
    # No snapshot of every step per call: only a context the flow kept takes one, when
    # its call returns (flow_context took one per call, kept or not).
    assert snapshots == ([3, 3] if keep else []) and len(KEPT) == (2 if keep else 0)
    (item,) = eng.list_work(run_id=run.id)
    eng.complete(item["id"], "ann", {})
    harness.work()
    assert eng.get_run(run.id).steps["triage"].status.value == "completed"
    if keep:  # the contexts kept show the steps as they were during their calls
        assert KEPT["escalate"].steps["triage"].status == "waiting_for_person"
        first = SEEN["when"][0]
        assert first["gated"] != "completed"
        assert KEPT["when"].steps["gated"].status == first["gated"]
        assert KEPT["when"].steps["triage"].status == first["triage"]
        assert KEPT["when"].steps["prep"].output == {"score": 7, "nested": {"a": [1, 2]}}
