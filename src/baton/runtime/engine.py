"""The embeddable Engine: every operation of the CLI (and later the API) as one method.

Each state change is one write transaction: the record or work-item write, the
run's new state from :func:`baton.engine.decide.decide`, its audit events and
the next jobs commit together.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Collection, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.exc import DBAPIError

from baton.auth.directory import Directory
from baton.clock import Clock, SystemClock, iso
from baton.definitions.loader import check_definitions, check_texts
from baton.definitions.model import FieldDefinition, OrchestrationDefinition
from baton.engine.events import (
    CancelRequested,
    Event,
    FalloutAction,
    RecordChanged,
    ResumeRequested,
    RunStarted,
    SignalReceived,
    StepCompleted,
)
from baton.engine.state import Run
from baton.engine.status import WORK_ITEM_OPEN, RunStatus, StepStatus, WorkItemStatus
from baton.errors import (
    BatonError,
    ExpressionError,
    Issue,
    NotFound,
    PermissionDenied,
    TransitionConflict,
    ValidationError,
)
from baton.expressions import evaluate_condition
from baton.flows import registered_flows
from baton.ids import IdGenerator, UlidIds
from baton.records.fields import coerce_fields
from baton.runtime.apply import Applier, event_row
from baton.runtime.definitions import DefinitionRepo, DeployResult
from baton.settings import Settings
from baton.store.sql import SqlStore, SqlTx

if TYPE_CHECKING:
    from baton.auth.directory import User

ASSIGNEE_KINDS = ("user", "group", "queue")
log = logging.getLogger("baton.engine")

F = TypeVar("F", bound=Callable[..., Any])


def one_transaction(method: F) -> F:
    """Mark an Engine method that is exactly one write transaction, and retry it once on a
    transient database error (lost connection, serialization failure, deadlock).

    Safe because the transaction either committed nothing or everything.
    """

    @functools.wraps(method)
    def wrapper(self: Engine, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except DBAPIError as exc:
            if not self.store.is_transient(exc):
                raise
            log.warning("%s: transient database error, trying once more: %s",
                        method.__name__, str(exc).splitlines()[0])
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def record_view(row: dict[str, Any]) -> dict[str, Any]:
    """A record as flows, expressions and users see it: fields plus the system fields."""
    return {**row["data"], "id": row["id"], "created_at": row["created_at"],
            "updated_at": row["updated_at"], "version": row["version"]}


def _changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, list[Any]]:
    return {k: [old.get(k), v] for k, v in new.items() if old.get(k) != v}


class Engine:
    """Baton on one database. Thread-safe; share one per process."""

    def __init__(
        self,
        db: str | SqlStore = "sqlite:///baton.db",
        *,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        migrate: bool = True,
        notify_assignments: bool | None = None,
        settings: Settings | None = None,
    ) -> None:
        """``settings``: what the entry point read (``Settings.from_environment()``); None:
        the defaults, whatever the environment says. ``notify_assignments``: e-mail assignees
        on (re)assignment; None: ``settings.notify_assignments``. Tests may flip
        ``engine.applier.notify_assignments`` later."""
        self.settings = settings = settings or Settings()
        self.store = db if isinstance(db, SqlStore) else SqlStore(
            db, **settings.store_options())
        self.clock = clock or SystemClock(timedelta(seconds=settings.clock_offset))
        self.ids = ids or UlidIds()
        self.work_available = threading.Event()
        self.directory = Directory(self.store, self.clock, self.ids)
        if notify_assignments is None:
            notify_assignments = settings.notify_assignments
        self.applier = Applier(self.ids, self.work_available.set, directory=self.directory,
                               notify_assignments=notify_assignments, settings=settings)
        self.definitions = DefinitionRepo(self.store, self.clock)
        if migrate:
            self.store.migrate()

    def close(self) -> None:
        self.store.close()

    def _now(self) -> tuple[Any, str]:
        now = self.clock.now()
        return now, iso(now)

    # ---- definitions --------------------------------------------------------------------
    def validate(self, paths: Sequence[str | Path], known_flows: Collection[str] | None = None) -> list[Issue]:
        flows = registered_flows() if known_flows is None else known_flows
        _docs, issues = check_definitions(
            paths, known_flows=flows, deployed_objects=self.definitions.object_types()
        )
        return issues

    def validate_texts(self, texts: dict[str, str], known_flows: Collection[str] | None = None) -> list[Issue]:
        """Validate YAML texts (file name -> text) as ``validate`` does files."""
        flows = registered_flows() if known_flows is None else known_flows
        _docs, issues = check_texts(texts, known_flows=flows,
                                    deployed_objects=self.definitions.object_types())
        return issues

    @one_transaction
    def deploy(self, paths: Sequence[str | Path] = (), *, actor: str = "cli",
               known_flows: Collection[str] | None = None,
               texts: dict[str, str] | None = None) -> list[DeployResult]:
        """Deploy definition files (or ``texts``: file name -> YAML), all or nothing."""
        flows = registered_flows() if known_flows is None else known_flows
        return self.definitions.deploy(paths, flows, actor, texts=texts)

    # ---- records ------------------------------------------------------------------------
    @one_transaction
    def create_record(self, object_type: str, data: dict[str, Any], *, actor: str = "system") -> dict[str, Any]:
        """Create a record; runs it triggers start in the same transaction."""
        return self.create_records(object_type, [data], actor=actor)[0]

    @one_transaction
    def create_records(self, object_type: str, rows: Sequence[dict[str, Any]], *,
                       actor: str = "system") -> list[dict[str, Any]]:
        """Create many records (and the runs they trigger) in one transaction: all or none.

        For imports and load: one commit instead of one per record.
        """
        now_dt, now = self._now()
        out = []
        with self.store.write() as tx:
            otype = self.definitions.object_type(object_type, tx)
            for i, data in enumerate(rows):
                what = f"{object_type} record" + (f" #{i + 1}" if len(rows) > 1 else "")
                values = coerce_fields(otype.fields, data, what)
                row: dict[str, Any] = {"id": self.ids.new("rec"), "object_type": object_type,
                                       "data": values, "version": 1, "created_at": now,
                                       "updated_at": now}
                tx.insert_record_txn(row)
                tx.append_events_txn([event_row("record_created", actor, now, row["id"], None,
                                                {"object_type": object_type, "fields": values})])
                self._fire_triggers_txn(tx, row, None, "create", now_dt, actor)
                out.append(record_view(row))
        return out

    @one_transaction
    def update_record(self, record_id: str, data: dict[str, Any], *, expected_version: int | None = None,
                      actor: str = "system") -> dict[str, Any]:
        now_dt, _ = self._now()
        with self.store.write() as tx:
            row = self._get_record_txn(tx, record_id)
            if expected_version is not None and row["version"] != expected_version:
                raise TransitionConflict(
                    f"record {record_id} is at version {row['version']}, not {expected_version} "
                    "(someone else changed it): read it again and retry"
                )
            new = self._update_record_txn(tx, row, data, actor, now_dt, exclude_run=None)
        return record_view(new)

    def _get_record_txn(self, tx: SqlTx, record_id: str, *, lock: bool = True) -> dict[str, Any]:
        row = tx.get_record_txn(record_id, for_update=lock)
        if row is None:
            raise NotFound("record", record_id)
        return row

    def _update_record_txn(self, tx: SqlTx, row: dict[str, Any], data: dict[str, Any], actor: str,
                           now_dt: Any, exclude_run: str | None) -> dict[str, Any]:
        """Validate and write field updates; fire update triggers; wake the record's runs."""
        now = iso(now_dt)
        otype = self.definitions.object_type(row["object_type"], tx)
        values = coerce_fields(otype.fields, data, f"{row['object_type']} record {row['id']}", partial=True)
        changed = _changes(row["data"], values)
        if not changed:
            return row
        merged = {**row["data"], **values}
        version = tx.update_record_txn(row["id"], merged, row["version"], now)
        new = {**row, "data": merged, "version": version, "updated_at": now}
        tx.append_events_txn([event_row("record_updated", actor, now, row["id"], exclude_run,
                                        {"changes": changed})])
        for run_id in tx.active_run_ids_for_record_txn(row["id"]):
            if run_id != exclude_run:
                tx.enqueue_job_txn("evaluate", run_id, {"reason": "record_updated"}, now, now)
                self.work_available.set()
        self._fire_triggers_txn(tx, new, row, "update", now_dt, actor)
        return new

    def _fire_triggers_txn(self, tx: SqlTx, row: dict[str, Any], old: dict[str, Any] | None,
                           op: str, now_dt: Any, actor: str) -> None:
        view = record_view(row)
        if old is None:  # on create every field was empty before: old.x is null, not missing
            otype = self.definitions.object_type(row["object_type"], tx)
            old_view: dict[str, Any] = {f.name: None for f in otype.fields}
        else:
            old_view = record_view(old)
        scope = {"record": view, "old": old_view, "now": iso(now_dt)}
        for defn, version in self.definitions.record_triggers(row["object_type"], op, tx):
            when = defn.trigger.when
            try:
                ok = when is None or evaluate_condition(when.expression or "=true", scope)
            except ExpressionError as exc:
                tx.append_events_txn([event_row("trigger_failed", "system", iso(now_dt), row["id"], None, {
                    "orchestration": defn.name, "version": version, "error": str(exc)})])
                continue
            if ok:
                self._start_run_txn(tx, defn, version, row, {}, actor, now_dt)

    def get_record(self, record_id: str) -> dict[str, Any]:
        with self.store.read() as tx:
            row = self._get_record_txn(tx, record_id, lock=False)
        return {"object_type": row["object_type"], **record_view(row)}

    def list_records(self, object_type: str | None = None, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            rows = tx.list_records_txn(object_type, limit, offset)
        return [{"object_type": r["object_type"], **record_view(r)} for r in rows]

    def count_records(self, object_type: str | None = None) -> int:
        with self.store.read() as tx:
            return tx.count_records_txn(object_type)

    @one_transaction
    def delete_record(self, record_id: str, *, expected_version: int | None = None,
                      actor: str = "system") -> None:
        """Delete a record that no run is working on; its timeline (audit events) is kept."""
        _, now = self._now()
        with self.store.write() as tx:
            row = self._get_record_txn(tx, record_id)
            if expected_version is not None and row["version"] != expected_version:
                raise TransitionConflict(
                    f"record {record_id} is at version {row['version']}, not {expected_version}; "
                    "read it again and retry")
            active = tx.active_run_ids_for_record_txn(record_id)
            if active:
                raise TransitionConflict(
                    f"record {record_id} has {len(active)} run(s) in progress ({', '.join(active[:3])}); "
                    "cancel them first")
            tx.delete_record_txn(record_id)
            tx.append_events_txn([event_row("record_deleted", actor, now, record_id, None,
                                            {"object_type": row["object_type"],
                                             "version": row["version"]})])

    def timeline(self, record_id: str) -> list[dict[str, Any]]:
        """Every event that touched the record, in order, with actor and time."""
        with self.store.read() as tx:
            self._get_record_txn(tx, record_id, lock=False)
            return tx.events_txn(record_id=record_id)

    # ---- runs ---------------------------------------------------------------------------
    @one_transaction
    def start(self, orchestration: str, input: dict[str, Any] | None = None, *,
              record_id: str | None = None, actor: str = "system") -> Run:
        """Start an autolaunched orchestration with typed ``input``."""
        now_dt, _ = self._now()
        with self.store.write() as tx:
            defn, version = self.definitions.orchestration(orchestration, tx=tx)
            t = defn.trigger
            if t.type != "autolaunched":
                raise BatonError(
                    f"orchestration {orchestration!r} starts from its {t.type} trigger, not by hand"
                )
            values = coerce_fields(t.input, input or {}, f"input of {orchestration}")
            row = None
            if record_id is not None:
                row = self._get_record_txn(tx, record_id)
                if t.object and row["object_type"] != t.object:
                    raise ValidationError(f"start of {orchestration}", {
                        "record": f"is a {row['object_type']}, this orchestration takes a {t.object}"})
            elif t.object:
                raise ValidationError(f"start of {orchestration}", {
                    "record": f"this orchestration runs on a {t.object} record: pass its id"})
            run = self._start_run_txn(tx, defn, version, row, values, actor, now_dt)
        return run

    def _start_run_txn(self, tx: SqlTx, defn: OrchestrationDefinition, version: int,
                       record_row: dict[str, Any] | None, input: dict[str, Any], actor: str,
                       now_dt: Any) -> Run:
        run = Run(id=self.ids.new("run"), orchestration=defn.name, version=version,
                  record_id=record_row["id"] if record_row else None,
                  vars=dict(defn.variables), input=input, created_at=iso(now_dt))
        record = record_view(record_row) if record_row else None
        decision = self.applier.decide_and_apply_txn(tx, defn, run, RunStarted(), now_dt, record,
                                                     insert=True)
        return decision.run

    def get_run(self, run_id: str) -> Run:
        with self.store.read() as tx:
            row = tx.get_run_txn(run_id)
        if row is None:
            raise NotFound("run", run_id)
        return Run.from_json(row["state"])

    def list_runs(self, *, limit: int = 50, offset: int = 0, **filters: Any) -> list[Run]:
        with self.store.read() as tx:
            rows = tx.list_runs_txn(filters, limit, offset)
        return [Run.from_json(r["state"]) for r in rows]

    def count_runs(self, **filters: Any) -> int:
        with self.store.read() as tx:
            return tx.count_runs_filtered_txn(filters)

    def run_events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's audit events in order (its decisions, steps, work items)."""
        with self.store.read() as tx:
            if tx.get_run_txn(run_id) is None:
                raise NotFound("run", run_id)
            return tx.events_txn(run_id=run_id)

    @one_transaction
    def cancel_run(self, run_id: str, reason: str, *, actor: str = "system") -> Run:
        now_dt, _ = self._now()
        with self.store.write() as tx:
            run, defn, record = self._load_run_txn(tx, run_id)
            decision = self.applier.decide_and_apply_txn(
                tx, defn, run, CancelRequested(reason, actor), now_dt, record)
            if decision.stale:
                raise TransitionConflict(f"run {run_id} is {run.status.value}; it cannot be canceled")
        return decision.run

    # ---- fallout, resume, signals -------------------------------------------------------
    def list_fallout(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Steps waiting for an operator: one entry per step in fallout, oldest run first.

        Each entry's ``id`` is ``RUN_ID:STEP``, the form ``baton fallout`` commands take.
        """
        out: list[dict[str, Any]] = []
        with self.store.read() as tx:
            rows = tx.list_runs_txn({"status": RunStatus.IN_PROGRESS.value}, 100_000, 0)
        for row in reversed(rows):
            run = Run.from_json(row["state"])
            for sr in run.steps.values():
                if sr.status is StepStatus.FALLOUT:
                    out.append({"id": f"{run.id}:{sr.name}", "run_id": run.id,
                                "orchestration": run.orchestration, "record_id": run.record_id,
                                "step": sr.name, "stage": sr.stage, "iteration": sr.iteration,
                                "attempts": sr.attempts, "error": sr.error,
                                "since": sr.completed_at})
        return out[:limit]

    @one_transaction
    def resolve_fallout(self, fallout_id: str, action: str, *, reason: str, actor: str = "system",
                        output: dict[str, Any] | None = None) -> Run:
        """Operator action on a step in fallout: ``retry``, ``complete`` (with output) or ``skip``.

        ``fallout_id`` is ``RUN_ID:STEP``. A ``complete`` output is validated against the
        step's ``output:`` field specs when it declares them.
        """
        run_id, _, step = fallout_id.partition(":")
        if action not in ("retry", "complete", "skip"):
            raise ValidationError("fallout action", {"action": f"expected retry, complete or skip, got {action!r}"})
        if not step:
            raise ValidationError("fallout id", {"id": f"expected RUN_ID:STEP, got {fallout_id!r}"})
        if not reason:
            raise ValidationError("fallout action", {"reason": "say why (it is audited)"})
        now_dt, _ = self._now()
        with self.store.write() as tx:
            run, defn, record = self._load_run_txn(tx, run_id)
            found = defn.find_step(step)
            if found is None:
                raise NotFound("step", step, f"run {run_id} has no such step")
            if action == "complete":
                output = _check_output(found[1].options.get("output"), output or {}, step)
            event = FalloutAction(step, action, actor, reason, output)
            decision = self.applier.decide_and_apply_txn(tx, defn, run, event, now_dt, record)
            if decision.stale:
                sr = run.steps.get(step)
                status = sr.status.value if sr else "not started"
                raise TransitionConflict(f"step {step!r} of run {run_id} is {status}, not in fallout "
                                         f"(or the run is {run.status.value})")
        return decision.run

    @one_transaction
    def resume_run(self, run_id: str, reason: str, *, actor: str = "system") -> Run:
        """Resume a failed run after its cause is fixed: its failed steps run again."""
        return self._run_event(run_id, ResumeRequested(actor, reason),
                               "is {status}; only a failed run can be resumed")

    @one_transaction
    def signal(self, run_id: str, name: str, data: dict[str, Any] | None = None, *,
               actor: str = "system") -> Run:
        """Send a named signal: pause steps waiting for it complete with ``data`` as output."""
        return self._run_event(run_id, SignalReceived(name, dict(data or {}), actor),
                               f"({{status}}) has no pause step waiting for signal {name!r}")

    def _run_event(self, run_id: str, event: Event, refusal: str) -> Run:
        now_dt, _ = self._now()
        with self.store.write() as tx:
            run, defn, record = self._load_run_txn(tx, run_id)
            decision = self.applier.decide_and_apply_txn(tx, defn, run, event, now_dt, record)
            if decision.stale:
                raise TransitionConflict(f"run {run_id} " + refusal.format(status=run.status.value))
        return decision.run

    def _load_run_txn(self, tx: SqlTx, run_id: str) -> tuple[Run, OrchestrationDefinition, dict[str, Any] | None]:
        """Load a run to change it: its row is locked until commit (PostgreSQL)."""
        run, defn, rec = self._load_run_row_txn(tx, run_id)
        return run, defn, record_view(rec) if rec else None

    def _load_run_row_txn(self, tx: SqlTx, run_id: str
                          ) -> tuple[Run, OrchestrationDefinition, dict[str, Any] | None]:
        """Like :meth:`_load_run_txn`, with the record's stored row (locked too)."""
        row = tx.get_run_txn(run_id, for_update=True)
        if row is None:
            raise NotFound("run", run_id)
        run = Run.from_json(row["state"])
        defn, _ = self.definitions.orchestration(run.orchestration, run.version, tx=tx)
        rec = tx.get_record_txn(run.record_id, for_update=True) if run.record_id else None
        return run, defn, rec

    def evaluate_run_txn(self, tx: SqlTx, run_id: str, now_dt: Any) -> None:
        """Re-evaluate a run's conditions (its record changed)."""
        run, defn, record = self._load_run_txn(tx, run_id)
        if run.status is RunStatus.IN_PROGRESS:
            self.applier.decide_and_apply_txn(tx, defn, run, RecordChanged(), now_dt, record)

    # ---- work items ---------------------------------------------------------------------
    def list_work(self, *, user: str | None = None, queue: str | None = None, group: str | None = None,
                  statuses: Sequence[str] = ("open", "claimed"), run_id: str | None = None,
                  limit: int = 100, offset: int = 0, scope: User | None = None,
                  order: str = "created", record_id: str | None = None) -> list[dict[str, Any]]:
        """Work items. ``scope`` (a directory user) keeps the items assigned to them, their
        groups or their queues, or claimed by them; ``queue``/``group`` narrow further.
        ``order``: ``created``, ``due`` or ``priority``."""
        filters: dict[str, Any] = {"statuses": list(statuses), "run_id": run_id, "record_id": record_id}
        if order not in ("created", "due", "priority"):
            raise ValidationError("work list", {"order": f"expected created, due or priority, got {order!r}"})
        if scope is not None:
            filters["scope"] = (scope.name, scope.groups, scope.queues)
            if user is None:
                if queue is not None:
                    filters.update(assignee_kind="queue", assignee=queue)
                elif group is not None:
                    filters.update(assignee_kind="group", assignee=group)
                with self.store.read() as tx:
                    return _with_sla_txn(tx, tx.list_work_items_txn(filters, limit, offset, order))
        with self.store.read() as tx:
            if user is not None:
                mine = tx.list_work_items_txn({**filters, "assignee_kind": "user", "assignee": user},
                                              limit + offset, 0)
                claimed = tx.list_work_items_txn({**filters, "claimed_by": user}, limit + offset, 0)
                seen: dict[str, dict[str, Any]] = {i["id"]: i for i in mine + claimed}
                items = sorted(seen.values(), key=lambda i: (i["created_at"], i["id"]))[offset:offset + limit]
                return _with_sla_txn(tx, items)
            if queue is not None:
                filters.update(assignee_kind="queue", assignee=queue)
            elif group is not None:
                filters.update(assignee_kind="group", assignee=group)
            return _with_sla_txn(tx, tx.list_work_items_txn(filters, limit, offset, order))

    def count_work(self, *, statuses: Sequence[str] = ("open", "claimed"), scope: User | None = None,
                   queue: str | None = None, group: str | None = None,
                   record_id: str | None = None) -> int:
        filters: dict[str, Any] = {"statuses": list(statuses), "record_id": record_id}
        if scope is not None:
            filters["scope"] = (scope.name, scope.groups, scope.queues)
        if queue is not None:
            filters.update(assignee_kind="queue", assignee=queue)
        elif group is not None:
            filters.update(assignee_kind="group", assignee=group)
        with self.store.read() as tx:
            return tx.count_work_items_txn(filters)

    def get_work_item(self, item_id: str) -> dict[str, Any]:
        with self.store.read() as tx:
            return _with_sla_txn(tx, [self._get_item_txn(tx, item_id, lock=False)])[0]

    def _get_item_txn(self, tx: SqlTx, item_id: str, *, lock: bool = True) -> dict[str, Any]:
        item = tx.get_work_item_txn(item_id, for_update=lock)
        if item is None:
            raise NotFound("work item", item_id)
        return item

    @staticmethod
    def _check_may_act(item: dict[str, Any], user: str, scope: User | None = None) -> None:
        """A user-assigned item is only its user's. With ``scope`` (the acting directory
        user, as the API passes it), a group or queue item needs membership too."""
        if item["assignee_kind"] == "user" and item["assignee"] != user:
            raise PermissionDenied(
                f"work item {item['id']} is assigned to user {item['assignee']}, not {user}"
            )
        if scope is not None and not scope.in_scope(item):
            raise PermissionDenied(
                f"work item {item['id']} is assigned to {item['assignee_kind']} {item['assignee']!r}, "
                f"and {user} is not a member of it")

    @one_transaction
    def claim(self, item_id: str, user: str, *, scope: User | None = None) -> dict[str, Any]:
        """Claim an open item. Exactly one claimer wins; the others get a TransitionConflict."""
        _, now = self._now()
        with self.store.write() as tx:
            item = self._get_item_txn(tx, item_id)
            if item["status"] != WorkItemStatus.OPEN.value:
                raise TransitionConflict(_not_open(item))
            self._check_may_act(item, user, scope)
            if not tx.update_work_item_txn(item_id, ["open"], item["version"],
                                           {"status": "claimed", "claimed_by": user, "updated_at": now}):
                raise TransitionConflict(_not_open(self._get_item_txn(tx, item_id)))
            tx.append_events_txn([event_row("work_item_claimed", user, now, item["record_id"],
                                            item["run_id"], {"work_item": item_id, "step": item["step"]})])
            return self._get_item_txn(tx, item_id)

    @one_transaction
    def complete(self, item_id: str, user: str, data: dict[str, Any], *,
                 scope: User | None = None) -> dict[str, Any]:
        """Submit the form: completes the item and its step, and moves the run on."""
        now_dt, _ = self._now()
        with self.store.write() as tx:
            return self._complete_txn(tx, item_id, user, data, now_dt, scope)

    def complete_many(self, submissions: Sequence[tuple[str, str, dict[str, Any]]]
                      ) -> list[dict[str, Any] | BatonError]:
        """Complete many work items in one transaction (``(item_id, user, data)`` each).

        Each submission is its own savepoint: one that fails (a conflict, bad form data)
        is returned as its error and changes nothing, the others commit together.
        """
        now_dt, _ = self._now()
        # The common case, every submission goes through, needs no savepoints (two
        # statements each, a fifth of the cost of a completion): try that first. If one
        # fails, nothing of this attempt is committed and each goes in its own savepoint.
        try:
            with self.store.write() as tx:
                done: list[dict[str, Any] | BatonError] = [
                    self._complete_txn(tx, item_id, user, data, now_dt)
                    for item_id, user, data in submissions]
            return done
        except BatonError:
            pass
        results: list[dict[str, Any] | BatonError] = []
        with self.store.write() as tx:
            for item_id, user, data in submissions:
                try:
                    with tx.conn.begin_nested():
                        results.append(self._complete_txn(tx, item_id, user, data, now_dt))
                except BatonError as exc:
                    results.append(exc)
        return results

    def _complete_txn(self, tx: SqlTx, item_id: str, user: str, data: dict[str, Any],
                      now_dt: Any, scope: User | None = None) -> dict[str, Any]:
        now = iso(now_dt)
        item = self._get_item_txn(tx, item_id)
        status = item["status"]
        if status == "claimed" and item["claimed_by"] != user:
            raise TransitionConflict(f"work item {item_id} is claimed by {item['claimed_by']}")
        if status not in ("open", "claimed"):
            raise TransitionConflict(f"work item {item_id} is {status}; it cannot be completed")
        self._check_may_act(item, user, scope)
        form = [FieldDefinition(name=f["name"], type=f["type"], required=f["required"],
                                choices=tuple(f.get("choices") or ()), default=f.get("default"))
                for f in item["form"]]
        values = coerce_fields(form, data, f"form of work item {item_id}")
        if not tx.update_work_item_txn(item_id, [status], item["version"], {
            "status": "completed", "claimed_by": user, "data": values, "updated_at": now,
            "completed_at": now, "completed_by": user,
        }):
            raise TransitionConflict(f"work item {item_id} changed while completing; try again")
        tx.append_events_txn([event_row("work_item_completed", user, now, item["record_id"],
                                        item["run_id"], {"work_item": item_id, "step": item["step"],
                                                         "data": values})])
        run, defn, record = self._load_run_txn(tx, item["run_id"])
        decision = self.applier.decide_and_apply_txn(
            tx, defn, run, StepCompleted(item["step"], item["iteration"], values, actor=user),
            now_dt, record)
        if decision.stale:
            raise TransitionConflict(
                f"step {item['step']!r} of run {run.id} is no longer waiting for this item")
        updated = {**item, "status": "completed", "claimed_by": user, "data": values,
                   "updated_at": now, "completed_at": now, "completed_by": user,
                   "version": item["version"] + 1}
        return {**updated, "run": decision.run}

    @one_transaction
    def reassign(self, item_id: str, to: str, *, actor: str = "system") -> dict[str, Any]:
        """Give the item to ``user:NAME``, ``group:NAME`` or ``queue:NAME``; a claim is released."""
        kind, _, name = to.partition(":")
        if kind not in ASSIGNEE_KINDS or not name:
            raise ValidationError("reassign", {"to": f"expected user:NAME, group:NAME or queue:NAME, got {to!r}"})
        _, now = self._now()
        with self.store.write() as tx:
            item = self._get_item_txn(tx, item_id)
            if item["status"] not in [s.value for s in WORK_ITEM_OPEN]:
                raise TransitionConflict(f"work item {item_id} is {item['status']}; it cannot be reassigned")
            if not tx.update_work_item_txn(item_id, [item["status"]], item["version"], {
                "status": "open", "claimed_by": None, "assignee_kind": kind, "assignee": name,
                "updated_at": now,
            }):
                raise TransitionConflict(f"work item {item_id} changed while reassigning; try again")
            previous = f"{item['assignee_kind']}:{item['assignee']}"
            tx.append_events_txn([event_row("work_item_reassigned", actor, now, item["record_id"],
                                            item["run_id"], {"work_item": item_id, "step": item["step"],
                                                             "from": previous,
                                                             "to": f"{kind}:{name}"})])
            new = self._get_item_txn(tx, item_id)
            # The new assignee hears of it (an outbox job, sent after commit by a worker).
            tx.append_events_txn(self.applier.notify_assignment_txn(tx, new, now, previous))
            return new


def _with_sla_txn(tx: SqlTx, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``sla_status`` and ``due_at`` to work items: their step's SLA, kept in the run."""
    runs = tx.get_runs_txn(list({i["run_id"] for i in items}))
    for item in items:
        state = (runs.get(item["run_id"]) or {}).get("state") or {}
        step = (state.get("steps") or {}).get(item["step"]) or {}
        sla = step.get("sla") if step.get("iteration") == item["iteration"] else None
        item["sla_status"], item["due_at"] = (sla or {}).get("status"), (sla or {}).get("due_at")
    return items


def _check_output(spec: Any, output: dict[str, Any], step: str) -> dict[str, Any]:
    """Validate an operator's output against the step's ``output:`` field specs, if any."""
    if not spec:
        return output
    fields = [FieldDefinition(name=name, type=f.get("type", "json"), required=f.get("required", False),
                              choices=tuple(f.get("choices") or ()), default=f.get("default"))
              for name, f in dict(spec).items() if isinstance(f, dict)]
    return coerce_fields(fields, output, f"output of step {step}")


def _not_open(item: dict[str, Any]) -> str:
    if item["status"] == "claimed":
        return f"work item {item['id']} is already claimed by {item['claimed_by']}"
    return f"work item {item['id']} is {item['status']}; it cannot be claimed"
