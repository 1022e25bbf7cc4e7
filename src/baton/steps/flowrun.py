"""Calling a flow from a run's snapshot: the context it is given, and how it is called.

Used by background steps and by the worker's own flow jobs (evaluation flows, SLA
escalations). Outside any transaction; nothing here reads or writes the database.

The worker decides where a flow runs (:class:`FlowRunner`, ``baton.runtime.flowpool``): in
its own thread, or in a flow process it can kill when the step's ``timeout`` passes.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, TypeVar

from baton.definitions.model import OrchestrationDefinition
from baton.engine.state import Run, StepRun, copy_json
from baton.errors import StepFailure
from baton.flows import FlowContext, FlowFn, RecordReader, StepView
from baton.plans.reads import step_meant
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
    a flow does to what it was given must not reach them. ``ctx.steps`` is the steps as
    they are now, whatever happens to the run later (each step's status and output taken
    now: O(steps); :func:`run_flow` takes none of it unless the context outlives its call).
    """
    return _context(run, step, iteration, record, orchestration, step_input, records,
                    StepViews(run, orchestration, step=step))


def _context(run: Run, step: str, iteration: int, record: Mapping[str, Any] | None,
             orchestration: OrchestrationDefinition | None,
             step_input: Mapping[str, Any] | None, records: RecordReader | None,
             views: StepViews) -> FlowContext:
    # Each copied once, here, and handed to the context as its own (FlowContext.owning).
    inputs = orchestration.trigger.input if orchestration is not None else ()
    given = _copy_dict(typed_values(inputs, run.input) if inputs else run.input)
    if step_input:
        given.update(_copy_dict(step_input))
    return FlowContext.owning(run_id=run.id, step=step, iteration=iteration,
                              record=_copy_dict(record) if record is not None else None,
                              vars=_copy_dict(run.vars), input=given,
                              steps=MappingProxyType(views), records=records)


def _copy_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict of ``value``'s items, nested JSON values copied."""
    if not value:
        return {}
    out: dict[str, Any] = copy_json(value if type(value) is dict else dict(value))
    return out


class FlowOutcome(NamedTuple):
    """What a flow call left: what the flow returned, its context's ``vars`` (with the
    flow's changes) and the record updates it staged."""

    output: Any
    vars: dict[str, Any]
    record_updates: dict[str, Any]


def run_flow(flows: FlowRunner, name: str, fn: FlowFn, timeout_ms: int | None, run: Run,
             step: str, iteration: int, record: Mapping[str, Any] | None,
             orchestration: OrchestrationDefinition | None = None,
             step_input: Mapping[str, Any] | None = None,
             records: RecordReader | None = None) -> FlowOutcome:
    """Call the flow ``fn`` (registered as ``name``) with ``flows`` on the context
    :func:`flow_context` makes, and return what it left.

    The context's ``ctx.steps`` reads the run's steps when the flow reads them (issue 13
    item 9: a plan's run has hundreds or thousands of steps; a flow reads one or two), not
    a snapshot of every step made first. That is the snapshot's values exactly because
    nothing changes ``run`` while its flow runs: the worker calls a batch's flows one at a
    time, and decides (changes the runs) only once they have returned. A context that
    outlives the call — the flow kept it, or part of it (``ctx.steps``, a view of its
    items), or raised with it in its traceback — takes its snapshot of every step when
    the call returns, before anything can change the run: whenever it is read, it shows
    the steps as they were during the call."""
    views = StepViews(run, orchestration, live=True, step=step)
    ctx = _context(run, step, iteration, record, orchestration, step_input, records, views)
    try:
        output = flows(name, fn, ctx, timeout_ms)
    except BaseException:
        views.freeze()  # (the traceback holds the flow's frames, its context with them)
        raise
    outcome = FlowOutcome(output, ctx.vars, ctx.record_updates)
    kept = weakref.ref(views)
    del ctx, views  # ours: whatever still holds the views now is the flow's
    left = kept()
    if left is not None:
        left.freeze()
    return outcome


class StepSnapshot(Mapping[str, V]):
    """The run's steps as they were when a flow's context or a request's scope was made,
    each step's view made only when it is read: a plan's run has hundreds or thousands of
    steps and a flow or a request reads one or two, so making every view up front cost
    more than the rest of a step (issue 13 item 9). ``_seen`` holds, per step name, what
    the view is made from (``_take`` of its StepRun); subclasses make the view in
    ``__getitem__`` from :meth:`_read`.

    ``live``: the run's steps are read when they are read, not taken first, until
    :meth:`freeze` takes them all (O(steps)): for a caller that makes sure nothing changes
    the run before (see :func:`run_flow`) and freezes what outlives the call."""

    __slots__ = ("__weakref__", "_live", "_seen")
    _take: Callable[[StepRun], tuple[Any, ...]]  # (an attrgetter: what a view is made from)

    def __init__(self, run: Run, *, live: bool = False) -> None:
        self._live: dict[str, StepRun] | None = run.steps if live else None
        self._seen: dict[str, tuple[Any, ...]] = {} if live else self._taken(run.steps)

    def _taken(self, steps: Mapping[str, StepRun]) -> dict[str, tuple[Any, ...]]:
        """What each step's view is made from, as it is now (O(steps), in C)."""
        return dict(zip(steps, map(self._take, steps.values()), strict=True))

    def freeze(self) -> None:
        """Take every step as it is now (a no-op once taken): from here on the views are
        made from these, whatever happens to the run."""
        live = self._live
        if live is not None:
            self._seen = self._taken(live)
            self._live = None

    def _read(self, name: str) -> tuple[Any, ...]:
        live = self._live
        return self._take(live[name]) if live is not None else self._seen[name]

    def __iter__(self) -> Iterator[str]:
        live = self._live
        # (live: the names as they are now, not an iterator over the run's own dict)
        return iter(tuple(live) if live is not None else self._seen)

    def __len__(self) -> int:
        live = self._live
        return len(live if live is not None else self._seen)

    def __contains__(self, name: object) -> bool:
        live = self._live
        return name in (live if live is not None else self._seen)


_STATUS_OUTPUT = operator.attrgetter("status", "output")


class StepViews(StepSnapshot[StepView]):
    """``ctx.steps``: each step's view (its output typed and copied) made when the flow
    first reads it (see :class:`StepSnapshot`).

    The statuses and outputs are those of when the context was made (what decide() does to
    the run afterwards is not seen); an output is replaced by the engine, never changed in
    place, so copying it on first read copies what it was then. ``live``: the run's steps
    are read when the flow reads them, not taken first, until :meth:`freeze` takes them
    (see :func:`run_flow`, which makes sure nothing changes the run before).

    ``step``: the step whose flow reads them. In a plan step's flow, a name that is no
    step's but a step template's reads the one step of that template the step's
    expressions would (``reserve`` in ``ship[L2]``: ``reserve[L2]``), or raises
    :class:`~baton.flows.AmbiguousStep` (:func:`baton.plans.reads.step_meant`): worked out
    only when a name is not found, from an index made once per plan definition."""

    __slots__ = ("_orchestration", "_step", "_views")
    _take = _STATUS_OUTPUT

    def __init__(self, run: Run, orchestration: OrchestrationDefinition | None, *,
                 live: bool = False, step: str = "") -> None:
        self._orchestration = orchestration
        self._step = step
        self._views: dict[str, StepView] = {}
        super().__init__(run, live=live)

    def __getitem__(self, name: str) -> StepView:
        view = self._views.get(name)
        if view is None:
            try:
                status, output = self._read(name)
            except KeyError:
                meant = self._meant(name)
                if meant is None:
                    raise  # (the run's own KeyError of ``name``)
                if not super().__contains__(meant):
                    raise KeyError(name) from None
                view = self._views[name] = self[meant]
                return view
            # (``_value_``: the status's string, without the ``value`` property's call)
            view = StepView(name, status._value_,
                            copy_json(_typed_output(self._orchestration, name, output)))
            self._views[name] = view
        return view

    def __contains__(self, name: object) -> bool:
        live = self._live
        steps = live if live is not None else self._seen
        if name in steps:
            return True
        meant = self._meant(name)
        return meant is not None and meant in steps

    def _meant(self, name: object) -> str | None:
        """The step a template's ``name`` means in this plan step's flow (None: none)."""
        if not self._step or not isinstance(name, str):
            return None
        return step_meant(self._orchestration, self._step, name)

    def get(self, name: str, default: Any = None) -> Any:
        # (Mapping's, without its extra call: ctx.steps.get is what flows mostly use)
        try:
            return self[name]
        except KeyError:
            return default


def _typed_output(orchestration: OrchestrationDefinition | None, step: str,
                  output: Any) -> Any:
    if orchestration is None or not isinstance(output, dict) or not output:
        return output or {}
    return typed_values(decimal_forms(orchestration).get(step, ()), output)


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
