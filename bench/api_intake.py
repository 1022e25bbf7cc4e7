"""Records through the REST API: N Case records created by 8 concurrent HTTP clients.

One repetition:

1. a FRESH project folder (a copy of examples/case_triage) with a new SQLite file
   (``synchronous=FULL`` unless ``--synchronous`` says otherwise), or a new PostgreSQL
   database on ``--db``'s server (dropped afterwards); case_triage is deployed and an
   ``operator`` user (records:write) gets an API token;
2. a real ``baton serve`` process is started on a free loopback port (``--workers 0`` by
   default: the server only takes records in, so its CPU is the intake's; every create
   still starts its case_triage run in the record's transaction) and waited for;
3. ``--warmup`` records are created (not timed), then the clock starts and a bounded pool
   of ``--clients`` threads, each with its own httpx client (one keep-alive connection),
   creates the N records, as fast as the server answers;
4. the server is stopped; every record is VERIFIED from the database: each case number
   exists exactly once, every 201 answer names a record that exists, and each record has
   exactly one case_triage run. A verification failure exits 1 saying what is wrong.

Reported: records/s, client latency p50/p95/p99 (ms), the server's CPU per record (utime +
stime of the server process from /proc, over the timed part only), the driver's CPU per
record, and the host load. ``--profile FILE`` runs the server under yappi (all threads)
and writes its stats (pstats format) to FILE when it stops (``bench/profiled_serve.py``).

    python bench/api_intake.py --records 4000 --clients 8 --repeat 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx

REPO = Path(__file__).resolve().parents[1]
PROJECT = REPO / "examples" / "case_triage"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0
TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark could not run, or its records were not all created correctly."""


@dataclass(frozen=True)
class Config:
    records: int
    clients: int
    warmup: int
    workers: int
    synchronous: str
    db: str | None
    profile: str | None
    keep: bool


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


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def self_cpu() -> float:
    t = os.times()
    return t.user + t.system


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- setup --------------------------------------------------------------------------------
class Database:
    """A fresh database for one repetition, and its disposal."""

    def __init__(self, db: str | None, folder: Path, rep: int) -> None:
        self.pg_name: str | None = None
        self.admin_url = db
        if db is None or db.startswith("sqlite"):
            self.url = f"sqlite:///{folder / 'baton.db'}"
        else:
            from sqlalchemy.engine import make_url

            self.pg_name = f"baton_api_bench_{os.getpid()}_{rep}"
            self._pg(f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)")
            self._pg(f"CREATE DATABASE {self.pg_name}")
            self.url = make_url(db).set(database=self.pg_name).render_as_string(
                hide_password=False)

    def _pg(self, sql: str) -> None:
        import psycopg

        assert self.admin_url is not None
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql)

    def dispose(self) -> None:
        if self.pg_name is not None:
            self._pg(f"DROP DATABASE IF EXISTS {self.pg_name} WITH (FORCE)")


def prepare(folder: Path, url: str, settings_env: dict[str, str]) -> str:
    """Deploy case_triage, add the intake user and return its API token."""
    from baton.project import Project
    from baton.runtime.engine import Engine
    from baton.settings import Settings

    shutil.copytree(PROJECT, folder / "project", ignore=shutil.ignore_patterns(
        "__pycache__", "*.db", "*.db-*"))
    project = folder / "project"
    Project(project, "", ("flows",)).import_flows()
    eng = Engine(url, settings=Settings.from_environment(settings_env))
    try:
        eng.deploy([project / "definitions"], actor="bench")
        eng.directory.add_user("intake", roles=["operator"], email="intake@example.com")
        return eng.directory.create_token("intake", "api bench")[1]
    finally:
        eng.close()


class Server:
    """``baton serve`` in its own process, on a loopback port."""

    def __init__(self, cfg: Config, folder: Path, url: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = ["--project", str(folder / "project"), "--db", url, "serve",
                "--host", "127.0.0.1", "--port", str(self.port),
                "--workers", str(cfg.workers)]
        if cfg.profile:
            cmd = [sys.executable, str(REPO / "bench" / "profiled_serve.py"), cfg.profile, *args]
        else:
            cmd = [sys.executable, "-m", "baton.cli.main", *args]
        self.log = open(folder / "serve.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=folder)
        self.folder = folder

    def wait_ready(self, token: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(base_url=self.base, timeout=5) as c:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BenchError(f"baton serve exited with {self.proc.returncode}: "
                                     + self.tail())
                try:
                    r = c.get("/api/records?limit=1",
                              headers={"Authorization": f"Bearer {token}"})
                    if r.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise BenchError("baton serve did not answer within 3 minutes: " + self.tail())

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def tail(self) -> str:
        if not self.log.closed:
            self.log.flush()
        text = (self.folder / "serve.log").read_text(errors="replace")
        return text[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# ---- the drive ----------------------------------------------------------------------------
def case_fields(i: int) -> dict[str, Any]:
    subject = f"invoice question {i}" if i % 2 else f"login broken {i}"
    return {"subject": subject, "number": i, "origin": "Web", "level": 1}


def drive(base: str, token: str, numbers: Sequence[int], clients: int
          ) -> tuple[list[float], dict[int, str], list[str]]:
    """Create a Case per number with ``clients`` threads; returns latencies (ms), the id
    each 201 answered per number, and the failures."""
    latencies: list[float] = []
    ids: dict[int, str] = {}
    failures: list[str] = []
    lock = threading.Lock()
    it = iter(numbers)
    headers = {"Authorization": f"Bearer {token}"}

    def client() -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(base_url=base, headers=headers, timeout=60, limits=limits) as c:
            while True:
                with lock:
                    i = next(it, None)
                if i is None:
                    return
                t0 = time.perf_counter()
                try:
                    r = c.post("/api/objects/Case/records", json={"data": case_fields(i)})
                except httpx.HTTPError as exc:
                    with lock:
                        failures.append(f"case {i}: {type(exc).__name__}: {exc}")
                    continue
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    if r.status_code == 201:
                        latencies.append(ms)
                        ids[i] = r.json()["id"]
                    else:
                        failures.append(f"case {i}: {r.status_code} {r.text[:300]}")

    threads = [threading.Thread(target=client, name=f"client-{k}") for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, ids, failures


# ---- verification -------------------------------------------------------------------------
def verify(url: str, ids: dict[int, str], total: int) -> dict[str, int]:
    """Every case number once, every answered id stored, one case_triage run each."""
    if url.startswith("sqlite"):
        conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"))
        number = "CAST(json_extract(r.data, '$.number') AS INTEGER)"
    else:
        import psycopg

        conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        number = "(r.data->>'number')::int"
    try:
        rows = conn.execute(
            f"SELECT r.id, {number}, (SELECT COUNT(*) FROM baton_runs u WHERE u.record_id = r.id "
            "AND u.orchestration = 'case_triage') FROM baton_records r "
            "WHERE r.object_type = 'Case'").fetchall()
    finally:
        conn.close()
    problems: list[str] = []
    by_number: dict[int, list[str]] = {}
    for rid, n, _runs in rows:
        by_number.setdefault(int(n), []).append(rid)
    missing = [n for n in range(total) if n not in by_number]
    doubled = {n: v for n, v in by_number.items() if len(v) > 1}
    stored = {rid for rid, _n, _r in rows}
    unstored = [rid for rid in ids.values() if rid not in stored]
    wrong = {n: by_number.get(n) for n, rid in ids.items() if by_number.get(n) != [rid]}
    no_run = [rid for rid, _n, runs in rows if runs != 1]
    if len(rows) != total:
        problems.append(f"{len(rows)} Case records stored, {total} created")
    if missing:
        problems.append(f"{len(missing)} case numbers missing, e.g. {missing[:5]}")
    if doubled:
        problems.append(f"{len(doubled)} case numbers stored twice, e.g. {list(doubled)[:5]}")
    if unstored:
        problems.append(f"{len(unstored)} answered ids not stored, e.g. {unstored[:5]}")
    if wrong:
        problems.append(f"{len(wrong)} answers name another record, e.g. {list(wrong.items())[:3]}")
    if no_run:
        problems.append(f"{len(no_run)} records without exactly one case_triage run, "
                        f"e.g. {no_run[:5]}")
    if problems:
        raise BenchError("verification failed: " + "; ".join(problems))
    return {"records": len(rows), "runs": sum(r for _i, _n, r in rows)}


# ---- one repetition -----------------------------------------------------------------------
def once(cfg: Config, rep: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="baton-api-bench-"))
    db = Database(cfg.db, folder, rep)
    env = {"BATON_SQLITE_SYNCHRONOUS": cfg.synchronous}
    server: Server | None = None
    try:
        token = prepare(folder, db.url, env)
        server = Server(cfg, folder, db.url, env)
        server.wait_ready(token)
        warm = list(range(cfg.records, cfg.records + cfg.warmup))
        _lat, warm_ids, warm_fail = drive(server.base, token, warm, cfg.clients)
        if warm_fail:
            raise BenchError(f"warm-up failed: {warm_fail[:3]}")
        load_before = load()
        cpu0, self0, t0 = server.cpu(), self_cpu(), time.perf_counter()
        latencies, ids, failures = drive(server.base, token, range(cfg.records), cfg.clients)
        wall = time.perf_counter() - t0
        cpu1, self1 = server.cpu(), self_cpu()
        load_after = load()
        if failures:
            raise BenchError(f"{len(failures)} requests failed, e.g. {failures[:3]}")
        server.stop()
        checked = verify(db.url, {**ids, **warm_ids}, cfg.records + cfg.warmup)
        return {
            "records": cfg.records, "clients": cfg.clients, "seconds": round(wall, 3),
            "records_per_s": round(cfg.records / wall, 1),
            "latency_ms": percentiles(latencies),
            "server_cpu_ms_per_record": round((cpu1 - cpu0) * 1000 / cfg.records, 3),
            "driver_cpu_ms_per_record": round((self1 - self0) * 1000 / cfg.records, 3),
            "server_cpu_share": round((cpu1 - cpu0) / wall, 2),
            "verified": checked, "load_before": load_before, "load_after": load_after,
        }
    except BaseException:
        if server is not None:
            sys.stderr.write(server.tail() + "\n")
        raise
    finally:
        if server is not None:
            server.stop()
        db.dispose()
        if cfg.keep:
            print(f"kept {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--records", type=int, default=2000, help="records timed (default 2000)")
    p.add_argument("--clients", type=int, default=8, help="concurrent HTTP clients (8)")
    p.add_argument("--warmup", type=int, default=200, help="records created before timing")
    p.add_argument("--workers", type=int, default=0,
                   help="worker threads in the server (0: intake only; runs wait for workers)")
    p.add_argument("--synchronous", default="FULL", help="SQLite synchronous (FULL)")
    p.add_argument("--db", default=None,
                   help="postgresql://… server for a fresh database (default: SQLite file)")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--profile", default=None, help="write the server's yappi stats here")
    p.add_argument("--keep", action="store_true", help="keep the project folder and database")
    p.add_argument("--json", action="store_true", help="print every repetition as JSON")
    a = p.parse_args(argv)
    if a.records < 1 or a.clients < 1 or a.warmup < 0 or a.repeat < 1 or a.workers < 0:
        p.error("--records, --clients and --repeat must be ≥ 1; --warmup, --workers ≥ 0")
    cfg = Config(a.records, a.clients, a.warmup, a.workers, a.synchronous.upper(), a.db,
                 a.profile, a.keep)
    reps = []
    for rep in range(a.repeat):
        try:
            r = once(cfg, rep)
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        reps.append(r)
        lat = r["latency_ms"]
        print(f"rep {rep + 1}: {r['records_per_s']:7.1f} records/s  p50 {lat['p50']} ms  "
              f"p95 {lat['p95']} ms  p99 {lat['p99']} ms  server CPU "
              f"{r['server_cpu_ms_per_record']:.2f} ms/record ({r['server_cpu_share']:.2f} "
              f"cores)  driver CPU {r['driver_cpu_ms_per_record']:.2f} ms/record  "
              f"verified {r['verified']['records']} records / {r['verified']['runs']} runs  "
              f"load {r['load_before']} -> {r['load_after']}", flush=True)
    if a.repeat > 1:
        med = statistics.median(r["records_per_s"] for r in reps)
        cpu = statistics.median(r["server_cpu_ms_per_record"] for r in reps)
        p99 = statistics.median(r["latency_ms"]["p99"] for r in reps)
        print(f"median of {a.repeat}: {med:.1f} records/s, p99 {p99} ms, server CPU "
              f"{cpu:.2f} ms/record")
    if a.json:
        print(json.dumps(reps, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
