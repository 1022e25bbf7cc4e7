"""Calling a flow from a run's snapshot: the context it is given, and how it is called.

Used by background steps and by the worker's own flow jobs (evaluation flows, SLA
escalations). Outside any transaction; nothing here reads or writes the database.

The worker decides where a flow runs (:class:`FlowRunner`, ``baton.runtime.flowpool``): in
its own thread, or in a flow process it can kill when the step's ``timeout`` passes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from baton.definitions.model import OrchestrationDefinition
from baton.engine.state import Run, copy_json
from baton.errors import StepFailure
from baton.flows import FlowContext, FlowFn, RecordReader, StepView
from baton.records.fields import decimal_forms, typed_values

V = TypeVar("V")


def flow_context(run: Run, step: str, iteration: int, record: Mapping[str, Any] | None,
                 orchestration: OrchestrationDefinition | None = None,
                 step_input: Mapping[str, Any] | None = None,
                 records: RecordReader | None = None) -> FlowContext:
    """What a flow receives for ``step`` of ``run``. With the run's ``orchestration``,
    ``ctx.input`` and the steps' form outputs are typed like ``ctx.record`` (a ``decimal``
    as a Decimal; stored, it is its exact string). ``step_input`` (the step's or the
    condition's ``input``, evaluated) is laid over the run's input in ``ctx.input``;
    ``records`` is how ``ctx.records`` reads other records.

    Copies: the run and record a worker read for its batch are committed from, so whatever
    a flow does to what it was given must not reach them.
    """
    steps = MappingProxyType(StepViews(run, orchestration))
    inputs = orchestration.trigger.input if orchestration is not None else ()
    given = dict(typed_values(inputs, run.input))
    if step_input:
        given.update(step_input)
    return FlowContext(run_id=run.id, step=step, iteration=iteration, record=copy_json(record),
                       vars=copy_json(run.vars), input=copy_json(given), steps=steps,
                       logger=flow_logger(run.id, step), records=records)


class StepSnapshot(Mapping[str, V]):
    """The run's steps as they were when a flow's context or a request's scope was made,
    each step's view made only when it is read: a plan's run has hundreds or thousands of
    steps and a flow or a request reads one or two, so making every view up front cost
    more than the rest of a step (issue 13 item 9). ``_seen`` holds, per step name, what
    the view is made from; subclasses make the view in ``__getitem__``."""

    __slots__ = ("_seen",)
    _seen: dict[str, tuple[Any, ...]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._seen)

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, name: object) -> bool:
        return name in self._seen


class StepViews(StepSnapshot[StepView]):
    """``ctx.steps``: each step's view (its output typed and copied) made when the flow
    first reads it (see :class:`StepSnapshot`).

    The statuses and outputs are taken when the context is made (what decide() does to the
    run afterwards is not seen); an output is replaced by the engine, never changed in
    place, so copying it on first read copies what it was then."""

    __slots__ = ("_orchestration", "_views")

    def __init__(self, run: Run, orchestration: OrchestrationDefinition | None) -> None:
        self._seen = {n: (sr.status, sr.output) for n, sr in run.steps.items()}
        self._orchestration = orchestration
        self._views: dict[str, StepView] = {}

    def __getitem__(self, name: str) -> StepView:
        view = self._views.get(name)
        if view is None:
            status, output = self._seen[name]
            view = StepView(name, status.value,
                            copy_json(_typed_output(self._orchestration, name, output)))
            self._views[name] = view
        return view


def _typed_output(orchestration: OrchestrationDefinition | None, step: str,
                  output: Any) -> Any:
    if orchestration is None or not isinstance(output, dict) or not output:
        return output or {}
    return typed_values(decimal_forms(orchestration).get(step, ()), output)


def flow_logger(run_id: str, step: str) -> logging.LoggerAdapter[logging.Logger]:
    return logging.LoggerAdapter(_step_logger(step), {"run_id": run_id, "step": step})


@functools.lru_cache(maxsize=4096)
def _step_logger(step: str) -> logging.Logger:
    """``baton.flow.STEP`` (logging keeps every logger anyway; getLogger takes its lock and
    builds the name on each call, once per flow call on the hot path)."""
    return logging.getLogger(f"baton.flow.{step}")


class FlowRunner(Protocol):
    """Calls the flow ``fn`` registered as ``name`` on ``ctx`` and returns what it returned;
    afterwards ``ctx.vars`` and ``ctx.record_updates`` hold what the flow changed, wherever
    it ran. With ``timeout_ms`` an attempt that overruns raises :class:`StepTimeout` and no
    longer holds the worker, nor a CPU."""

    def __call__(self, name: str, fn: FlowFn, ctx: FlowContext,
                 timeout_ms: int | None) -> Any: ...


class StepTimeout(StepFailure):
    """An attempt overran its step's ``timeout`` (retryable); its flow process was killed."""


class FlowProcessDied(StepFailure):
    """The process running a flow died under it (a crash, a signal, the OOM killer)."""


class FlowRaised(StepFailure):
    """A flow raised in a flow process: its error as it was there (type, message,
    retryable, retry_after, traceback), since the exception itself may not cross."""

    def __init__(self, type_name: str, message: str, *, retryable: bool,
                 retry_after: float | None, traceback_text: str) -> None:
        super().__init__(message, retryable=retryable, retry_after=retry_after)
        self.type_name = type_name
        self.traceback_text = traceback_text
