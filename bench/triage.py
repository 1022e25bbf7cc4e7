"""The "case triage" benchmark (WORKLOAD.md): N Case records through the seed process.

One repetition:

1. a FRESH database: a new SQLite file (in a temporary folder, or next to ``--db``'s file
   under a name never used before), or a new PostgreSQL database ``baton_bench_<pid>_<rep>``
   on ``--db``'s server, dropped afterwards;
2. examples/case_triage is deployed and K worker PROCESSES are started (each its own
   Engine and ``Worker(engine, batch=B).run()``, exactly what ``baton worker`` runs) and
   waited for until they are ready;
3. the clock starts; this process (the driver) creates the N records in chunks of 100
   (paced with ``rate``) and completes every open triage work item as soon as it sees it
   (``escalate`` iff the case number ``i % 5 == 0`` at level 1, else ``close``), until it
   observes that N runs have finished; the clock stops there;
4. the workers are stopped; peak RSS is read; every run is VERIFIED (completed, with
   exactly 5 or 8 counted steps, the case's final fields as the flows set them) and the
   latencies are computed from what the database recorded (records' ``created_at``,
   ``ran_at`` of the runs' ``step_completed`` events, runs' ``completed_at``).

A verification failure raises :class:`BenchError`: a benchmark of runs that did not all
complete correctly reports nothing.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import math
import multiprocessing as mp
import os
import platform
import queue as queue_mod
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Self

from baton.clock import parse_iso
from baton.errors import BatonError, ConfigError
from baton.settings import Settings

CHUNK = 100  # records created per transaction
COMPLETE_CHUNK = 250  # work items completed per transaction
LIST_LIMIT = 1000  # open items listed per queue and poll
QUEUES = ("tier1", "tier2")
COUNTED_STEPS = frozenset({"classify", "find_agent", "triage", "close_case", "send_survey"})
STALL_SECONDS = 120.0  # nothing moved for this long: the benchmark fails
DRIVER_IDLE_MAX = 0.05  # SQLite: the driver's longest wait for a commit before it looks anyway
WORKER_START_TIMEOUT = 120.0
WORKER_STOP_TIMEOUT = 60.0
EVENT_PAGE = 10_000
AGENT_POOLS = {"billing": ["ann", "bob"], "tech": ["cyd", "dan", "eve"]}
COMPARE_ENGINES = ("spiffworkflow",)
# SpiffWorkflow's variants (bench/spiffworkflow_triage.py): in memory; durable with Baton's
# batching (many cases' state per transaction at each wait point); durable after every step.
SPIFF_MODES = ("memory", "durable-batched", "durable-per-step")
SPIFF_SCRIPT = "spiffworkflow_triage.py"
REPO = Path(__file__).resolve().parents[1]  # bench/ sits in the repository root
log = logging.getLogger("baton.bench")


class BenchError(BatonError):
    """The benchmark could not run, or a run did not complete as the workload requires."""


@dataclass(frozen=True)
class BenchConfig:
    runs: int = 2000
    db: str | None = None  # None: SQLite files in a temporary folder
    workers: int = 1
    repeat: int = 1
    rate: float | None = None  # records created per second; None: as fast as possible
    batch: int = 256
    examples: Path | None = None
    compare: tuple[str, ...] = ()
    keep: bool = False  # keep the databases (SQLite files / PostgreSQL databases)
    # Pin this process and every process it starts (workers, SpiffWorkflow, the noise) to
    # the first ``cpus`` CPUs it may run on (os.sched_setaffinity; children inherit it).
    cpus: int | None = None
    # A CPU-bound neighbour (one busy process) for the duration of each measured run.
    noise: bool = False
    # What the driver's and the workers' Engines run with (the command reads the environment:
    # BATON_PLAN_COMMITS=0, say); the database is --db's, never Settings.database.
    settings: Settings = field(default_factory=Settings)

    def check(self) -> None:
        if self.runs < 1:
            raise ConfigError("--runs must be at least 1")
        if self.workers < 1:
            raise ConfigError("--workers must be at least 1")
        if self.repeat < 1:
            raise ConfigError("--repeat must be at least 1")
        if self.batch < 1:
            raise ConfigError("--batch must be at least 1")
        if self.cpus is not None:
            if not hasattr(os, "sched_setaffinity"):
                raise ConfigError("--cpus needs os.sched_setaffinity (Linux)")
            allowed = len(os.sched_getaffinity(0))
            if not 1 <= self.cpus <= allowed:
                raise ConfigError(f"--cpus must be between 1 and {allowed} (the CPUs this "
                                  f"process may run on), not {self.cpus}")
        if self.rate is not None and self.rate <= 0:
            raise ConfigError("--rate must be a positive number of records per second")
        for engine in self.compare:
            if engine not in COMPARE_ENGINES:
                raise ConfigError(f"--compare {engine!r}: known engines: {', '.join(COMPARE_ENGINES)}")


class Reporter(Protocol):
    """Progress while the benchmark runs (the CLI draws it with Rich)."""

    def phase(self, label: str, total: int | None) -> None: ...

    def update(self, done: int, note: str = "") -> None: ...


class _Silent:
    def phase(self, label: str, total: int | None) -> None:
        pass

    def update(self, done: int, note: str = "") -> None:
        pass


# ---- the workload -----------------------------------------------------------------------------
def case_fields(i: int) -> dict[str, Any]:
    """Case ``i`` as WORKLOAD.md creates it."""
    subject = f"invoice question {i}" if i % 2 else f"login broken {i}"
    return {"subject": subject, "number": i, "origin": "Web", "level": 1}


def expected_steps(i: int) -> int:
    return 8 if i % 5 == 0 else 5


def resolution(number: int, level: int) -> str:
    return "escalate" if number % 5 == 0 and level == 1 else "close"


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99 with linear interpolation between closest ranks."""
    v = sorted(values)
    out: dict[str, float | None] = {}
    for q in (50, 95, 99):
        if not v:
            out[f"p{q}"] = None
            continue
        k = (len(v) - 1) * q / 100
        lo = math.floor(k)
        hi = min(lo + 1, len(v) - 1)
        out[f"p{q}"] = round(v[lo] + (v[hi] - v[lo]) * (k - lo), 1)
    return out


def spread(values: Sequence[float | None]) -> dict[str, float | None]:
    vals = [x for x in values if x is not None]
    if not vals:
        return {"median": None, "min": None, "max": None}
    return {"median": _round(statistics.median(vals)), "min": _round(min(vals)),
            "max": _round(max(vals))}


def _round(x: float) -> float:
    return round(x, 1) if isinstance(x, float) else x


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def _maxrss_mib(who: int) -> float:
    rss = resource.getrusage(who).ru_maxrss
    return round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM (Linux), else ru_maxrss.

    Not ru_maxrss where VmHWM exists: a child started by fork + exec inherits its parent's
    RSS at the exec in ru_maxrss, so a worker process spawned by a 75 MiB driver would
    report at least 75 MiB whatever it used itself. VmHWM belongs to the process's own
    memory map only.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return _maxrss_mib(resource.RUSAGE_SELF)


def reset_peak_rss() -> None:
    """Start a new peak (Linux): each repetition's driver peak is its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


# A SpiffWorkflow subprocess reports ru_maxrss itself: started straight from this (large)
# process it would report this process's RSS (see peak_rss_mib). Started from this small
# launcher it reports its own (the launcher's ~10 MiB is the floor).
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


# ---- pinning and a CPU-bound neighbour --------------------------------------------------------
def pin_cpus(cpus: int | None) -> tuple[set[int] | None, list[int] | None]:
    """Pin this process to its first ``cpus`` allowed CPUs; every process it starts after
    this inherits the mask. Returns (the mask to restore, the CPUs pinned to)."""
    if cpus is None:
        return None, None
    before = set(os.sched_getaffinity(0))
    chosen = sorted(before)[:cpus]
    os.sched_setaffinity(0, chosen)
    return before, chosen


_BUSY = "while True:\n    pass\n"


def _affinity() -> list[int] | None:
    """The CPUs this process may run on (what --cpus pinned it to), where that is known."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _cpu_of(pid: int) -> float | None:
    """A live process's CPU seconds (user + system) from /proc; None where there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Noise:
    """One busy process (a Python loop) for the duration of a measured run: the
    neighbour of ``--noise``. It inherits this process's CPU mask (with ``--cpus 1`` it
    shares that one core). Its own CPU is in no figure; what it got is reported."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.proc: subprocess.Popen[bytes] | None = None
        self.cpu_s: list[float] = []

    def __enter__(self) -> Self:
        if self.enabled:
            self.proc = subprocess.Popen([sys.executable, "-c", _BUSY],
                                         stdin=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        cpu = _cpu_of(self.proc.pid)
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        if cpu is not None:
            self.cpu_s.append(round(cpu, 2))


# ---- finding things ---------------------------------------------------------------------------
def find_project(examples: Path | None) -> Path:
    """examples/case_triage: ``examples`` may be the examples folder or case_triage itself."""
    candidates = [examples] if examples else [Path("examples"), REPO / "examples"]
    for c in candidates:
        if c is None:
            continue
        for folder in (c / "case_triage", c):
            if (folder / "baton.toml").exists() and (folder / "definitions").is_dir():
                return folder.resolve()
    raise ConfigError("cannot find examples/case_triage (the workload's process and flows); "
                      "run from the repository root or pass --examples DIR")


def find_spiff_script(project: Path) -> Path:
    candidates = [project.parent.parent / "bench", Path("bench"), REPO / "bench"]
    for c in candidates:
        if (c / SPIFF_SCRIPT).exists():
            return (c / SPIFF_SCRIPT).resolve()
    raise ConfigError(f"cannot find bench/{SPIFF_SCRIPT} (the SpiffWorkflow side of the "
                      "benchmark); run from the repository root")


def check_spiffworkflow() -> str:
    if importlib.util.find_spec("SpiffWorkflow") is None:
        raise ConfigError("--compare spiffworkflow needs SpiffWorkflow>=3.1 in this Python: "
                          "pip install 'SpiffWorkflow>=3.1' (or pip install -e '.[bench]')")
    version = importlib.metadata.version("SpiffWorkflow")
    parts = [int(p) if p.isdigit() else 0 for p in version.split(".")[:2]] + [0, 0]
    if (parts[0], parts[1]) < (3, 1):
        raise ConfigError(f"--compare spiffworkflow needs SpiffWorkflow>=3.1, found {version}: "
                          "pip install -U 'SpiffWorkflow>=3.1'")
    return version


# ---- fresh databases --------------------------------------------------------------------------
class _Databases:
    """Hands out a fresh database per repetition and disposes of it afterwards."""

    def __init__(self, db: str | None, keep: bool) -> None:
        from sqlalchemy.engine import make_url

        from baton.store.sql import normalize_url

        self.keep = keep
        self.kept: list[str] = []
        self._tmp: str | None = None
        if db is None:
            self._tmp = tempfile.mkdtemp(prefix="baton-bench-")
            self.folder, self.stem, self.dialect = Path(self._tmp), "baton", "sqlite"
            self.url = ""
            return
        self.url = normalize_url(db)
        u = make_url(self.url)
        self.dialect = u.get_backend_name()
        if self.dialect == "sqlite":
            path = Path(u.database or "").expanduser()
            if not u.database or u.database == ":memory:":
                raise ConfigError("--db: SQLite needs a file or folder path (sqlite:///bench/baton.db)")
            if path.is_dir():
                self.folder, self.stem = path.resolve(), "baton"
            else:
                self.folder, self.stem = path.resolve().parent, path.stem or "baton"
            if not self.folder.is_dir():
                raise ConfigError(f"--db: folder {self.folder} does not exist")
        elif self.dialect == "postgresql":
            self._base = u
        else:
            raise ConfigError(f"--db {db!r}: use sqlite:///PATH or postgresql://USER@HOST/DB")

    # SQLite: a new file name per repetition, never an existing one.
    def _fresh_file(self, label: str, ext: str = ".db") -> Path:
        for n in range(1000):
            suffix = f"-{n}" if n else ""
            p = self.folder / f"{self.stem}.bench-{os.getpid()}-{label}{suffix}{ext}"
            if not any(Path(f"{p}{x}").exists() for x in ("", "-wal", "-shm", "-journal")):
                return p
        raise BenchError(f"no free database file name in {self.folder}")

    def _admin(self) -> Any:
        import psycopg

        dsn = self._base.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            return psycopg.connect(dsn, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise BenchError(f"cannot connect to PostgreSQL at "
                             f"{self._base.render_as_string(hide_password=True)}: "
                             f"{str(exc).strip().splitlines()[0]}") from exc

    def fresh(self, rep: int) -> str:
        if self.dialect == "sqlite":
            return f"sqlite:///{self._fresh_file(f'r{rep}')}"
        name = f"baton_bench_{os.getpid()}_{rep}"
        with self._admin() as admin:
            try:
                admin.execute(f'CREATE DATABASE "{name}"')
            except Exception as exc:
                raise BenchError(f"cannot create database {name}: "
                                 f"{str(exc).strip().splitlines()[0]}") from exc
        return self._base.set(drivername="postgresql+psycopg", database=name).render_as_string(
            hide_password=False)

    def spiff_file(self, mode: str, rep: int) -> Path | None:
        """SpiffWorkflow's durable state goes to the same disk as Baton's database."""
        if self.dialect != "sqlite":
            return None
        return self._fresh_file(f"spiffworkflow-{mode}-r{rep}", ".sqlite")

    def dispose(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        u = make_url(url)
        if self.keep:
            self.kept.append(u.render_as_string(hide_password=True))
            return
        if self.dialect == "sqlite":
            for x in ("", "-wal", "-shm", "-journal"):
                Path(f"{u.database}{x}").unlink(missing_ok=True)
            return
        import psycopg

        with self._admin() as admin:
            try:
                admin.execute(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')
            except psycopg.errors.SyntaxError:  # PostgreSQL < 13 has no FORCE
                admin.execute(f'DROP DATABASE IF EXISTS "{u.database}"')

    def close(self) -> None:
        if self._tmp is not None and not self.keep:
            shutil.rmtree(self._tmp, ignore_errors=True)


def _durability(engine: Any) -> dict[str, Any]:
    """The settings the database actually runs with (read back, not assumed)."""
    return dict(engine.store.durability())


def _database_size(url: str) -> int:
    from baton.store.sql import SqlStore

    store = SqlStore(url)
    try:
        return store.database_size()
    finally:
        store.close()


# ---- profiling (BATON_BENCH_PROFILE=DIR: cProfile of the driver and each worker) ---------------
def _profiler() -> Any:
    """A running cProfile.Profile when BATON_BENCH_PROFILE names a folder, else None; it
    counts wall time (waits for fsync and for the write lock included), or this process's
    CPU time with BATON_BENCH_PROFILE_CPU=1 (each call to the clock is a system call: the
    profile's overhead grows, its shares are CPU's)."""
    if not os.environ.get("BATON_BENCH_PROFILE"):
        return None
    import cProfile

    prof = (cProfile.Profile(time.process_time) if os.environ.get("BATON_BENCH_PROFILE_CPU")
            else cProfile.Profile())
    prof.enable()
    return prof


def _dump_profile(prof: Any, who: str) -> None:
    if prof is None:
        return
    prof.disable()
    folder = Path(os.environ["BATON_BENCH_PROFILE"])
    folder.mkdir(parents=True, exist_ok=True)
    prof.dump_stats(str(folder / f"{who}-{os.getpid()}-{time.time_ns()}.prof"))


# ---- worker processes -------------------------------------------------------------------------
def _worker_main(url: str, project_dir: str, batch: int, settings: Settings, stop: Any,
                 messages: Any) -> None:
    """One worker process: exactly what ``baton worker`` runs, until ``stop`` is set."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when we stop
    from baton.project import load_project
    from baton.runtime.engine import Engine
    from baton.runtime.worker import Worker

    trace_dir = os.environ.get("BATON_BENCH_SQL_TRACE")  # bench/pg_scale.py: count statements
    trace = None
    if trace_dir:
        from bench import sqltrace

        trace = sqltrace.install()
    load_project(project_dir).import_flows()
    engine = Engine(url, migrate=False, settings=settings)
    worker = Worker(engine, batch=batch)
    engine.warm()  # what worker.run() does first, before the clock (as the driver's, above)

    def watch() -> None:
        stop.wait()
        worker.stop()

    threading.Thread(target=watch, daemon=True, name="bench-stop").start()
    messages.put(("ready", os.getpid()))
    cpu = time.process_time()
    if trace is not None:
        trace.reset()
    prof = _profiler()
    try:
        stats = worker.run()
    finally:
        _dump_profile(prof, "worker")
        if trace is not None and trace_dir:
            from bench import sqltrace

            sqltrace.dump(Path(trace_dir) / f"worker-{os.getpid()}.json", pid=os.getpid(),
                          cpu_s=round(time.process_time() - cpu, 3))
        engine.close()
    messages.put(("done", os.getpid(), peak_rss_mib(), {
        "jobs": stats.jobs, "steps_completed": stats.steps_completed,
        "steps_failed": stats.steps_failed, "stale": stats.stale,
        "chained": stats.chained, "planned_commits": stats.planned_commits, "unplanned_commits": stats.unplanned_commits,
        "cpu_s": round(time.process_time() - cpu, 2), "cpus": _affinity()}))


class _Workers:
    def __init__(self, url: str, project: Path, k: int, batch: int, settings: Settings) -> None:
        ctx = mp.get_context("spawn")
        self.stop_event = ctx.Event()
        self.messages = ctx.Queue()
        self.url = url
        self.procs = [ctx.Process(target=_worker_main, name=f"baton-bench-worker-{n}", daemon=True,
                                  args=(url, str(project), batch, settings, self.stop_event,
                                        self.messages))
                      for n in range(k)]
        self.rss: dict[int, float] = {}
        self.stats: dict[int, dict[str, int]] = {}

    def start(self) -> None:
        for p in self.procs:
            p.start()
        ready: set[int] = set()
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        while len(ready) < len(self.procs):
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"worker processes not ready after {WORKER_START_TIMEOUT:.0f} s")
            try:
                msg = self.messages.get(timeout=0.2)
            except queue_mod.Empty:
                continue
            if msg[0] == "ready":
                ready.add(msg[1])

    def check_alive(self) -> None:
        for p in self.procs:
            if p.exitcode is not None and not self.stop_event.is_set():
                raise BenchError(f"worker process {p.pid} exited with code {p.exitcode} "
                                 "(see its output above)")

    def stop(self) -> None:
        """Stop every worker, collect what each reports (peak RSS, stats), reap them."""
        self.stop_event.set()
        self._wake()
        deadline = time.monotonic() + WORKER_STOP_TIMEOUT
        started = sum(1 for p in self.procs if p.pid is not None)
        # Read the queue before joining: a process exits only once what it sent is read.
        while len(self.rss) < started and time.monotonic() < deadline:
            gone = all(p.exitcode is not None for p in self.procs)
            try:
                self._take(self.messages.get(timeout=0.5 if gone else 0.2))
            except queue_mod.Empty:
                if gone:
                    break
        for p in self.procs:
            if p.pid is None:
                continue
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.terminate()
                p.join(5)
        self.messages.close()

    def _take(self, msg: Any) -> None:
        if msg[0] == "done":
            self.rss[msg[1]] = msg[2]
            self.stats[msg[1]] = msg[3]

    def _wake(self) -> None:
        """PostgreSQL workers idle in LISTEN: a NOTIFY wakes them to see the stop."""
        if not self.url.startswith("postgresql"):
            return
        import psycopg
        from sqlalchemy.engine import make_url

        from baton.store.sql import NOTIFY_CHANNEL

        dsn = make_url(self.url).set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"NOTIFY {NOTIFY_CHANNEL}")
        except psycopg.Error as exc:  # they also wake on their idle poll, only later
            log.warning("could not wake the workers (%s); they stop at their next poll", exc)


# ---- the driver -------------------------------------------------------------------------------
@dataclass
class _Drive:
    seconds: float = 0.0
    created: int = 0
    completed_items: int = 0
    escalated: int = 0
    polls: int = 0
    finished: int = 0
    cpu_s: float = 0.0


def _finished_runs(engine: Any, total: int) -> int:
    # Polled every 0.25 s: count the runs still in progress (an index range that shrinks),
    # not every run (a scan of the whole table, which grew with N and slowed large runs).
    with engine.store.read() as tx:
        return total - int(tx.count_in_progress_runs_txn())


def _run_counts(engine: Any) -> str:
    with engine.store.read() as tx:
        runs = tx.count_runs_txn()
        jobs = tx.count_jobs_txn()
    parts = [f"{c} {status}" + (f" in stage {stage}" if status == "in_progress" else "")
             for _o, status, stage, c in sorted(runs, key=lambda r: (r[1], r[2] or ""))]
    return f"runs: {', '.join(parts) or 'none'}; jobs: {jobs or 'none'}"


def _complete_items(engine: Any, items: list[dict[str, Any]]) -> tuple[int, int]:
    """Complete the open triage items; returns (closed, escalated)."""
    from sqlalchemy.exc import DBAPIError

    with engine.store.read() as tx:
        records = tx.get_records_txn([it["record_id"] for it in items])
    subs: list[tuple[str, str, dict[str, Any]]] = []
    closed = escalated = 0
    # In run-id order: the same order workers lock runs in (PostgreSQL: no deadlocks).
    for it in sorted(items, key=lambda it: it["run_id"]):
        rec = records.get(it["record_id"])
        if rec is None:
            raise BenchError(f"work item {it['id']}: its record {it['record_id']} does not exist")
        res = resolution(int(rec["data"]["number"]), int(rec["data"].get("level") or 1))
        if res == "close":
            closed += 1
        else:
            escalated += 1
        subs.append((it["id"], "bench", {"resolution": res}))
    for chunk in _chunks(subs, COMPLETE_CHUNK):
        for attempt in range(3):
            try:
                results = engine.complete_many(chunk)
                break
            except DBAPIError as exc:  # rolled back as a whole: safe to submit again
                if attempt == 2 or not engine.store.is_transient(exc):
                    raise
        for (item_id, _u, data), r in zip(chunk, results, strict=True):
            if isinstance(r, BaseException):
                raise BenchError(f"completing triage work item {item_id} with {data} failed: {r}")
    return closed, escalated


def _drive(engine: Any, cfg: BenchConfig, workers: _Workers, reporter: Reporter) -> _Drive:
    n, rate = cfg.runs, cfg.rate
    d = _Drive()
    next_i = 1
    closed = 0
    idle = 0.0
    last_change = last_report = 0.0
    finished = 0
    # SQLite: between looks, block until some process commits (the workers' results), not
    # a blind sleep; PostgreSQL: a short back-off (the workers' commits need not NOTIFY).
    sqlite = engine.store.dialect == "sqlite"
    never = threading.Event()
    cpu = time.process_time()
    start = time.perf_counter()  # the clock starts before the first record is created
    while True:
        seen = engine.store.arm_wakeup() if sqlite else None
        worked = False
        if next_i <= n:
            now = time.perf_counter() - start
            due = n if rate is None else min(n, math.floor(now * rate) + 1)
            k = min(CHUNK, due - next_i + 1)
            if k > 0:
                engine.create_records("Case", [case_fields(i) for i in range(next_i, next_i + k)],
                                      actor="bench")
                next_i += k
                d.created += k
                worked = True
        if closed < n:
            items = [it for q in QUEUES for it in engine.list_work(queue=q, limit=LIST_LIMIT)]
            d.polls += 1
            if items:
                c, e = _complete_items(engine, items)
                closed += c
                d.escalated += e
                d.completed_items += len(items)
                worked = True
        now = time.perf_counter() - start
        if closed >= n:  # every case is past its last triage: the workers finish them
            count = _finished_runs(engine, n)
            if count != finished:
                finished, last_change = count, now
            if finished >= n:
                d.seconds = time.perf_counter() - start  # the last completion is observed
                d.cpu_s = time.process_time() - cpu
                d.finished = finished
                reporter.update(finished, f"{d.created} created")
                return d
        if now - last_report >= 0.25:
            last_report = now
            if closed < n:
                finished = _finished_runs(engine, n)
            reporter.update(finished, f"{d.created} created, {d.completed_items} triaged")
            workers.check_alive()
        if worked:
            idle, last_change = 0.0, now
            continue
        if now - last_change > STALL_SECONDS:
            raise BenchError(f"no progress for {STALL_SECONDS:.0f} s after {d.created} records "
                             f"created and {d.completed_items} triage items completed; "
                             f"{_run_counts(engine)}")
        # Nothing to do: look again once a worker commits (SQLite), or soon (the workload
        # completes items as soon as they appear). At the end, only the workers have work
        # left: the clock stops at the first look after the last completion.
        if sqlite:
            idle = DRIVER_IDLE_MAX
        elif closed < n:
            idle = min(0.010, max(0.001, idle * 2))
        else:
            idle = 0.005 if n - finished < 50 else 0.020
        if rate is not None and next_i <= n:
            idle = max(0.0, min(idle, start + (next_i - 1) / rate - time.perf_counter()))
        if sqlite:
            engine.store.wait_for_change(seen, idle, never)
        else:
            time.sleep(idle)


# ---- verification and latencies ---------------------------------------------------------------
def _verify(engine: Any, n: int) -> dict[str, Any]:
    """Every run completed with exactly the expected steps; latencies from the database."""
    from baton.store.sql.reports import records_of_type, run_outcomes

    problems: list[str] = []
    per_run: dict[str, list[Any]] = {}  # run id -> [counted steps, earliest ran_at]
    failed_steps = 0
    with engine.store.read() as tx:
        records = records_of_type(tx, "Case")
        runs = run_outcomes(tx)
        after = 0
        while True:
            page = tx.events_txn(types=["step_completed", "step_failed"], after_id=after,
                                 limit=EVENT_PAGE)
            for e in page:
                if e["type"] == "step_failed":
                    failed_steps += 1
                    continue
                agg = per_run.setdefault(e["run_id"], [0, None])
                data = e["data"] or {}
                if data.get("step") in COUNTED_STEPS:
                    agg[0] += 1
                ran_at = data.get("ran_at")
                if ran_at and (agg[1] is None or ran_at < agg[1]):
                    agg[1] = ran_at
            if len(page) < EVENT_PAGE:
                break
            after = page[-1]["id"]

    numbers = sorted(int(data.get("number") or 0) for _c, data in records.values())
    if numbers != list(range(1, n + 1)):
        problems.append(f"expected Case records numbered 1..{n}, found {len(numbers)} records")
    if len(runs) != n:
        problems.append(f"expected {n} runs, found {len(runs)}")
    seen_records: set[str | None] = set()
    first_step_ms: list[float] = []
    complete_ms: list[float] = []
    total_steps = 0
    first_created = last_completed = None
    for run in runs:
        rec = records.get(run.record_id or "")
        if rec is None:
            problems.append(f"run {run.id} has no Case record")
            continue
        if run.record_id in seen_records:
            problems.append(f"record {run.record_id} has more than one run")
        seen_records.add(run.record_id)
        created, data = rec
        i = int(data.get("number") or 0)
        steps, first_ran = per_run.get(run.id, [0, None])
        total_steps += steps
        what = f"case {i} (run {run.id})"
        if run.status != "completed":
            problems.append(f"{what} is {run.status}"
                            + (f" in stage {run.current_stage}" if run.current_stage else ""))
            continue
        if steps != expected_steps(i):
            problems.append(f"{what}: {steps} counted steps completed, expected {expected_steps(i)}")
        level = 2 if i % 5 == 0 else 1
        category = "billing" if "invoice" in str(data.get("subject")) else "tech"
        agent = AGENT_POOLS[category][i % len(AGENT_POOLS[category])]
        if (data.get("status") != "Closed" or data.get("level") != level
                or data.get("agent") != agent or data.get("category") != category
                or data.get("resolution") != {"by": agent, "level": level}):
            problems.append(f"{what}: unexpected final fields {json.dumps(data, sort_keys=True)}")
        t0 = parse_iso(created)
        if first_ran is None:
            problems.append(f"{what}: no step_completed event carries ran_at")
        else:
            first_step_ms.append((parse_iso(first_ran) - t0).total_seconds() * 1000)
        if run.completed_at:
            done = parse_iso(run.completed_at)
            complete_ms.append((done - t0).total_seconds() * 1000)
            last_completed = done if last_completed is None or done > last_completed else last_completed
        first_created = t0 if first_created is None or t0 < first_created else first_created
    expected_total = sum(expected_steps(i) for i in range(1, n + 1))
    if not problems and total_steps != expected_total:
        problems.append(f"{total_steps} counted steps in all, expected {expected_total}")
    if problems:
        shown = "\n  ".join(problems[:15])
        more = f"\n  ... and {len(problems) - 15} more" if len(problems) > 15 else ""
        raise BenchError(f"verification FAILED: {len(problems)} problem(s):\n  {shown}{more}")
    span = ((last_completed - first_created).total_seconds()
            if first_created is not None and last_completed is not None else None)
    return {
        "steps": total_steps,
        "steps_failed_and_retried": failed_steps,
        "latency_first_step_ms": percentiles(first_step_ms),
        "latency_complete_ms": percentiles(complete_ms),
        "seconds_in_database": round(span, 3) if span is not None else None,
    }


# ---- one repetition ---------------------------------------------------------------------------
def _baton_once(cfg: BenchConfig, rep: int, project: Path, dbs: _Databases,
                reporter: Reporter, noise: Noise) -> dict[str, Any]:
    from baton.project import load_project
    from baton.runtime.engine import Engine

    reset_peak_rss()
    url = dbs.fresh(rep)
    try:
        engine = Engine(url, settings=cfg.settings)
        try:
            proj = load_project(project)
            proj.import_flows()
            engine.deploy([proj.definitions_dir], actor="bench")
            durability = _durability(engine)
            reporter.phase(f"Baton, repetition {rep}/{cfg.repeat}: starting {cfg.workers} "
                           "worker process(es)", None)
            workers = _Workers(url, project, cfg.workers, cfg.batch, cfg.settings)
            try:
                workers.start()
                reporter.phase(f"Baton, repetition {rep}/{cfg.repeat}: runs finished", cfg.runs)
                # The driver stands for the API server (records created, items completed
                # in-process), which settles its heap when it starts serving, as workers do
                # (baton.runtime.heap); once per process, so repetitions after the first
                # find it settled. SpiffWorkflow's process gets the same (spiffworkflow_triage.settle).
                from baton.runtime import heap

                engine.warm()  # as baton serve does at start (SpiffWorkflow's spec: loaded)
                heap.settle()
                prof = _profiler()
                try:
                    with noise:
                        drive = _drive(engine, cfg, workers, reporter)
                finally:
                    _dump_profile(prof, "driver")
            finally:
                workers.stop()
            driver_rss = peak_rss_mib()  # before verifying: that is not the benchmark
            children_rss = _maxrss_mib(resource.RUSAGE_CHILDREN)  # fallback only (see peak_rss_mib)
            reporter.phase(f"Baton, repetition {rep}/{cfg.repeat}: verifying", None)
            checked = _verify(engine, cfg.runs)
        finally:
            engine.close()
        db_bytes = _database_size(url)
    finally:
        dbs.dispose(url)
    worker_rss = list(workers.rss.values()) or [children_rss]
    seconds = drive.seconds
    worker_cpu = [float(s.get("cpu_s") or 0.0) for s in workers.stats.values()]
    cpu_total = drive.cpu_s + sum(worker_cpu)
    return {
        "rep": rep,
        "seconds": round(seconds, 3),
        "runs_per_s": round(cfg.runs / seconds, 1),
        "steps_per_s": round(checked["steps"] / seconds, 1),
        "steps": checked["steps"],
        "escalated": drive.escalated,
        "triage_items_completed": drive.completed_items,
        "latency_first_step_ms": checked["latency_first_step_ms"],
        "latency_complete_ms": checked["latency_complete_ms"],
        "seconds_in_database": checked["seconds_in_database"],
        "steps_failed_and_retried": checked["steps_failed_and_retried"],
        "peak_rss_mib": max([driver_rss, *worker_rss]),
        "peak_rss_driver_mib": driver_rss,
        "peak_rss_workers_mib": worker_rss,
        "peak_rss_total_mib": round(driver_rss + sum(worker_rss), 1),
        "db_bytes": db_bytes,
        # CPU seconds while the clock ran: where the time goes (2 cores = 2 s per second).
        # The driver's from the clock's start to its stop; each worker's from when it was
        # ready to when it stopped (a few ms around the clock's span, idle).
        "cpu_s_driver": round(drive.cpu_s, 2),
        "cpu_s_workers": [round(c, 2) for c in worker_cpu],
        "cpu_s": round(cpu_total, 2),
        "cpu_ms_per_run": round(cpu_total * 1000 / cfg.runs, 3),
        "worker_stats": list(workers.stats.values()),
        "durability": durability,
    }


def _spiff_once(script: Path, n: int, mode: str, db_file: Path | None,
                noise: Noise) -> dict[str, Any]:
    cmd = [sys.executable, "-c", _LAUNCHER,
           sys.executable, str(script), "--runs", str(n), "--mode", mode, "--json"]
    if mode != "memory" and db_file is not None:
        cmd += ["--db", str(db_file)]
    try:
        with noise:
            p = subprocess.run(cmd, capture_output=True, text=True, check=False)
    finally:
        if db_file is not None:
            for x in ("", "-wal", "-shm", "-journal"):
                Path(f"{db_file}{x}").unlink(missing_ok=True)
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-15:])
        raise BenchError(f"SpiffWorkflow ({mode}) failed with exit code {p.returncode}:\n{tail}")
    try:
        result: dict[str, Any] = json.loads(p.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError) as exc:
        raise BenchError(f"SpiffWorkflow ({mode}) printed no JSON result: {p.stdout[-500:]!r}") from exc
    if result.get("runs") != n:
        raise BenchError(f"SpiffWorkflow ({mode}) completed {result.get('runs')} of {n} runs")
    return result


# ---- the whole benchmark ----------------------------------------------------------------------
def run_benchmark(cfg: BenchConfig, reporter: Reporter | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the result object (what ``--json`` prints)."""
    cfg.check()
    reporter = reporter or _Silent()
    project = find_project(cfg.examples)
    spiff_script: Path | None = None
    spiff_version = None
    if "spiffworkflow" in cfg.compare:
        spiff_script = find_spiff_script(project)
        spiff_version = check_spiffworkflow()
    dbs = _Databases(cfg.db, cfg.keep)
    load_before = round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None
    reps: list[dict[str, Any]] = []
    spiff: dict[str, list[dict[str, Any]]] = {m: [] for m in SPIFF_MODES}
    noise = {"baton": Noise(cfg.noise), **{m: Noise(cfg.noise) for m in SPIFF_MODES}}
    restore, pinned = pin_cpus(cfg.cpus)
    try:
        # Interleaved (Baton, then each comparison, per repetition): a swing in the host's
        # load hits every engine alike.
        for rep in range(1, cfg.repeat + 1):
            reps.append(_baton_once(cfg, rep, project, dbs, reporter, noise["baton"]))
            if spiff_script is not None:
                for mode in SPIFF_MODES:
                    reporter.phase(f"SpiffWorkflow {mode}, repetition {rep}/{cfg.repeat} "
                                   f"(N={cfg.runs}, subprocess)", None)
                    spiff[mode].append(_spiff_once(spiff_script, cfg.runs, mode,
                                                   dbs.spiff_file(mode, rep), noise[mode]))
    finally:
        if restore is not None:
            os.sched_setaffinity(0, restore)
        dbs.close()
    out = _summarize(cfg, reps, spiff if spiff_script else {}, spiff_version, dbs, load_before)
    out["cpus_pinned"] = pinned
    out["noise"] = ({"processes": 1, "cpu_s": {k: n.cpu_s for k, n in noise.items() if n.cpu_s}}
                    if cfg.noise else None)
    return out


def _summarize(cfg: BenchConfig, reps: list[dict[str, Any]], spiff: dict[str, list[dict[str, Any]]],
               spiff_version: str | None, dbs: _Databases, load_before: float | None) -> dict[str, Any]:
    def med(key: str) -> Any:
        return spread([r[key] for r in reps])["median"]

    def lat(key: str) -> dict[str, float | None]:
        return {p: spread([r[key][p] for r in reps])["median"] for p in ("p50", "p95", "p99")}

    durability = reps[0]["durability"]
    out: dict[str, Any] = {
        "benchmark": "case_triage",
        "engine": "baton",
        "version": _baton_version(),
        "database": durability["database"],
        "durability": durability,
        "runs": cfg.runs,
        "steps": reps[0]["steps"],
        "workers": cfg.workers,
        "batch": cfg.batch,
        "rate": cfg.rate,
        "repeat": cfg.repeat,
        "verified": True,
        "seconds": med("seconds"),
        "runs_per_s": med("runs_per_s"),
        # CPU per run, all of Baton's processes summed (driver + every worker)
        "cpu_s": med("cpu_s"),
        "cpu_ms_per_run": spread([r["cpu_ms_per_run"] for r in reps])["median"],
        "steps_per_s": med("steps_per_s"),
        "latency_first_step_ms": lat("latency_first_step_ms"),
        "latency_complete_ms": lat("latency_complete_ms"),
        "peak_rss_mib": med("peak_rss_mib"),
        "peak_rss_driver_mib": med("peak_rss_driver_mib"),
        "peak_rss_workers_mib": spread([max(r["peak_rss_workers_mib"]) for r in reps])["median"],
        "peak_rss_total_mib": med("peak_rss_total_mib"),
        "db_bytes": int(statistics.median([r["db_bytes"] for r in reps])),
        "spread": {
            "runs_per_s": spread([r["runs_per_s"] for r in reps]),
            "steps_per_s": spread([r["steps_per_s"] for r in reps]),
            "seconds": spread([r["seconds"] for r in reps]),
            "cpu_ms_per_run": spread([r["cpu_ms_per_run"] for r in reps]),
            **{f"{k}_{p}": spread([r[k][p] for r in reps])
               for k in ("latency_first_step_ms", "latency_complete_ms") for p in ("p50", "p95", "p99")},
            "peak_rss_mib": spread([r["peak_rss_mib"] for r in reps]),
            "db_bytes": spread([float(r["db_bytes"]) for r in reps]),
        },
        "repetitions": [{k: v for k, v in r.items() if k != "durability"} for r in reps],
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                 "platform": platform.platform(terse=True), "loadavg_1m_at_start": load_before},
        "compare": {},
        # Baton's runs/s ÷ theirs (higher is better for Baton) and Baton's CPU per run ÷
        # theirs (lower is better for Baton), one pair per SpiffWorkflow variant compared.
        **{f"ratio_vs_spiffworkflow_{_key(m)}": None for m in SPIFF_MODES},
        **{f"cpu_ratio_vs_spiffworkflow_{_key(m)}": None for m in SPIFF_MODES},
    }
    if dbs.kept:
        out["kept_databases"] = dbs.kept
    for mode, results in spiff.items():
        runs_per_s = spread([r["runs_per_s"] for r in results])
        cpu_ms = spread([r["cpu_ms_per_run"] for r in results])
        out["compare"][f"spiffworkflow_{_key(mode)}"] = {
            "engine": "spiffworkflow", "version": spiff_version, "mode": mode,
            "durable": mode != "memory",
            "runs_per_s": runs_per_s["median"],
            "cpu_ms_per_run": cpu_ms["median"],
            "steps_per_s": spread([r["steps_per_s"] for r in results])["median"],
            "peak_rss_mib": spread([r["peak_rss_mib"] for r in results])["median"],
            "db_bytes": (int(statistics.median([r["db_bytes"] for r in results]))
                         if all("db_bytes" in r for r in results) else None),
            "spread": {"runs_per_s": runs_per_s, "cpu_ms_per_run": cpu_ms,
                       "steps_per_s": spread([r["steps_per_s"] for r in results]),
                       "peak_rss_mib": spread([r["peak_rss_mib"] for r in results])},
            "repetitions": results,
        }
        if runs_per_s["median"]:
            ratio = out["runs_per_s"] / runs_per_s["median"]
            out[f"ratio_vs_spiffworkflow_{_key(mode)}"] = float(f"{ratio:.3g}")
        if cpu_ms["median"]:
            ratio = out["cpu_ms_per_run"] / cpu_ms["median"]
            out[f"cpu_ratio_vs_spiffworkflow_{_key(mode)}"] = float(f"{ratio:.3g}")
    return out


def _key(mode: str) -> str:
    """A SpiffWorkflow mode as it appears in result keys: durable-batched -> durable_batched."""
    return mode.replace("-", "_")


def _baton_version() -> str:
    try:
        return importlib.metadata.version("baton")
    except importlib.metadata.PackageNotFoundError:
        import baton

        return str(getattr(baton, "__version__", "unknown"))


__all__ = ["BenchConfig", "BenchError", "Reporter", "case_fields", "expected_steps",
           "percentiles", "resolution", "run_benchmark", "spread"]

