"""The embeddable Engine: every operation of the CLI and the API as one method.

A thin facade: it wires the services together (the run driver in ``runtime/runs.py``,
records in ``records/service.py``, work items in ``work/service.py``) and keeps one
stable public surface for the CLI, the web app and embedders. Each state change is one
write transaction: the record or work-item write, the run's new state from
:func:`baton.engine.decide.decide`, its audit events and the next jobs commit together.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from sqlalchemy.exc import DBAPIError

from baton.auth.directory import Directory
from baton.clock import Clock, SystemClock
from baton.connections.secrets import Secrets
from baton.definitions.checks import describe
from baton.engine.attention import VALUES as ATTENTION_VALUES
from baton.engine.events import ResumeRequested, SignalReceived
from baton.engine.state import Run
from baton.engine.status import RunStatus, WorkItemStatus
from baton.errors import BatonError, ConfigError, Issue, ValidationError
from baton.flows import registered_flows
from baton.ids import IdGenerator, UlidIds
from baton.records.model import record_view
from baton.records.service import RecordService
from baton.rows import AuditEvent, WorkItem
from baton.runtime.apply import Applier
from baton.runtime.callouts import DEFAULT_PUBLIC_URL, ConnectionServices
from baton.runtime.children import ChildRuns
from baton.runtime.definitions import DefinitionRepo, DeployResult
from baton.runtime.idempotency import IdempotencyClaim, IdempotencyKeys
from baton.runtime.incidents import IncidentService
from baton.runtime.runs import RunDriver, json_object
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

__all__ = ["ASSIGNEE_KINDS", "Engine", "one_transaction", "record_view"]

log = logging.getLogger("baton.engine")
AI_WARM_EVERY_S = 30.0  # how often a serving worker looks for classify models to train

F = TypeVar("F", bound=Callable[..., Any])

OPEN_OR_CLAIMED = (WorkItemStatus.OPEN.value, WorkItemStatus.CLAIMED.value)


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
    stop, then the database connections close.

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
        if settings is not None and not isinstance(settings, Settings):
            raise ConfigError("Engine(settings=...) takes a baton.settings.Settings "
                              f"(Settings.from_environment()), got {describe(settings)}")
        self.settings = settings = settings or Settings()
        if db is None:
            db = settings.database or "sqlite:///baton.db"
        if isinstance(db, os.PathLike):
            db = os.fspath(db)
        if not isinstance(db, str | SqlStore):
            raise ConfigError("Engine(db) takes a database URL (sqlite:///PATH, "
                              f"postgresql://USER@HOST/DB) or a path, got {describe(db)}")
        self.clock = clock or SystemClock(timedelta(seconds=settings.clock_offset))
        _check_clock(self.clock)
        # the offline classifier's, one a process
        _configure_encoder(settings.ai_encoder, settings.ai_encoder_few)
        self.store = db if isinstance(db, SqlStore) else SqlStore(
            db, **settings.store_options())
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
        self._services_lock = threading.Lock()
        self._ai_warm: threading.Thread | None = None  # warm_ai()'s thread, once started
        self._connections: ConnectionServices | None = None
        self._started: list[WorkerThreads] = []  # start_workers()'s, stopped by close()
        self._closed = False
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
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) \
                or concurrency < 1:
            raise ValidationError("start_workers", {"concurrency": (
                f"expected a number of workers (1 or more), got {concurrency!r}")})
        started = WorkerThreads(self, concurrency, options)
        with self._services_lock:
            if self._closed:
                raise ConfigError("this Engine is closed: make a new one to run workers")
            self._started.append(started)
        started.start()
        return started

    def close(self) -> None:
        """Stop the workers :meth:`start_workers` started (each ends the job in hand
        first), then close the HTTP client of connections and the database's connections.
        Workers you run yourself (``run_workers``, ``Worker.run``) are to be stopped before.
        Closing twice does nothing more."""
        with self._services_lock:
            started, self._started = self._started, []
            self._closed = True
        for workers in started:
            workers.stop()
        if self._connections is not None:
            self._connections.close()
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @functools.cached_property
    def intake(self) -> IntakeService:
        """Mail intake (made on first use: it imports the e-mail parser, which no read
        command needs)."""
        from baton.intake.service import IntakeService

        return IntakeService(self.store, self.definitions, self.records, self.clock,
                             self.ids, self.wake)

    # ---- connections and callbacks ------------------------------------------------------
    @property
    def connections(self) -> ConnectionServices:
        """Connections, secrets, the HTTP client and callbacks of this process (made on
        first use, from the settings as they are then)."""
        made = self._connections  # (made once: no lock to take after that, e.g. per step)
        if made is not None:
            return made
        with self._services_lock:
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

        paths = _paths(paths, "validate")
        flows = registered_flows() if known_flows is None else known_flows
        docs, issues = check_definitions(
            paths, known_flows=flows, deployed_objects=self.definitions.object_types(),
            deployed_orchestrations=self.definitions.orchestration_names(), warnings=warnings,
            deployed_connections=self.definitions.connection_types())
        return issues or self.definitions.broken_dependents(docs)

    def validate_texts(self, texts: dict[str, str], known_flows: Collection[str] | None = None,
                       *, warnings: list[Issue] | None = None) -> list[Issue]:
        """Validate YAML texts (file name -> text) as ``validate`` does files."""
        from baton.definitions.loader import check_texts

        _texts(texts, "validate_texts")
        flows = registered_flows() if known_flows is None else known_flows
        docs, issues = check_texts(texts, known_flows=flows,
                                   deployed_objects=self.definitions.object_types(),
                                   deployed_orchestrations=self.definitions.orchestration_names(),
                                   warnings=warnings,
                                   deployed_connections=self.definitions.connection_types())
        return issues or self.definitions.broken_dependents(docs)

    @one_transaction
    def deploy(self, paths: Sequence[str | Path] = (), *, actor: str = "cli",
               known_flows: Collection[str] | None = None,
               texts: dict[str, str] | None = None,
               on_progress: Callable[[str, int, int], None] | None = None) -> list[DeployResult]:
        """Deploy definition files (or ``texts``: file name -> YAML), all or nothing;
        ``on_progress(phase, done, total)`` hears how far it is (a progress bar)."""
        paths = _paths(paths, "deploy")
        if texts is not None:
            _texts(texts, "deploy")
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
        _version(_id(record_id, "record"), expected_version)
        acting_name(actor, "actor", "record update")
        return self.records.update(record_id, data, expected_version, actor)

    def get_record(self, record_id: str) -> dict[str, Any]:
        return self.records.get(_id(record_id, "record"))

    def list_records(self, object_type: str | None = None, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        _window(limit, offset, "record list")
        return self.records.list_records(_name(object_type, "object_type", "record list"),
                                         limit, offset)

    def count_records(self, object_type: str | None = None) -> int:
        return self.records.count_records(_name(object_type, "object_type", "record count"))

    def page_records(self, object_type: str | None = None, *, after: str | None = None,
                     offset: int = 0, limit: int = 50) -> KeyPage:
        """Records newest first, one keyset page: ``next`` is the cursor of the following
        page (``after``), None on the last."""
        _window(limit, offset, "record list", after)
        return self.records.page(_name(object_type, "object_type", "record list"), after,
                                 offset, limit)

    def count_records_bounded(self, object_type: str | None = None) -> Total:
        """Exact up to a thousand; beyond, an estimate or a lower bound (never a scan)."""
        return self.records.count_bounded(_name(object_type, "object_type", "record count"))

    @one_transaction
    def delete_record(self, record_id: str, *, expected_version: int | None = None,
                      actor: str = "system") -> None:
        """Delete a record that no run is working on; its timeline (audit events) is kept."""
        _version(_id(record_id, "record"), expected_version)
        acting_name(actor, "actor", "record deletion")
        self.records.delete(record_id, expected_version, actor)

    def timeline(self, record_id: str) -> list[AuditEvent]:
        """Every event that touched the record, in order, with actor and time."""
        return self.records.timeline(_id(record_id, "record"))

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
        return self.runs.get(_id(run_id, "run"))

    def child_runs(self, run_id: str, *, limit: int = MAX_CHILDREN_SHOWN) -> list[dict[str, Any]]:
        """The runs the run's steps started (their summaries and the step), oldest first."""
        _id(run_id, "run")
        _window(limit, 0, "child runs")
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
        _window(limit, offset, "run list")
        return self.runs.list_runs(limit, offset, _run_filters(filters, listing=True))

    def count_runs(self, **filters: Any) -> int:
        return self.runs.count_runs(_run_filters(filters, listing=True))

    def page_runs(self, *, after: str | None = None, offset: int = 0, limit: int = 50,
                  **filters: Any) -> KeyPage:
        """Run summaries newest first, filtered by ``orchestration``, ``version``,
        ``status``, ``current_stage``, ``record_id``, ``attention`` (True: a step in
        fallout or past its SLA): one keyset page (``next``: the cursor of the following
        page, None on the last; a page may be short when a filter no index holds matched
        few of the runs read, ``next`` then goes on from there). An unknown filter, or a
        status that is not a run's, is a ValidationError."""
        _window(limit, offset, "run list", after)
        return self.runs.page(_run_filters(filters), after, offset, limit)

    def count_runs_bounded(self, **filters: Any) -> Total:
        """Exact up to a thousand; beyond, an estimate or a lower bound (never a scan)."""
        return self.runs.count_bounded(_run_filters(filters))

    def run_events(self, run_id: str) -> list[AuditEvent]:
        """The run's audit events in order (its decisions, steps, work items)."""
        return self.runs.events(_id(run_id, "run"))

    @one_transaction
    def cancel_run(self, run_id: str, reason: str, *, actor: str = "system") -> Run:
        """Cancel a run in progress (its open work items too), saying why (audited)."""
        _reason(reason, "cancel", _id(run_id, "run"))
        acting_name(actor, "actor", "cancel")
        return self.runs.cancel(run_id, reason, actor)

    def evaluate_run_txn(self, tx: Any, run_id: str, now_dt: Any) -> None:
        """Re-evaluate a run's conditions (its record changed), in the caller's transaction."""
        self.runs.evaluate_txn(tx, run_id, now_dt)

    # ---- fallout, resume, signals -------------------------------------------------------
    def list_fallout(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Steps waiting for an operator: one entry per step in fallout, oldest run first.

        Each entry's ``id`` is ``RUN_ID:STEP``, the form ``baton fallout`` commands take.
        """
        _window(limit, 0, "fallout list")
        return [fallout_view(run, sr) for run, steps in self.runs.in_fallout()
                for sr in steps][:limit]

    @one_transaction
    def resolve_fallout(self, fallout_id: str, action: str, *, reason: str, actor: str = "system",
                        output: dict[str, Any] | None = None) -> Run:
        """Operator action on a step in fallout: ``retry``, ``complete`` (with output) or ``skip``.

        ``fallout_id`` is ``RUN_ID:STEP``. A ``complete`` output is validated against the
        step's ``output:`` field specs when it declares them.
        """
        acting_name(actor, "actor", "fallout action")
        return self.runs.resolve_fallout(fallout_id, action, reason=reason, actor=actor,
                                         output=output)

    def list_incidents(self, *, statuses: Sequence[str] | None = ("open",), limit: int = 100,
                       offset: int = 0, record_id: str | None = None) -> list[dict[str, Any]]:
        """Incidents (a trigger's `when` or an evaluation flow that raised), oldest first;
        the open ones by default, every one with ``statuses=None``."""
        _window(limit, offset, "incident list")
        if record_id is not None:
            _id(record_id, "record")
        return self.incidents.list_incidents(_statuses(statuses), limit, offset, record_id)

    def count_incidents(self, *, statuses: Sequence[str] | None = ("open",),
                        record_id: str | None = None) -> int:
        return self.incidents.count_incidents(_statuses(statuses), record_id)

    def get_incident(self, incident_id: str) -> dict[str, Any]:
        return self.incidents.get(_id(incident_id, "incident"))

    @one_transaction
    def retry_incident(self, incident_id: str, *, reason: str, actor: str = "system") -> dict[str, Any]:
        """Evaluate the failed trigger condition (or queue the evaluation flow) again, now;
        the incident is resolved unless it raises again (then it stays open, new error)."""
        _id(incident_id, "incident")
        acting_name(actor, "actor", "incident retry")
        return self.incidents.retry(incident_id, reason=reason, actor=actor)

    @one_transaction
    def dismiss_incident(self, incident_id: str, *, reason: str, actor: str = "system") -> dict[str, Any]:
        """Close an open incident without evaluating it again."""
        _id(incident_id, "incident")
        acting_name(actor, "actor", "incident dismissal")
        return self.incidents.dismiss(incident_id, reason=reason, actor=actor)

    @one_transaction
    def resume_run(self, run_id: str, reason: str, *, actor: str = "system") -> Run:
        """Resume a failed run after its cause is fixed: its failed steps run again."""
        _reason(reason, "resume", _id(run_id, "run"))
        acting_name(actor, "actor", "resume")
        return self.runs.event(run_id, ResumeRequested(actor, reason),
                               lambda status: f"is {status}; only a failed run can be resumed")

    @one_transaction
    def signal(self, run_id: str, name: str, data: dict[str, Any] | None = None, *,
               actor: str = "system") -> Run:
        """Send a named signal: pause steps waiting for it complete with ``data`` (a JSON
        object) as output."""
        _id(run_id, "run")
        if not isinstance(name, str) or not name.strip():
            got = repr(name) if isinstance(name, str) else describe(name)
            raise ValidationError("signal", {"name": f"expected the signal's name, got {got}"})
        acting_name(actor, "actor", "signal")
        output = json_object(data, "signal", "data")
        return self.runs.event(
            run_id, SignalReceived(name, output, actor),
            lambda status: f"({status}) has no pause step waiting for signal {name!r}")

    # ---- work items ---------------------------------------------------------------------
    def list_work(self, *, user: str | None = None, queue: str | None = None, group: str | None = None,
                  statuses: Sequence[str] = OPEN_OR_CLAIMED, run_id: str | None = None,
                  limit: int = 100, offset: int = 0, scope: User | None = None,
                  order: str = "created", record_id: str | None = None) -> list[WorkItem]:
        """Work items. ``scope`` (a directory user) keeps the items assigned to them, their
        groups or their queues, or claimed by them; ``queue``/``group`` narrow further.
        ``order``: ``created``, ``due`` or ``priority``."""
        _work_names(user=user, queue=queue, group=group, run_id=run_id, record_id=record_id)
        return self.work.list_items(user=user, queue=queue, group=group, statuses=statuses,
                                    run_id=run_id, limit=limit, offset=offset, scope=scope,
                              order=order, record_id=record_id)

    def count_work(self, *, statuses: Sequence[str] = OPEN_OR_CLAIMED, scope: User | None = None,
                   queue: str | None = None, group: str | None = None,
                   record_id: str | None = None) -> int:
        _work_names(queue=queue, group=group, record_id=record_id)
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
        _window(limit, offset, "work list", after)
        _work_names(user=user, queue=queue, group=group, run_id=run_id, record_id=record_id)
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
        _work_names(user=user, queue=queue, group=group, record_id=record_id)
        return self.work.count_bounded(statuses=statuses, scope=scope, queue=queue,
                                       group=group, record_id=record_id, user=user,
                                       narrow=narrow, on_behalf=on_behalf)

    def get_work_item(self, item_id: str) -> WorkItem:
        return self.work.get(_id(item_id, "work item"))

    @one_transaction
    def claim(self, item_id: str, user: str, *, scope: User | None = None) -> WorkItem:
        """Claim an open item. Exactly one claimer wins; the others get a TransitionConflict."""
        return self.work.claim(_id(item_id, "work item"), user, scope)

    @one_transaction
    def release(self, item_id: str, user: str, *, scope: User | None = None) -> WorkItem:
        """Unclaim: the item is open again for its assignee. Only its claimer may, unless
        ``scope`` is None (someone acting on every item)."""
        return self.work.release(_id(item_id, "work item"), user, scope)

    @one_transaction
    def accept(self, item_id: str, user: str, *, scope: User | None = None) -> WorkItem:
        """Accept an item a routing rule offered ``user``: it is theirs."""
        return self.work.accept(_id(item_id, "work item"), user, scope)

    @one_transaction
    def decline(self, item_id: str, user: str, *, scope: User | None = None) -> WorkItem:
        """Decline an item a routing rule offered ``user``: the next candidate gets the offer."""
        return self.work.decline(_id(item_id, "work item"), user, scope)

    @one_transaction
    def claim_next(self, user: User, *, narrow: WorkNarrowing | None = None,
                   queue: str | None = None) -> WorkItem | None:
        """Claim the most urgent open item ``user`` may take (of ``queue``, of what
        ``narrow`` keeps); None when there is none."""
        return self.work.claim_next(user, narrow, queue)

    @one_transaction
    def complete(self, item_id: str, user: str, data: dict[str, Any], *,
                 scope: User | None = None) -> dict[str, Any]:
        """Submit the form: completes the item and its step, and moves the run on."""
        return self.work.complete(_id(item_id, "work item"), user, data, scope)

    def complete_many(self, submissions: Sequence[tuple[str, str, dict[str, Any]]]
                      ) -> list[dict[str, Any] | BatonError]:
        """Complete many work items in one transaction (``(item_id, user, data)`` each).

        Each submission is its own savepoint: one that fails (a conflict, bad form data)
        is returned as its error and changes nothing, the others commit together.
        """
        return self.work.complete_many(submissions)

    @one_transaction
    def reassign(self, item_id: str, to: str, *, actor: str = "system") -> WorkItem:
        """Give the item to ``user:NAME``, ``group:NAME`` or ``queue:NAME``; a claim is released."""
        acting_name(actor, "actor", "reassign")
        return self.work.reassign(_id(item_id, "work item"), to, actor)


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

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        from baton.runtime.worker import run_workers

        try:
            run_workers(self.engine, self.concurrency, _created=self.workers, **self._options)
        except BaseException as exc:  # (kept for the caller, and logged: a thread's end)
            self.error = exc
            log.exception("workers stopped on an error")

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> bool:
        """Stop every worker after the job in hand, and wait for them (at most ``timeout``
        seconds, if given); True once they have all stopped."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._thread.is_alive():
            # (again on every turn: a worker that had not started yet when first told
            # clears its stop as it starts)
            for worker in list(self.workers):
                worker.stop()
            wait = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if wait <= 0:
                break
            self._thread.join(wait)
        return not self._thread.is_alive()


# ---- arguments: what each public method is given, checked before anything is done --------
# (A ValidationError naming the argument, not a TypeError or a database error from deep
# inside; the services check what only they can, such as whether an id exists.)

RUN_FILTERS = ("orchestration", "version", "status", "current_stage", "record_id",
               "attention")
_RUN_STATUSES = tuple(s.value for s in RunStatus)


def _id(value: object, kind: str) -> str:
    """An id argument: text (one that names nothing is the service's NotFound)."""
    if isinstance(value, str):
        return value
    raise ValidationError(f"{kind} id", {"id": f"expected the {kind}'s id (text), got "
                                               f"{describe(value)}"})


def _name(value: object, field: str, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValidationError(what, {field: f"expected a name (text) or None, got {describe(value)}"})


def _work_names(**given: object) -> None:
    """A work list's filters that name someone or something: text, or None."""
    bad = {k: f"expected a name or an id (text) or None, got {describe(v)}"
           for k, v in given.items() if v is not None and not isinstance(v, str)}
    if bad:
        raise ValidationError("work list", bad)


def _version(record_id: str, expected: object) -> None:
    if expected is not None and (isinstance(expected, bool) or not isinstance(expected, int)):
        raise ValidationError(f"record {record_id}", {"expected_version": (
            f"expected the version read (a whole number) or None, got {expected!r}"[:200])})


def _reason(reason: object, action: str, run_id: str) -> None:
    if not isinstance(reason, str) or not reason.strip():
        got = describe(reason) if not isinstance(reason, str) else "blank text"
        raise ValidationError(f"{action} of run {run_id}", {
            "reason": f"say why (it is audited): got {got}"})


def _window(limit: object, offset: object, what: str, after: object = None) -> None:
    """A page's size (at least 1), the rows it skips (none or more), its cursor (text)."""
    problems: dict[str, str] = {}
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        problems["limit"] = f"expected a page size of at least 1, got {limit!r}"[:200]
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        problems["offset"] = f"expected a number of rows to skip (0 or more), got {offset!r}"[:200]
    if after is not None and not isinstance(after, str):
        problems["after"] = (f"expected the `next` cursor of the previous page (text), got "
                             f"{describe(after)}")
    if problems:
        raise ValidationError(what, problems)


def _run_filters(filters: dict[str, Any], *, listing: bool = False) -> dict[str, Any]:
    """The filters of a runs list, checked; ``listing``: for ``list_runs``/``count_runs``,
    whose ``attention`` is the set of values a run's column may hold."""
    problems: dict[str, str] = {}
    for key, value in filters.items():
        if key not in RUN_FILTERS:
            problems[key] = f"unknown filter (filters: {', '.join(RUN_FILTERS)})"
        elif value is None:
            continue
        elif key == "status" and value not in _RUN_STATUSES:
            problems[key] = f"expected one of {', '.join(_RUN_STATUSES)}, got {value!r}"[:200]
        elif key == "version" and (isinstance(value, bool) or not isinstance(value, int)):
            problems[key] = f"expected a version number, got {value!r}"[:200]
        elif key == "attention" and not isinstance(value, bool):
            problems[key] = f"expected True or False, got {describe(value)}"
        elif key not in ("status", "version", "attention") and not isinstance(value, str):
            problems[key] = f"expected text, got {describe(value)}"
    if problems:
        raise ValidationError("run filter", problems)
    if listing and "attention" in filters:
        filters = {**filters, "attention": ATTENTION_VALUES if filters["attention"] else None}
    return filters


def _statuses(statuses: object) -> list[str] | None:
    """An incident list's statuses: a list of them (a lone string is not one: ``"open"``
    would be read as its letters), or None for all."""
    if not statuses:
        return None
    if isinstance(statuses, str | bytes) or not isinstance(statuses, Collection):
        raise ValidationError("incident filter", {"statuses": (
            f"expected a list of statuses (or None for all), got {statuses!r}"[:200])})
    return list(statuses)


def _paths(paths: object, what: str) -> Sequence[str | Path]:
    """Definition files or folders: one path, or several (a list, a glob's generator)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if isinstance(paths, Iterable) and not isinstance(paths, bytes | Mapping):
        given = list(paths)
        if all(isinstance(p, str | os.PathLike) for p in given):
            return [p if isinstance(p, str | Path) else os.fspath(p) for p in given]
        shown = repr(given)[:200]
    else:
        shown = describe(paths)
    raise ValidationError(what, {"paths": (
        f"expected definition files or folders (a path or a list of paths), got {shown}")})


def _texts(texts: object, what: str) -> None:
    if not isinstance(texts, Mapping):
        raise ValidationError(what, {"texts": (
            f"expected a mapping of file name -> YAML text, got {describe(texts)}")})
    bad = {f"texts[{k!r}]": f"expected YAML text under a file name, got {describe(v)}"
           for k, v in texts.items() if not isinstance(k, str) or not isinstance(v, str)}
    if bad:
        raise ValidationError(what, bad)


def _check_clock(clock: object) -> None:
    """The engine keeps time in UTC: a clock must say what time it is, with its zone."""
    now = getattr(clock, "now", None)
    at = now() if callable(now) else None
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise ConfigError("Engine(clock=...) takes a clock whose now() is a datetime with a "
                          f"time zone (baton.clock.SystemClock, VirtualClock(start) with a "
                          f"zone), got {type(clock).__name__} saying {at!r}"[:300])
