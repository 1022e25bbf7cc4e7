"""PostgreSQL scaling with worker processes (issue 19, target 6), measured and modelled.

For each worker count K (default 1, 2, 4; the order alternates between repetitions) one
repetition of the reference triage workload (``bench/triage.py``, WORKLOAD.md) runs on a
fresh PostgreSQL database (``baton_bench_<pid>_<n>``, dropped afterwards) with K real
worker processes and the same driver as ``baton bench triage``. Measured, while the clock
runs:

- runs/s, first-step latency percentiles (from what the database recorded), every run
  verified (``triage._verify``);
- CPU per run by process kind: the driver (this process, minus the sampler thread), the
  workers (``time.process_time`` in each), and the PostgreSQL backends of the benchmark's
  database (``/proc/<pid>/stat`` of every ``pg_stat_activity`` pid of that database, read at
  the start, every sample and at the end), plus the server's shared background processes
  (walwriter, checkpointer, background writer: shared with every other database on the server);
- database round trips per run: every statement the driver and each worker sends through
  SQLAlchemy (``bench/sqltrace.py``; BEGIN and COMMIT counted as round trips of their own),
  cross-checked with ``pg_stat_database.xact_commit``;
- lock waits: a sampler (every ``--interval`` s) reads ``pg_stat_activity`` (backends
  waiting with ``wait_event_type = 'Lock'``, and in which state every backend is) and
  ``pg_locks`` (locks not granted; any lock stronger than RowExclusiveLock that is not a
  row lock, e.g. a relation lock, or the global lock PostgreSQL takes on its NOTIFY queue
  while a notifying transaction commits);
- the table-level-lock check: every statement text sent by the driver and the workers is
  checked for ``LOCK TABLE`` / DDL (``sqltrace.table_locks``), and the sampled ``pg_locks``
  for relation locks stronger than RowExclusiveLock.

Then a model (``model()``) predicts throughput for P = 1, 2, 4, 8, 16 cores from those
per-run demands (see its docstring), and is checked against the measured 1/2/4-worker points
on this 2-core machine.

    python bench/pg_scale.py --runs 2000 --json /tmp/pg_scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import sqltrace, triage

DEFAULT_DB = os.environ.get("BATON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
WEAK_MODES = frozenset({"AccessShareLock", "RowShareLock", "RowExclusiveLock"})
PG_DATABASE_CLASS = 1262  # pg_database's oid: NOTIFY's queue lock is an object lock on it
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def _dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


# ---- the sampler ------------------------------------------------------------------------------
def _socket_inodes(pid: int) -> set[str]:
    out = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                out.add(link[8:-1])
    except OSError:
        pass
    return out


def _port_inodes() -> dict[int, str]:
    """Local TCP port -> socket inode (IPv4 and IPv6), from /proc/net."""
    out: dict[int, str] = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    out.setdefault(int(parts[1].rsplit(":", 1)[1], 16), parts[9])
        except OSError:
            continue
    return out


class Sampler:
    """Samples the benchmark database's backends while the clock runs (a thread with its own
    autocommit connection; its own backend is in no figure).

    Each backend is told apart by the process at the other end of its connection (its
    ``client_port``, found among the driver's and the workers' sockets): ``driver``,
    ``worker``, or ``other`` (the workers' LISTEN connections are ``worker`` too)."""

    def __init__(self, url: str, interval: float, roles: dict[int, str] | None = None) -> None:
        import psycopg

        self.interval = interval
        self.proc_roles = roles or {}
        self.role: dict[int, str] = {}
        self.role_port: dict[int, int] = {}
        self.conn = psycopg.connect(_dsn(url), autocommit=True, connect_timeout=10)
        sqltrace.ignore(self.conn)  # its statements are not the driver's
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="pg-sampler")
        self.cpu_first: dict[int, float] = {}
        self.cpu_last: dict[int, float] = {}
        self.samples = 0
        self.sampled_s = 0.0
        self.states: Counter[str] = Counter()  # backend-samples per state/wait
        self.open_tx: Counter[str] = Counter()  # idle in transaction: the last statement
        self.lock_waits: Counter[str] = Counter()  # not granted, by what was waited for
        self.strong: Counter[str] = Counter()  # table locks stronger than RowExclusiveLock
        self.extend: Counter[str] = Counter()  # relation extension locks (not table locks)
        self.notify_lock_samples = 0  # samples where some backend held NOTIFY's queue lock
        self.max_backends = 0
        self.thread_cpu = 0.0
        self.bg_pids = self._background()
        self.stat0 = self._db_stat()
        self.bg0 = {p: _proc_cpu(p) or 0.0 for p in self.bg_pids}

    def _background(self) -> list[int]:
        rows = self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE backend_type IN "
            "('walwriter', 'checkpointer', 'background writer')").fetchall()
        return [int(r[0]) for r in rows]

    def _db_stat(self) -> dict[str, int]:
        row = self.conn.execute(
            "SELECT xact_commit, xact_rollback, tup_returned, tup_fetched, tup_inserted, "
            "tup_updated, tup_deleted, deadlocks, blks_read, blks_hit "
            "FROM pg_stat_database WHERE datname = current_database()").fetchone()
        keys = ("xact_commit", "xact_rollback", "tup_returned", "tup_fetched", "tup_inserted",
                "tup_updated", "tup_deleted", "deadlocks", "blks_read", "blks_hit")
        wal = self.conn.execute("SELECT wal_records, wal_bytes, wal_write, wal_sync "
                                "FROM pg_stat_wal").fetchone()
        return {**dict(zip(keys, (int(x) for x in row), strict=True)),
                "wal_records": int(wal[0]), "wal_bytes": int(wal[1]),
                "wal_write": int(wal[2]), "wal_sync": int(wal[3])}

    def sample(self) -> None:
        acts = self.conn.execute(
            "SELECT pid, coalesce(state, ''), coalesce(wait_event_type, ''), "
            "coalesce(wait_event, ''), coalesce(client_port, 0), left(query, 90) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchall()
        self._resolve({int(a[0]): int(a[4]) for a in acts})
        pids = [int(a[0]) for a in acts]
        locks = self.conn.execute(
            "SELECT pid, locktype, mode, granted, coalesce(relation::regclass::text, ''), "
            "coalesce(classid, 0), coalesce(objid, 0) FROM pg_locks "
            "WHERE pid = ANY(%s) AND (NOT granted OR mode NOT IN "
            "('AccessShareLock', 'RowShareLock', 'RowExclusiveLock'))",
            (pids,)).fetchall()
        self.samples += 1
        self.max_backends = max(self.max_backends, len(acts))
        for pid, state, wtype, wevent, _port, query in acts:
            role = self.role.get(int(pid), "other")
            if state == "idle in transaction":  # what it ran last, holding the transaction open
                self.open_tx[f"{role}: {query}"] += 1
            self.states[f"{role} {state}/{wtype}:{wevent}" if wtype else f"{role} {state}/cpu"] += 1
            cpu = _proc_cpu(int(pid))
            if cpu is not None:
                self.cpu_first.setdefault(int(pid), 0.0)  # appeared after the start: all its CPU
                self.cpu_last[int(pid)] = cpu
        notify = False
        for _pid, locktype, mode, granted, rel, classid, objid in locks:
            if locktype == "object" and int(classid) == PG_DATABASE_CLASS and int(objid) == 0:
                notify = notify or bool(granted)
                if not granted:
                    self.lock_waits["NOTIFY queue lock (object 1262/0)"] += 1
                continue
            if not granted:
                self.lock_waits[f"{locktype} {mode} {rel}".strip()] += 1
            what = f"{mode} {rel} {'held' if granted else 'waited'}"
            if locktype == "relation" and mode not in WEAK_MODES:  # a table-level lock
                self.strong[what] += 1
            elif locktype == "extend":  # adding pages to a table or index file: blocks
                self.extend[what] += 1  # only others extending it, never readers or writers
        self.notify_lock_samples += notify

    def _resolve(self, ports: dict[int, int]) -> None:
        """The role of each backend not seen before (by its client's local port)."""
        new = {pid: port for pid, port in ports.items() if pid not in self.role}
        if not new:
            return
        by_port = _port_inodes()
        owners = {inode: role for proc, role in self.proc_roles.items()
                  for inode in _socket_inodes(proc)}
        for pid, port in new.items():
            self.role[pid] = owners.get(by_port.get(port, ""), "other")
            self.role_port[pid] = port

    def start(self) -> None:
        acts = self.conn.execute("SELECT pid, coalesce(client_port, 0) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                                 ).fetchall()
        self._resolve({int(a[0]): int(a[1]) for a in acts})
        for (pid, _port) in acts:
            cpu = _proc_cpu(int(pid))
            if cpu is not None:
                self.cpu_first[int(pid)] = cpu
                self.cpu_last[int(pid)] = cpu
        self.t0 = time.perf_counter()
        self.thread.start()

    def _loop(self) -> None:
        cpu0 = time.thread_time()
        while not self.stop_event.wait(self.interval):
            self.sample()
        self.thread_cpu = time.thread_time() - cpu0

    def stop(self) -> dict[str, Any]:
        self.stop_event.set()
        self.thread.join()
        self.sample()  # the end: every backend's CPU once more
        self.sampled_s = time.perf_counter() - self.t0
        stat1 = self._db_stat()
        bg = sum((_proc_cpu(p) or 0.0) - self.bg0[p] for p in self.bg_pids)
        self.conn.close()
        backends_cpu = sum(self.cpu_last[p] - self.cpu_first.get(p, 0.0) for p in self.cpu_last)
        by_role: Counter[str] = Counter()
        for p in self.cpu_last:
            by_role[self.role.get(p, "other")] += self.cpu_last[p] - self.cpu_first.get(p, 0.0)
        dt = self.sampled_s / max(1, self.samples)  # backend-seconds one observation stands for
        return {
            "samples": self.samples, "seconds": round(self.sampled_s, 3),
            "backends_seen": len(self.cpu_last), "max_backends": self.max_backends,
            "server_backends_cpu_s": round(backends_cpu, 3),
            "server_backends_cpu_s_by_client": {k: round(v, 3) for k, v in by_role.items()},
            "server_background_cpu_s": round(bg, 3),
            "sampler_thread_cpu_s": round(self.thread_cpu, 3),
            # backend-seconds in each state (samples x the mean interval)
            "backend_seconds": {k: round(v * dt, 3) for k, v in self.states.most_common()},
            "idle_in_transaction_after": {k: round(v * dt, 3) for k, v in self.open_tx.most_common(8)},
            "lock_wait_backend_seconds": {k: round(v * dt, 3) for k, v in self.lock_waits.items()},
            "lock_wait_samples": sum(self.lock_waits.values()),
            "strong_lock_samples": dict(self.strong),
            "extension_lock_samples": dict(self.extend),
            "unattributed_backends": {str(p): self.role_port.get(p) for p, r in self.role.items()
                                      if r == "other"},
            "notify_lock_held_s": round(self.notify_lock_samples * dt, 3),
            "notify_lock_held_fraction": round(self.notify_lock_samples / max(1, self.samples), 4),
            "pg_stat_database": {k: stat1[k] - self.stat0[k] for k in stat1},
        }


def _ping(url: str, n: int = 300) -> float:
    """Mean wall time of a trivial statement (one round trip) on loopback, in ms."""
    import psycopg

    with psycopg.connect(_dsn(url), autocommit=True, connect_timeout=10) as conn:
        for _ in range(20):
            conn.execute("SELECT 1")
        t0 = time.perf_counter()
        for _ in range(n):
            conn.execute("SELECT 1")
        return (time.perf_counter() - t0) * 1000 / n


# ---- one measurement ----------------------------------------------------------------------------
def measure(k: int, label: int, args: argparse.Namespace) -> dict[str, Any]:
    from baton.project import load_project
    from baton.runtime.engine import Engine
    from baton.settings import Settings

    settings = Settings.from_environment()
    cfg = triage.BenchConfig(runs=args.runs, db=args.db, workers=k, batch=args.batch,
                             settings=settings)
    project = triage.find_project(None)
    dbs = triage._Databases(args.db, keep=False)
    trace_dir = Path(tempfile.mkdtemp(prefix="baton-pgscale-"))
    load0 = os.getloadavg()
    url = dbs.fresh(label)
    try:
        trace = sqltrace.install()
        engine = Engine(url, settings=settings)
        try:
            proj = load_project(project)
            proj.import_flows()
            engine.deploy([proj.definitions_dir], actor="bench")
            ping_ms = _ping(url)
            os.environ["BATON_BENCH_SQL_TRACE"] = str(trace_dir)
            workers = triage._Workers(url, project, k, args.batch, settings)
            try:
                workers.start()
                roles = {os.getpid(): "driver", **{pr.pid: "worker" for pr in workers.procs
                                                    if pr.pid is not None}}
                sampler = Sampler(url, args.interval, roles)
                sampler.start()
                trace.reset()
                drive = triage._drive(engine, cfg, workers, triage._Silent())
                driver_sql = trace.snapshot()
                server = sampler.stop()
            finally:
                workers.stop()
                os.environ.pop("BATON_BENCH_SQL_TRACE", None)
            checked = triage._verify(engine, args.runs)
        finally:
            engine.close()
    finally:
        dbs.dispose(url)
    load1 = os.getloadavg()
    worker_sql = [json.loads(p.read_text()) for p in sorted(trace_dir.glob("worker-*.json"))]
    shutil.rmtree(trace_dir, ignore_errors=True)
    if len(worker_sql) != k:
        raise triage.BenchError(f"{len(worker_sql)} of {k} workers wrote their statement counts")
    n = args.runs
    worker_cpu = sum(float(s.get("cpu_s") or 0.0) for s in workers.stats.values())
    driver_cpu = drive.cpu_s - server["sampler_thread_cpu_s"]
    per = 1000 / n  # seconds for all runs -> ms per run
    w_rt = sum(w["round_trips"] for w in worker_sql)
    strong = {s: c for s, c in server["strong_lock_samples"].items()}
    locks = sorted(set(driver_sql["table_locks"]).union(*(w["table_locks"] for w in worker_sql)))
    return {
        "workers": k, "runs": n, "seconds": round(drive.seconds, 3),
        "runs_per_s": round(n / drive.seconds, 1),
        "load_before": [round(x, 2) for x in load0], "load_after": [round(x, 2) for x in load1],
        "latency_first_step_ms": checked["latency_first_step_ms"],
        "latency_complete_ms": checked["latency_complete_ms"],
        "cpu_ms_per_run": {
            "driver": round(driver_cpu * per, 3),
            "workers": round(worker_cpu * per, 3),
            "server_backends": round(server["server_backends_cpu_s"] * per, 3),
            "server_for_driver": round(server["server_backends_cpu_s_by_client"].get("driver", 0.0)
                                       * per, 3),
            "server_for_workers": round(server["server_backends_cpu_s_by_client"].get("worker", 0.0)
                                        * per, 3),
            "server_background": round(server["server_background_cpu_s"] * per, 3),
            "total": round((driver_cpu + worker_cpu + server["server_backends_cpu_s"]
                            + server["server_background_cpu_s"]) * per, 3),
        },
        "round_trips_per_run": {
            "driver": round(driver_sql["round_trips"] / n, 2),
            "workers": round(w_rt / n, 2),
            "statements_driver": round(driver_sql["executes"] / n, 2),
            "statements_workers": round(sum(w["executes"] for w in worker_sql) / n, 2),
            "transactions_driver": round(driver_sql["transactions"] / n, 3),
            "transactions_workers": round(sum(w["transactions"] for w in worker_sql) / n, 3),
        },
        "statement_wall_ms_per_run": {
            "driver": round(driver_sql["seconds_in_statements"] * per, 3),
            "workers": round(sum(w["seconds_in_statements"] for w in worker_sql) * per, 3),
        },
        "server_commits_per_run": round(server["pg_stat_database"]["xact_commit"] / n, 3),
        "lock_wait_ms_per_run": round(sum(server["lock_wait_backend_seconds"].values()) * per, 3),
        "notify_lock_held_ms_per_run": round(server["notify_lock_held_s"] * per, 3),
        "ping_ms": round(ping_ms, 4),
        "table_lock_statements": locks,
        "strong_lock_samples": strong,
        "server": server,
        "worker_stats": list(workers.stats.values()),
        "top_statements_workers": _top(worker_sql, n),
        "top_statements_driver": _top([driver_sql], n),
        "verified": True,
    }


def _top(traces: list[dict[str, Any]], n: int, limit: int = 12) -> list[dict[str, Any]]:
    count: Counter[str] = Counter()
    secs: Counter[str] = Counter()
    for t in traces:
        for s in t["statements"]:
            count[s["sql"]] += s["count"]
            secs[s["sql"]] += s["seconds"]
    return [{"sql": sql[:160], "per_run": round(c / n, 3), "ms_per_run": round(secs[sql] * 1000 / n, 3)}
            for sql, c in count.most_common(limit)]


# ---- the model ----------------------------------------------------------------------------------
def _fit_linear(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x (b = 0 with one point)."""
    if len(set(xs)) < 2:
        return statistics.fmean(ys), 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


def model(points: list[dict[str, Any]], cores_here: int) -> dict[str, Any]:
    """Throughput bounds from per-run demands (a bottleneck / asymptotic-bound model).

    Per run, measured at K workers: CPU of the driver ``d``, of the workers ``w(K)``, of the
    server's backends ``s(K)`` (and its shared background processes ``b``), each fitted as
    a + c*K over the measured K (the per-worker overhead: smaller batches, more claims and
    wake-ups as K grows); round trips of the driver ``r_d`` and of the workers ``r_w`` at the
    uncontended loopback round-trip time ``L`` (``SELECT 1``); the global serial section
    ``S``: the time per run some backend holds a lock every writer needs (sampled: NOTIFY's
    queue lock, and the sampled row/tuple lock waits), which no number of cores overlaps.

    With P cores and K = P worker processes:
      - CPU:        X <= P / (d + w(K) + s(K) + b)
      - one driver: X <= 1 / (d + r_d * L + s_d)   (one Python process; s_d: the server work
                    it waits for, the CPU of the backends serving the driver's connections)
      - workers:    X <= K / (w(K) + r_w * L + s_w)
      - serial:     X <= 1 / S
    and X is the smallest. On this machine (P = 2) the same bounds with K = 1, 2, 4 are
    compared with what was measured. "drivers scale" drops the one-driver bound (a real
    deployment's records come through many API processes).
    """
    ks = [float(p["workers"]) for p in points]

    def fit(key: str) -> tuple[float, float]:
        return _fit_linear(ks, [float(p["cpu_ms_per_run"][key]) for p in points])

    w_fit, s_fit = fit("workers"), fit("server_backends")
    d = statistics.fmean(float(p["cpu_ms_per_run"]["driver"]) for p in points)
    b = statistics.fmean(float(p["cpu_ms_per_run"]["server_background"]) for p in points)
    r_d = statistics.fmean(float(p["round_trips_per_run"]["driver"]) for p in points)
    r_w = statistics.fmean(float(p["round_trips_per_run"]["workers"]) for p in points)
    ping = statistics.fmean(float(p["ping_ms"]) for p in points)
    serial = max(float(p["notify_lock_held_ms_per_run"]) for p in points)
    lockwait = max(float(p["lock_wait_ms_per_run"]) for p in points)
    # The server's CPU split between the two sides as measured (backends by client process).
    shares = []
    for p in points:
        c = p["cpu_ms_per_run"]
        total = float(c["server_for_driver"]) + float(c["server_for_workers"])
        shares.append(float(c["server_for_driver"]) / total if total else 0.5)
    share_d = statistics.fmean(shares)

    def bounds(cores: int, k: int) -> dict[str, float]:
        w = max(0.0, w_fit[0] + w_fit[1] * k)
        sv = max(0.0, s_fit[0] + s_fit[1] * k)
        out = {
            "cpu": cores / (d + w + sv + b) * 1000,
            "one_driver": 1000 / (d + r_d * ping + sv * share_d),
            "workers": k * 1000 / (w + r_w * ping + sv * (1 - share_d)),
            "serial": 1000 / serial if serial > 0 else float("inf"),
        }
        return {key: round(v, 1) for key, v in out.items()}

    def predict(cores: int, k: int, one_driver: bool) -> dict[str, Any]:
        bd = bounds(cores, k)
        keys = [key for key in bd if one_driver or key != "one_driver"]
        limit = min(keys, key=lambda key: bd[key])
        return {"runs_per_s": bd[limit], "bound_by": limit, "bounds": bd}

    here = []
    for p in points:
        pred = predict(cores_here, int(p["workers"]), True)
        total = float(p["cpu_ms_per_run"]["total"])
        got = float(p["runs_per_s"]) * total / 1000  # cores this system used on average
        # The same bounds with the CPU this system actually got (a loaded host shares its
        # cores with other processes): the CPU bound at ``got`` cores.
        at_got = min(got / total * 1000, *(v for k, v in pred["bounds"].items() if k != "cpu"))
        here.append({"workers": p["workers"], "measured": p["runs_per_s"], **pred,
                     "measured_over_predicted": round(p["runs_per_s"] / pred["runs_per_s"], 2),
                     "cores_used": round(got, 2), "load": p["load_before"][0],
                     "bound_at_cores_used": round(at_got, 1)})
    # The measured / predicted ratio on this machine: the bounds ignore queueing (and, on a
    # loaded host, the CPU other processes take), so a real system reaches only part of the
    # smallest bound; "expected" applies the same ratio.
    eff = statistics.fmean(h["measured_over_predicted"] for h in here)
    projection = []
    for cores in (1, 2, 4, 8, 16):
        one = predict(cores, cores, True)
        many = predict(cores, cores, False)
        projection.append({
            "cores": cores, "workers": cores,
            "one_driver": {**one, "expected": round(one["runs_per_s"] * eff, 1)},
            "drivers_scale": {**many, "expected": round(many["runs_per_s"] * eff, 1)},
        })
    return {
        "inputs": {"driver_cpu_ms": round(d, 3), "worker_cpu_ms_fit": [round(x, 4) for x in w_fit],
                   "server_cpu_ms_fit": [round(x, 4) for x in s_fit],
                   "server_background_cpu_ms": round(b, 3), "round_trips_driver": round(r_d, 2),
                   "round_trips_workers": round(r_w, 2), "ping_ms": round(ping, 4),
                   "serial_ms_per_run": round(serial, 3), "lock_wait_ms_per_run": round(lockwait, 3),
                   "server_share_driver": round(share_d, 3)},
        "here": here, "efficiency": round(eff, 2), "projection": projection,
    }


# ---- the command ---------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default=DEFAULT_DB, help="a PostgreSQL server URL (a fresh database "
                    "is created and dropped on it for every measurement)")
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--interval", type=float, default=0.05, help="sampling interval, seconds")
    ap.add_argument("--json", type=Path, help="write the full result here")
    args = ap.parse_args(argv)
    if not args.db.startswith("postgresql"):
        ap.error("--db must be a PostgreSQL URL")
    counts = [int(x) for x in args.workers.split(",") if x.strip()]
    if not counts or min(counts) < 1 or args.runs < 1 or args.repeat < 1 or args.interval <= 0:
        ap.error("--workers, --runs and --repeat must be positive, --interval > 0")
    points: list[dict[str, Any]] = []
    for rep in range(args.repeat):
        order = counts if rep % 2 == 0 else list(reversed(counts))
        for k in order:
            print(f"repetition {rep + 1}: {k} worker(s), N={args.runs} ...", file=sys.stderr, flush=True)
            points.append(measure(k, rep * 100 + k, args))
            _print_point(points[-1])
    medians = [_median_point([p for p in points if p["workers"] == k]) for k in counts]
    result = {"runs": args.runs, "points": points, "medians": medians,
              "model": model(medians, len(os.sched_getaffinity(0))),
              "cpus": len(os.sched_getaffinity(0)),
              "table_lock_statements": sorted({s for p in points for s in p["table_lock_statements"]}),
              "strong_lock_samples": sum(sum(p["strong_lock_samples"].values()) for p in points)}
    _print_model(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if result["table_lock_statements"] or result["strong_lock_samples"]:
        print("TABLE-LEVEL LOCKS SEEN (see above)", file=sys.stderr)
        return 1
    return 0


def _median_point(ps: list[dict[str, Any]]) -> dict[str, Any]:
    """The repetition with the median runs/s (its figures stay consistent with each other)."""
    ps = sorted(ps, key=lambda p: p["runs_per_s"])
    return ps[len(ps) // 2]


def _print_point(p: dict[str, Any]) -> None:
    c, r = p["cpu_ms_per_run"], p["round_trips_per_run"]
    print(f"  K={p['workers']}: {p['runs_per_s']} runs/s; CPU ms/run driver {c['driver']}, "
          f"workers {c['workers']}, server {c['server_backends']} (driver's {c['server_for_driver']}, "
          f"workers' {c['server_for_workers']}; +{c['server_background']} "
          f"background) = {c['total']}; round trips/run driver {r['driver']}, workers "
          f"{r['workers']}; server commits/run {p['server_commits_per_run']}; lock waits "
          f"{p['lock_wait_ms_per_run']} ms/run ({p['server']['lock_wait_samples']} samples); "
          f"NOTIFY lock held {p['notify_lock_held_ms_per_run']} ms/run; first step p99 "
          f"{p['latency_first_step_ms']['p99']} ms; load {p['load_before'][0]}->"
          f"{p['load_after'][0]}; table locks: {p['table_lock_statements'] or 'none'}, "
          f"strong lock samples: {p['strong_lock_samples'] or 'none'}", file=sys.stderr, flush=True)


def _print_model(result: dict[str, Any]) -> None:
    m = result["model"]
    print(f"model inputs: {json.dumps(m['inputs'])}", file=sys.stderr)
    for h in m["here"]:
        print(f"  here K={h['workers']}: measured {h['measured']}, bound {h['runs_per_s']} "
              f"({h['bound_by']}), ratio {h['measured_over_predicted']}; cores used "
              f"{h['cores_used']} at load {h['load']}", file=sys.stderr)
    for p in m["projection"]:
        o, d = p["one_driver"], p["drivers_scale"]
        print(f"  P={p['cores']}: one driver {o['runs_per_s']} ({o['bound_by']}) expected "
              f"{o['expected']}; drivers scale {d['runs_per_s']} ({d['bound_by']}) expected "
              f"{d['expected']}", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
