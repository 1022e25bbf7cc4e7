"""Flows: the Python code background steps run, registered by name.

```python
from baton import flow

@flow("cases.classify")
def classify(ctx):
    return {"category": "billing" if "invoice" in ctx.record["subject"] else "tech"}
```
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

from baton.errors import BatonError, ValidationError

FlowFn = Callable[["FlowContext"], "Mapping[str, Any] | bool | None"]
F = TypeVar("F", bound=FlowFn)

_REGISTRY: dict[str, FlowFn] = {}
_GENERATION = [0]  # bumped by every registration: a flow process forked earlier lacks it


def flow(name: str) -> Callable[[F], F]:
    """Register the decorated function as the flow ``name`` (the decorated function is
    returned as it is, so it can still be called, e.g. by a unit test).

    Registering the same name twice with a different function is an error, so two
    modules cannot silently shadow each other.

    Raises:
        BatonError: ``name`` is not a non-blank string (``@flow`` written without its name
            is told so), or what is decorated is not callable.
    """
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        if callable(name):  # @flow on its own: the function came in as the name
            raise BatonError(f"@flow needs the flow's name, the one steps give as flow: "
                             f"write @flow(\"...\") above {_qualname(name)}")
        raise BatonError(f"a flow's name is a non-blank string without spaces around it, "
                         f"got {name!r}")

    def register(fn: F) -> F:
        if not callable(fn):
            raise BatonError(f"@flow({name!r}) decorates a function taking the flow's "
                             f"context, got {type(fn).__name__} {fn!r}"[:300])
        _check_takes_context(name, fn)
        existing = _REGISTRY.get(name)
        if existing is not None and _qualname(existing) != _qualname(fn):
            raise BatonError(
                f"flow {name!r} is registered twice: {_qualname(existing)} and {_qualname(fn)}"
            )
        _REGISTRY[name] = fn
        _GENERATION[0] += 1
        return fn

    return register


def _check_takes_context(name: str, fn: Callable[..., Any]) -> None:
    """A flow is called with one argument, its context: one that cannot be is refused when
    it is registered, not at its first step (a callable whose signature Python cannot
    read is taken as it is)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        signature.bind(None)
    except TypeError:
        raise BatonError(f"flow {name!r}: {_qualname(fn)}{signature} cannot be called with "
                         "the flow's context alone (a flow takes one argument, ctx)") from None


def _qualname(fn: Callable[..., Any]) -> str:
    # Project modules are imported as ``baton_project_<folder digest>.<module>``; the same
    # module of another copy of the project (tests, a re-import) is the same flow.
    module = fn.__module__
    if module.startswith("baton_project_"):
        module = module.split(".", 1)[-1]
    return f"{module}.{fn.__qualname__}"


def get_flow(name: str) -> FlowFn | None:
    return _REGISTRY.get(name)


def registry_generation() -> int:
    """Changes whenever a flow is registered (a process forked before has an older registry)."""
    return _GENERATION[0]


def registered_flows() -> frozenset[str]:
    return frozenset(_REGISTRY)


class AmbiguousStep(BatonError):
    """``ctx.steps[NAME]`` in a plan step's flow, NAME a step template of the plan that
    would name several of its steps there (a plan step reading a line-item template, a
    bundle step reading a line-item one): the message names them; read one by its full
    name (``ctx.steps["ship[L2]"]``). Not retried: the flow reads the same name again."""


@dataclass(frozen=True)
class StepView:
    """What a flow sees of an earlier step (its latest iteration)."""

    name: str
    status: str
    output: Mapping[str, Any]


FIND_LIMIT = 100
"""Most records ``ctx.records.find`` returns (and its default)."""


class RecordReader(Protocol):
    """``ctx.records``: other records, read when the flow asks (outside any transaction
    of the run: what it reads may change right after; an evaluation flow is asked again
    when the run's own record or a step changes)."""

    def get(self, record_id: str) -> Mapping[str, Any] | None:
        """The record with this id as flows see records (typed fields plus ``id``,
        ``created_at``, ``updated_at``, ``version``), or None when there is none."""

    def find(self, object_type: str, /, *, limit: int = FIND_LIMIT,
             **field_values: Any) -> list[Mapping[str, Any]]:
        """Records of ``object_type`` whose fields equal ``field_values`` (all of them), the
        newest first, at most ``limit`` (1 to 100). An unknown object type or field is a
        :class:`BatonError`."""


class _NoRecords:
    """``ctx.records`` of a context made without a store (a test calling a flow itself)."""

    def get(self, record_id: str) -> Mapping[str, Any] | None:
        raise BatonError("ctx.records is not available here (this flow was called without "
                         "a store)")

    def find(self, object_type: str, /, *, limit: int = FIND_LIMIT,
             **field_values: Any) -> list[Mapping[str, Any]]:
        raise BatonError("ctx.records is not available here (this flow was called without "
                         "a store)")


class FlowContext:
    """What a flow receives.

    ``record`` is read-only; ``update_record`` stages field updates that are
    committed atomically with the step's completion. ``vars`` is mutable and its
    changes are committed the same way. ``records`` reads other records
    (:class:`RecordReader`).

    The context owns what it holds: ``record`` and ``input`` are copies made for it
    (nested values too, by whoever made the context: the worker's ``flow_context``), so
    nothing a flow does to them reaches the engine or another flow's context.

    ``steps``: the run's steps by name. In a plan step's flow a step template's name reads
    the step of the template that the step's expressions would read (``ctx.steps["reserve"]``
    in ``ship[L2]`` is ``reserve[L2]``: the same line's, else its bundle's or group's, a plan
    template's single step; :mod:`baton.plans.reads`), or raises :class:`AmbiguousStep`
    when it would name several; ``in`` and ``get`` read it alike, iteration gives the
    steps' own names.
    """

    def __init__(
        self,
        *,
        run_id: str,
        step: str,
        iteration: int,
        record: Mapping[str, Any] | None,
        vars: dict[str, Any],
        input: Mapping[str, Any],
        steps: Mapping[str, StepView],
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None,
        records: RecordReader | None = None,
    ) -> None:
        # a read-only view made for this context (flow_context's: each step's view made
        # when it is read) is kept as it is; anything else is copied
        self._setup(run_id, step, iteration, dict(record) if record is not None else None,
                    vars, dict(input), steps if isinstance(steps, MappingProxyType)
                    else MappingProxyType(dict(steps)), logger, records)

    @classmethod
    def owning(
        cls,
        *,
        run_id: str,
        step: str,
        iteration: int,
        record: dict[str, Any] | None,
        vars: dict[str, Any],
        input: dict[str, Any],
        steps: MappingProxyType[str, StepView],
        records: RecordReader | None = None,
    ) -> FlowContext:
        """A context that takes ``record`` and ``input`` as its own: fresh copies made for
        it alone (``flow_context``), not copied a second time. Its ``log`` is made when the
        flow first uses it."""
        ctx = cls.__new__(cls)
        ctx._setup(run_id, step, iteration, record, vars, input, steps, None, records)
        return ctx

    def _setup(self, run_id: str, step: str, iteration: int, record: dict[str, Any] | None,
               vars: dict[str, Any], input: dict[str, Any],
               steps: MappingProxyType[str, StepView],
               logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None,
               records: RecordReader | None) -> None:
        self.run_id = run_id
        self.step = step
        self.iteration = iteration
        self._record = record
        self.record: Mapping[str, Any] = MappingProxyType(record if record is not None else {})
        self.vars = vars
        self.input: Mapping[str, Any] = MappingProxyType(input)
        self.steps: Mapping[str, StepView] = steps
        self._log = logger
        self.records: RecordReader = records if records is not None else _NoRecords()
        self.record_updates: dict[str, Any] = {}

    @property
    def log(self) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
        """``baton.flow.STEP``, each record carrying the run id and step (made on first use:
        most flows never log)."""
        if self._log is None:
            self._log = flow_logger(self.run_id, self.step)
        return self._log

    @log.setter
    def log(self, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
        self._log = logger

    @property
    def has_record(self) -> bool:
        return self._record is not None

    def update_record(self, fields: Mapping[str, Any]) -> None:
        """Stage updates to the run's record; applied when the step completes."""
        if self._record is None:
            raise BatonError(f"step {self.step!r}: this run has no record to update")
        if type(fields) is not dict and not isinstance(fields, Mapping):
            raise ValidationError(f"record update of step {self.step!r}", {
                "(fields)": f"expected a mapping of field name -> value, got "
                            f"{type(fields).__name__}"})
        self.record_updates.update(fields)
        self._record.update(fields)


def flow_logger(run_id: str, step: str) -> logging.LoggerAdapter[logging.Logger]:
    """The logger a flow of ``step`` gets as ``ctx.log``."""
    return logging.LoggerAdapter(_step_logger(step), {"run_id": run_id, "step": step})


@functools.lru_cache(maxsize=4096)
def _step_logger(step: str) -> logging.Logger:
    """``baton.flow.STEP`` (logging keeps every logger anyway; getLogger takes its lock and
    builds the name on each call, once per flow call on the hot path)."""
    return logging.getLogger(f"baton.flow.{step}")
