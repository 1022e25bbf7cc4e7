"""What a step type is: one protocol for the validator, for ``decide()`` and for the worker.

A step type is one module in this package plus one registration (``baton.steps.registry``).
The validator hands it the step's YAML mapping to check its own options; ``decide()`` hands
it its working state (:class:`DecideContext`) when a step of that type starts, on every pass
(a condition to re-check), and when a timer or a signal may concern it; the worker hands it
a job of the kind it enqueues (:class:`StepWork`) and commits what it returns. Everything but
``run_job`` is pure: it changes the run in memory and appends commands, never does I/O, so
``decide()`` stays a function (``tests/unit/test_architecture.py`` walks these imports).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from baton.connections.calls import HttpCaller
from baton.definitions.checks import Checker, Scope
from baton.definitions.model import (
    Condition,
    ConnectionDefinition,
    OrchestrationDefinition,
    SecretRef,
    StepDefinition,
)
from baton.engine.events import (
    ChildRunFinished,
    Command,
    SignalReceived,
    StepCompleted,
    TimerFired,
)
from baton.engine.state import Run, StepRun
from baton.engine.status import STEP_RUNNING, StepStatus
from baton.errors import BatonError, ExpressionError
from baton.flows import RecordReader
from baton.steps.flowrun import FlowRunner


class DecideContext(Protocol):
    """The part of ``decide()``'s working state a step type's hooks use (``engine/decide.py``).

    Hooks move the step through it (statuses, output, errors: each move is checked against
    the transition table) and append commands and audit events to it.
    """

    defn: OrchestrationDefinition
    run: Run
    now: str  # ISO, the decision's instant
    now_dt: datetime
    commands: list[Command]
    firing_timer: tuple[str, int] | None  # (step, iteration) whose own timer is firing now

    def audit(self, type_: str, actor: str = ..., **data: Any) -> None: ...

    def scope(self) -> Mapping[str, Any]: ...

    def holds(self, cond: Condition | None) -> bool: ...

    def set_step(self, sr: StepRun, status: StepStatus) -> None: ...

    def complete_step(self, sr: StepRun, output: dict[str, Any], actor: str,
                      **extra: Any) -> None: ...

    def fail_step(self, sr: StepRun, step: StepDefinition, error: dict[str, Any]) -> None: ...

    def schedule_attempt(self, sr: StepRun, step: StepDefinition,
                         not_before: str | None) -> None: ...


class StepServices(Protocol):
    """What the worker lends a step type's job for calls to other systems (no transaction
    is open): deployed connections, the process's HTTP client, callback addresses."""

    @property
    def http(self) -> HttpCaller: ...

    def connection(self, name: str) -> ConnectionDefinition:
        """The active version of connection ``name`` (``NotFound`` if none)."""

    def callback(self, run_id: str, step: str, iteration: int) -> tuple[str, str]:
        """(token, URL) an external system calls back at for this step iteration."""

    @property
    def project_dir(self) -> str | None:
        """The project folder: a connection's relative paths (a command's args, a CA file)."""

    def secret(self, ref: SecretRef) -> str:
        """The value behind ``env:NAME`` / ``file:NAME``, now (never to be stored or shown)."""


@dataclass(frozen=True, init=False)
class StepWork:
    """One attempt of a step job, as the worker hands it to its step type (no transaction
    is open). ``run`` and ``record`` are the batch's snapshot: read them, do not change them."""

    run: Run
    record: Mapping[str, Any] | None
    step: StepDefinition
    iteration: int
    attempt: int | None
    payload: Mapping[str, Any]  # the job's payload, as ``ScheduleStep`` was applied
    flows: FlowRunner  # how this worker calls a flow (its thread, or a flow process)
    orchestration: OrchestrationDefinition | None = None  # the run's: types ctx.input, outputs
    records: RecordReader | None = None  # what ``ctx.records`` reads other records with
    now: str = ""  # ISO, the worker clock's instant of this attempt (``now`` in expressions)
    services: StepServices | None = None  # connections and clients (None: a worker without)
    ai_provider: str | None = None  # ``[ai] provider`` of baton.toml: an ``ai`` step's default
    ai_connection: str | None = None  # ``[ai] connection``: the model providers' default
    ai_model: str | None = None  # ``[ai] model``: the model providers' default
    classifiers: Callable[[str], Any] | None = None  # trained classifiers by name (baton.ai.trained)

    def __init__(self, run: Run, record: Mapping[str, Any] | None, step: StepDefinition,
                 iteration: int, attempt: int | None, payload: Mapping[str, Any],
                 flows: FlowRunner, orchestration: OrchestrationDefinition | None = None,
                 records: RecordReader | None = None, now: str = "",
                 services: StepServices | None = None, ai_provider: str | None = None,
                 ai_connection: str | None = None, ai_model: str | None = None,
                 classifiers: Callable[[str], Any] | None = None) -> None:
        # One write of the instance's dict: a frozen dataclass's own __init__ sets each of
        # the 15 fields with object.__setattr__, ~28,000 instructions per step job (a
        # third of a trivial flow's call). Still frozen: assigning a field raises.
        # (tests/unit/test_flow_context.py checks this signature against the fields.)
        self.__dict__.update(
            run=run, record=record, step=step, iteration=iteration, attempt=attempt,
            payload=payload, flows=flows, orchestration=orchestration, records=records,
            now=now, services=services, ai_provider=ai_provider, ai_connection=ai_connection,
            ai_model=ai_model, classifiers=classifiers)


@dataclass(frozen=True)
class StepOutput:
    """What an attempt produced: the step's output, the run variables it changed and the
    record updates it asks for (committed with the step's completion, or not at all)."""

    output: Mapping[str, Any]
    vars: Mapping[str, Any] | None = None
    record_updates: Mapping[str, Any] = field(default_factory=dict)
    # Audit events to append with the result: each {"type": ..., **data} (e.g. a callout's
    # call summary). A failed attempt carries its own as ``StepFailure.audit``.
    audit: tuple[Mapping[str, Any], ...] = ()


class StepType(Protocol):
    """A step type. ``keys`` are the step keys only this type takes (elsewhere they are
    mistakes); ``job_kind`` is the kind of job it enqueues, ``None`` when it does no work
    outside a transaction."""

    @property
    def name(self) -> str: ...

    @property
    def keys(self) -> tuple[str, ...]: ...

    @property
    def job_kind(self) -> str | None: ...

    def validate(self, ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        """Report problems with the step's own options on ``ck``, located under ``path``."""

    def start(self, d: DecideContext, sr: StepRun, step: StepDefinition) -> None:
        """The step starts (its ``after`` steps are done and ``when`` holds)."""

    def recheck(self, d: DecideContext, sr: StepRun, step: StepDefinition) -> bool:
        """Called on every pass of ``decide()``; True when it changed the step."""

    def on_timer(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                 ev: TimerFired) -> bool:
        """A timer of the step's own (not an SLA's) fired; False when it no longer applies."""

    def on_signal(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                  ev: SignalReceived) -> bool:
        """A named signal came for the run; True when this step took it."""

    def completed(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                  output: dict[str, Any], actor: str) -> dict[str, Any]:
        """The step is completing with ``output`` (a worker's, a person's form, an
        operator's): the output to keep (and audit events of the type's own)."""

    def on_child(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                 ev: ChildRunFinished) -> bool:
        """A child run the step started ended; False when it no longer concerns the step."""

    def on_cancel(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                  reason: str) -> None:
        """The open step is being canceled (run canceled or failed, stage exited): let go
        of what it started outside the run (its child runs)."""

    def has_timers(self, step: StepDefinition) -> bool:
        """May a running step of this definition have timers of its own pending?"""

    def chainable(self, step: StepDefinition) -> bool:
        """May the worker run this step's job in the batch that made it ready (no job row)?
        Only for short work: a step that waits on others should wait for a worker slot."""

    def run_job(self, work: StepWork) -> StepOutput:
        """Do the attempt (worker side, outside any transaction). Raising fails the attempt:
        ``StepFailure(retryable=...)`` says whether a retry may help."""

    def begin_job(self, work: StepWork) -> Callable[[], StepOutput]:
        """Start the attempt and return what finishes it. The worker begins every job of a
        batch before it finishes the first, so I/O-bound types (a callout) start their
        calls here and wait for them in the returned function: a batch's calls are in
        flight together. The default does all the work when finished (``run_job``)."""

    def on_completed(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                     ev: StepCompleted) -> bool:
        """An attempt's result came: True when the type took it (e.g. a callout that now
        waits for its callback); False completes the step with ``ev.output``."""


class StepTypeBase:
    """Defaults for the hooks a step type does not take part in."""

    name: str = ""
    keys: tuple[str, ...] = ()
    job_kind: str | None = None

    def validate(self, ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        return None

    def recheck(self, d: DecideContext, sr: StepRun, step: StepDefinition) -> bool:
        return False

    def on_timer(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                 ev: TimerFired) -> bool:
        return False

    def on_signal(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                  ev: SignalReceived) -> bool:
        return False

    def completed(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                  output: dict[str, Any], actor: str) -> dict[str, Any]:
        return output

    def on_child(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                 ev: ChildRunFinished) -> bool:
        return False

    def on_cancel(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                  reason: str) -> None:
        return None

    def has_timers(self, step: StepDefinition) -> bool:
        return False

    def chainable(self, step: StepDefinition) -> bool:
        return False

    def run_job(self, work: StepWork) -> StepOutput:
        raise BatonError(f"step type {self.name!r} enqueues no jobs; it cannot run one")

    def begin_job(self, work: StepWork) -> Callable[[], StepOutput]:
        return lambda: self.run_job(work)

    def on_completed(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                     ev: StepCompleted) -> bool:
        return False


class JobStepType(StepTypeBase):
    """A step type that does its work in a worker job: it starts running, asks for an
    attempt, and a failed attempt is retried per the step's retry policy."""

    def start(self, d: DecideContext, sr: StepRun, step: StepDefinition) -> None:
        d.set_step(sr, STEP_RUNNING)
        d.schedule_attempt(sr, step, None)
        d.audit("step_started", step=sr.name, stage=sr.stage, iteration=sr.iteration,
                type=step.type)


def expression_error(where: str, exc: ExpressionError) -> dict[str, Any]:
    """A step's error for an expression of its definition that could not be evaluated."""
    return {"type": "ExpressionError", "message": f"{where}: {exc.reason}",
            "expression": exc.source, "position": exc.position}
