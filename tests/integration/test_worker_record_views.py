"""A batch shares a record's view among the results that see the same row of it
(``Worker._record_view`` with the batch's cache), never across a row a result replaced: what
``decide()`` evaluates after a flow updated the record is the updated record, whichever of the
batch's results comes first, planned or under the lock."""

from __future__ import annotations

from typing import Any

import pytest

from baton import flow
from baton.flows import FlowContext
from baton.runtime.worker import Worker


@flow("t_views.mark")
def _mark(ctx: FlowContext) -> dict[str, Any]:
    ctx.update_record({"status": "Triaged"})
    return {}


@flow("t_views.look")
def _look(ctx: FlowContext) -> dict[str, Any]:
    return {"saw": ctx.record["status"]}


DEFS = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
  status:  {type: choice, choices: [New, Triaged], default: New}
---
kind: orchestration
name: t_views
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - {name: first, type: background, flow: FIRST}
      - {name: second, type: background, flow: SECOND}
      - {name: review, type: interactive, after: [first, second],
         assign: {queue: '=record.status'}}
"""


@pytest.mark.parametrize("planned", [True, False], ids=["planned", "under-the-lock"])
@pytest.mark.parametrize("order", [("t_views.mark", "t_views.look"),
                                   ("t_views.look", "t_views.mark")], ids=["mark-first",
                                                                           "mark-last"])
def test_decide_sees_the_record_a_flow_of_the_batch_updated(harness: Any, planned: bool,
                                                            order: tuple[str, str]) -> None:
    harness.deploy_text(DEFS.replace("FIRST", order[0]).replace("SECOND", order[1]))
    eng = harness.engine
    worker = Worker(eng, batch=64)
    worker.plan_commits = planned
    for i in range(5):
        eng.create_record("Case", {"subject": f"case {i}"})
    worker.run(until_idle=True)  # one batch: both steps of each run, then review starts
    assert worker.stats.steps_completed == 10
    assert (worker.stats.planned_commits > 0) is planned
    assert len(eng.list_work(queue="Triaged", limit=100)) == 5
    assert eng.list_work(queue="New", limit=100) == []
