"""Plans: generate one for a submitted order, show it, cancel it with compensation.

A plan is a run whose orchestration is ``plan:ORDER_ID`` and whose version is the plan's
revision: :class:`~baton.runtime.definitions.DefinitionRepo` builds that definition from
the graph stored in ``baton_plans`` (:meth:`definition`), so the worker, the engine, SLAs,
fallout and the audit log treat it as any run. Cancel before the point of no return
cancels the plan's run and starts revision N+1, a compensation run whose steps are the
completed steps' ``rollback`` steps in reverse dependency order — durable, retried and in
fallout like any other step. An amendment moves the plan's run to revision N+1 with those
rollback steps in it, each changed step done again only after its own rollback
(:mod:`baton.plans.compensation`). "Completed" here means "may have acted": a step whose
call was in flight, waiting for a retry, or in fallout when the order was canceled or the
step amended away, or that an operator skipped after its attempts, is compensated too, its
rollback told the key its attempts sent and whether the other system may still be busy
with it (:func:`~baton.plans.compensation.may_have_acted`, ``uncertain``); a step never
attempted is not.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from baton.clock import Clock, iso
from baton.definitions.model import OrchestrationDefinition
from baton.definitions.plans import FulfillmentDefinition
from baton.engine.events import CancelRequested, PlanAmended
from baton.engine.state import Run
from baton.engine.status import STEP_OPEN, RunStatus, StepStatus
from baton.errors import NotFound, TransitionConflict, ValidationError
from baton.expressions import is_expression
from baton.ids import IdGenerator
from baton.plans.compensation import (
    amended_graph,
    compensation_graph,
    may_have_acted,
    pending_rollbacks,
    real_after,
    undo_facts,
)
from baton.plans.decompose import (
    CANCEL,
    OrderLine,
    PlanningError,
    commercial_keys,
    decompose,
    line_keys,
)
from baton.plans.generate import PAUSE, Timings, generate, with_line_views
from baton.records.model import record_view
from baton.rows import audit_event
from baton.steps.callout import idempotency_key
from baton.store.ports import Transaction
from baton.store.schema import is_record_ref

if TYPE_CHECKING:
    from baton.runtime.definitions import DefinitionRepo
    from baton.runtime.idempotency import IdempotencyClaim
    from baton.runtime.runs import RunDriver
    from baton.store.sql import SqlStore

PREFIX = "plan:"
MAX_LINES = 1_000_000


def plan_name(order_id: str) -> str:
    return PREFIX + order_id


def order_of(orchestration: str) -> str | None:
    """The order id of a plan run's orchestration name, else None."""
    return orchestration[len(PREFIX):] if orchestration.startswith(PREFIX) else None


def build_definition(graph: Mapping[str, Any]) -> OrchestrationDefinition:
    """A plan revision's stored graph -> the orchestration the engine runs."""
    from baton.definitions.loader import _build_orchestration  # YAML-free, but big: lazily

    return _build_orchestration(_child_inputs(_groupings(with_line_views(graph), graph)),
                                defaultdict(int))


def _groupings(definition: dict[str, Any], graph: Mapping[str, Any]) -> dict[str, Any]:
    """The definition with each group step's ``input.plan.grouped_as`` (its fact's: the
    group template whose ``group_by`` its template shares), by which a flow's
    ``ctx.steps`` tells a group template keyed as its own step is (the same group's step)
    from one keyed otherwise (several: :mod:`baton.plans.reads`). Kept out of the graph's
    steps, which an amendment compares (a plan made before would see each of its group
    steps changed); a graph without them: the definition as it is."""
    found = {f["name"]: f["grouped_as"] for f in graph["steps"] if "grouped_as" in f}
    if not found:
        return definition
    stages = []
    for stage in definition["stages"]:
        steps = []
        for step in stage["steps"]:
            grouping = found.get(step["name"])
            plan = (step.get("input") or {}).get("plan")
            if grouping is not None and isinstance(plan, Mapping):
                step = {**step, "input": {**step["input"],
                                          "plan": {**plan, "grouped_as": grouping}}}
            steps.append(step)
        stages.append({**stage, "steps": steps})
    return {**definition, "stages": stages}


# A child-run step's ``input`` is the child run's input, typed by the child's trigger.
CHILD_RUN = "orchestration"


def _child_inputs(definition: dict[str, Any]) -> dict[str, Any]:
    """The definition with its child-run steps' (``type: orchestration``) ``input`` as
    their template wrote it. Every plan step's input has ``plan`` (its scope, instance,
    lines; a rollback's ``undo``), which the graph keeps (compensation and ``plans show``
    read it); but a child-run step's input is the child run's, which the child's trigger
    types: deploy checked the template's against it, and the child refuses a ``plan`` it
    does not take (before, every such step fell out at start: "plan: unknown field").

    What the step's expressions read of it, ``input.plan`` (a child-run rollback's
    ``input: {booking: '=input.plan.undo.idempotency_key'}``, as a callout rollback reads
    it; the child declares the input that takes it), is its value, known now: each such
    reading becomes that value, written in the expression (the run's own input, which
    those expressions see, has no ``plan``)."""
    if not any(s.get("type") == CHILD_RUN and "plan" in (s.get("input") or {})
               for stage in definition["stages"] for s in stage["steps"]):
        return definition
    stages = []
    for stage in definition["stages"]:
        steps = []
        for step in stage["steps"]:
            if step.get("type") == CHILD_RUN and "plan" in (step.get("input") or {}):
                plan = step["input"]["plan"]
                step = {**step, "input": {k: v for k, v in step["input"].items()
                                          if k != "plan"}}
                step = {k: v if k in ("name", "type") else _plan_read(v, plan)
                        for k, v in step.items()}
            steps.append(step)
        stages.append({**stage, "steps": steps})
    return {**definition, "stages": stages}


# ``input.plan`` (``input["plan"]``) in an expression; string literals are left alone.
_PLAN_READ = re.compile(
    r"(?P<text>\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*')"
    r"|(?<![\w.])input\s*(?:\.\s*plan\b|\[\s*(?:\"plan\"|'plan')\s*\])")


def _plan_read(value: Any, plan: Any) -> Any:
    """``value`` with each ``input.plan`` in its expressions written as ``plan`` (a CEL
    literal: JSON's maps, lists, strings, numbers, true, false and null are CEL's)."""
    if isinstance(value, str):
        if not is_expression(value) or "plan" not in value:
            return value
        literal = "(" + orjson.dumps(plan).decode() + ")"
        return _PLAN_READ.sub(lambda m: m.group(0) if m.group("text") is not None
                              else literal, value)
    if isinstance(value, Mapping):
        return {k: _plan_read(v, plan) for k, v in value.items()}
    if isinstance(value, list):
        return [_plan_read(v, plan) for v in value]
    return value


def plan_navigated(graph: Mapping[str, Any]) -> tuple[tuple[str, ...], ...] | None:
    """The record paths a plan's expressions navigate, stored with its graph (None in a
    graph stored without them: then they are found by walking the definition)."""
    found = graph.get("navigated")
    return None if found is None else tuple(tuple(p) for p in found)


class PlanService:
    def __init__(self, store: SqlStore, definitions: DefinitionRepo, runs: RunDriver,
                 ids: IdGenerator, clock: Clock) -> None:
        self.store = store
        self.definitions = definitions
        self.runs = runs
        self.ids = ids
        self.clock = clock
        self.last_timings = Timings()

    # ---- planning -------------------------------------------------------------------
    def plan_txn(self, tx: Transaction, fulfillment: FulfillmentDefinition, version: int,
                 order_row: Mapping[str, Any], actor: str, now_dt: Any) -> Run:
        """Decompose the order, generate its plan (revision 1, or the next after a
        canceled one) and start its run, in the caller's transaction."""
        tm = Timings()
        t0 = time.perf_counter()
        catalog, catalog_version = self.definitions.catalog(fulfillment.catalog, tx)
        order_id = order_row["id"]
        otype = self.definitions.object_type(order_row["object_type"], tx)
        order = _jsonable(record_view(order_row, otype))
        revisions = tx.plan_revisions_txn(order_id)  # (not their graphs: not needed)
        latest = revisions[-1] if revisions else None
        if latest is not None:
            run_row = tx.get_run_txn(latest["run_id"])
            if run_row is not None and run_row["status"] == RunStatus.IN_PROGRESS.value:
                raise TransitionConflict(f"order {order_id} already has a plan in progress "
                                         f"(run {latest['run_id']}); amend or cancel it")
        lines = self.order_lines_txn(tx, fulfillment, order_id)
        if not lines:
            # (a plan of no steps would complete at once: an order fulfilled with nothing)
            raise PlanningError(
                f"order {order_id} has no {fulfillment.line_object} lines: nothing to "
                "fulfill; write its lines with it (`baton records create "
                f"{fulfillment.trigger.object} --children '{fulfillment.line_object}=[...]'`) "
                "or before it meets its fulfillment's trigger")
        keys = commercial_keys(lines)
        flines = decompose(catalog, lines, order, keys)
        tm.decomposition = time.perf_counter() - t0
        name = plan_name(order_id)
        graph = generate(fulfillment, flines, order, otype.name, name, now_dt, tm)
        graph["line_keys"] = keys  # (an amendment keeps them: see _diff_txn)
        graph["pinned"] = {"fulfillment": fulfillment.name, "fulfillment_version": version,
                           "catalog": catalog.name, "catalog_version": catalog_version}
        t1 = time.perf_counter()
        revision = (latest["revision"] if latest else 0) + 1
        defn = self.definitions.remember_plan(name, revision, build_definition(graph), tx,
                                                   plan_navigated(graph))
        run = self.runs.start_txn(tx, defn, revision, order_row, {}, actor, now_dt)
        tx.insert_plan_txn({
            "order_id": order_id, "revision": revision, "kind": "plan", "run_id": run.id,
            "fulfillment": fulfillment.name, "fulfillment_version": version,
            "catalog": catalog.name, "catalog_version": catalog_version, "graph": graph,
            "created_at": iso(now_dt), "created_by": actor})
        tx.append_events_txn([audit_event(  # type: ignore[list-item]
            "plan_generated", actor, iso(now_dt), order_id, run.id,
            {"revision": revision, "steps": len(graph["steps"]), "lines": len(flines),
             "fulfillment": fulfillment.name, "fulfillment_version": version,
             "catalog": catalog.name, "catalog_version": catalog_version})])
        tm.persistence = time.perf_counter() - t1
        self.last_timings = tm
        return run

    def order_lines_txn(self, tx: Transaction, fulfillment: FulfillmentDefinition,
                        order_id: str) -> list[OrderLine]:
        ltype = self.definitions.object_type(fulfillment.line_object, tx)
        order_field = next((f.name for f in ltype.fields
                            if f.type == "ref" and f.object == fulfillment.trigger.object), None)
        bundle_field = next((f.name for f in ltype.fields
                             if f.type == "ref" and f.object == ltype.name), None)
        if order_field is None:
            raise PlanningError(f"object type {ltype.name} has no ref field to "
                                f"{fulfillment.trigger.object}: its records cannot be lines")
        rows = (tx.records_naming_txn(ltype.name, order_field, order_id)
                if is_record_ref(order_id)  # (an order's id always is: a record's)
                else tx.find_records_txn(ltype.name, {order_field: order_id}, MAX_LINES))
        rows.sort(key=lambda r: (r["created_at"], r["id"]))
        out = []
        for i, r in enumerate(rows, 1):
            d = r["data"]
            qty = d.get("quantity", d.get("qty", 1))
            attributes = d.get("attributes")
            # (a json field takes any value: one that is not a mapping cannot be planned;
            # the line is named as the plan names it, L<position>, and by its record)
            if attributes is not None and not isinstance(attributes, Mapping):
                raise ValidationError(f"{ltype.name} L{i} ({r['id']})", {
                    "attributes": "must be a mapping of names to values, not "
                                  + _a(attributes)})
            try:
                quantity = 1 if qty is None else _whole(qty)
            except (TypeError, ValueError):
                raise ValidationError(f"{ltype.name} L{i} ({r['id']})", {
                    "quantity": f"must be a whole number, not {_a(qty)}"}) from None
            out.append(OrderLine(r["id"], str(d.get("product")), quantity,
                                 str(d.get("action") or "add"), dict(attributes or {}),
                                 d.get("start_date"),
                                 d.get(bundle_field) if bundle_field else None))
        return out

    # ---- reads ------------------------------------------------------------------------
    def revision(self, order_id: str, revision: int | None = None,
                 tx: Transaction | None = None) -> dict[str, Any]:
        if tx is None:
            with self.store.read() as rtx:
                return self.revision(order_id, revision, rtx)
        row = tx.get_plan_txn(order_id, revision)
        if row is None:
            raise NotFound("plan", order_id if revision is None else f"{order_id} r{revision}",
                           "an order gets a plan when it is submitted")
        return row

    def plan_row(self, order_id: str, tx: Transaction) -> dict[str, Any]:
        """The latest revision that is a plan (not a compensation)."""
        for row in reversed(tx.plan_revisions_txn(order_id)):
            if row["kind"] == "plan":
                got = tx.get_plan_txn(order_id, row["revision"])
                assert got is not None
                return got
        raise NotFound("plan", order_id, "an order gets a plan when it is submitted")

    def show(self, order_id: str) -> dict[str, Any]:
        """The plan as ``baton plans show`` prints it: steps by lane with their scope
        instance, status, SLA and dependencies; the compensation, if any."""
        with self.store.read() as tx:
            row = self.plan_row(order_id, tx)
            revisions = tx.plan_revisions_txn(order_id)
            comp = next((r for r in revisions if r["kind"] == "compensation"
                         and r["revision"] > row["revision"]), None)
            run = Run.from_json(tx.get_run_txn(row["run_id"])["state"])  # type: ignore[index]
            comp_run = (Run.from_json(tx.get_run_txn(comp["run_id"])["state"])  # type: ignore[index]
                        if comp else None)
            comp_graph = tx.get_plan_txn(order_id, comp["revision"]) if comp else None
        steps = _step_views(row["graph"], run)
        ponr = [s["name"] for s in steps if s.get("ponr")]
        return {"order_id": order_id, "revision": row["revision"], "run_id": row["run_id"],
                "status": run.status.value, **row["graph"]["pinned"],
                "lanes": _lanes(row["graph"]),
                "ponr": {"steps": ponr,
                         "passed": next((s["name"] for s in steps if s.get("ponr")
                                         and s["status"] == StepStatus.COMPLETED.value), None)},
                "steps": steps,
                "lines": row["graph"]["lines"],
                "compensation": None if comp is None or comp_run is None or comp_graph is None
                else {"revision": comp["revision"], "run_id": comp["run_id"],
                      "status": comp_run.status.value,
                      "steps": _step_views(comp_graph["graph"], comp_run)}}

    # ---- cancel -----------------------------------------------------------------------
    def cancel(self, order_id: str, reason: str, actor: str, *,
               idempotency: IdempotencyClaim | None = None,
               run_id: str | None = None) -> dict[str, Any]:
        """Cancel the order's plan: refused once a point-of-no-return step has completed;
        else its run is canceled and a compensation run rolls back the steps that may
        have acted (completed, or attempted and not canceled before: see :func:`_acted`).
        ``run_id``: the plan's run the caller read (a run's cancel routed to its plan):
        refused, nothing written, when the order's plan is another run by the time it is
        written (the order canceled and planned again in between: its new plan is not the
        one that was asked to be canceled)."""
        if not reason:
            raise PlanningError("say why the order is canceled (it is audited)")
        now_dt = self.clock.now()
        with self.store.write() as tx:
            if idempotency is not None:  # (an API request's key, with what it did)
                idempotency.claim_txn(tx, now_dt, order_id)
            row = self.plan_row(order_id, tx)
            if run_id is not None and row["run_id"] != run_id:
                raise TransitionConflict(
                    f"run {run_id} is no longer the plan of order {order_id}: the order was "
                    f"planned again (run {row['run_id']}, revision {row['revision']}) since "
                    "it was read; nothing was canceled. Cancel the order's plan now, if "
                    f"that is meant (`baton plans cancel {order_id} --reason ...`)")
            out = self._cancel_txn(tx, row, reason, actor, now_dt)
        out.pop("revision")
        return out

    def _cancel_txn(self, tx: Transaction, row: Mapping[str, Any], reason: str, actor: str,
                    now_dt: Any, audit: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """:meth:`cancel` of the plan ``row`` (the order's plan, read in ``tx``): the
        point-of-no-return check, the run canceled, the compensation run started.
        ``audit``: more to say in the ``plan_canceled`` event."""
        order_id = row["order_id"]
        run, defn, record = self.runs.load_txn(tx, row["run_id"])
        self._check_ponr(row["graph"], run, "canceled")
        if run.status is RunStatus.CANCELED:
            raise TransitionConflict(f"the plan of order {order_id} is {run.status.value}; "
                                     "it cannot be canceled")
        status = {n: sr.status.value for n, sr in run.steps.items()}
        keys = _carried_keys(row["graph"], run, status)
        acted = _acted(row["graph"], run)  # (before the cancel, which cancels them)
        if run.status is not RunStatus.COMPLETED:  # (in progress, or failed)
            self.runs.decide_and_apply_txn(tx, defn, run, CancelRequested(reason, actor),
                                           now_dt, record)
        graph = compensation_graph(row["graph"], status, plan_name(order_id), keys, acted)
        revision = max(r["revision"] for r in tx.plan_revisions_txn(order_id)) + 1
        cdefn = self.definitions.remember_plan(plan_name(order_id), revision,
                                               build_definition(graph), tx,
                                               plan_navigated(graph))
        order_row = tx.get_record_txn(order_id, for_update=True)
        if order_row is None:
            raise NotFound("record", order_id, "the order was deleted; its plan cannot "
                           "be compensated")
        comp = self.runs.start_txn(tx, cdefn, revision, order_row, {}, actor, now_dt)
        tx.insert_plan_txn({**{k: row[k] for k in (
            "fulfillment", "fulfillment_version", "catalog", "catalog_version")},
            "order_id": order_id, "revision": revision, "kind": "compensation",
            "run_id": comp.id, "graph": graph, "created_at": iso(now_dt),
            "created_by": actor})
        tx.append_events_txn([audit_event(  # type: ignore[list-item]
            "plan_canceled", actor, iso(now_dt), order_id, row["run_id"],
            {"reason": reason, "compensation_run": comp.id, "revision": revision,
             "rollbacks": [s["name"] for s in graph["steps"]], **(audit or {})})])
        return {"order_id": order_id, "run_id": row["run_id"], "compensation_run_id": comp.id,
                "rollbacks": [s["name"] for s in graph["steps"]], "revision": revision}

    # ---- amend ------------------------------------------------------------------------
    def diff(self, order_id: str, refuse: bool = False) -> dict[str, Any]:
        """What amending the plan to the order's lines as they are now would do: steps
        added, removed (compensated when they have a rollback and may have acted:
        completed, or attempted and not canceled — :func:`_acted`), changed
        (removed and added again), rewired (only their ``after`` changed: they keep their
        state) and unchanged; ``cancels_order``: the lines are all canceled, and the
        amendment would cancel the order (every plan step removed, the rollbacks those of
        :meth:`cancel`). ``refuse``: raise what :meth:`amend` would refuse with (a
        passed point of no return, a plan not in progress), as a dry run of it."""
        with self.store.read() as tx:
            out, row, graph, run = self._diff_txn(tx, order_id, self.clock.now())
        if refuse:
            self._check_amendable(order_id, row["graph"], run)
            self._check_lines(order_id, graph)
        return out

    @staticmethod
    def _check_lines(order_id: str, graph: Mapping[str, Any]) -> None:
        """An amendment to no lines at all is refused: its plan would complete with every
        step removed, as if the order had been fulfilled. Taking it all back is a cancel."""
        if not graph["lines"]:
            raise TransitionConflict(
                f"order {order_id} has no lines left: an amendment cannot remove them all; "
                "cancel the order instead (`baton plans cancel`), which rolls back its "
                "completed steps")

    def _check_amendable(self, order_id: str, graph: Mapping[str, Any], run: Run) -> None:
        self._check_ponr(graph, run, "amended")
        if run.status is not RunStatus.IN_PROGRESS:
            raise TransitionConflict(f"the plan of order {order_id} is {run.status.value}; "
                                     "only a plan in progress can be amended")

    def _diff_txn(self, tx: Transaction, order_id: str, now_dt: Any
                  ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], Run]:
        """The difference (as :meth:`diff` answers it), the plan's row, the amended graph
        (:func:`~baton.plans.compensation.amended_graph`) and the plan's run."""
        row = self.plan_row(order_id, tx)
        fulfillment = self.definitions.fulfillment(row["fulfillment"], row["fulfillment_version"],
                                                   tx)
        catalog = self.definitions.catalog_version(row["catalog"], row["catalog_version"], tx)
        order_row = tx.get_record_txn(order_id)
        if order_row is None:
            raise NotFound("record", order_id)
        otype = self.definitions.object_type(order_row["object_type"], tx)
        order = _jsonable(record_view(order_row, otype))
        # Lines keep the keys the plan gave them (a removed line renumbers none of the
        # others: their steps keep their names and state); new lines get new keys.
        order_lines = self.order_lines_txn(tx, fulfillment, order_id)
        given = line_keys(row["graph"], order_lines)
        keys = commercial_keys(order_lines, given)
        flines = decompose(catalog, order_lines, order, keys)
        new = generate(fulfillment, flines, order, otype.name, plan_name(order_id), now_dt)
        new["pinned"] = row["graph"]["pinned"]
        new["line_keys"] = {**given, **keys}
        run_row = tx.get_run_txn(row["run_id"])
        assert run_row is not None
        run = Run.from_json(run_row["state"])
        # The plan's steps, not the rollback steps an amendment added (nor the plan's
        # waits for them), compared with their lines' views: a line changed in place
        # changes its steps.
        old_after = real_after(row["graph"])
        old_steps = {s["name"]: s for s in with_line_views(row["graph"])["stages"][0]["steps"]
                     if s["name"] in old_after}
        new_steps = {s["name"]: s for s in with_line_views(new)["stages"][0]["steps"]}
        added, changed, rewired, unchanged = [], [], [], []
        for name, s in new_steps.items():
            o = old_steps.get(name)
            if o is None:
                added.append(name)
            elif _content(o) != _content(s):
                changed.append(name)
            elif old_after[name] != list(s.get("after") or ()):
                rewired.append(name)
            else:
                unchanged.append(name)
        removed = [n for n in old_steps if n not in new_steps]
        status = {n: sr.status.value for n, sr in run.steps.items()}
        facts = {f["name"]: f for f in row["graph"]["steps"]}
        # A step removed (or changed) while its call is in flight, waiting for a retry or
        # in fallout is undone like a completed one: the other system may have acted.
        acted = _acted(row["graph"], run)
        compensate = [n for n in removed + changed if n in acted
                      and "rollback" in facts.get(n, {})]
        graph, rollbacks = amended_graph(row["graph"], new, compensate, status, acted)
        if cancels_every_line(row["graph"], new):
            # The order taken back whole: amending it is canceling it (its point of no
            # return, its run canceled, every step that may have acted rolled back in a
            # compensation run), not a plan of what is left (a plan with its point of no
            # return gone, which would complete as if the order were fulfilled).
            comp = compensation_graph(row["graph"], status, plan_name(order_id),
                                      _carried_keys(row["graph"], run, status), acted)
            gone = list(old_steps)
            out = {"order_id": order_id, "revision": row["revision"], "run_id": row["run_id"],
                   "added": [], "removed": gone, "changed": [], "rewired": [],
                   "unchanged": [], "compensate": [n for n in gone if n in acted],
                   "rollbacks": [f["name"] for f in comp["steps"]],
                   "status": {n: status.get(n, "not_started") for n in gone},
                   "cancels_order": True}
            return out, row, graph, run
        out = {"order_id": order_id, "revision": row["revision"], "run_id": row["run_id"],
               "added": added, "removed": removed, "changed": changed, "rewired": rewired,
               "unchanged": unchanged, "compensate": compensate, "rollbacks": rollbacks,
               "status": {n: status.get(n, "not_started") for n in removed + changed},
               "cancels_order": False}
        return out, row, graph, run

    def amend(self, order_id: str, actor: str, *,
              idempotency: IdempotencyClaim | None = None) -> dict[str, Any]:
        """Plan only the difference between the plan and the order's lines now: refused
        once a point-of-no-return step has completed; removed (and changed) steps leave
        the run, open ones canceled; added (and changed) steps join it; the others keep
        their state. The completed steps removed or changed are compensated in the plan
        itself: their rollback steps join it (in reverse dependency order), and a changed
        step is done again only once its rollback has completed — a rollback in fallout
        holds it. Nothing differs: nothing is done (``applied`` false, the revision
        stays). An amendment that cancels every line (:func:`cancels_every_line`) cancels
        the order, as :meth:`cancel` does (``cancels_order``; its compensation run in
        ``compensation_run_id``). One transaction: the revision, the run's new state with
        its audit events and jobs."""
        now_dt = self.clock.now()
        with self.store.write() as tx:
            if idempotency is not None:  # (an API request's key, with what it did)
                idempotency.claim_txn(tx, now_dt, order_id)
            diff, row, graph, _ = self._diff_txn(tx, order_id, now_dt)
            run, _defn, record = self.runs.load_txn(tx, row["run_id"])
            self._check_amendable(order_id, row["graph"], run)
            self._check_lines(order_id, graph)
            if diff["cancels_order"]:  # (every line canceled: the order's cancel)
                done = self._cancel_txn(tx, row, CANCELS_EVERY_LINE, actor, now_dt,
                                        {"amendment": True})
                return {**diff, "revision": done["revision"], "applied": True,
                        "rollbacks": done["rollbacks"],
                        "compensation_run_id": done["compensation_run_id"]}
            if not (diff["added"] or diff["removed"] or diff["changed"] or diff["rewired"]):
                # nothing differs: no new revision (an amendment asked twice is one)
                return {**diff, "revision": row["revision"], "compensation_run_id": None,
                        "applied": False}
            revisions = tx.plan_revisions_txn(order_id)
            revision = max(r["revision"] for r in revisions) + 1
            name = plan_name(order_id)
            defn = self.definitions.remember_plan(name, revision, build_definition(graph), tx,
                                                   plan_navigated(graph))
            tx.insert_plan_txn({**{k: row[k] for k in (
                "fulfillment", "fulfillment_version", "catalog", "catalog_version")},
                "order_id": order_id, "revision": revision, "kind": "plan", "run_id": run.id,
                "graph": graph, "created_at": iso(now_dt), "created_by": actor})
            # a rollback done before whose step is undone again leaves and joins afresh
            again = [r for r in diff["rollbacks"] if r in run.steps]
            self.runs.decide_and_apply_txn(
                tx, defn, run, PlanAmended(
                    revision, tuple(diff["removed"] + diff["changed"] + again),
                    tuple(diff["changed"] + diff["added"] + diff["rollbacks"]), actor),
                now_dt, record)
            tx.append_events_txn([audit_event(  # type: ignore[list-item]
                "plan_amended", actor, iso(now_dt), order_id, run.id,
                {"revision": revision, "added": diff["added"], "removed": diff["removed"],
                 "changed": diff["changed"], "rollbacks": diff["rollbacks"]})])
        return {**diff, "revision": revision, "compensation_run_id": None, "applied": True}

    def _check_ponr(self, graph: Mapping[str, Any], run: Run, what: str) -> None:
        for fact in graph["steps"]:
            sr = run.steps.get(fact["name"])
            if fact.get("ponr") and sr is not None and sr.status is StepStatus.COMPLETED:
                raise TransitionConflict(
                    f"the order can no longer be {what}: step '{fact['name']}' is a point of "
                    f"no return and completed at {sr.completed_at or 'an earlier time'}")


CANCELS_EVERY_LINE = "the amendment cancels every line of the order"


def cancels_every_line(old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
    """Does the plan graph ``new`` (the order's lines now) take the order back whole from
    the plan ``old``: every line of it canceled (action ``cancel``: a line's own, or its
    bundle's), where the plan had a line that was not? An order of disconnects (canceled
    lines from its first plan) is not: amending it plans the difference as any other."""
    lines = new["lines"]
    return bool(lines) and all(v.get("action") == CANCEL for v in lines) \
        and any(v.get("action") != CANCEL for v in old["lines"])


def _acted(graph: Mapping[str, Any], run: Run) -> dict[str, dict[str, Any]]:
    """The plan ``run``'s steps with a rollback in ``graph`` that may have acted
    (completed; or attempted — a job enqueued for their iteration, so a worker may have
    made the call — and not canceled: in flight, waiting for a retry, in fallout, skipped
    by an operator after its attempts; see
    :func:`~baton.plans.compensation.may_have_acted`) -> what the rollback of each is told
    (:func:`~baton.plans.compensation.undo_facts`: the key its attempts sent among it, and
    whether its effect is still uncertain, from its last attempt's error)."""
    out = {}
    for fact in graph["steps"]:
        name = fact["name"]
        sr = run.steps.get(name)
        if sr is None or "rollback" not in fact:
            continue
        status = sr.status.value
        if may_have_acted(status, sr.attempts):
            out[name] = undo_facts(run.id, name, status, sr.iteration, sr.attempts,
                                   sr.error)
    return out


def _carried_keys(graph: Mapping[str, Any], run: Run, status: Mapping[str, str]
                  ) -> dict[str, str]:
    """Pending rollback step -> the idempotency key its attempts in the plan's ``run``
    sent, for those the run began (their call may have reached the other system: in
    flight, waiting for a retry, in fallout). The compensation's call sends it again."""
    out = {}
    for rb in pending_rollbacks(graph, status).values():
        sr = run.steps.get(rb)
        if sr is not None and sr.attempts > 0:
            out[rb] = idempotency_key(run.id, rb, sr.iteration)
    return out


def _content(step: Mapping[str, Any]) -> dict[str, Any]:
    """A step as the diff compares it: without ``after`` (rewiring keeps its state) and,
    for a not_before wait, without the time left (it shrinks as time passes)."""
    out = {k: v for k, v in step.items() if k != "after"}
    if out.get("type") == PAUSE and str(out.get("name", "")).startswith("wait_"):
        out.pop("for", None)
    return out


_KINDS = {str: "a string", list: "a list", bool: "a boolean", int: "an integer",
          float: "a number"}


def _a(value: Any) -> str:
    """What a JSON value is, said as an error says it ("a string")."""
    return _KINDS.get(type(value), f"a {type(value).__name__}")


def _whole(value: Any) -> int:
    """A quantity as a whole number (1, 2.0, "3"); raises ValueError (TypeError) else."""
    if isinstance(value, bool):
        raise TypeError(value)
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(value)
    return int(value)


def _lanes(graph: Mapping[str, Any]) -> list[str]:
    lanes = list(graph.get("lanes") or [])
    for f in graph["steps"]:
        lane = f.get("lane") or "(no lane)"
        if lane not in lanes:
            lanes.append(lane)
    return lanes


def _step_views(graph: Mapping[str, Any], run: Run) -> list[dict[str, Any]]:
    steps = {s["name"]: s for s in graph["definition"]["stages"][0]["steps"]}
    out = []
    for f in graph["steps"]:
        s = steps[f["name"]]
        sr = run.steps.get(f["name"])
        sla = sr.sla if sr is not None else None
        out.append({**{k: v for k, v in f.items() if k not in ("rollback", "grouped_as")},
                    "lane": f.get("lane") or "(no lane)", "type": s["type"],
                    "status": sr.status.value if sr is not None else "pending",
                    "after": list(s.get("after") or ()),
                    "sla": step_sla(_sla_view(sla), sr.status.value,
                                    sr.completed_at) if sr is not None and sla is not None
                    else None,
                    "has_rollback": "rollback" in f})
    return out


def _sla_view(sla: Any) -> dict[str, Any]:
    if isinstance(sla, Mapping):
        return dict(sla)
    return {k: getattr(sla, k) for k in ("state", "due_at", "jeopardy_at") if hasattr(sla, k)}


_OPEN = frozenset(s.value for s in STEP_OPEN)
SLA_MET, SLA_MISSED = "met", "missed"


def step_sla(sla: Mapping[str, Any] | None, status: str, completed_at: str | None
             ) -> dict[str, Any] | None:
    """A plan step's SLA as ``plans show`` gives it (``status``: the step's): an open
    step's as it stands (``status`` on_track, in_jeopardy or overdue, with ``due_at`` and
    ``jeopardy_at``); an ended step's carries no live state: a completed step's ``status``
    is ``met``, or ``missed`` when it completed after its due time (``completed_at``; a
    view that says met or missed already, given without it, is kept); a step skipped,
    canceled or failed has ``status`` null (no SLA holds for it any more). None: no SLA."""
    if not sla:
        return None
    out = dict(sla)
    if "state" in out and "status" not in out:  # (an SLA object's name for it)
        out["status"] = out.pop("state")
    if status in _OPEN:
        return out
    if status != StepStatus.COMPLETED.value:
        out["status"] = None
    elif completed_at is not None or out.get("status") not in (SLA_MET, SLA_MISSED):
        due = out.get("due_at")
        out["status"] = SLA_MISSED if due and completed_at and _later(completed_at, due) \
            else SLA_MET
    return out


def _later(a: str, b: str) -> bool:
    """Is the instant ``a`` after ``b`` (ISO texts; compared as texts when not both are
    instants with an offset)?"""
    try:
        x, y = datetime.fromisoformat(a), datetime.fromisoformat(b)
        return x > y
    except (TypeError, ValueError):
        return a > b


def _jsonable(view: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in view.items():
        out[k] = v if v is None or isinstance(v, str | int | float | bool | list | dict) \
            else str(v)
    return out

