"""A worker's batch is freed when it is done, by reference counting, not left to the garbage
collector: a reference cycle through what a commit keeps (the transaction or plan, the
builders of the rows it writes, the runs) would keep every batch's runs, rows and plan alive
until the next collection, and a long-running worker would pay for walking them (collections
are counted in objects that survive: ~200,000 per 2,000 triage runs, 0.1 s of collector CPU
and ~50 MiB of peak memory before the cycle through a run's lazy row builder was broken)."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from baton import flow
from baton.engine.state import Run, StepRun
from baton.flows import FlowContext
from baton.runtime.worker import Worker


@flow("t_garbage.classify")
def _classify(ctx: FlowContext) -> dict[str, Any]:
    ctx.update_record({"status": "Triaged"})
    ctx.vars["level"] = 2
    return {"ok": True}


@flow("t_garbage.tag")
def _tag(ctx: FlowContext) -> dict[str, Any]:
    return {"tag": ctx.record["subject"].split()[0]}


DEFS = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
  status:  {type: choice, choices: [New, Triaged, Closed], default: New}
---
kind: orchestration
name: t_garbage
trigger: {type: record, object: Case, on: [create]}
variables: {level: 1}
stages:
  - name: s
    steps:
      - {name: classify, type: background, flow: t_garbage.classify}
      - {name: tag, type: background, flow: t_garbage.tag, after: [classify]}
      - {name: review, type: interactive, after: [tag],
         assign: {queue: '="tier" + string(vars.level)'}, sla: {duration: 4h}}
      - {name: close, type: background, flow: t_garbage.tag, after: [review]}
"""


# What a batch, a decision or a commit makes, and must free when it is done with it.
PER_BATCH = frozenset({
    "Run", "StepRun", "StageRun",  # baton.engine.state
    "Decision", "_Decider", "_Writes", "_Result", "_BatchCache",  # decide, apply, worker
    "SqlTx", "PlanTx", "_Rows",  # baton.store.sql
})


@pytest.fixture
def saved_garbage() -> Iterator[Callable[[], Counter[str]]]:
    """Every object a collection finds unreachable from now on is kept in ``gc.garbage``
    (DEBUG_SAVEALL) instead of freed, and no collection runs until asked: the returned
    function collects and counts them by type (the types a batch or a decision makes:
    what a test before this one left unreachable, an engine, is no concern here)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.garbage.clear()

    def count() -> Counter[str]:
        gc.collect()
        found = Counter(type(o).__qualname__ for o in gc.garbage
                        if type(o).__qualname__ in PER_BATCH)
        gc.garbage.clear()
        return found

    try:
        yield count
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was_enabled:
            gc.enable()


@pytest.mark.parametrize("planned", [True, False], ids=["planned", "under-the-lock"])
def test_a_worker_batch_leaves_no_cycle_behind(harness: Any, planned: bool,
                                               saved_garbage: Callable[[], Counter[str]]
                                               ) -> None:
    harness.deploy_text(DEFS)
    eng = harness.engine
    worker = Worker(eng, batch=64)
    worker.plan_commits = planned
    for i in range(3):  # first-time costs (statements compiled, definitions parsed) out of view
        eng.create_record("Case", {"subject": f"warm {i}"})
    worker.run(until_idle=True)
    saved_garbage()

    for i in range(20):
        eng.create_record("Case", {"subject": f"invoice {i}"})
    worker.run(until_idle=True)
    left = saved_garbage()

    assert worker.stats.steps_completed >= 3 + 20 * 2
    assert (worker.stats.planned_commits > 0) is planned
    assert not left, f"objects freed only by the garbage collector: {dict(left)}"
    assert not any(isinstance(o, Run | StepRun) for o in gc.garbage)


def test_completing_items_leaves_no_cycle_behind(harness: Any,
                                                 saved_garbage: Callable[[], Counter[str]]
                                                 ) -> None:
    """The same for the API server's side: completing work items decides and applies
    outside the worker (one per transaction, and many per transaction)."""
    harness.deploy_text(DEFS)
    eng = harness.engine
    for i in range(10):
        eng.create_record("Case", {"subject": f"invoice {i}"})
    harness.work()
    items = eng.list_work(queue="tier2", limit=100)
    assert len(items) == 10
    eng.complete(items[0]["id"], "ann", {})  # warm
    saved_garbage()

    for it in items[1:4]:
        eng.complete(it["id"], "ann", {})
    results = eng.complete_many([(it["id"], "ann", {}) for it in items[4:]])
    left = saved_garbage()

    assert not any(isinstance(r, Exception) for r in results)

    assert not left, f"objects freed only by the garbage collector: {dict(left)}"
    assert len(eng.list_work(queue="tier2", limit=100)) == 0
