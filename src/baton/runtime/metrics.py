"""Prometheus metrics (``prometheus_client``).

Two kinds, told apart by where their truth lives:

* **What this process did**, counted as it happens: step attempts and their duration by
  step type, e-mails sent and failed, jobs processed, calls over connections, runs started
  and ended (by the process whose transaction started or ended them, once it committed:
  :func:`count_runs`). Each process exposes its own — ``baton serve`` at ``/metrics``, a
  separate ``baton worker`` with ``--metrics-port`` — and Prometheus sums them.
* **What the database holds now**, read at a scrape (:class:`StoreCollector`): runs in
  progress by orchestration, open work items by assignee and SLA state, jobs due and how
  late the oldest is, steps in fallout, workers heartbeating, routing's supervisor figures
  (per queue: waiting, oldest wait, routed in the last hour, median time to assignment;
  people by availability: how many, their load and capacity). Read by ``baton serve``
  only, so a deployment with many processes does not count them many times. Each is an
  index range over what is current, never over the runs that ended (a scrape costs the same
  with a million of them: ``baton.store.sql.metrics``); the reads are cached for ``ttl``
  seconds, so a scrape storm costs one set of queries.

Labels take few values: step types, job kinds, orchestration and connection names (a
plan's orchestration, one per order, counts as ``plan``), HTTP status classes, queue and
group names; never a run's, a record's or a person's id or name.
"""

from __future__ import annotations

import functools
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from baton.clock import SystemClock, iso, parse_iso
from baton.errors import BatonError
from baton.store.sql import metrics as q
from baton.work.items import OPEN_STATUSES

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric
    from prometheus_client.registry import Collector

    from baton.runtime.engine import Engine

# prometheus_client is imported when metrics are exposed (``process_registry``, a scrape),
# not when they are counted: its package imports its exposition (http.server, wsgiref,
# urllib.request ...), ~60 M instructions that a ``baton worker`` without ``--metrics-port``
# (it counts, nothing reads) paid at every start. What this process counts is kept in
# plain Python here and exposed exactly as prometheus_client's own Counter and Histogram
# expose it (tests/unit/test_batch_metrics.py compares the two).

T = TypeVar("T")
READ_TIMEOUT_S = 5.0  # a scrape's database reads: then baton_database_up is 0
_WALL = SystemClock()  # (a series' created time: wall-clock metadata, as prometheus_client's)


class CounterChild:
    """One label set's count (``Counter.labels(...)`` in prometheus_client)."""

    __slots__ = ("_lock", "created", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0
        self.created = _WALL.now().timestamp()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        with self._lock:
            self.value += amount


class LabelledCounter:
    """A counter with labels, exposed as ``prometheus_client.Counter`` exposes one:
    ``NAME_total`` and ``NAME_created`` per label set, in the order they were first
    counted (``_created`` left out when prometheus_client's created series are off)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()
        self._children: dict[tuple[str, ...], CounterChild] = {}

    def labels(self, *values: object) -> CounterChild:
        if len(values) != len(self.labelnames):
            raise ValueError("Incorrect label count")
        key = tuple(str(v) for v in values)
        with self._lock:
            child = self._children.get(key)
            if child is None:
                child = self._children[key] = CounterChild()
        return child

    def describe(self) -> list[Metric]:
        from prometheus_client.core import CounterMetricFamily

        return [CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> Iterator[Metric]:
        from prometheus_client import metrics as client_metrics
        from prometheus_client.core import CounterMetricFamily

        created = getattr(client_metrics, "_use_created", True)
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self._lock:
            kept = [(key, c.value, c.created) for key, c in self._children.items()]
        for key, value, at in kept:
            family.add_metric(key, value, at if created else None)
        yield family


class StepSeconds:
    """``baton_step_duration_seconds``: a histogram by step type, exposed exactly as a
    ``prometheus_client.Histogram`` would expose it (buckets, count, sum, created), but added
    to many observations at a time (:meth:`add`): a worker adds a batch's steps once per
    batch, where ``Histogram.observe`` took a lock for the sum and one for the bucket on
    every step (~4 µs of the ~8 µs the metrics cost per step)."""

    name = "baton_step_duration_seconds"
    documentation = "Time a worker spent on one attempt of a step, by step type"

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = (*(float(b) for b in buckets), float("inf"))
        self._les: tuple[str, ...] = ()  # the bounds as Histogram writes them, at a scrape
        self._lock = threading.Lock()
        # step type -> (count per bucket, not cumulative; sum of seconds; created)
        self._by_type: dict[str, tuple[list[float], list[float], float]] = {}

    def add(self, step_type: str, seconds: Sequence[float]) -> None:
        """Observe each of ``seconds`` (one per attempt) for ``step_type``."""
        bounds = self.bounds
        counts = [0] * len(bounds)
        for value in seconds:  # the first bucket whose bound is >= the value, as observe()
            counts[bisect_left(bounds, value)] += 1
        with self._lock:
            kept = self._by_type.get(step_type)
            if kept is None:
                kept = self._by_type[step_type] = ([0.0] * len(bounds), [0.0],
                                                    _WALL.now().timestamp())
            for i, n in enumerate(counts):
                if n:
                    kept[0][i] += n
            kept[1][0] += sum(seconds)

    def describe(self) -> Iterator[Metric]:
        from prometheus_client.core import HistogramMetricFamily

        yield HistogramMetricFamily(self.name, self.documentation, labels=["step_type"])

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import HistogramMetricFamily
        from prometheus_client.samples import Sample
        from prometheus_client.utils import floatToGoString

        if not self._les:
            go_string: Any = floatToGoString  # (untyped)
            self._les = tuple(go_string(b) for b in self.bounds)
        family = HistogramMetricFamily(self.name, self.documentation, labels=["step_type"])
        with self._lock:
            kept = [(t, list(c), s[0], created) for t, (c, s, created) in self._by_type.items()]
        for step_type, counts, total, created in kept:
            acc, buckets = 0.0, []
            for le, n in zip(self._les, counts, strict=True):
                acc += n
                buckets.append((le, acc))
            family.add_metric([step_type], buckets, total)
            family.samples.append(Sample(self.name + "_created", {"step_type": step_type},
                                         created, None))
        yield family


# Sub-millisecond (a flow that sets a field) to ten minutes (a flow process's work, a slow
# call), about 2.5x apart: a quantile read from them is off by at most that step.
STEP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
STEP_SECONDS = StepSeconds(STEP_BUCKETS)
STEP_ATTEMPTS = LabelledCounter(
    "baton_step_attempts", "Attempts of steps run by this process, by step type and outcome",
    ["step_type", "outcome"])
EMAILS = LabelledCounter("baton_emails", "E-mails this process tried to send, by outcome",
                         ["outcome"])
JOBS = LabelledCounter("baton_jobs_processed", "Jobs this process's workers ran, by kind",
                       ["kind"])


def status_class(status: object) -> str:
    """An HTTP status as a label: ``2xx``, ``3xx``, ``4xx``, ``5xx``; ``error`` for a call
    that got no answer (or an answer that is not a status)."""
    text = str(status or "")
    return f"{text[0]}xx" if len(text) == 3 and text.isdigit() and text[0] in "12345" else "error"


class CalloutCounter(LabelledCounter):
    """``baton_callouts_total{connection,status}``: ``status`` is the answer's class
    (:func:`status_class`), whatever status the caller names: a label takes few values."""

    def labels(self, *values: object) -> CounterChild:
        if len(values) == len(self.labelnames):
            values = (*values[:-1], status_class(values[-1]))
        return super().labels(*values)


RUNS_STARTED = LabelledCounter(
    "baton_runs_started", "Runs this process started (committed), by orchestration (every "
    "plan's as plan)", ["orchestration"])
RUNS_ENDED = LabelledCounter(
    "baton_runs_ended", "Runs this process ended (committed), by orchestration (every plan's "
    "as plan) and status: completed, failed or canceled (a run leaving in_progress; a failed "
    "run that is resumed ends again)", ["orchestration", "status"])
CALLOUTS = CalloutCounter("baton_callouts", "Calls this process made over connections, by "
                          "connection and status class (2xx, 3xx, 4xx, 5xx; error: no answer)",
                          ["connection", "status"])
PROCESS_METRICS: tuple[StepSeconds | LabelledCounter, ...] = (
    STEP_SECONDS, STEP_ATTEMPTS, EMAILS, JOBS, CALLOUTS, RUNS_STARTED, RUNS_ENDED)
STARTED = ""  # a run's start, where :func:`count_runs` takes an ended run's status


def observe_step(step_type: str, seconds: float, failed: bool) -> None:
    """One attempt of a step (a worker counts a batch's together: :class:`BatchTally`)."""
    STEP_SECONDS.add(step_type, (seconds,))
    _attempts(step_type, failed).inc()


@functools.lru_cache(maxsize=256)
def _attempts(step_type: str, failed: bool) -> CounterChild:
    """The labelled child of one step type and outcome (``labels()`` checks and joins its
    arguments and takes a lock on every call)."""
    return STEP_ATTEMPTS.labels(step_type, "failed" if failed else "completed")


@functools.lru_cache(maxsize=256)
def job_counter(kind: str) -> CounterChild:
    """:data:`JOBS`' child for one job kind (kept: see :func:`_attempts`)."""
    return JOBS.labels(kind)


def count_runs(moved: Sequence[tuple[str, str]]) -> None:
    """After a commit: the runs its transaction started, ``(orchestration, STARTED)``, and
    ended, ``(orchestration, status)`` (``RunDriver.decide_and_apply_txn`` lists them, one
    tuple per transition; ``baton.runtime.runs.count_committed`` hands them here). Added up
    first: one update of each counter per commit, not one per run."""
    tally: dict[tuple[str, str], int] = {}
    for key in moved:
        tally[key] = tally.get(key, 0) + 1
    for (name, status), n in tally.items():
        _run_counter(q.orchestration_label(name), status).inc(n)


@functools.lru_cache(maxsize=256)
def _run_counter(orchestration: str, status: str) -> CounterChild:
    """The labelled child of an orchestration's starts (``status`` :data:`STARTED`) or of
    its runs ended with ``status`` (kept: see :func:`_attempts`)."""
    if status == STARTED:
        return RUNS_STARTED.labels(orchestration)
    return RUNS_ENDED.labels(orchestration, status)


class BatchTally:
    """What one worker's batch did — jobs by kind, step attempts by type, outcome and
    duration — kept in plain containers and added to this process's metrics by
    :meth:`flush`, once per batch: a metric's update takes a lock (and a histogram's two),
    ~8 µs per step when each step updated four of them. One per worker (one thread)."""

    __slots__ = ("jobs", "steps")

    def __init__(self) -> None:
        self.jobs: dict[str, int] = {}
        self.steps: dict[tuple[str, bool], list[float]] = {}

    def job(self, kind: str) -> None:
        self.jobs[kind] = self.jobs.get(kind, 0) + 1

    def step(self, step_type: str, seconds: float, failed: bool) -> None:
        got = self.steps.get((step_type, failed))
        if got is None:
            self.steps[(step_type, failed)] = [seconds]
        else:
            got.append(seconds)

    def flush(self) -> None:
        jobs, steps = self.jobs, self.steps
        if not jobs and not steps:
            return
        self.jobs, self.steps = {}, {}
        for kind, n in jobs.items():
            job_counter(kind).inc(n)
        for (step_type, failed), seconds in steps.items():
            STEP_SECONDS.add(step_type, seconds)
            _attempts(step_type, failed).inc(len(seconds))


def process_registry() -> CollectorRegistry:
    """What this process did (a separate ``baton worker`` serves this)."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry(auto_describe=True)
    for c in PROCESS_METRICS:
        registry.register(cast("Collector", c))  # (a collector by its methods)
    ProcessCollector(registry=registry)
    return registry


class NoAnswer(BatonError):
    """A read of the database that did not end within its deadline."""


class OneRead:
    """A blocking read in a thread of its own, waited for at most ``timeout`` seconds, and
    one at a time: a caller that comes while one runs waits for that one (it shares its
    answer), or, once that one is past its deadline (the database hangs), is told at once
    (:class:`NoAnswer`) instead of starting another. A hung database holds one thread, not
    one per probe or scrape: the server's request threads stay free."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._lock = threading.Lock()
        self._running: tuple[Future[Any], float] | None = None

    def __call__(self, read: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            if self._running is None or self._running[0].done():
                future: Future[Any] = Future()
                self._running = (future, now)

                def run() -> None:
                    try:
                        future.set_result(read())
                    except BaseException as exc:  # noqa: BLE001 - handed to the waiters
                        future.set_exception(exc)

                threading.Thread(target=run, name="baton-db-read", daemon=True).start()
            future, since = self._running
        left = self.timeout - (now - since)
        if left <= 0:
            raise NoAnswer(f"the database has not answered for {now - since:.0f} s")
        try:
            return cast("T", future.result(timeout=left))
        except FutureTimeout:
            raise NoAnswer(f"the database did not answer within {self.timeout:g} s") from None


def server_registry(engine: Engine, ttl: float = 5.0) -> CollectorRegistry:
    """``baton serve``'s ``/metrics``: this process, and the database's counts."""
    registry = process_registry()
    registry.register(cast("Collector", StoreCollector(engine, ttl)))
    return registry


class StoreCollector:
    """The database's counts, read at a scrape (at most once per ``ttl`` seconds).

    A read that fails or does not end within ``timeout`` seconds (the database down, busy or
    hung: :class:`OneRead`) leaves them out of that scrape, which still serves this
    process's own metrics, and says so: ``baton_database_up`` is 0. How long the reads
    took is ``baton_database_read_seconds``."""

    def __init__(self, engine: Engine, ttl: float, timeout: float = READ_TIMEOUT_S) -> None:
        self.engine = engine
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None
        self._one = OneRead(timeout)

    def describe(self) -> list[Metric]:
        return []  # read from the database: nothing to say before a scrape

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached[0] > self.ttl:
                self._cached = (time.monotonic(), self._read_or_down())
            yield from self._cached[1]

    def _read_or_down(self) -> list[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        started = time.perf_counter()
        try:
            got = self._one(lambda: [*self._read(), *self._routing()])
            ok = 1.0
        except Exception:  # noqa: BLE001 - the database down, busy or hung: baton_database_up
            got, ok = [], 0.0
        up = GaugeMetricFamily("baton_database_up", "Whether the database's counts could be "
                               "read at this scrape (1) or not (0: they are left out)")
        up.add_metric([], ok)
        took = GaugeMetricFamily("baton_database_read_seconds", "How long reading the "
                                 "database's counts took at this scrape")
        took.add_metric([], time.perf_counter() - started)
        return [*got, up, took]

    def _read(self) -> list[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        eng = self.engine
        now_dt = eng.clock.now()
        now = iso(now_dt)
        with eng.store.read() as tx:
            runs = q.runs_in_progress(tx)
            work = q.open_work(tx, OPEN_STATUSES, now)
            due = q.jobs_due(tx, now)
            fallout = q.steps_in_fallout(tx)
            alive = q.workers_alive(tx, iso(now_dt - timedelta(seconds=30)))

        current = GaugeMetricFamily("baton_runs_in_progress", "Runs in progress, by "
                                    "orchestration (every plan's as plan)",
                                    labels=["orchestration"])
        for name, n in sorted(runs.items()):
            current.add_metric([name], n)

        items = GaugeMetricFamily(
            "baton_work_items_open", "Open work items (unclaimed or claimed), by assignee "
            "(a queue's or a group's name; empty for items given to a person) and SLA "
            "state (overdue, on_time, none)", labels=["assignee_kind", "assignee", "sla"])
        for w in work:
            items.add_metric([w.assignee_kind, w.assignee, w.sla], w.n)

        ready = GaugeMetricFamily("baton_jobs_due", "Jobs due now: ready, or claimed by a "
                                  "worker, by kind", labels=["kind", "status"])
        lag = GaugeMetricFamily("baton_job_lag_seconds", "How long the oldest ready job has "
                                "been due (0: none waiting)")
        oldest: str | None = None
        for j in due:
            ready.add_metric([j.kind, j.status], j.n)
            if j.status == "ready" and j.oldest_due and (oldest is None or j.oldest_due < oldest):
                oldest = j.oldest_due
        lag.add_metric([], max(0.0, (now_dt - parse_iso(oldest)).total_seconds()) if oldest else 0.0)

        steps = GaugeMetricFamily("baton_steps_in_fallout", "Steps waiting for an operator "
                                  "(retries exhausted), by orchestration (every plan's as "
                                  "plan)", labels=["orchestration"])
        for name, n in sorted(fallout.items()):
            steps.add_metric([name], n)

        workers = GaugeMetricFamily("baton_workers_alive", "Workers that sent a heartbeat in "
                                    "the last 30 s")
        workers.add_metric([], alive)
        return [current, items, ready, lag, steps, workers]

    def _routing(self) -> list[Metric]:
        """The supervisor's figures (the Team page's): per queue or group that routes, the
        items waiting, the oldest wait, items routed in the last hour and the median time
        from creation to routing; the people by availability, with their open routed items
        and capacity added up (no person's name: a label takes few values)."""
        from prometheus_client.core import GaugeMetricFamily

        team = self.engine.team
        pools, people = team.figures(), team.everyone()
        waiting = GaugeMetricFamily("baton_routing_waiting", "Work items waiting for routing, "
                                    "by queue or group (KIND:NAME)", labels=["queue"])
        oldest = GaugeMetricFamily("baton_routing_oldest_wait_seconds", "How long the oldest "
                                   "item waiting for routing has existed, by queue or group",
                                   labels=["queue"])
        routed = GaugeMetricFamily("baton_routing_routed_last_hour", "Items routed (or "
                                   "offered) in the last hour, by queue or group",
                                   labels=["queue"])
        median = GaugeMetricFamily("baton_routing_median_to_assignment_seconds", "Median time "
                                   "from an item's creation to its routing, of those routed "
                                   "in the last hour, by queue or group", labels=["queue"])
        for p in pools:
            waiting.add_metric([p["queue"]], p["waiting"])
            oldest.add_metric([p["queue"]], p["oldest_wait_s"] or 0.0)
            routed.add_metric([p["queue"]], p["routed_last_hour"])
            if p["median_to_assignment_s"] is not None:
                median.add_metric([p["queue"]], p["median_to_assignment_s"])
        agents = GaugeMetricFamily("baton_agents", "People who may be routed work (active, "
                                   "their roles let them work items), by availability",
                                   labels=["availability"])
        load = GaugeMetricFamily("baton_agent_load", "Open routed (or offered) items held by "
                                 "the people of an availability, added up",
                                 labels=["availability"])
        capacity = GaugeMetricFamily("baton_agent_capacity", "The capacities (most open "
                                     "routed items) of the people of an availability who "
                                     "have one, added up", labels=["availability"])
        by: dict[str, list[int]] = {}  # availability -> [people, load, capacity]
        for person in people:
            if not (person.active and person.may_work):
                continue  # (a deactivated user, a designer: no agent, whatever they say)
            sums = by.setdefault(person.availability, [0, 0, 0])
            sums[0] += 1
            sums[1] += person.load
            sums[2] += person.capacity or 0
        for availability, (n, held, cap) in sorted(by.items()):
            agents.add_metric([availability], n)
            load.add_metric([availability], held)
            capacity.add_metric([availability], cap)
        return [waiting, oldest, routed, median, agents, load, capacity]
