"""Calling a flow from a run's snapshot: the context it is given, and the step timeout.

Used by background steps and by the worker's own flow jobs (evaluation flows, SLA
escalations). Outside any transaction; nothing here reads or writes the database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from baton.engine.state import Run, copy_json
from baton.errors import StepFailure
from baton.flows import FlowContext, FlowFn, StepView


def flow_context(run: Run, step: str, iteration: int,
                 record: Mapping[str, Any] | None) -> FlowContext:
    """What a flow receives for ``step`` of ``run``.

    Copies: the run and record a worker read for its batch are committed from, so whatever
    a flow does to what it was given must not reach them.
    """
    steps = {n: StepView(n, sr.status.value, copy_json(sr.output) or {})
             for n, sr in run.steps.items()}
    logger = logging.LoggerAdapter(logging.getLogger(f"baton.flow.{step}"),
                                   {"run_id": run.id, "step": step})
    return FlowContext(run_id=run.id, step=step, iteration=iteration, record=copy_json(record),
                       vars=copy_json(run.vars), input=copy_json(run.input), steps=steps,
                       logger=logger)


class StepTimeout(StepFailure):
    """An attempt overran its step's ``timeout`` (retryable)."""


def call_with_timeout(fn: FlowFn, ctx: FlowContext, timeout_ms: int | None) -> Any:
    """Call the flow; with a timeout, in a helper thread that is abandoned when it overruns.

    The worker stops waiting after ``timeout_ms`` (real time: it bounds how long a worker
    slot is held) and the attempt fails; whatever the abandoned thread does later is
    ignored (its record updates are never read). Python cannot kill a thread, so a flow
    that never returns keeps that helper thread, but no longer the worker.
    """
    if not timeout_ms:
        return fn(ctx)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn(ctx)
        except BaseException as exc:  # noqa: BLE001 - handed to the worker thread below
            box["error"] = exc

    helper = threading.Thread(target=target, daemon=True, name="baton-flow")
    helper.start()
    helper.join(timeout_ms / 1000)
    if helper.is_alive():
        raise StepTimeout(f"attempt overran its timeout of {timeout_ms} ms", retryable=True)
    if "error" in box:
        raise box["error"]
    return box.get("value")
