"""Callout benchmark: N callout steps against a loopback server that answers in 100 ms,
completed by ONE worker process (issue 12 item 6; target: >= 500 steps/s on SQLite).

The server is another process (asyncio, keep-alive, answers every request after
``--delay`` seconds), so its work does not share the worker's interpreter. Setup creates N
records of an object whose orchestration is one callout step (``max_in_flight`` from
``--in-flight``). Then ``--threads`` worker threads of this process (one HTTP event loop
between them) run until nothing is left, with a feeder creating the records at ``--rate``
per second (0: all created before the workers start, a backlog).

Reports steps/s and this process's CPU per step (the worker threads and their HTTP loop;
with ``--rate 0`` the records are made before the window) over the measured window, and the added latency of each step: from its
``step_started`` to its ``step_completed`` audit event (both stamped at their commits),
minus the server's delay; with a backlog this includes the wait in the queue, with a
``--rate`` below capacity it is the engine's own overhead. Verifies that every step
completed exactly once and the server saw each idempotency key once.

    PYTHONPATH=src python bench/callouts.py --steps 5000 --threads 2 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from baton.clock import parse_iso
from baton.runtime.engine import Engine
from baton.runtime.worker import run_workers

DEFS = """
kind: object
name: Ping
fields:
  n: {{type: int}}
---
kind: connection
name: remote
type: http
base_url: http://127.0.0.1:{port}
max_in_flight: {in_flight}
timeout: {{connect: 5s, read: 30s}}
---
kind: orchestration
name: bench_callout
trigger: {{type: record, object: Ping, on: [create]}}
stages:
  - name: call
    steps:
      - {{name: ping, type: callout, connection: remote, method: POST, path: /ping,
         body: {{n: =record.n}}, output: {{ok: =response.body.ok}}}}
"""


# ---- the server (its own process) ------------------------------------------------------------
def _serve(port: int, delay: float, ready: Any, counts: Any) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                    if line.lower().startswith(b"idempotency-key:"):
                        keys.append(line.split(b":", 1)[1].strip())
                if length:
                    await reader.readexactly(length)
                await asyncio.sleep(delay)
                body = b'{"ok": true}'
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    keys: list[bytes] = []

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        ready.set()
        async with server:
            while True:
                await asyncio.sleep(0.2)
                counts.value = len(keys)
                if len(set(keys)) != len(keys):
                    counts.value = -1  # a key seen twice

    asyncio.run(main())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- the benchmark --------------------------------------------------------------------------------
def run(steps: int, threads: int, batch: int, in_flight: int, delay: float, rate: float,
        db_url: str | None) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="baton-bench-callouts-"))
    db_url = db_url or f"sqlite:///{folder / 'bench.db'}"
    port = _free_port()
    ctx = multiprocessing.get_context("spawn")
    ready, counts = ctx.Event(), ctx.Value("i", 0)
    server = ctx.Process(target=_serve, args=(port, delay, ready, counts), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the loopback server did not start")
        engine = Engine(db_url)
        try:
            (folder / "defs.yaml").write_text(DEFS.format(port=port, in_flight=in_flight))
            engine.deploy([folder / "defs.yaml"], known_flows=None)
            return _measure(engine, steps, threads, batch, rate, delay, counts, db_url)
        finally:
            engine.close()
    finally:
        server.kill()
        server.join(10)


def _create(engine: Engine, start: int, count: int) -> None:
    engine.create_records("Ping", [{"n": i} for i in range(start, start + count)])


def _measure(engine: Engine, steps: int, threads: int, batch: int, rate: float, delay: float,
             counts: Any, db_url: str) -> dict[str, Any]:
    feeder: threading.Thread | None = None
    if rate <= 0:
        for start in range(0, steps, 500):
            _create(engine, start, min(500, steps - start))
    else:
        def feed() -> None:
            made, t0 = 0, time.monotonic()
            while made < steps:
                due = int((time.monotonic() - t0) * rate) + 1
                n = min(due - made, steps - made, 200)
                if n > 0:
                    _create(engine, made, n)
                    made += n
                time.sleep(0.01)
        feeder = threading.Thread(target=feed, daemon=True)
    t0, cpu0 = time.perf_counter(), time.process_time()
    done = threading.Event()
    workers: list[Any] = []

    def work() -> None:
        run_workers(engine, threads, until_idle=False, batch=batch, _created=workers)
        done.set()

    wt = threading.Thread(target=work, daemon=True)
    wt.start()
    if feeder is not None:
        feeder.start()
    while _completed(engine) < steps:
        time.sleep(0.1)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0  # this process: the worker threads, their HTTP loop
    for w in workers:
        w.stop()
    done.wait(30)
    result = _verify(engine, steps, elapsed, delay, counts, db_url, threads, batch, rate)
    result["cpu_ms_per_step"] = round(cpu * 1000 / steps, 3)
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    return result


def _completed(engine: Engine) -> int:
    """Runs completed so far: one count over the status index. (This polling runs in the
    measured process every 0.1 s, so it must stay cheap: grouping every run by
    orchestration, status and stage cost ~12 % of the window's CPU at 4,000 steps.)"""
    from sqlalchemy import func, select

    from baton.store import schema as s

    t = s.runs
    with engine.store.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(t)
                                   .where(t.c.status == "completed")).scalar_one())


def _verify(engine: Engine, steps: int, elapsed: float, delay: float, counts: Any,
            db_url: str, threads: int, batch: int, rate: float) -> dict[str, Any]:
    from sqlalchemy import select

    from baton.store import schema as s

    started: dict[str, str] = {}
    completed: dict[str, str] = {}
    per_run: Counter[str] = Counter()
    with engine.store.read() as tx:
        run_ids = [r for (r,) in tx.conn.execute(select(s.runs.c.id))]
        for run_id in run_ids:  # (a run's events may be stored packed: read them per run)
            for e in tx.events_txn(run_id=run_id):
                if e["type"] == "step_started":
                    started[run_id] = e["at"]
                elif e["type"] == "step_completed":
                    completed[run_id] = e["at"]
                    per_run[run_id] += 1
    added = sorted(max(0.0, (parse_iso(completed[r]) - parse_iso(started[r])).total_seconds()
                       - delay) * 1000 for r in completed if r in started)
    time.sleep(0.5)  # the server counts its keys every 0.2 s
    ok = (len(completed) == steps and all(v == 1 for v in per_run.values())
          and counts.value >= steps)
    return {
        "benchmark": "callouts", "database": db_url.split(":", 1)[0], "steps": steps,
        "threads": threads, "batch": batch, "rate": rate, "server_delay_ms": delay * 1000,
        "seconds": round(elapsed, 3), "steps_per_s": round(steps / elapsed, 1),
        "added_latency_p50_ms": round(added[len(added) // 2], 1) if added else None,
        "added_latency_p99_ms": round(added[int(len(added) * 0.99) - 1], 1) if added else None,
        "server_requests": counts.value, "verified": ok,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2, help="worker threads of the one process")
    ap.add_argument("--batch", type=int, default=128, help="jobs a worker thread claims at once")
    ap.add_argument("--in-flight", type=int, default=256, help="the connection's max_in_flight")
    ap.add_argument("--delay", type=float, default=0.1, help="the server's answer time (s)")
    ap.add_argument("--rate", type=float, default=0.0, help="records created per second while "
                    "the workers run (0: all before)")
    ap.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    result = run(a.steps, a.threads, a.batch, a.in_flight, a.delay, a.rate, a.db)
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{result['steps']} callout steps in {result['seconds']} s: "
              f"{result['steps_per_s']} steps/s, {result['cpu_ms_per_step']} ms CPU per step "
              f"(load {result['loadavg_1m']}); added latency p50 "
              f"{result['added_latency_p50_ms']} ms, p99 {result['added_latency_p99_ms']} ms; "
              f"verified: {result['verified']}")
    return 0 if result["verified"] else 1


if __name__ == "__main__":
    sys.exit(main())
