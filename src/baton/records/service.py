"""The records service: create, update and delete records, fire the orchestrations their
triggers start, and read them and their timeline.

A record write, its audit event, the runs it triggers and the ``evaluate`` jobs of the
runs it wakes commit in one transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from baton.clock import Clock, iso
from baton.definitions.checks import describe
from baton.definitions.model import ObjectTypeDefinition, OrchestrationDefinition
from baton.definitions.refs import navigated_cached
from baton.errors import ExpressionError, NotFound, TransitionConflict, ValidationError
from baton.expressions import evaluate_condition
from baton.ids import IdGenerator
from baton.records.fields import coerce_fields, field_shape, ref_problem, typed_values
from baton.records.model import in_field_order, record_json_view, record_view
from baton.records.related import with_related_txn
from baton.rows import AuditEvent, Record, audit_event
from baton.runtime import jobs
from baton.runtime.definitions import DefinitionRepo
from baton.runtime.idempotency import IdempotencyClaim
from baton.runtime.incidents import (
    TRIGGER_FAILED,
    incident_row,
    open_incident_txn,
    trigger_scope,
)
from baton.store.base import KeyPage, Total
from baton.store.ports import Transaction
from baton.store.sql import SqlStore

if TYPE_CHECKING:
    from baton.plans.service import PlanService
    from baton.runtime.runs import RunDriver


def _held(source: str, scope: Mapping[str, Any]) -> bool:
    """Did a trigger's condition hold for the record as it was? One that cannot be evaluated
    on the earlier values (a field that was empty then) did not hold: the write made it hold."""
    try:
        return evaluate_condition(source, scope)
    except ExpressionError:
        return False


def _changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: [old.get(k), v] for k, v in new.items() if old.get(k) != v}


class RecordService:
    """Records on one store; ``wake`` tells in-process workers a job is waiting."""

    def __init__(self, store: SqlStore, definitions: DefinitionRepo, runs: RunDriver,
                 ids: IdGenerator, clock: Clock, wake: Callable[[], None]) -> None:
        self.store = store
        self.definitions = definitions
        self.runs = runs
        self.ids = ids
        self.clock = clock
        self.wake = wake
        self._plans: PlanService | None = None
        self._plans_lock = threading.Lock()
        # (object type, op) -> the orchestrations and fulfillments a record write starts,
        # for the definitions' index of active versions it was made from (see _triggers_txn).
        self._trigger_index: dict[tuple[str, str], list[tuple[Any, int]]] = {}
        self._trigger_index_of: object = None
        self._trigger_lock = threading.Lock()

    @property
    def plans(self) -> PlanService:
        """Orders' plans (made on first use: the planner's modules are large, and no read
        command, nor a record without a fulfillment, needs them)."""
        with self._plans_lock:
            if self._plans is None:
                from baton.plans.service import PlanService

                self._plans = PlanService(self.store, self.definitions, self.runs, self.ids,
                                          self.clock)
            return self._plans

    def create(self, object_type: str, rows: Sequence[dict[str, Any]], actor: str,
               claim: IdempotencyClaim | None = None,
               children: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
               ) -> list[dict[str, Any]]:
        """Create records (and the runs they trigger) in one transaction: all or none.

        ``claim``: the request's idempotency key, claimed and bound to the (first) record
        in the same transaction."""
        now_dt = self.clock.now()
        with self.store.write() as tx:
            return self.create_txn(tx, object_type, rows, actor, claim, now_dt, children)

    def create_txn(self, tx: Transaction, object_type: str, rows: Sequence[dict[str, Any]],
                   actor: str, claim: IdempotencyClaim | None, now_dt: Any,
                   children: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
                   ) -> list[dict[str, Any]]:
        """:meth:`create` in the caller's transaction (a group commit's savepoint, say).

        ``children``: child object type -> records created with the (one) parent in the
        same transaction (an order's lines), all or none."""
        now = iso(now_dt)
        out = []
        _check_rows(object_type, rows)
        if claim is not None:
            claim.claim_txn(tx, now_dt)
        otype = self.definitions.object_type(object_type, tx)
        if children and len(rows) != 1:
            raise ValidationError("records", {"children": "child records are created with "
                                                          "exactly one parent record"})
        for i, data in enumerate(rows):
            what = f"{object_type} record" + (f" #{i + 1}" if len(rows) > 1 else "")
            row = self._insert_txn(tx, otype, data, what, actor, now)
            created = [(row, otype)]
            for child_type, child_rows in (children or {}).items():
                created += self._children_txn(tx, otype, row["id"], child_type, child_rows,
                                              actor, now)
            # Triggers last, the parent's after its children's: a trigger on the parent
            # (an order submitted with its lines) sees every child.
            for done, t in reversed(created):
                self.fire_triggers_txn(tx, done, None, "create", now_dt, actor, otype=t)
            out.append(record_json_view(row, otype))
        if claim is not None and out:
            claim.bind_txn(tx, out[0]["id"])
        return out

    def _insert_txn(self, tx: Transaction, otype: ObjectTypeDefinition, data: Mapping[str, Any],
                    what: str, actor: str, now: str) -> Record:
        values = coerce_fields(otype.fields, dict(data), what)
        check_refs_txn(tx, otype, values, what)
        row: Record = {"id": self.ids.new("rec"), "object_type": otype.name,
                       "data": values, "version": 1, "created_at": now, "updated_at": now}
        tx.insert_record_txn(row)  # type: ignore[arg-type]
        tx.append_events_txn([audit_event("record_created", actor, now, row["id"], None,  # type: ignore[list-item]
                                          {"object_type": otype.name, "fields": values})])
        return row

    def _children_txn(self, tx: Transaction, parent: ObjectTypeDefinition, parent_id: str,
                      child_type: str, rows: Sequence[Mapping[str, Any]], actor: str, now: str
                      ) -> list[tuple[Record, ObjectTypeDefinition]]:
        """Child records of a parent just inserted: the child type's ref field to the
        parent's type is set to the parent; a ref to the child's own type may name an
        earlier child of this call as ``"#N"`` (1-based: a line's bundle line)."""
        ctype = self.definitions.object_type(child_type, tx)
        link = [f.name for f in ctype.fields if f.type == "ref" and f.object == parent.name]
        if len(link) != 1:
            raise ValidationError(f"{child_type} records", {
                f"children.{child_type}": f"{child_type} needs exactly one ref field to "
                                          f"{parent.name} to be its child (it has "
                                          f"{len(link)})"})
        own = [f.name for f in ctype.fields if f.type == "ref" and f.object == ctype.name]
        out: list[tuple[Record, ObjectTypeDefinition]] = []
        for i, data in enumerate(rows):
            at = f"children.{child_type}[{i}]"
            if not isinstance(data, Mapping):
                raise ValidationError(f"{child_type} records", {at: "expected an object"})
            given = data.get(link[0])
            if given not in (None, parent_id):
                raise ValidationError(f"{child_type} records", {
                    f"{at}.{link[0]}": f"is set by the parent record, got {given!r}"})
            values = {**data, link[0]: parent_id}
            for name in own:
                ref = values.get(name)
                if isinstance(ref, str) and ref.startswith("#"):
                    n = int(ref[1:]) if ref[1:].isdigit() else 0
                    if not 1 <= n <= i:
                        raise ValidationError(f"{child_type} records", {
                            f"{at}.{name}": f"'{ref}' must name an earlier child of this "
                                            f"call (#1 to #{i})" if i else
                                            f"'{ref}': the first child cannot name another"})
                    values[name] = out[n - 1][0]["id"]
            out.append((self._insert_txn(tx, ctype, values, f"{child_type} record #{i + 1}",
                                         actor, now), ctype))
        return out

    def update(self, record_id: str, data: dict[str, Any], expected_version: int | None,
               actor: str) -> dict[str, Any]:
        now_dt = self.clock.now()
        with self.store.write() as tx:
            row = self.get_row_txn(tx, record_id)
            if expected_version is not None and row["version"] != expected_version:
                raise TransitionConflict(
                    f"record {record_id} is at version {row['version']}, not {expected_version} "
                    "(someone else changed it): read it again and retry"
                )
            self.check_unlocked_txn(tx, record_id)
            new = self.update_txn(tx, row, data, actor, now_dt, exclude_run=None)
            otype = self.definitions.object_type(row["object_type"], tx)
        return record_json_view(new, otype)

    def check_unlocked_txn(self, tx: Transaction, record_id: str) -> None:
        """People may not edit a record while an approval of it is pending (the process
        may: its flows write through :meth:`update_txn`). Raises TransitionConflict (409)
        naming the approval."""
        ids = tx.active_run_ids_for_record_txn(record_id)
        if not ids:
            return
        from baton.engine.state import Run
        from baton.engine.status import StepStatus

        for run_id, row in tx.get_runs_txn(list(ids)).items():
            run = Run.from_json(row["state"])
            waiting = [sr for sr in run.steps.values()
                       if sr.status is StepStatus.WAITING_FOR_PERSON]
            if not waiting:
                continue
            defn, _ = self.definitions.orchestration(run.orchestration, run.version, tx)
            for sr in waiting:
                found = defn.find_step(sr.name)
                if found is not None and found[1].type == "approval":
                    raise TransitionConflict(
                        f"record {record_id} is locked: approval '{sr.name}' of run {run_id} "
                        "is pending (it can be edited again once the approval is decided or "
                        "recalled)")

    def get_row_txn(self, tx: Transaction, record_id: str, *, lock: bool = True) -> Record:
        """The stored record (locked until commit unless ``lock`` is False), or NotFound."""
        row = tx.get_record_txn(record_id, for_update=lock)
        if row is None:
            raise NotFound("record", record_id)
        return row  # type: ignore[return-value]

    def update_txn(self, tx: Transaction, row: Mapping[str, Any], data: dict[str, Any], actor: str,
                   now_dt: Any, exclude_run: str | None) -> dict[str, Any]:
        """Validate and write field updates to ``row`` (read under a lock); fire update
        triggers; wake the record's runs except ``exclude_run`` (the one that made them)."""
        now = iso(now_dt)
        otype = self.definitions.object_type(row["object_type"], tx)
        what = f"{row['object_type']} record {row['id']}"
        values = coerce_fields(otype.fields, data, what, partial=True)
        check_refs_txn(tx, otype, values, what)
        changed = _changes(row["data"], values)
        if not changed:
            return row if isinstance(row, dict) else dict(row)
        merged = {**row["data"], **values}
        version = tx.update_record_txn(row["id"], merged, row["version"], now)
        new = {**row, "data": merged, "version": version, "updated_at": now}
        tx.append_events_txn([audit_event("record_updated", actor, now, row["id"], exclude_run,  # type: ignore[list-item]
                                          {"changes": changed})])
        for run_id in tx.active_run_ids_for_record_txn(row["id"]):
            if run_id != exclude_run:
                tx.enqueue_job_txn(jobs.EVALUATE, run_id,
                                  dict(jobs.EvaluatePayload(reason="record_updated")), now, now)
                self.wake()
        self.fire_triggers_txn(tx, new, row, "update", now_dt, actor)
        return new

    def fire_triggers_txn(self, tx: Transaction, row: Mapping[str, Any], old: Mapping[str, Any] | None, op: str,
                          now_dt: Any, actor: str, *, skip: str | None = None,
                          otype: ObjectTypeDefinition | None = None) -> None:
        """Start the runs whose record trigger on ``op`` (create/update) holds for ``row``
        (but not of the orchestration ``skip``: a child-run step starts that one itself).
        ``otype``: the record's object type, when the caller has it at hand.

        A ``when`` that raises (a definition's bug) never fails the write: the trigger is
        skipped and an incident opened for operators, in this transaction."""
        triggered = self._triggers_txn(tx, row["object_type"], op)
        if not triggered:  # (most updates: a flow's writes to its own record)
            return
        if otype is None or otype.name != row["object_type"]:
            otype = self.definitions.object_type(row["object_type"], tx)
        view = record_view(row, otype)
        old_json: Mapping[str, Any]
        if old is None:  # on create every field was empty before: old.x is null, not missing
            old_json = field_shape(otype.fields).empty  # (read-only, made once per type)
        else:
            old_json = record_json_view(old, otype)
        now = iso(now_dt)
        old_typed = typed_values(otype.fields, old_json)
        scope = trigger_scope(view, old_typed, now)
        before: dict[str, Any] | None = None  # the scope as the record was, for changed_to_meet
        def types(name: str) -> ObjectTypeDefinition:
            return self.definitions.object_type(name, tx)

        for defn, version in triggered:
            if defn.name == skip:
                continue
            when = defn.trigger.when
            source = (when.expression if when is not None else None) or "=true"
            # The related records its expressions read (record.account.name), as they are now.
            related = (when is not None and isinstance(defn, OrchestrationDefinition)
                       and bool(navigated_cached(defn)))
            try:
                now_scope = trigger_scope(with_related_txn(tx, defn, view, otype.name, types)
                                          or view, old_typed, now) if related else scope
                ok = when is None or evaluate_condition(source, now_scope)
                if ok and defn.trigger.changed_to_meet and old is not None:
                    # Only when the write made the condition hold: it did not hold before.
                    if before is None:
                        before = trigger_scope(record_view(old, otype), old_typed, now)
                    was = trigger_scope(with_related_txn(tx, defn, before["record"], otype.name,
                                                         types) or {}, old_typed, now) \
                        if related else before
                    ok = not _held(source, was)
            except ExpressionError as exc:
                incident = incident_row(
                    self.ids.new("inc"), TRIGGER_FAILED, orchestration=defn.name,
                    version=version, record_id=row["id"], run_id=None, expression=source,
                    error=str(exc), now=now, detail={"op": op, "old": dict(old_json)})
                incident_id = open_incident_txn(tx, incident)
                tx.append_events_txn([audit_event(  # type: ignore[list-item]
                    TRIGGER_FAILED, "system", now, row["id"], None,
                    {"orchestration": defn.name, "version": version, "error": str(exc),
                     "expression": source, "incident": incident_id})])
                continue
            if ok and isinstance(defn, OrchestrationDefinition):
                # (the record as decide() sees it: the view made above, which it copies)
                self.runs.start_txn(tx, defn, version, row, {}, actor, now_dt, record=view)
            elif ok:  # a fulfillment: the order is decomposed and its plan started
                self.plans.plan_txn(tx, defn, version, row, actor, now_dt)

    def _triggers_txn(self, tx: Transaction, object_type: str, op: str) -> list[tuple[Any, int]]:
        """The active orchestrations and fulfillments whose record trigger on ``op`` takes
        ``object_type`` records, in that order. Looking them up walks every active
        definition (twice), on every record write; the answer only changes when the active
        versions do, and the definitions replace their index of active versions (a new
        dict) whenever they see a deploy or forget, so the answers are kept per index."""
        self.definitions.refresh(tx)
        index = self.definitions._active  # (replaced, never changed in place: see above)
        key = (object_type, op)
        with self._trigger_lock:
            if self._trigger_index_of is index:
                hit = self._trigger_index.get(key)
                if hit is not None:
                    return hit
            else:
                self._trigger_index, self._trigger_index_of = {}, index
        found: list[tuple[Any, int]] = [
            *self.definitions.record_triggers(object_type, op, tx),
            *self.definitions.fulfillment_triggers(object_type, op, tx)]
        with self._trigger_lock:
            if self._trigger_index_of is index:
                self._trigger_index[key] = found
        return found

    def lines_of(self, order_id: str, limit: int = 100_000) -> list[dict[str, Any]]:
        """The records whose ref field names ``order_id`` among the types that have one to
        its type (an order's lines), oldest first, as the API shows records."""
        with self.store.read() as tx:
            row = tx.get_record_txn(order_id)
            if row is None:
                raise NotFound("record", order_id)
            out = []
            for otype in self.definitions.object_types().values():
                for f in otype.fields:
                    if f.type == "ref" and f.object == row["object_type"]:
                        found = tx.find_records_txn(otype.name, {f.name: order_id}, limit)
                        found.sort(key=lambda r: (r["created_at"], r["id"]))
                        out += [record_json_view(r, otype) for r in found]
        return out

    def get(self, record_id: str) -> dict[str, Any]:
        with self.store.read() as tx:
            row = self.get_row_txn(tx, record_id, lock=False)
            otype = self.definitions.object_type(row["object_type"], tx)
        return {"object_type": row["object_type"],
                **record_json_view(row, otype, field_order=self._reorders)}

    def _object_type_or_none(self, name: str, tx: Transaction) -> ObjectTypeDefinition | None:
        try:
            return self.definitions.object_type(name, tx)
        except NotFound:
            return None

    @property
    def _reorders(self) -> bool:
        """Whether records read here come back with their keys sorted (PostgreSQL's jsonb):
        then what is shown of them is put back in their object type's field order."""
        return self.store.dialect == "postgresql"

    def list_records(self, object_type: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            rows = tx.list_records_txn(object_type, limit, offset)
            types = {t: self.definitions.object_type(t, tx) for t in {r["object_type"] for r in rows}}
        return [{"object_type": r["object_type"],
                 **record_json_view(r, types[r["object_type"]], field_order=self._reorders)}
                for r in rows]

    def count_records(self, object_type: str | None) -> int:
        with self.store.read() as tx:
            return tx.count_records_txn(object_type)

    def page(self, object_type: str | None, after: str | None, offset: int, limit: int
             ) -> KeyPage:
        """Records (the engine's flat view), newest first: a keyset page."""
        with self.store.read() as tx:
            found = tx.page_records_txn(object_type, after, offset, limit)
            if not self._reorders:
                return KeyPage([{"object_type": r["object_type"], **record_view(r)}
                                for r in found.rows], found.next)
            types = {t: self._object_type_or_none(t, tx)
                     for t in {r["object_type"] for r in found.rows}}
        return KeyPage([{"object_type": r["object_type"], **record_view(
            {**r, "data": in_field_order(r["data"], types[r["object_type"]])})}
            for r in found.rows], found.next)

    def count_bounded(self, object_type: str | None) -> Total:
        with self.store.read() as tx:
            return tx.count_records_bounded_txn(object_type)

    def delete(self, record_id: str, expected_version: int | None, actor: str) -> None:
        """Delete a record that no run is working on; its timeline (audit events) is kept."""
        now = iso(self.clock.now())
        with self.store.write() as tx:
            row = self.get_row_txn(tx, record_id)
            if expected_version is not None and row["version"] != expected_version:
                raise TransitionConflict(
                    f"record {record_id} is at version {row['version']}, not {expected_version}; "
                    "read it again and retry")
            active = tx.active_run_ids_for_record_txn(record_id)
            if active:
                raise TransitionConflict(
                    f"record {record_id} has {len(active)} run(s) in progress ({', '.join(active[:3])}); "
                    "cancel them first")
            named = self._named_by_txn(tx, record_id, row["object_type"])
            if named:
                raise TransitionConflict(
                    f"record {record_id} is named by {', '.join(named)}; change or delete "
                    "those first (a checked ref field must name a record that exists)")
            tx.delete_record_txn(record_id)
            tx.append_events_txn([audit_event("record_deleted", actor, now, record_id, None,  # type: ignore[list-item]
                                              {"object_type": row["object_type"],
                                               "version": row["version"]})])

    def _named_by_txn(self, tx: Transaction, record_id: str, object_type: str,
                      show: int = 3) -> list[str]:
        """The records whose checked ``ref`` fields name ``record_id`` (up to ``show`` a
        field, read through the references' index), as ``Type rec_… (field)``; fields with
        ``check: false`` may name a record that is gone, so they do not hold it."""
        named: list[str] = []
        for name, otype in sorted(self.definitions.object_types().items()):
            for f in field_shape(otype.fields).checked_refs:
                if f.object != object_type:
                    continue
                rows = tx.find_records_txn(name, {f.name: record_id}, show + 1)
                named += [f"{name} {r['id']} ({f.name})" for r in rows[:show]]
                if len(rows) > show:
                    named.append(f"more {name} records ({f.name})")
        return named

    def timeline(self, record_id: str) -> list[AuditEvent]:
        """Every event that touched the record, in order, with actor and time."""
        with self.store.read() as tx:
            self.get_row_txn(tx, record_id, lock=False)
            return tx.events_txn(record_id=record_id)  # type: ignore[return-value]


def _check_rows(object_type: object, rows: object) -> None:
    """What :meth:`RecordService.create` is given is an object type's name and a list of
    records, each a mapping of field -> value: anything else is refused, naming it, before
    anything is written (not a TypeError from deep inside)."""
    if not isinstance(object_type, str):
        raise ValidationError("records", {"object_type": (
            f"expected the name of an object type, got {describe(object_type)}")})
    if isinstance(rows, str | bytes | Mapping) or not isinstance(rows, Sequence):
        raise ValidationError(f"{object_type} records", {"(records)": (
            f"expected a list of records (mappings of field -> value), got "
            f"{describe(rows)}")})
    bad = {f"[{i}]" if len(rows) > 1 else "(data)":
           f"expected a mapping of field -> value, got {describe(row)}"
           for i, row in enumerate(rows) if not isinstance(row, Mapping)}
    if bad:
        raise ValidationError(f"{object_type} record" + ("s" if len(rows) > 1 else ""), bad)


def check_refs_txn(tx: Transaction, otype: ObjectTypeDefinition, values: Mapping[str, Any],
                   what: str) -> None:
    """Every ``ref`` value names a record of the field's object type, read in the write's
    own transaction (so it cannot be deleted between the check and the commit), unless the
    field says ``check: false`` (a reference to a record that arrives later)."""
    errors: dict[str, str] = {}
    for f in field_shape(otype.fields).checked_refs:  # (most types have one or none)
        target_id = values.get(f.name)
        if target_id is None:
            continue
        problem = ref_problem(f, target_id, tx.get_record_txn(target_id))
        if problem is not None:
            errors[f.name] = problem
    if errors:
        raise ValidationError(what, errors)
