"""Idle cost and prompt start: what an idle Baton process costs, and how soon work starts.

Issue 19, target 2 ("no spin-waiting"): an idle or lock-waiting worker blocks. This script
measures it from the outside, with real processes:

1. **Idle CPU.** A fresh database (SQLite file in a temporary folder, or a fresh PostgreSQL
   database on ``--db``'s server) with examples/case_triage deployed; then, one at a time,
   ``baton worker`` and ``baton serve --workers 1`` (the API with its in-process worker) are
   started as subprocesses, given ``--settle`` seconds to finish starting, and watched for
   ``--seconds``: their CPU time (user + system, all threads, from ``/proc/PID/stat``) and
   their context switches (voluntary + involuntary, summed over ``/proc/PID/task/*``: each
   wake-up of a thread is at least one). Target: < 1 % of a core.
2. **First-step latency at a moderate load** (``--latency``): ``baton bench triage --runs N
   --rate R`` (default 2,000 at 100 runs/s), whose record-created → first-step-started
   percentiles come from what the database recorded. Target: p99 <= 20 ms.

Linux only (``/proc``). Prints a table, or one JSON object with ``--json``::

    PYTHONPATH=src python bench/idle.py --seconds 20 --latency
    PYTHONPATH=src python bench/idle.py --db postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.triage import BenchConfig, BenchError, _Databases, find_project, run_benchmark

READY_TIMEOUT = 120.0


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread) of a live process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_switches(pid: int) -> int:
    """Context switches of every thread of a live process (each wake-up counts)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
        except OSError:  # a thread that ended meanwhile
            continue
    return total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _baton(project: Path, url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "baton.cli.main", "--project", str(project), "--db", url, *args]


SRC = [REPO / "src"]  # the Baton the measured processes run (--src: older code, side by side)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_DB", "BATON_FAULT")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC[0]), env.get("PYTHONPATH")) if p)
    return env


def deploy(project: Path, url: str) -> None:
    from baton.project import load_project
    from baton.runtime.engine import Engine

    engine = Engine(url)
    try:
        proj = load_project(project)
        proj.import_flows()
        engine.deploy([proj.definitions_dir], actor="bench")
    finally:
        engine.close()


def _worker_registered(url: str, pid: int) -> bool:
    from sqlalchemy import select

    from baton.store import schema as s
    from baton.store.sql import SqlStore

    store = SqlStore(url)
    try:
        with store.read() as tx:
            return pid in {r[0] for r in tx.conn.execute(select(s.workers.c.pid))}
    finally:
        store.close()


def _http_up(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # it answered
    except OSError:
        return False


@contextmanager
def started(cmd: list[str], ready: Any, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A process, once ``ready(pid)`` holds; stopped (SIGTERM, then SIGKILL) afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=_env(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + READY_TIMEOUT
            while not ready(proc.pid):
                if proc.poll() is not None:
                    raise BenchError(f"{' '.join(cmd[3:])} exited with {proc.returncode}:\n"
                                     + log.read_text()[-2000:])
                if time.monotonic() > deadline:
                    raise BenchError(f"{' '.join(cmd[3:])} not ready after {READY_TIMEOUT:.0f} s")
                time.sleep(0.2)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def measure(pid: int, seconds: float) -> dict[str, Any]:
    cpu0, sw0, t0 = proc_cpu_s(pid), proc_switches(pid), time.monotonic()
    time.sleep(seconds)
    cpu1, sw1, t1 = proc_cpu_s(pid), proc_switches(pid), time.monotonic()
    wall = t1 - t0
    return {"seconds": round(wall, 2), "cpu_s": round(cpu1 - cpu0, 3),
            "cpu_percent_of_a_core": round(100 * (cpu1 - cpu0) / wall, 3),
            "wakeups_per_s": round((sw1 - sw0) / wall, 1)}


def idle_figures(db: str | None, seconds: float, settle: float) -> dict[str, Any]:
    project = find_project(None)
    dbs = _Databases(db, keep=False)
    url = dbs.fresh(1)
    out: dict[str, Any] = {}
    try:
        deploy(project, url)
        with tempfile.TemporaryDirectory(prefix="baton-idle-") as logs:
            with started(_baton(project, url, "worker", "--no-migrate"),
                         lambda pid: _worker_registered(url, pid),
                         Path(logs) / "worker.log") as proc:
                time.sleep(settle)
                out["worker"] = measure(proc.pid, seconds)
            port = _free_port()
            with started(_baton(project, url, "serve", "--no-migrate", "--port", str(port),
                                "--workers", "1"),
                         lambda _pid: _http_up(port), Path(logs) / "serve.log") as proc:
                time.sleep(settle)
                out["serve"] = measure(proc.pid, seconds)
    finally:
        dbs.dispose(url)
        dbs.close()
    out["database"] = dbs.dialect
    return out


def latency_figures(db: str | None, runs: int, rate: float) -> dict[str, Any]:
    from baton.settings import Settings

    r = run_benchmark(BenchConfig(runs=runs, db=db, rate=rate, settings=Settings.from_environment()))
    rep = r["repetitions"][0]
    return {"runs": runs, "rate": rate, "runs_per_s": r["runs_per_s"],
            "latency_first_step_ms": r["latency_first_step_ms"],
            "latency_complete_ms": r["latency_complete_ms"],
            "cpu_s_driver": rep["cpu_s_driver"], "cpu_s_workers": rep["cpu_s_workers"],
            "cpu_ms_per_run": rep["cpu_ms_per_run"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--db", help="postgresql://USER@HOST/DB (a fresh database is made) or "
                                     "sqlite:///FOLDER/NAME.db; default: SQLite in a temporary folder")
    parser.add_argument("--seconds", type=float, default=20.0, help="idle time measured per process")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after start before measuring")
    parser.add_argument("--latency", action="store_true",
                        help="also run the triage benchmark at a moderate rate for first-step latency")
    parser.add_argument("--runs", type=int, default=2000, help="--latency: runs (default 2000)")
    parser.add_argument("--rate", type=float, default=100.0, help="--latency: runs/s offered (default 100)")
    parser.add_argument("--src", type=Path, help="the Baton source folder the measured worker and "
                                                 "serve processes run (default: this checkout's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.src is not None:
        SRC[0] = args.src.resolve()
    if not Path("/proc/self/stat").exists():
        print("bench/idle.py needs Linux (/proc)", file=sys.stderr)
        return 2
    load = round(os.getloadavg()[0], 2)
    try:
        result: dict[str, Any] = {"loadavg_1m_at_start": load,
                                  "idle": idle_figures(args.db, args.seconds, args.settle)}
        if args.latency:
            result["latency"] = latency_figures(args.db, args.runs, args.rate)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(result))
        return 0
    idle = result["idle"]
    print(f"Idle, {idle['database']}, {args.seconds:g} s each (load {load} → "
          f"{result['loadavg_1m_at_end']}):")
    for name in ("worker", "serve"):
        m = idle[name]
        print(f"  baton {name:<6}  CPU {m['cpu_s']:.3f} s = {m['cpu_percent_of_a_core']:.3f} % of a "
              f"core, {m['wakeups_per_s']:.1f} context switches/s")
    if "latency" in result:
        lat = result["latency"]
        f, c = lat["latency_first_step_ms"], lat["latency_complete_ms"]
        print(f"Latency, {lat['runs']} runs offered at {lat['rate']:g}/s: record → first step "
              f"p50/p95/p99 = {f['p50']}/{f['p95']}/{f['p99']} ms; → run completed "
              f"{c['p50']}/{c['p95']}/{c['p99']} ms; CPU {lat['cpu_ms_per_run']} ms per run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
