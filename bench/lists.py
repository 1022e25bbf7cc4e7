"""List benchmark: the Monitor, the Work Guide and the list endpoints with 100,000 runs
(1 in 50 of the open ones past its SLA: the "needs attention" filter reads 2,000 of them).

Seeding (fast, and rows the engine itself wrote): a few dozen *template* cases go through
the real engine and workers on virtual time (examples/case_triage): waiting at triage
with an open work item in queue tier1, escalated once and waiting in tier2, closed
(completed, survey sent) and canceled. Their rows (record, run with its state, work item)
are then copied ``--open`` + ``--finished`` times with new ids, the record's subject
changed and every timestamp shifted (creation spread over ``--days``), ids replaced inside
the run's state too; so each copy is exactly what the engine writes for such a case,
without driving 150,000 runs through the workers (hours on this machine). Not copied:
audit events and pending SLA timer jobs (no list reads them; the server runs no workers).

Measuring: a real ``baton serve --workers 0`` subprocess on the seeded database (the code
on PYTHONPATH: run it once with the old tree on PYTHONPATH for the before figures), and
HTTP requests on loopback with httpx, authenticated by API token (an operator, and an agent
in queue tier1 for their own Work Guide). Each request is repeated ``--repeat`` times
after one warm-up; the median and p95 latency of each are printed, and the server
process's CPU time per request. The Monitor's filters are tried in every combination
(values of a waiting run), as are the Work Guide's orders for an operator and an agent.
PostgreSQL is VACUUM ANALYZEd after seeding, as autovacuum would do; SQLite is left as
Baton leaves it (no ANALYZE).

    PYTHONPATH=src python bench/lists.py --db sqlite --db postgres
    PYTHONPATH=/path/to/old/src python bench/lists.py ...   # before
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx2 as httpx
from sqlalchemy import insert, select

from baton.clock import VirtualClock, iso, parse_iso
from baton.ids import UlidIds
from baton.project import Project
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.store import schema

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "case_triage"
ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z")
CHUNK = 2000


# ---- seeding ------------------------------------------------------------------------------
def _templates(engine: Engine, clock: VirtualClock) -> dict[str, list[str]]:
    """Cases driven by the engine into each shape; their record ids by shape."""
    worker = Worker(engine)
    shapes: dict[str, list[str]] = {}

    def make(n: int, tag: str) -> list[str]:
        recs = engine.create_records("Case", [{"subject": f"{tag} {i}", "origin": "Web"}
                                              for i in range(n)], actor="bench")
        worker.run(until_idle=True)
        clock.advance(timedelta(minutes=3))
        return [r["id"] for r in recs]

    def items_of(ids: list[str]) -> list[Any]:
        return [i for rid in ids for i in engine.list_work(record_id=rid)]

    shapes["tier1"] = make(16, "waiting")
    shapes["tier2"] = make(4, "escalated")
    for item in items_of(shapes["tier2"]):
        engine.complete(item["id"], "agent", {"resolution": "escalate"})
    worker.run(until_idle=True)
    shapes["completed"] = make(9, "closed")
    for item in items_of(shapes["completed"]):
        engine.complete(item["id"], "agent", {"resolution": "close", "notes": "answered"})
    worker.run(until_idle=True)
    shapes["canceled"] = make(1, "duplicate")
    for rid in shapes["canceled"]:
        for run in engine.list_runs(record_id=rid):
            engine.cancel_run(run.id, "duplicate case", actor="bench")
    worker.run(until_idle=True)
    return shapes


def _breached(engine: Engine, clock: VirtualClock) -> list[str]:
    """Cases waiting at triage past its 4 h SLA: their runs need attention (``attention``
    2). Made after the other templates' rows are read: the SLA sweep reaches every run."""
    recs = engine.create_records("Case", [{"subject": f"late {i}", "origin": "Web"}
                                          for i in range(4)], actor="bench")
    worker = Worker(engine)
    worker.run(until_idle=True)
    clock.advance(timedelta(hours=5))
    worker.run(until_idle=True)
    return [r["id"] for r in recs]


def _rows(engine: Engine, record_ids: list[str]) -> list[dict[str, list[dict[str, Any]]]]:
    out = []
    with engine.store.read() as tx:
        for rid in record_ids:
            got: dict[str, list[dict[str, Any]]] = {}
            for table, col in ((schema.records, schema.records.c.id),
                               (schema.runs, schema.runs.c.record_id),
                               (schema.work_items, schema.work_items.c.record_id)):
                got[table.name] = [dict(r._mapping) for r in
                                   tx.conn.execute(select(table).where(col == rid))]
            out.append(got)
    return out


def _shift(value: Any, delta: timedelta, ids: dict[str, str]) -> Any:
    """A template row's value for a copy: ids replaced, timestamps moved by ``delta``."""
    if isinstance(value, str):
        if value in ids:
            return ids[value]
        if ISO.fullmatch(value):
            return iso(parse_iso(value) + delta)
        return value
    if isinstance(value, dict):
        return {k: _shift(v, delta, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_shift(v, delta, ids) for v in value]
    return value


def seed(url: str, n_open: int, n_finished: int, days: int) -> dict[str, Any]:
    clock = VirtualClock(parse_iso("2026-01-01T08:00:00.000Z"))
    engine = Engine(url, clock=clock)
    Project(EXAMPLE, "", ("flows",)).import_flows()
    engine.deploy([EXAMPLE / "definitions"], actor="bench")
    engine.directory.add_user("op", roles=["operator"], email="op@example.com")
    engine.directory.add_user("ann", roles=["agent"], queues=["tier1"], email="ann@example.com")
    tokens = {u: engine.directory.create_token(u, "bench")[1] for u in ("op", "ann")}
    shapes = _templates(engine, clock)
    templates = {k: _rows(engine, v) for k, v in shapes.items()}
    templates["breached"] = _rows(engine, _breached(engine, clock))
    # the open items: 4 in 5 at tier1, 1 in 50 past its SLA (the Monitor's "needs
    # attention"); finished runs: 9 in 10 completed
    plan = [("breached" if i % 50 == 0 else "tier1" if i % 5 else "tier2")
            for i in range(n_open)] + \
           [("completed" if i % 10 else "canceled") for i in range(n_finished)]
    start = parse_iso("2025-12-01T00:00:00.000Z")
    step = timedelta(days=days) / max(1, len(plan))
    ulid = UlidIds()
    batches: dict[str, list[dict[str, Any]]] = {t.name: [] for t in
                                                (schema.records, schema.runs, schema.work_items)}
    counters = {k: itertools.cycle(v) for k, v in templates.items()}
    began = time.perf_counter()
    order = sorted(range(len(plan)), key=lambda i: (i * 7919) % len(plan))  # shapes interleaved
    for n, i in enumerate(order):
        tpl = next(counters[plan[i]])
        rec = tpl[schema.records.name][0]
        delta = start + step * n - parse_iso(rec["created_at"])
        ids = {rec["id"]: ulid.new("rec")}
        for r in tpl[schema.runs.name]:
            ids[r["id"]] = ulid.new("run")
        for w in tpl[schema.work_items.name]:
            ids[w["id"]] = ulid.new("wi")
        for table in (schema.records, schema.runs, schema.work_items):
            for row in tpl[table.name]:
                new = {k: _shift(v, delta, ids) for k, v in row.items()}
                if table is schema.records:
                    new["data"] = {**new["data"], "subject": f"Case {n}: invoice question"}
                batches[table.name].append(new)
        if len(batches[schema.runs.name]) >= CHUNK or n == len(order) - 1:
            with engine.store.write() as tx:
                for table in (schema.records, schema.runs, schema.work_items):
                    if batches[table.name]:
                        tx.conn.execute(insert(table), batches[table.name])
                        batches[table.name] = []
    seconds = time.perf_counter() - began
    engine.close()
    return {"tokens": tokens, "seed_seconds": seconds, "rows": len(plan)}


# ---- the server and the requests ----------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests_to_time(sample: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(name, who, path): every Monitor filter combination, the Work Guide, the lists."""
    out = []
    values = {"orchestration": "case_triage", "version": "1", "status": "in_progress",
              "stage": "triage", "record_id": sample["record_id"]}
    for n in range(len(values) + 1):
        for combo in itertools.combinations(values, n):
            query = "&".join(f"{k}={values[k]}" for k in combo)
            out.append((f"GET /api/runs?limit=50{'&' + query if query else ''}", "op",
                        f"/api/runs?limit=50{'&' + query if query else ''}"))
    for st in ("completed", "canceled", "failed"):
        out.append((f"GET /api/runs?limit=50&status={st}", "op", f"/api/runs?limit=50&status={st}"))
    for query in ("attention=true", "attention=true&orchestration=case_triage",
                  "attention=true&status=in_progress&stage=triage"):
        out.append((f"GET /api/runs?limit=50&{query}", "op", f"/api/runs?limit=50&{query}"))
    for order in ("created", "due", "priority"):
        out.append((f"GET /api/work?order={order} (operator: all)", "op", f"/api/work?order={order}"))
        out.append((f"GET /api/work?order={order} (agent: tier1)", "ann", f"/api/work?order={order}"))
    out += [("GET /api/records", "op", "/api/records"),
            ("GET /api/records?object_type=Case", "op", "/api/records?object_type=Case"),
            ("GET /api/records?object_type=Account", "op", "/api/records?object_type=Account"),
            ("page /runs (Monitor)", "op", "/runs"),
            ("page /runs?status=in_progress&current_stage=triage", "op",
             "/runs?status=in_progress&current_stage=triage"),
            ("page /runs?attention=true (needs attention)", "op", "/runs?attention=true"),
            ("page /work?show=all (operator)", "op", "/work?show=all"),
            ("page /work (agent: tier1)", "ann", "/work"),
            ("page /records", "op", "/records")]
    return out


def measure(url: str, tokens: dict[str, str], repeat: int, workdir: Path) -> dict[str, Any]:
    (workdir / "baton.toml").write_text(f'database = "{url}"\nflows = []\n')
    port = _free_port()
    env = {**os.environ, "BATON_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-c", "from baton.cli.main import main; main()",
         "--project", str(workdir), "serve", "--port", str(port), "--workers", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            deadline = time.time() + 60
            while True:
                try:
                    if client.get("/login").status_code < 500:
                        break
                except httpx.TransportError:
                    pass
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit(f"baton serve did not start: {server.stderr.read() if server.stderr else ''}")
                time.sleep(0.2)
            auth = {who: {"Authorization": f"Bearer {t}"} for who, t in tokens.items()}
            first = client.get("/api/runs?limit=1&status=in_progress", headers=auth["op"]).json()
            sample = first["items"][0]
            results = {}
            for name, who, path in requests_to_time(sample):
                r = client.get(path, headers=auth[who])  # warm-up, and the answer checked
                if r.status_code != 200:
                    raise SystemExit(f"{name}: {r.status_code} {r.text[:300]}")
                body = r.json() if path.startswith("/api") else None
                times = []
                cpu0 = _cpu_seconds(server.pid)
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    client.get(path, headers=auth[who])
                    times.append(time.perf_counter() - t0)
                cpu = (_cpu_seconds(server.pid) - cpu0) / repeat
                times.sort()
                results[name] = {
                    "median_ms": round(statistics.median(times) * 1000, 1),
                    "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)] * 1000, 1),
                    "server_cpu_ms": round(cpu * 1000, 1),
                    "items": len(body["items"]) if body else None,
                    "total": body.get("total") if body else None,
                    "estimated": body.get("total_estimated") if body else None}
            return results
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _pg_database(admin_url: str, name: str, drop_only: bool = False) -> str:
    import psycopg
    from sqlalchemy.engine import make_url

    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if not drop_only:
            admin.execute(f"CREATE DATABASE {name}")
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", action="append", choices=["sqlite", "postgres"],
                   help="database(s) to measure (default: both)")
    p.add_argument("--open", type=int, default=100_000, help="runs waiting with an open item")
    p.add_argument("--finished", type=int, default=50_000, help="completed/canceled runs")
    p.add_argument("--days", type=int, default=60, help="creation spread over this many days")
    p.add_argument("--repeat", type=int, default=20, help="timed requests per list")
    p.add_argument("--pg-url", default=os.environ.get(
        "BATON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    p.add_argument("--json", type=Path, help="write the figures here as JSON too")
    args = p.parse_args()
    report: dict[str, Any] = {"load_before": os.getloadavg()}
    for db in args.db or ["sqlite", "postgres"]:
        with tempfile.TemporaryDirectory(prefix="baton-lists-") as tmp:
            pg_name = f"baton_bench_lists_{os.getpid()}"
            url = (_pg_database(args.pg_url, pg_name) if db == "postgres"
                   else f"sqlite:///{Path(tmp) / 'baton.db'}")
            try:
                seeded = seed(url, args.open, args.finished, args.days)
                if db == "postgres":
                    import psycopg

                    with psycopg.connect(url, autocommit=True) as conn:
                        conn.execute("VACUUM ANALYZE")
                print(f"[{db}] seeded {seeded['rows']:,} cases (record, run, and work item "
                      f"for the open ones) in {seeded['seed_seconds']:.0f} s", flush=True)
                figures = measure(url, seeded["tokens"], args.repeat, Path(tmp))
            finally:
                if db == "postgres":
                    _pg_database(args.pg_url, pg_name, drop_only=True)
        report[db] = figures
        width = max(len(n) for n in figures)
        print(f"\n[{db}] load {os.getloadavg()[0]:.2f}  {'request':<{width}}  median    p95  "
              f"server CPU  items  total")
        for name, f in figures.items():
            total = "" if f["total"] is None else f"{f['total']}{'~' if f['estimated'] else ''}"
            print(f"  {name:<{width}}  {f['median_ms']:6.1f} {f['p95_ms']:6.1f}  "
                  f"{f['server_cpu_ms']:7.1f} ms  {f['items'] if f['items'] is not None else '':>5}  {total}")
    report["load_after"] = os.getloadavg()
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
