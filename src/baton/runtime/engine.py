"""The embeddable Engine: every operation of the CLI and the API as one method.

A thin facade: it wires the services together (the run driver in ``runtime/runs.py``,
records in ``records/service.py``, work items in ``work/service.py``) and keeps one
stable public surface for the CLI, the web app and embedders. Each state change is one
write transaction: the record or work-item write, the run's new state from
:func:`baton.engine.decide.decide`, its audit events and the next jobs commit together.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Self, TypeVar

from sqlalchemy.exc import DBAPIError

from baton.auth.directory import Directory
from baton.clock import Clock, SystemClock
from baton.connections.secrets import Secrets
from baton.engine.events import ResumeRequested, SignalReceived
from baton.engine.state import Run
from baton.engine.status import RunStatus, StepStatus, WorkItemStatus
from baton.errors import BatonError, ConfigError, Issue, TransitionConflict
from baton.flows import registered_flows
from baton.ids import IdGenerator, UlidIds
from baton.records.model import record_view
from baton.records.service import RecordService
from baton.rows import AuditEvent, WorkItem
from baton.runtime import metrics
from baton.runtime.apply import Applier
from baton.runtime.arguments import (
    check_clock,
    check_concurrency,
    check_expected_version,
    check_reason,
    check_signal_name,
    check_window,
    check_work_names,
    check_yaml_texts,
    checked_database,
    checked_id,
    checked_paths,
    checked_run_filters,
    checked_settings,
    checked_statuses,
    optional_name,
)
from baton.runtime.callouts import DEFAULT_PUBLIC_URL, ConnectionServices
from baton.runtime.children import ChildRuns
from baton.runtime.definitions import PLAN_PREFIX, DefinitionRepo, DeployResult
from baton.runtime.idempotency import IdempotencyClaim, IdempotencyKeys
from baton.runtime.incidents import IncidentService
from baton.runtime.runs import FalloutPage, PlanRunCancel, RunDriver, json_object
from baton.runtime.views import MAX_CHILDREN_SHOWN, fallout_view, run_detail, starts_children
from baton.settings import Settings
from baton.store.base import KeyPage, Total
from baton.store.sql import SqlStore
from baton.work.assignees import acting_name
from baton.work.items import ASSIGNEE_KINDS
from baton.work.router import Router
from baton.work.service import WorkNarrowing, WorkService
from baton.work.team import Team

if TYPE_CHECKING:
    from baton.auth.directory import User
    from baton.intake.service import IntakeService
    from baton.plans.service import PlanService
    from baton.runtime.callbacks import Callbacks
    from baton.runtime.worker import Worker

__all__ = ["ASSIGNEE_KINDS", "Engine", "RunPlan", "one_transaction", "record_view"]

log = logging.getLogger("baton.engine")
AI_WARM_EVERY_S = 30.0  # how often a serving worker looks for classify models to train

F = TypeVar("F", bound=Callable[..., Any])

OPEN_OR_CLAIMED = (WorkItemStatus.OPEN.value, WorkItemStatus.CLAIMED.value)

PLAN, COMPENSATION = "plan", "compensation"  # the kinds of a plan revision's run
PONR_CACHED = 4096  # plan revisions whose point-of-no-return steps an Engine keeps


@dataclass(frozen=True, slots=True)
class RunPlan:
    """The fulfillment plan a run is part of (:meth:`Engine.run_plan`)."""

    order_id: str
    kind: str  # PLAN: the plan's run; COMPENSATION: the run of a canceled plan's rollbacks
    revision: int  # the plan revision the run is at
    current: bool  # the order's plan now: what its cancel (and amend) act on
    plan_run_id: str  # the plan's run (a compensation's: the plan it rolls back)
    compensation_run_id: str | None  # the run of its rollbacks once canceled (or this one)
    ponr: tuple[str, ...]  # its point-of-no-return steps (read with ``ponr=True``)
    ponr_passed: str | None  # the one that completed: cancel and amend are refused
    ponr_passed_at: str | None  # when it completed


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


class Engine:
    """Baton on one database. Thread-safe; share one per process.

    Every method blocks its caller (database I/O; on SQLite, waiting for the write lock):
    from asyncio code, call them with ``await asyncio.to_thread(engine.method, ...)``.
    ``close()`` (or a ``with`` block) ends it: the workers :meth:`start_workers` started
    stop, then the database connections close, and every method refuses from then on (a
    ConfigError: make a new Engine). Closing twice does nothing more.

    Definitions: a deploy (or activation) made through this Engine is used by its very
    next call. One made by another Engine or process on the same database is seen within
    a second (:data:`~baton.runtime.definitions.REFRESH_INTERVAL_S`): the active versions
    are looked up again at most that often, so that creating a record or running a step
    costs no extra query. Until then this Engine starts runs and checks records on the
    versions it had read.

    ``runs``, ``records`` and ``work`` are the services behind it; code inside the
    runtime (the worker) uses their ``*_txn`` methods to act within its own transaction.
    """

    def __init__(
        self,
        db: str | os.PathLike[str] | SqlStore | None = None,
        *,
        clock: Clock | None = None,
        ids: IdGenerator | None = None,
        migrate: bool = True,
        notify_assignments: bool | None = None,
        settings: Settings | None = None,
    ) -> None:
        """``db``: a database URL (``sqlite:///PATH``, ``postgresql://USER@HOST/DB``), a
        SQLite file's path, or a store; None: ``settings.database``, else
        ``sqlite:///baton.db``. ``settings``: what the entry point read
        (``Settings.from_environment()``); None: the defaults, whatever the environment
        says. ``notify_assignments``: e-mail assignees on (re)assignment; None:
        ``settings.notify_assignments``. Tests may flip ``engine.applier.notify_assignments``
        later.

        Raises:
            ConfigError: an argument of the wrong kind, a clock whose time has no time
                zone, or a database that cannot be opened (named, never its password).
        """
        self.settings = settings = checked_settings(settings) or Settings()
        db = checked_database(db, settings)
        self.clock = clock or SystemClock(timedelta(seconds=settings.clock_offset))
        check_clock(self.clock)
        # the offline classifier's, one a process
        _configure_encoder(settings.ai_encoder, settings.ai_encoder_few)
        self.store = db if isinstance(db, SqlStore) else SqlStore(
            db, **settings.store_options())
        self.store.runs_committed = metrics.count_runs  # (what each commit started and ended)
        self.ids = ids or UlidIds()
        self.work_available = threading.Event()
        self.directory = Directory(self.store, self.clock, self.ids)
        if notify_assignments is None:
            notify_assignments = settings.notify_assignments
        self.applier = Applier(self.ids, self.wake, directory=self.directory,
                               notify_assignments=notify_assignments, settings=settings)
        self.definitions = DefinitionRepo(self.store, self.clock, self.ids)
        self.runs = RunDriver(self.store, self.definitions, self.applier, self.ids, self.clock)
        self.records = RecordService(self.store, self.definitions, self.runs, self.ids,
                                     self.clock, self.wake)
        self.applier.children = ChildRuns(self.definitions, self.runs, self.records, self.ids)
        self.incidents = IncidentService(self.store, self.definitions, self.runs, self.clock,
                                         self.wake)
        self.router = Router(self.definitions, self.applier.notify_assignment_txn)
        self.applier.router = self.router
        self.team = Team(self.store, self.router, self.definitions, self.clock)
        self.work = WorkService(self.store, self.runs, self.applier, self.clock, self.directory)
        self.idempotency = IdempotencyKeys(self.store, self.clock)
        # run_plan's: (order, plan revision) -> its point-of-no-return steps (a revision is
        # never changed: read from its graph once, not on every refresh of its run's page)
        self._plan_ponr: dict[tuple[str, int], tuple[str, ...]] = {}
        self._services_lock = threading.Lock()
        self._ai_warm: threading.Thread | None = None  # warm_ai()'s thread, once started
        self._connections: ConnectionServices | None = None
        self._started: list[WorkerThreads] = []  # start_workers()'s, stopped by close()
        self._intake: IntakeService | None = None  # made on first use
        self._closed = False  # close() has begun: no more workers start
        self._refusing = False  # close() has stopped the workers: every call refuses
        if migrate:
            try:
                self.store.migrate()
            except DBAPIError as exc:
                from baton.store.sql.dialects import open_failure

                failure = open_failure(exc, self.store.url)
                if failure is None:
                    raise
                self.store.close()
                raise failure from exc

    def wake(self) -> None:
        """Tell in-process workers a job is waiting (every decision that enqueues one
        calls this, in its transaction). ``Event.set`` takes the event's lock and notifies
        every time; when the flag is up already (no worker has looked since, or there is
        no in-process worker at all: an API server, the bench driver) it has nothing to
        do, so it is not called. A hint, as before: a worker also wakes on the commit."""
        if not self.work_available.is_set():
            self.work_available.set()

    def warm(self) -> int:
        """Ready to serve: parse the active definitions now (:meth:`Definitions.warm`), not on
        the first job or request. Returns how many."""
        return self.definitions.warm()

    def warm_ai(self, classifiers: Any, stopping: threading.Event,
                every: float | None = None) -> threading.Thread | None:
        """Train the offline models of the active ``classify`` steps in a background thread
        (:func:`baton.steps.ai.warm_classifiers`), once per engine: a worker that starts
        serving calls it, so that its first such step does not wait for the training; and
        again every ``every`` seconds (:data:`AI_WARM_EVERY_S`), so that a classifier trained again (``baton ai
        train``) or a definition deployed meanwhile is trained here before its steps ask
        (a look that finds nothing new costs a query and a cached answer a step). The thread
        ends once ``stopping`` is set. Returns it (None if already started)."""
        with self._services_lock:
            if self._ai_warm is not None:
                return None
            self._ai_warm = thread = threading.Thread(
                target=self._warm_ai,
                args=(classifiers, stopping, AI_WARM_EVERY_S if every is None else every),
                daemon=True,
                name="baton-ai-warm")
        thread.start()
        return thread

    def _warm_ai(self, classifiers: Any, stopping: threading.Event, every: float) -> None:
        from baton.ai.offline import MODELS
        from baton.steps.ai import warm_classifiers

        first = True
        while not stopping.is_set():
            before = MODELS.trainings
            try:
                ready = warm_classifiers(self.definitions.active_orchestrations(),
                                         provider_name=self.settings.ai_provider,
                                         classifiers=classifiers, stopping=stopping)
            except Exception:  # (a background nicety: the steps train on first use)
                if not stopping.is_set():
                    log.warning("ai models not trained in the background", exc_info=True)
                ready = 0
            if first and ready:
                log.info("ai models of %d classify step(s) ready at start", ready)
            elif not first and MODELS.trainings > before:
                log.info("ai models trained in the background: %d (a classifier trained "
                         "again, or a definition deployed)", MODELS.trainings - before)
            first = False
            stopping.wait(every)

    def start_workers(self, concurrency: int = 1, **options: Any) -> WorkerThreads:
        """Run ``concurrency`` workers in background threads of this process, until
        :meth:`WorkerThreads.stop` or :meth:`close`: for a service that embeds Baton.
        (A script or a test runs them until nothing is ready instead:
        ``baton.runtime.worker.run_workers(engine, n, until_idle=True)``.) ``options`` go
        to each :class:`~baton.runtime.worker.Worker` (``batch``, ``heartbeat_timeout``)."""
        check_concurrency(concurrency)
        started = WorkerThreads(self, concurrency, options)
        with self._services_lock:
            if self._closed:  # (close() has begun meanwhile)
                raise _closed_error("start_workers")
            self._started.append(started)
        started.start()
        return started

    def close(self) -> None:
        """Stop the workers :meth:`start_workers` started (each ends the job in hand
        first), then close the HTTP client of connections and the database's connections.
        Workers you run yourself (``run_workers``, ``Worker.run``) are to be stopped before.
        From then on every method refuses (a ConfigError: make a new Engine), rather than
        open the database again. Closing twice does nothing more."""
        with self._services_lock:
            if self._closed:
                return
            self._closed = True  # (start_workers refuses from now on)
            started, self._started = self._started, []
        for workers in started:
            workers.stop()  # (they may still call this Engine until they have stopped)
        _refuse_calls(self)
        with self._services_lock:
            connections, self._connections = self._connections, None
            self._intake = None
        if connections is not None:
            connections.close()
        self.store.close()

    def __enter__(self) -> Self:
        if self._closed:
            raise _closed_error("__enter__")
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def intake(self) -> IntakeService:
        """Mail intake (made on first use: it imports the e-mail parser, which no read
        command needs)."""
        made = self._intake
        if made is not None:
            return made
        from baton.intake.service import IntakeService

        with self._services_lock:
            if self._refusing:
                raise _closed_error("intake")
            if self._intake is None:
                self._intake = IntakeService(self.store, self.definitions, self.records,
                                             self.clock, self.ids, self.wake,
                                             limits=self.settings.intake)
            return self._intake

    # ---- connections and callbacks ------------------------------------------------------
    @property
    def connections(self) -> ConnectionServices:
        """Connections, secrets, the HTTP client and callbacks of this process (made on
        first use, from the settings as they are then)."""
        made = self._connections  # (made once: no lock to take after that, e.g. per step)
        if made is not None:
            return made
        with self._services_lock:
            if self._refusing:
                raise _closed_error("connections")
            if self._connections is None:
                s = self.settings
                from baton.runtime.callbacks import Callbacks  # (imports the callout step)

                secrets = Secrets(s.secrets_env, s.secrets_file)
                callbacks = Callbacks(self.store, self.definitions, self.runs, self.clock,
                                      secrets, s.public_url or DEFAULT_PUBLIC_URL)
                self._connections = ConnectionServices(self.definitions, secrets, callbacks,
                                                       s.project_dir)
            return self._connections

    @property
    def callbacks(self) -> Callbacks:
        return self.connections.callbacks

    # ---- definitions --------------------------------------------------------------------
    def validate(self, paths: Sequence[str | Path], known_flows: Collection[str] | None = None,
                 *, warnings: list[Issue] | None = None) -> list[Issue]:
        """Every error in the definition files; warnings go to ``warnings`` when given."""
        from baton.definitions.loader import check_definitions

        paths = checked_paths(paths, "validate")
        flows = registered_flows() if known_flows is None else known_flows
        docs, issues = check_definitions(
            paths, known_flows=flows, deployed_objects=self.definitions.object_types(),
            deployed_orchestrations=self.definitions.orchestration_names(), warnings=warnings,
            deployed_connections=self.definitions.connection_types(),
            deployed_routings=self.definitions.routing_names())
        return issues or self.definitions.broken_dependents(docs)

    def validate_texts(self, texts: dict[str, str], known_flows: Collection[str] | None = None,
                       *, warnings: list[Issue] | None = None) -> list[Issue]:
        """Validate YAML texts (file name -> text) as ``validate`` does files."""
        from baton.definitions.loader import check_texts

        check_yaml_texts(texts, "validate_texts")
        flows = registered_flows() if known_flows is None else known_flows
        docs, issues = check_texts(texts, known_flows=flows,
                                   deployed_objects=self.definitions.object_types(),
                                   deployed_orchestrations=self.definitions.orchestration_names(),
                                   warnings=warnings,
                                   deployed_connections=self.definitions.connection_types(),
                                   deployed_routings=self.definitions.routing_names())
        return issues or self.definitions.broken_dependents(docs)

    @one_transaction
    def deploy(self, paths: Sequence[str | Path] = (), *, actor: str = "cli",
               known_flows: Collection[str] | None = None,
               texts: dict[str, str] | None = None,
               on_progress: Callable[[str, int, int], None] | None = None) -> list[DeployResult]:
        """Deploy definition files (or ``texts``: file name -> YAML), all or nothing;
        ``on_progress(phase, done, total)`` hears how far it is (a progress bar)."""
        paths = checked_paths(paths, "deploy")
        if texts is not None:
            check_yaml_texts(texts, "deploy")
        acting_name(actor, "actor", "deploy")
        flows = registered_flows() if known_flows is None else known_flows
        return self.definitions.deploy(paths, flows, actor, texts=texts, on_progress=on_progress)

    # ---- records ------------------------------------------------------------------------
    @one_transaction
    def create_record(self, object_type: str, data: dict[str, Any], *, actor: str = "system",
                      idempotency: IdempotencyClaim | None = None,
                      children: Mapping[str, Sequence[Mapping[str, Any]]] | None = None
                      ) -> dict[str, Any]:
        """Create a record; runs it triggers start in the same transaction (and the
        request's idempotency key is claimed in it). ``children``: child object type ->
        records created with it atomically (an order's lines)."""
        acting_name(actor, "actor", f"{object_type} record")
        return self.records.create(object_type, [data], actor, idempotency, children)[0]

    @property
    def plans(self) -> PlanService:
        if self._refusing:
            raise _closed_error("plans")
        return self.records.plans

    @one_transaction
    def create_records(self, object_type: str, rows: Sequence[dict[str, Any]], *,
                       actor: str = "system") -> list[dict[str, Any]]:
        """Create many records (and the runs they trigger) in one transaction: all or none.

        For imports and load: one commit instead of one per record.
        """
        acting_name(actor, "actor", f"{object_type} records")
        return self.records.create(object_type, rows, actor)

    @one_transaction
    def update_record(self, record_id: str, data: dict[str, Any], *, expected_version: int | None = None,
                      actor: str = "system") -> dict[str, Any]:
        """Change the given fields (None clears one); ``expected_version``: refused with a
        TransitionConflict when the record is at another version (someone changed it)."""
        check_expected_version(checked_id(record_id, "record"), expected_version)
        acting_name(actor, "actor", "record update")
        return self.records.update(record_id, data, expected_version, actor)

    def get_record(self, record_id: str) -> dict[str, Any]:
        return self.records.get(checked_id(record_id, "record"))

    def list_records(self, object_type: str | None = None, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        check_window(limit, offset, "record list")
        return self.records.list_records(optional_name(object_type, "object_type", "record list"),
                                         limit, offset)

    def count_records(self, object_type: str | None = None) -> int:
        return self.records.count_records(optional_name(object_type, "object_type", "record count"))

    def page_records(self, object_type: str | None = None, *, after: str | None = None,
                     offset: int = 0, limit: int = 50) -> KeyPage:
        """Records newest first, one keyset page: ``next`` is the cursor of the following
        page (``after``), None on the last."""
        check_window(limit, offset, "record list", after)
        return self.records.page(optional_name(object_type, "object_type", "record list"), after,
                                 offset, limit)

    def count_records_bounded(self, object_type: str | None = None) -> Total:
        """Exact up to a thousand; beyond, an estimate or a lower bound (never a scan)."""
        return self.records.count_bounded(optional_name(object_type, "object_type", "record count"))

    @one_transaction
    def delete_record(self, record_id: str, *, expected_version: int | None = None,
                      actor: str = "system") -> None:
        """Delete a record that no run is working on; its timeline (audit events) is kept."""
        check_expected_version(checked_id(record_id, "record"), expected_version)
        acting_name(actor, "actor", "record deletion")
        self.records.delete(record_id, expected_version, actor)

    def timeline(self, record_id: str) -> list[AuditEvent]:
        """Every event that touched the record, in order, with actor and time."""
        return self.records.timeline(checked_id(record_id, "record"))

    # ---- runs ---------------------------------------------------------------------------
    @one_transaction
    def start(self, orchestration: str, input: dict[str, Any] | None = None, *,
              record_id: str | None = None, actor: str = "system",
              idempotency: IdempotencyClaim | None = None) -> Run:
        """Start an autolaunched orchestration with typed ``input`` (claiming the request's
        idempotency key in the same transaction)."""
        acting_name(actor, "actor", f"start of {orchestration}")
        return self.runs.start(orchestration, input, record_id=record_id, actor=actor,
                               claim=idempotency)

    def get_run(self, run_id: str) -> Run:
        return self.runs.get(checked_id(run_id, "run"))

    def child_runs(self, run_id: str, *, limit: int = MAX_CHILDREN_SHOWN) -> list[dict[str, Any]]:
        """The runs the run's steps started (their summaries and the step), oldest first."""
        checked_id(run_id, "run")
        check_window(limit, 0, "child runs")
        with self.store.read() as tx:
            return tx.child_runs_txn(run_id, limit)

    def run_detail(self, run: Run | str, *, reached_only: bool = False) -> dict[str, Any]:
        """The read model of a run (``runtime/views.py``) with its parent and children;
        ``run``: the run, or its id."""
        if not isinstance(run, Run):
            run = self.get_run(run)
        defn, _ = self.definitions.orchestration(run.orchestration, run.version)
        children = self.child_runs(run.id) if starts_children(defn) else []
        return run_detail(run, defn, reached_only=reached_only, children=children)

    def list_runs(self, *, limit: int = 50, offset: int = 0, **filters: Any) -> list[Run]:
        """Runs newest first, filtered as :meth:`page_runs` says."""
        check_window(limit, offset, "run list")
        return self.runs.list_runs(limit, offset, checked_run_filters(filters, listing=True))

    def count_runs(self, **filters: Any) -> int:
        return self.runs.count_runs(checked_run_filters(filters, listing=True))

    def page_runs(self, *, after: str | None = None, offset: int = 0, limit: int = 50,
                  **filters: Any) -> KeyPage:
        """Run summaries newest first, filtered by ``orchestration``, ``version``,
        ``status``, ``current_stage``, ``record_id``, ``attention`` (True: a step in
        fallout or past its SLA): one keyset page (``next``: the cursor of the following
        page, None on the last; a page may be short when a filter no index holds matched
        few of the runs read, ``next`` then goes on from there). An unknown filter, or a
        status that is not a run's, is a ValidationError."""
        check_window(limit, offset, "run list", after)
        return self.runs.page(checked_run_filters(filters), after, offset, limit)

    def count_runs_bounded(self, **filters: Any) -> Total:
        """Exact up to a thousand; beyond, an estimate or a lower bound (never a scan)."""
        return self.runs.count_bounded(checked_run_filters(filters))

    def run_events(self, run_id: str) -> list[AuditEvent]:
        """The run's audit events in order (its decisions, steps, work items)."""
        return self.runs.events(checked_id(run_id, "run"))

    def cancel_run(self, run_id: str, reason: str, *, actor: str = "system",
                   idempotency: IdempotencyClaim | None = None) -> Run:
        """Cancel a run in progress (its open work items too), saying why (audited).
        ``idempotency`` (here and in the other changes below): an API request's key,
        claimed in the same transaction.

        A fulfillment plan's run is canceled as its plan is (:meth:`PlanService.cancel
        <baton.plans.service.PlanService.cancel>`, ``baton plans cancel``): refused once a
        point-of-no-return step has completed, naming it; else its run is canceled and a
        compensation run rolls back what its steps did (:meth:`run_plan` names it). The
        compensation run of a canceled plan, and an earlier plan of an order planned
        again, are refused (a TransitionConflict saying why and what to do)."""
        check_reason(reason, "cancel", checked_id(run_id, "run"))
        acting_name(actor, "actor", "cancel")
        try:
            return self._cancel_run(run_id, reason, actor, idempotency)
        except PlanRunCancel as plan_run:  # (nothing was written: routed to its plan)
            return self._cancel_plan_run(plan_run.run, reason, actor, idempotency)

    @one_transaction
    def _cancel_run(self, run_id: str, reason: str, actor: str,
                    idempotency: IdempotencyClaim | None) -> Run:
        return self.runs.cancel(run_id, reason, actor, idempotency=idempotency)

    def _cancel_plan_run(self, run: Run, reason: str, actor: str,
                         idempotency: IdempotencyClaim | None) -> Run:
        """:meth:`cancel_run` of a fulfillment plan's run: its plan's cancel, if it is the
        order's plan now; else refused, saying what the run is."""
        plan = self.run_plan(run, ponr=False)
        if plan is None:  # (a plan run always has its revision: stored with it)
            raise TransitionConflict(f"run {run.id} is {run.status.value}; it cannot be "
                                     "canceled")
        order = plan.order_id
        if plan.kind == COMPENSATION:
            ended = run.status not in (RunStatus.IN_PROGRESS, RunStatus.FAILED)
            raise TransitionConflict(
                f"run {run.id} is {run.status.value}; it cannot be canceled" if ended else
                f"run {run.id} is the compensation of order {order}'s canceled plan (run "
                f"{plan.plan_run_id}): it rolls back what the plan did, and is not canceled "
                "(its rollbacks would never run). A rollback in fallout is retried, "
                "completed or skipped there (`baton fallout`, the run page)")
        if not plan.current:
            raise TransitionConflict(
                f"run {run.id} is {run.status.value}: an earlier plan of order {order}, "
                f"which has been planned again since (run {plan.plan_run_id}); cancel that "
                f"one (`baton plans cancel {order} --reason ...`)")
        if run.status is RunStatus.CANCELED:
            comp = plan.compensation_run_id
            raise TransitionConflict(
                f"run {run.id} is canceled; it cannot be canceled: the plan of order {order} "
                + (f"was canceled, its compensation is run {comp}" if comp else
                   "was canceled (with no compensation run)"))
        try:
            # (compare-and-set: refused, nothing written, if the order's plan is another
            # run by the time the cancel is written: canceled and planned again since)
            self._cancel_plan(order, reason, actor, idempotency, run.id)
        except TransitionConflict as exc:
            if type(exc) is not TransitionConflict:  # (a taken idempotency key: as it is)
                raise
            raise TransitionConflict(f"run {run.id} is the plan of order {order}: "
                                     f"{exc}") from None
        return self.get_run(run.id)

    @one_transaction
    def _cancel_plan(self, order_id: str, reason: str, actor: str,
                     idempotency: IdempotencyClaim | None, run_id: str) -> None:
        self.plans.cancel(order_id, reason, actor, idempotency=idempotency, run_id=run_id)

    def run_plan(self, run: Run | str, *, ponr: bool = True) -> RunPlan | None:
        """The fulfillment plan a run is part of (its plan's run, or its compensation
        run), None for any other run; ``run``: the run, or its id. ``ponr``: read the
        plan's point-of-no-return steps too (from its graph, once per revision: kept);
        else ``ponr`` is empty."""
        if not isinstance(run, Run):
            run = self.get_run(checked_id(run, "run"))
        if not run.orchestration.startswith(PLAN_PREFIX):
            return None
        order = run.orchestration[len(PLAN_PREFIX):]
        with self.store.read() as tx:
            revisions = tx.plan_revisions_txn(order)
            mine = [r for r in revisions if r["run_id"] == run.id]
            if not mine:
                return None
            last = mine[-1]  # (an amended plan's run has a revision per amendment)
            key = (order, last["revision"])
            points = self._plan_ponr.get(key, ()) if ponr and last["kind"] == PLAN else ()
            if ponr and last["kind"] == PLAN and key not in self._plan_ponr:
                graph = (tx.get_plan_txn(order, last["revision"]) or {}).get("graph") or {}
                points = tuple(f["name"] for f in graph.get("steps", ()) if f.get("ponr"))
                if len(self._plan_ponr) >= PONR_CACHED:
                    self._plan_ponr.clear()
                self._plan_ponr[key] = points
        plans = [r for r in revisions if r["kind"] == PLAN]
        if last["kind"] == PLAN:
            comp = next((r["run_id"] for r in revisions if r["kind"] == COMPENSATION
                         and r["revision"] > last["revision"]), None)
            plan_run = plans[-1]["run_id"]
        else:
            comp = run.id
            plan_run = next((r["run_id"] for r in reversed(plans)
                             if r["revision"] < last["revision"]), "")
        passed = next((name for name in points if name in run.steps
                       and run.steps[name].status is StepStatus.COMPLETED), None)
        return RunPlan(order, last["kind"], last["revision"], plan_run == run.id, plan_run,
                       comp, points, passed,
                       run.steps[passed].completed_at if passed is not None else None)

    def evaluate_run_txn(self, tx: Any, run_id: str, now_dt: Any) -> None:
        """Re-evaluate a run's conditions (its record changed), in the caller's transaction."""
        self.runs.evaluate_txn(tx, run_id, now_dt)

    # ---- fallout, resume, signals -------------------------------------------------------
    def list_fallout(self, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """Steps waiting for an operator: one entry per step in fallout, oldest run first.

        Each entry's ``id`` is ``RUN_ID:STEP``, the form ``baton fallout`` commands take.
        """
        return self.page_fallout(limit=limit, offset=offset)[1]

    def page_fallout(self, *, limit: int = 100, offset: int = 0
                     ) -> tuple[int, list[dict[str, Any]]]:
        """How many steps are in fallout, and the entries of :meth:`list_fallout`'s page
        (``limit`` from ``offset``), read at one snapshot: a page costs what it holds."""
        check_window(limit, offset, "fallout list")
        found = self.runs.in_fallout(offset, limit)
        return found.total, [fallout_view(run, sr) for run, sr in found.steps]

    def fallout_by_step(self, *, after: tuple[str, str] | None = None, limit: int = 50,
                        groups: bool = False) -> FalloutPage:
        """Steps in fallout by run id and step (the Fallout page), ``limit`` after the
        ``(run_id, step)`` ``after``; with every step counted by orchestration, step and
        error message (``groups``). Its ``steps`` are ``(run, step)``: see fallout_view."""
        check_window(limit, 0, "fallout page")
        return self.runs.fallout_by_step(after, limit, groups=groups)

    def fallout_group(self, orchestration: str, step: str, message: str, *,
                      limit: int = 10_000) -> tuple[int, list[str]]:
        """How many steps in fallout one group (orchestration, step, error message) holds,
        and the ids of its first ``limit`` by run id and step: what "Retry all" acts on."""
        check_window(limit, 0, "fallout group")
        return self.runs.fallout_group(orchestration, step, message, limit)

    @one_transaction
    def resolve_fallout(self, fallout_id: str, action: str, *, reason: str, actor: str = "system",
                        output: dict[str, Any] | None = None,
                        idempotency: IdempotencyClaim | None = None) -> Run:
        """Operator action on a step in fallout: ``retry``, ``complete`` (with output) or ``skip``.

        ``fallout_id`` is ``RUN_ID:STEP``. A ``complete`` output is validated against the
        step's ``output:`` field specs when it declares them.
        """
        acting_name(actor, "actor", "fallout action")
        return self.runs.resolve_fallout(fallout_id, action, reason=reason, actor=actor,
                                         output=output, idempotency=idempotency)

    def list_incidents(self, *, statuses: Sequence[str] | None = ("open",), limit: int = 100,
                       offset: int = 0, record_id: str | None = None) -> list[dict[str, Any]]:
        """Incidents (a trigger's `when` or an evaluation flow that raised), oldest first;
        the open ones by default, every one with ``statuses=None``."""
        check_window(limit, offset, "incident list")
        if record_id is not None:
            checked_id(record_id, "record")
        return self.incidents.list_incidents(checked_statuses(statuses), limit, offset, record_id)

    def count_incidents(self, *, statuses: Sequence[str] | None = ("open",),
                        record_id: str | None = None) -> int:
        return self.incidents.count_incidents(checked_statuses(statuses), record_id)

    def get_incident(self, incident_id: str) -> dict[str, Any]:
        return self.incidents.get(checked_id(incident_id, "incident"))

    @one_transaction
    def retry_incident(self, incident_id: str, *, reason: str, actor: str = "system",
                       idempotency: IdempotencyClaim | None = None) -> dict[str, Any]:
        """Evaluate the failed trigger condition (or queue the evaluation flow) again, now;
        the incident is resolved unless it raises again (then it stays open, new error)."""
        checked_id(incident_id, "incident")
        acting_name(actor, "actor", "incident retry")
        return self.incidents.retry(incident_id, reason=reason, actor=actor,
                                    idempotency=idempotency)

    @one_transaction
    def dismiss_incident(self, incident_id: str, *, reason: str, actor: str = "system",
                         idempotency: IdempotencyClaim | None = None) -> dict[str, Any]:
        """Close an open incident without evaluating it again."""
        checked_id(incident_id, "incident")
        acting_name(actor, "actor", "incident dismissal")
        return self.incidents.dismiss(incident_id, reason=reason, actor=actor,
                                      idempotency=idempotency)

    @one_transaction
    def resume_run(self, run_id: str, reason: str, *, actor: str = "system",
                   idempotency: IdempotencyClaim | None = None) -> Run:
        """Resume a failed run after its cause is fixed: its failed steps run again."""
        check_reason(reason, "resume", checked_id(run_id, "run"))
        acting_name(actor, "actor", "resume")
        return self.runs.event(run_id, ResumeRequested(actor, reason),
                               lambda status: f"is {status}; only a failed run can be resumed",
                               idempotency=idempotency)

    @one_transaction
    def signal(self, run_id: str, name: str, data: dict[str, Any] | None = None, *,
               actor: str = "system", idempotency: IdempotencyClaim | None = None) -> Run:
        """Send a named signal: pause steps waiting for it complete with ``data`` (a JSON
        object) as output."""
        checked_id(run_id, "run")
        check_signal_name(name)
        acting_name(actor, "actor", "signal")
        output = json_object(data, "signal", "data")
        return self.runs.event(
            run_id, SignalReceived(name, output, actor),
            lambda status: f"({status}) has no pause step waiting for signal {name!r}",
            idempotency=idempotency)

    # ---- work items ---------------------------------------------------------------------
    def list_work(self, *, user: str | None = None, queue: str | None = None, group: str | None = None,
                  statuses: Sequence[str] = OPEN_OR_CLAIMED, run_id: str | None = None,
                  limit: int = 100, offset: int = 0, scope: User | None = None,
                  order: str = "created", record_id: str | None = None) -> list[WorkItem]:
        """Work items. ``scope`` (a directory user) keeps the items assigned to them, their
        groups or their queues, or claimed by them; ``queue``/``group`` narrow further.
        ``order``: ``created``, ``due`` or ``priority``."""
        check_work_names(user=user, queue=queue, group=group, run_id=run_id, record_id=record_id)
        return self.work.list_items(user=user, queue=queue, group=group, statuses=statuses,
                                    run_id=run_id, limit=limit, offset=offset, scope=scope,
                              order=order, record_id=record_id)

    def count_work(self, *, statuses: Sequence[str] = OPEN_OR_CLAIMED, scope: User | None = None,
                   queue: str | None = None, group: str | None = None,
                   record_id: str | None = None) -> int:
        check_work_names(queue=queue, group=group, record_id=record_id)
        return self.work.count_items(statuses=statuses, scope=scope, queue=queue, group=group,
                               record_id=record_id)

    def page_work(self, *, user: str | None = None, queue: str | None = None,
                  group: str | None = None, statuses: Sequence[str] = OPEN_OR_CLAIMED,
                  run_id: str | None = None, record_id: str | None = None,
                  scope: User | None = None, order: str = "created", after: str | None = None,
                  offset: int = 0, limit: int = 50,
                  narrow: WorkNarrowing | None = None, on_behalf: Sequence[str] = ()
                  ) -> KeyPage:
        """Work items, one keyset page in ``order`` (see :meth:`list_work`); ``next`` is
        the cursor of the following page, None on the last. ``narrow``: the Work Guide's
        orchestration, text and SLA-state filters; ``on_behalf`` (with ``user``): the
        approvals of these users too (``user`` acts for them as their delegate)."""
        check_window(limit, offset, "work list", after)
        check_work_names(user=user, queue=queue, group=group, run_id=run_id, record_id=record_id)
        return self.work.page(user=user, queue=queue, group=group, statuses=statuses,
                              run_id=run_id, record_id=record_id, scope=scope, order=order,
                              after=after, offset=offset, limit=limit, narrow=narrow,
                              on_behalf=on_behalf)

    def count_work_bounded(self, *, statuses: Sequence[str] = OPEN_OR_CLAIMED,
                           scope: User | None = None, queue: str | None = None,
                           group: str | None = None, record_id: str | None = None,
                           user: str | None = None,
                           narrow: WorkNarrowing | None = None,
                           on_behalf: Sequence[str] = ()) -> Total:
        """Exact up to a thousand; beyond, an estimate or a lower bound (never a scan)."""
        check_work_names(user=user, queue=queue, group=group, record_id=record_id)
        return self.work.count_bounded(statuses=statuses, scope=scope, queue=queue,
                                       group=group, record_id=record_id, user=user,
                                       narrow=narrow, on_behalf=on_behalf)

    def get_work_item(self, item_id: str) -> WorkItem:
        return self.work.get(checked_id(item_id, "work item"))

    @one_transaction
    def claim(self, item_id: str, user: str, *, scope: User | None = None,
               idempotency: IdempotencyClaim | None = None) -> WorkItem:
        """Claim an open item. Exactly one claimer wins; the others get a TransitionConflict."""
        return self.work.claim(checked_id(item_id, "work item"), user, scope,
                               idempotency=idempotency)

    @one_transaction
    def release(self, item_id: str, user: str, *, scope: User | None = None,
                 idempotency: IdempotencyClaim | None = None) -> WorkItem:
        """Unclaim: the item is open again for its assignee. Only its claimer may, unless
        ``scope`` is None (someone acting on every item)."""
        return self.work.release(checked_id(item_id, "work item"), user, scope,
                                 idempotency=idempotency)

    @one_transaction
    def accept(self, item_id: str, user: str, *, scope: User | None = None,
                idempotency: IdempotencyClaim | None = None) -> WorkItem:
        """Accept an item a routing rule offered ``user``: it is theirs."""
        return self.work.accept(checked_id(item_id, "work item"), user, scope,
                                idempotency=idempotency)

    @one_transaction
    def decline(self, item_id: str, user: str, *, scope: User | None = None,
                 idempotency: IdempotencyClaim | None = None) -> WorkItem:
        """Decline an item a routing rule offered ``user``: the next candidate gets the offer."""
        return self.work.decline(checked_id(item_id, "work item"), user, scope,
                                 idempotency=idempotency)

    @one_transaction
    def claim_next(self, user: User, *, narrow: WorkNarrowing | None = None,
                   queue: str | None = None,
                   idempotency: IdempotencyClaim | None = None) -> WorkItem | None:
        """Claim the most urgent open item ``user`` may take (of ``queue``, of what
        ``narrow`` keeps); None when there is none (and ``idempotency`` stays free)."""
        return self.work.claim_next(user, narrow, queue, idempotency)

    @one_transaction
    def complete(self, item_id: str, user: str, data: dict[str, Any], *,
                 scope: User | None = None,
                 idempotency: IdempotencyClaim | None = None) -> dict[str, Any]:
        """Submit the form: completes the item and its step, and moves the run on."""
        return self.work.complete(checked_id(item_id, "work item"), user, data, scope,
                                  idempotency=idempotency)

    def complete_many(self, submissions: Sequence[tuple[str, str, dict[str, Any]]]
                      ) -> list[dict[str, Any] | BatonError]:
        """Complete many work items in one transaction (``(item_id, user, data)`` each).

        Each submission is its own savepoint: one that fails (a conflict, bad form data)
        is returned as its error and changes nothing, the others commit together.
        """
        return self.work.complete_many(submissions)

    @one_transaction
    def reassign(self, item_id: str, to: str, *, actor: str = "system",
                 idempotency: IdempotencyClaim | None = None) -> WorkItem:
        """Give the item to ``user:NAME``, ``group:NAME`` or ``queue:NAME``; a claim is released."""
        acting_name(actor, "actor", "reassign")
        return self.work.reassign(checked_id(item_id, "work item"), to, actor,
                                  idempotency=idempotency)


# ---- a closed Engine ----------------------------------------------------------------------
# Its public methods, each shadowed by close() with one that refuses: an instance attribute
# hides the class's function, so an open Engine's calls pay nothing for the check (the
# properties that make a service look at ``_refusing`` as they make it).
_REFUSED_AFTER_CLOSE = tuple(name for name, value in vars(Engine).items()
                             if callable(value) and not name.startswith("_")
                             and name != "close")


def _closed_error(name: str) -> ConfigError:
    return ConfigError(f"this Engine is closed; make a new one (Engine.{name} was used "
                       "after close())")


def _refused(name: str, *args: object, **kwargs: object) -> NoReturn:
    raise _closed_error(name)


def _refuse_calls(engine: Engine) -> None:
    """After close(): every public method of ``engine`` raises, rather than open the
    database's connections again (a pool that was disposed of makes new ones on demand);
    so does every service it handed out (a program may hold ``engine.records``), and its
    store (the backstop: whatever holds it, nothing opens the pools again)."""
    with engine._services_lock:
        engine._refusing = True
        for name in _REFUSED_AFTER_CLOSE:
            engine.__dict__[name] = functools.partial(_refused, name)
        for label, service in _services(engine):
            _refuse_members(service, label)


# The services an Engine hands out as attributes (the made-on-first-use ones: _services).
_SERVICES = ("directory", "applier", "definitions", "runs", "records", "incidents", "router",
             "team", "work", "idempotency", "store")
# What still works on a closed service: closing (again), and what opens nothing (a
# stopping worker interrupts its store's waits; an error is classified).
_KEPT_AFTER_CLOSE = frozenset({"close", "interrupt_waits", "is_transient", "refuses_data",
                               "iter_tables"})
_CLOSED_CLASSES: dict[tuple[type, str], type] = {}


def _services(engine: Engine) -> list[tuple[str, object]]:
    """Every service ``engine`` has handed out or made so far, named as a program reaches
    it (``Engine.records``), each once."""
    found: list[tuple[str, object]] = [(name, engine.__dict__[name]) for name in _SERVICES]
    connections = engine._connections
    if connections is not None:
        found += [("connections", connections), ("callbacks", connections.callbacks)]
    if engine._intake is not None:
        found.append(("intake", engine._intake))
    plans = engine.records._plans
    if plans is not None:
        found.append(("plans", plans))
    if engine.applier.children is not None:
        found.append(("applier.children", engine.applier.children))
    unique: dict[int, tuple[str, object]] = {}
    for label, service in found:
        unique.setdefault(id(service), (label, service))
    return list(unique.values())


def _refuse_members(service: object, label: str) -> None:
    """Make every public method and property of ``service`` raise the closed Engine's
    error (``Engine.records.create was used after close()``), by giving the instance a
    subclass of its class that says so: the open services' calls pay nothing for it,
    and what the instance holds is left as it was."""
    cls = type(service)
    closed = _CLOSED_CLASSES.get((cls, label))
    if closed is None:
        members: dict[str, Any] = {"__slots__": ()}  # (the same layout: __class__ may change)
        for name in dir(cls):
            if name.startswith("_") or name in _KEPT_AFTER_CLOSE:
                continue
            value = inspect.getattr_static(cls, name)
            refuse = functools.partial(_refused, f"{label}.{name}")
            if isinstance(value, property | functools.cached_property):
                members[name] = property(refuse)
            elif callable(value) or isinstance(value, staticmethod | classmethod):
                members[name] = refuse  # (a partial is no descriptor: called as it is)
        closed = _CLOSED_CLASSES.setdefault(
            (cls, label), type(f"Closed{cls.__name__}", (cls,), members))
    object.__setattr__(service, "__class__", closed)


def _configure_encoder(choice: str, few: bool) -> None:
    from baton.ai.encoder import configure

    configure(choice, few)


class WorkerThreads:
    """Workers running in a background thread of this process (:meth:`Engine.start_workers`):
    :func:`~baton.runtime.worker.run_workers` until stopped."""

    def __init__(self, engine: Engine, concurrency: int, options: Mapping[str, Any]) -> None:
        self.engine = engine
        self.concurrency = concurrency
        self.workers: list[Worker] = []  # filled as they start
        self.error: BaseException | None = None  # what ended them, if not a stop
        self._options = dict(options)
        self._thread = threading.Thread(target=self._run, name="baton-workers", daemon=True)
        self._ended = threading.Event()  # set by the thread as it ends (see stop)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from baton.runtime.worker import run_workers

        try:
            run_workers(self.engine, self.concurrency, _created=self.workers, **self._options)
        except BaseException as exc:  # (kept for the caller, and logged: a thread's end)
            self.error = exc
            log.exception("workers stopped on an error")
        finally:
            self._ended.set()

    @property
    def running(self) -> bool:
        return self._thread.ident is not None and not self._ended.is_set()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop every worker after the job in hand, and wait for them (at most ``timeout``
        seconds, if given); True once they have all stopped.

        Waited for on an Event, not in Thread.join: a KeyboardInterrupt raised inside
        join() (Ctrl-C in the caller's thread) marks a thread that still runs as stopped
        (CPython 3.11's _wait_for_tstate_lock: is_alive() is False from then on), and a
        later stop() or close() returned at once, the job in hand unfinished (as ``baton
        worker`` did)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.ident is not None and not self._ended.is_set():  # (started)
            # (again on every turn: a worker that had not started yet when first told
            # clears its stop as it starts)
            for worker in list(self.workers):
                worker.stop()
            wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if wait <= 0:
                break
            self._ended.wait(wait)
        return self._ended.is_set() or self._thread.ident is None
