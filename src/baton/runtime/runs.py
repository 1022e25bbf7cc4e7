"""The run driver: load and lock a run, decide, apply; start a run; and the operations on
runs (cancel, resume, signal, fallout, reads).

``decide`` (pure, in ``baton.engine``) says what happens; this module is its I/O side:
it reads the run and its record under a lock, calls ``decide``, and hands the decision to
the :class:`~baton.runtime.apply.Applier`, all in the caller's transaction (``*_txn``) or
in one write transaction of its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from baton.clock import Clock, iso
from baton.definitions.checks import describe
from baton.definitions.model import (
    FieldDefinition,
    ObjectTypeDefinition,
    OrchestrationDefinition,
)
from baton.engine.decide import Decision, decide
from baton.engine.events import (
    CancelRequested,
    Event,
    FalloutAction,
    RecordChanged,
    RunStarted,
)
from baton.engine.state import ParentLink, Run, StepRun
from baton.engine.status import RUN_IN_PROGRESS, STEP_FALLOUT
from baton.errors import BatonError, NotFound, TransitionConflict, ValidationError
from baton.ids import IdGenerator
from baton.records.fields import coerce_fields
from baton.records.model import record_title, record_view
from baton.records.related import with_related_txn
from baton.rows import AuditEvent, Record, audit_event
from baton.runtime import metrics
from baton.runtime.apply import Applier
from baton.runtime.definitions import PLAN_PREFIX, DefinitionRepo
from baton.runtime.idempotency import IdempotencyClaim
from baton.storable import first_problem
from baton.store.base import FalloutGroup, KeyPage, Total
from baton.store.ports import Transaction
from baton.store.sql import SqlStore, SqlTx

FALLOUT_ACTIONS = ("retry", "complete", "skip")


class PlanRunCancel(TransitionConflict):
    """A run's cancel refused because the run is a fulfillment plan's (``plan:ORDER``, a
    plan or its compensation): :meth:`baton.runtime.engine.Engine.cancel_run` cancels it
    through its plan instead."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self.order_id = run.orchestration[len(PLAN_PREFIX):]
        super().__init__(
            f"run {run.id} is the fulfillment plan of order {self.order_id}: cancel the "
            f"order's plan (`baton plans cancel {self.order_id} --reason ...`, POST "
            f"/api/plans/{self.order_id}/cancel), which is refused once its point of no "
            "return has passed and rolls back what its steps did")


class RunDriver:
    """Runs on one store: every way a run moves goes through :meth:`decide_and_apply_txn`."""

    def __init__(self, store: SqlStore, definitions: DefinitionRepo, applier: Applier,
                 ids: IdGenerator, clock: Clock) -> None:
        self.store = store
        self.definitions = definitions
        self.applier = applier
        self.ids = ids
        self.clock = clock

    # ---- the driver ---------------------------------------------------------------------
    def decide_and_apply_txn(self, tx: Transaction, defn: OrchestrationDefinition, run: Run,
                             event: Event, now: Any, record: Mapping[str, Any] | None, *,
                             insert: bool = False) -> Decision:
        """Decide and apply; ``run`` is handed over (callers load it for this call alone).
        The record is given to ``decide()`` with the related records its definition's
        expressions read (``records/related.py``).

        A run it starts (``insert``) or ends (in progress to completed, failed or canceled)
        is listed on ``tx`` (:func:`moved_txn`), counted once ``tx`` has committed
        (:func:`count_committed`, by whoever commits it)."""
        expected_seq = run.seq
        was = run.status  # (before decide(), which changes the run in place)
        seen = with_related_txn(tx, defn, record, defn.trigger.object,
                                lambda name: self.definitions.object_type(name, tx))
        decision = decide(defn, run, event, now, seen, consume=True)
        if decision.stale:
            return decision
        self.applier.apply_txn(tx, expected_seq, decision, now, insert=insert)
        status = decision.run.status
        if insert or status is not was:
            moved = moved_txn(tx)
            if insert:
                moved.append((defn.name, metrics.STARTED))
            if was is RUN_IN_PROGRESS and status is not RUN_IN_PROGRESS:
                moved.append((defn.name, status._value_))
        return decision

    def load_txn(self, tx: Transaction, run_id: str
                 ) -> tuple[Run, OrchestrationDefinition, dict[str, Any] | None]:
        """Load a run to change it, with its record as flows see it; both rows are locked
        until commit (PostgreSQL)."""
        run, defn, rec = self.load_row_txn(tx, run_id)
        return run, defn, self.record_view_txn(tx, rec) if rec else None

    def record_view_txn(self, tx: Transaction, row: Mapping[str, Any]) -> dict[str, Any]:
        """A record row as flows and expressions see it (decimals as Decimal)."""
        return record_view(row, self.definitions.object_type(row["object_type"], tx))

    def load_row_txn(self, tx: Transaction, run_id: str
                     ) -> tuple[Run, OrchestrationDefinition, dict[str, Any] | None]:
        """Like :meth:`load_txn`, with the record's stored row (locked too)."""
        row = tx.get_run_txn(run_id, for_update=True)
        if row is None:
            raise NotFound("run", run_id)
        run = Run.from_json(row["state"])
        defn, _ = self.definitions.orchestration(run.orchestration, run.version, tx=tx)
        rec = tx.get_record_txn(run.record_id, for_update=True) if run.record_id else None
        return run, defn, rec

    def start_txn(self, tx: Transaction, defn: OrchestrationDefinition, version: int,
                  record_row: Mapping[str, Any] | None, input: dict[str, Any], actor: str,
                  now_dt: Any, *, parent: ParentLink | None = None,
                  record: Mapping[str, Any] | None = None) -> Run:
        """Start a run of ``defn`` (on ``record_row``, if it takes one; as a child run of
        ``parent``'s step, if given). ``record``: ``record_row`` as flows see it
        (:meth:`record_view_txn`), when the caller has made it already."""
        run = Run(id=self.ids.new("run"), orchestration=defn.name, version=version,
                  record_id=record_row["id"] if record_row else None,
                  vars=dict(defn.variables), input=input, created_at=iso(now_dt),
                  parent=parent)
        if record_row is None:
            record = None
        elif record is None:
            record = self.record_view_txn(tx, record_row)
        return self.decide_and_apply_txn(tx, defn, run, RunStarted(actor), now_dt, record,
                                         insert=True).run

    def evaluate_txn(self, tx: Transaction, run_id: str, now_dt: Any) -> None:
        """Re-evaluate a run's conditions (its record changed)."""
        run, defn, record = self.load_txn(tx, run_id)
        if run.status is RUN_IN_PROGRESS:
            self.decide_and_apply_txn(tx, defn, run, RecordChanged(), now_dt, record)

    def event(self, run_id: str, event: Event, refusal: Callable[[str], str], *,
              idempotency: IdempotencyClaim | None = None) -> Run:
        """One event on one run in its own write transaction; ``refusal(status)`` is the
        conflict raised when the run does not take it. (A function, not a format string:
        the text may hold what a client sent, such as a signal name with braces.)
        ``idempotency``: the request's key, claimed first in the transaction and bound to
        the run."""
        now_dt = self.clock.now()
        with self.store.write() as tx:
            if idempotency is not None:
                idempotency.claim_txn(tx, now_dt, run_id)
            run, defn, record = self.load_txn(tx, run_id)
            decision = self.decide_and_apply_txn(tx, defn, run, event, now_dt, record)
            if decision.stale:
                raise TransitionConflict(f"run {run_id} " + refusal(run.status.value))
        count_committed(tx)
        return decision.run

    # ---- operations ---------------------------------------------------------------------
    def start(self, orchestration: str, input: dict[str, Any] | None, *,
              record_id: str | None, actor: str, claim: IdempotencyClaim | None = None) -> Run:
        """Start an autolaunched orchestration with typed ``input``; ``claim``: the
        request's idempotency key, claimed and bound to the run in the same transaction."""
        if not isinstance(orchestration, str):
            raise ValidationError("start", {"orchestration": (
                f"expected an orchestration's name (text), got {describe(orchestration)}")})
        if record_id is not None and not isinstance(record_id, str):
            raise ValidationError(f"start of {orchestration}", {"record": (
                f"expected the record's id (text), got {describe(record_id)}")})
        now_dt = self.clock.now()
        with self.store.write() as tx:
            if claim is not None:
                claim.claim_txn(tx, now_dt)
            defn, version = self.definitions.orchestration(orchestration, tx=tx)
            t = defn.trigger
            if t.type != "autolaunched":
                raise BatonError(
                    f"orchestration {orchestration!r} starts from its {t.type} trigger, not by hand"
                )
            values = coerce_fields(t.input, input or {}, f"input of {orchestration}")
            row: Record | None = None
            if record_id is not None and not t.object:
                # Without an object the run has no record (its expressions may not read one):
                # a record given here would be attached to a run that never uses it.
                raise ValidationError(f"start of {orchestration}", {
                    "record": f"orchestration {orchestration!r} takes no record "
                              "(it declares no object)"})
            if record_id is not None:
                row = tx.get_record_txn(record_id, for_update=True)  # type: ignore[assignment]
                if row is None:
                    raise NotFound("record", record_id)
                if row["object_type"] != t.object:
                    raise ValidationError(f"start of {orchestration}", {
                        "record": f"is a {row['object_type']}, this orchestration takes a {t.object}"})
            elif t.object:
                raise ValidationError(f"start of {orchestration}", {
                    "record": f"this orchestration runs on a {t.object} record: pass its id"})
            run = self.start_txn(tx, defn, version, row, values, actor, now_dt)
            if claim is not None:
                claim.bind_txn(tx, run.id)
        count_committed(tx)
        return run

    def cancel(self, run_id: str, reason: str, actor: str, *,
               idempotency: IdempotencyClaim | None = None) -> Run:
        """Cancel a run in progress (or failed) in one write transaction. A fulfillment
        plan's run (``plan:ORDER``) is refused (:class:`PlanRunCancel`, nothing written):
        a plan is canceled as a plan, which checks its point of no return and rolls back
        what its steps did (:meth:`~baton.plans.service.PlanService.cancel`); canceled
        here, its rollbacks would never run, and the plan's cancel would then refuse."""
        now_dt = self.clock.now()
        with self.store.write() as tx:
            if idempotency is not None:
                idempotency.claim_txn(tx, now_dt, run_id)
            run, defn, record = self.load_txn(tx, run_id)
            if run.orchestration.startswith(PLAN_PREFIX):
                raise PlanRunCancel(run)
            decision = self.decide_and_apply_txn(tx, defn, run, CancelRequested(reason, actor),
                                                 now_dt, record)
            if decision.stale:
                raise TransitionConflict(f"run {run_id} is {run.status.value}; it cannot be "
                                         "canceled")
        count_committed(tx)
        return decision.run

    def resolve_fallout(self, fallout_id: str, action: str, *, reason: str, actor: str,
                        output: dict[str, Any] | None,
                        idempotency: IdempotencyClaim | None = None) -> Run:
        """Operator action on a step in fallout: ``retry``, ``complete`` (with output) or
        ``skip``; ``fallout_id`` is ``RUN_ID:STEP``. ``idempotency``: the request's key,
        claimed first in the transaction, bound to the run once it is found."""
        if not isinstance(fallout_id, str):
            raise ValidationError("fallout id", {"id": (
                f"expected RUN_ID:STEP (text), got {describe(fallout_id)}")})
        run_id, _, step = fallout_id.partition(":")
        if action not in FALLOUT_ACTIONS:
            raise ValidationError("fallout action", {"action": f"expected retry, complete or skip, got {action!r}"})
        if not step:
            raise ValidationError("fallout id", {"id": f"expected RUN_ID:STEP, got {fallout_id!r}"})
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationError("fallout action", {"reason": "say why (it is audited)"})
        now_dt = self.clock.now()
        with self.store.write() as tx:
            if idempotency is not None:
                idempotency.claim_txn(tx, now_dt)
            run, defn, record = self.load_txn(tx, run_id)
            if idempotency is not None:  # (a RUN_ID that names a run fits the key's row)
                idempotency.bind_txn(tx, run_id)
            found = defn.find_step(step)
            if found is None:
                raise NotFound("step", step, f"run {run_id} has no such step")
            if action == "complete":
                output = _check_output(found[1].options.get("output"), output, step)
            event = FalloutAction(step, action, actor, reason, output)
            decision = self.decide_and_apply_txn(tx, defn, run, event, now_dt, record)
            if decision.stale:
                raise TransitionConflict(_not_in_fallout(run, step, action))
            if action == "retry" and found[1].options.get("wait") == "callback":
                # The request is sent again; the other system's next callback (to the same
                # URL: the step iteration's) is taken, not refused as already received.
                done = decision.run.steps[step]
                if tx.forget_callback_txn(run_id, step, done.iteration):
                    tx.append_events_txn([audit_event(  # type: ignore[list-item]
                        "callback_forgotten", actor, iso(now_dt), run.record_id, run_id,
                        {"step": step, "iteration": done.iteration,
                         "reason": "the step is retried: its next callback is taken"})])
        count_committed(tx)
        return decision.run

    # ---- reads --------------------------------------------------------------------------
    def get(self, run_id: str) -> Run:
        with self.store.read() as tx:
            row = tx.get_run_txn(run_id)
        if row is None:
            raise NotFound("run", run_id)
        return Run.from_json(row["state"])

    def list_runs(self, limit: int, offset: int, filters: dict[str, Any]) -> list[Run]:
        with self.store.read() as tx:
            rows = tx.list_runs_txn(filters, limit, offset)
        return [Run.from_json(r["state"]) for r in rows]

    def count_runs(self, filters: dict[str, Any]) -> int:
        with self.store.read() as tx:
            return tx.count_runs_filtered_txn(filters)

    def page(self, filters: dict[str, Any], after: str | None, offset: int, limit: int
             ) -> KeyPage:
        """Run summaries (their columns, not their state), newest first: a keyset page;
        each row with its record's ``title`` (:func:`baton.records.model.record_title`)."""
        with self.store.read() as tx:
            found = tx.page_runs_txn(filters, after, offset, limit)
            ids = sorted({r["record_id"] for r in found.rows if r["record_id"]})
            records = tx.get_records_txn(ids) if ids else {}
        titles = {rid: record_title(self._object_type(rec["object_type"]), rec["data"])
                  for rid, rec in records.items()}
        for row in found.rows:
            row["title"] = titles.get(row["record_id"]) if row["record_id"] else None
        return found

    def _object_type(self, name: str) -> ObjectTypeDefinition | None:
        try:
            return self.definitions.object_type(name)
        except NotFound:  # a type no longer deployed: its records keep their data
            return None

    def count_bounded(self, filters: dict[str, Any]) -> Total:
        with self.store.read() as tx:
            return tx.count_runs_bounded_txn(filters)

    def events(self, run_id: str) -> list[AuditEvent]:
        """The run's audit events in order (its decisions, steps, work items)."""
        with self.store.read() as tx:
            if tx.get_run_txn(run_id) is None:
                raise NotFound("run", run_id)
            return tx.events_txn(run_id=run_id)  # type: ignore[return-value]

    def in_fallout(self, offset: int = 0, limit: int = 100) -> FalloutPage:
        """Steps in fallout, the oldest run first and a run's steps in its order: ``limit``
        from ``offset``, and how many there are in all (one snapshot). A page of rows of
        ``baton_fallout`` (kept with the runs: store/sql/fallout.py), then its runs."""
        with self.store.read() as tx:
            total = tx.count_fallout_txn()
            keys = tx.fallout_by_run_txn(offset, limit) if offset < total else []
            return FalloutPage(total, _fallout_steps_txn(tx, keys), offset + len(keys) < total)

    def fallout_by_step(self, after: tuple[str, str] | None, limit: int, *,
                        groups: bool = False) -> FalloutPage:
        """Steps in fallout by run id and step (the Fallout page's order, its cursor the
        last ``(run_id, step)`` shown), ``limit`` after ``after``; with every step in
        fallout counted by orchestration, step and error message (``groups``)."""
        with self.store.read() as tx:
            total = tx.count_fallout_txn()
            keys = tx.fallout_by_step_txn(after, limit + 1)
            found = tx.fallout_groups_txn() if groups else []
            return FalloutPage(total, _fallout_steps_txn(tx, keys[:limit]), len(keys) > limit,
                               found)

    def fallout_group(self, orchestration: str, step: str, message: str, limit: int
                      ) -> tuple[int, list[str]]:
        """How many steps in fallout one group holds, and the ids (``RUN_ID:STEP``) of its
        first ``limit`` by run id and step (one snapshot)."""
        group = (orchestration, step, message)
        with self.store.read() as tx:
            n = tx.count_fallout_group_txn(group)
            keys = tx.fallout_by_step_txn(None, limit, group=group) if n else []
        return n, [f"{run_id}:{name}" for run_id, name in keys]


@dataclass(frozen=True)
class FalloutPage:
    """A page of steps in fallout: ``total`` in all, ``steps`` (run, step) on the page,
    whether ``more`` follow it, and (when asked) every step counted by group."""

    total: int
    steps: list[tuple[Run, StepRun]]
    more: bool
    groups: list[FalloutGroup] = field(default_factory=list)


def _fallout_steps_txn(tx: SqlTx, keys: list[tuple[str, str]]) -> list[tuple[Run, StepRun]]:
    """The runs and steps of these ``baton_fallout`` keys, in their order: one read of
    their runs (their rows are written with the runs, in their transactions)."""
    rows = tx.get_runs_txn(sorted({run_id for run_id, _ in keys}))
    runs = {rid: Run.from_json(row["state"]) for rid, row in rows.items()}
    out = []
    for run_id, name in keys:
        run = runs.get(run_id)
        sr = run.steps.get(name) if run is not None else None
        if run is not None and sr is not None and sr.status is STEP_FALLOUT \
                and run.status is RUN_IN_PROGRESS:
            out.append((run, sr))
    return out

def moved_txn(tx: Transaction) -> list[tuple[str, str]]:
    """The runs ``tx`` started and ended so far, one ``(orchestration, status)`` per
    transition (``metrics.STARTED`` for a start), to be counted when it has committed
    (:func:`count_committed`). A block that rolls back to a savepoint removes what it added."""
    moved: list[tuple[str, str]] | None = getattr(tx, "runs_moved", None)
    if moved is None:
        moved = []
        setattr(tx, "runs_moved", moved)  # noqa: B010 - (not a Transaction attribute)
    return moved


def count_committed(tx: Transaction) -> None:
    """``tx`` has committed: count the runs it started and ended (taken from it: a second
    call counts nothing). Never called for a transaction that failed or rolled back, so a
    batch committed again after a failed try counts its runs once."""
    moved: list[tuple[str, str]] | None = getattr(tx, "runs_moved", None)
    if moved:
        setattr(tx, "runs_moved", [])  # noqa: B010
        metrics.count_runs(moved)


def json_object(value: object, what: str, field: str) -> dict[str, Any]:
    """``value`` (None: ``{}``) as the JSON object it is stored as: a mapping whose keys
    are text (or become it, as JSON makes them) and whose values JSON holds; a decimal
    number is a float there (what exact numbers need is a ``decimal`` field). Anything else
    is a ValidationError naming ``field`` of ``what``, before anything is written."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValidationError(what, {field: (
            f"expected a mapping (a JSON object), got {describe(value)}")})
    given = dict(value)
    problem = first_problem(given, field)
    if problem:
        raise ValidationError(what, {field: f"holds what no store keeps: {problem}"})
    try:
        out: dict[str, Any] = orjson.loads(orjson.dumps(
            given, default=_json_number, option=orjson.OPT_NON_STR_KEYS))
    except TypeError as exc:
        try:  # as the store's codec does: what orjson refuses (an integer past 64 bits), json
            out = json.loads(json.dumps(given, default=_json_number))
        except (TypeError, ValueError):
            raise ValidationError(what, {field: (
                f"is not JSON ({exc}): JSON holds text, numbers, true/false, null, lists "
                "and objects")}) from None
    return out


def _json_number(value: object) -> float:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"Type is not JSON serializable: {type(value).__name__}")


_DONE = {"retry": "retried", "complete": "completed", "skip": "skipped"}


def _not_in_fallout(run: Run, step: str, action: str) -> str:
    """Why an operator's fallout action was refused, saying the state of the step and of
    its run (``step 'dead' of run R is skipped, not in fallout: only a step in fallout can
    be skipped; the run is in progress``)."""
    sr = run.steps.get(step)
    done = _DONE.get(action, action)
    run_is = f"the run is {run.status.value.replace('_', ' ')}"
    if sr is not None and sr.status is STEP_FALLOUT:  # (so the run is not in progress)
        return (f"step {step!r} of run {run.id} is in fallout, but {run_is}: only a step of a "
                f"run in progress can be {done}")
    state = "has not started" if sr is None else \
        f"is {sr.status.value.replace('_', ' ')} (iteration {sr.iteration})"
    return (f"step {step!r} of run {run.id} {state}, not in fallout: only a step in fallout can "
            f"be {done}; {run_is}")


def _check_output(spec: Any, output: object, step: str) -> dict[str, Any]:
    """Validate an operator's output against the step's ``output:`` field specs, if any
    (a callout's ``output:`` maps its response instead: expressions, not field specs);
    without them, it is any JSON object."""
    if not isinstance(spec, Mapping) or not any(isinstance(f, dict) for f in spec.values()):
        return json_object(output, f"output of step {step}", "output")
    if output is None:
        output = {}
    if not isinstance(output, Mapping):
        raise ValidationError(f"output of step {step}", {"output": (
            f"expected a mapping (a JSON object), got {describe(output)}")})
    fields = [FieldDefinition(name=name, type=f.get("type", "json"), required=f.get("required", False),
                              choices=tuple(f.get("choices") or ()), default=f.get("default"))
              for name, f in dict(spec).items() if isinstance(f, dict)]
    return coerce_fields(fields, output, f"output of step {step}")
