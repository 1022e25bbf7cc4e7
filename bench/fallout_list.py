"""The Fallout list after an outage: N runs with a step in fallout, read by its three faces.

A database of N runs of ``outage`` (two background steps whose flow fails without retry,
one of three errors each, so the Fallout page shows six groups) is built through the
engine: the runs are started (a worker runs until idle after each ``--batch`` of them),
so every run has two steps in fallout (2N steps), as a real outage leaves them. Then,
on that file (or a PostgreSQL database on ``--db``'s server, dropped afterwards):

- ``GET /api/fallout?limit=50`` (an operator's API token), the first page and a page at
  offset 20,000 when there are so many;
- ``GET /fallout``, the Fallout page (a logged-in operator's session): its totals, its
  "By error" groups, its first 50 steps;
- ``baton fallout list --limit 50`` (the CLI, a process of its own: the lean reader on
  SQLite, the engine on PostgreSQL);

each ``--repeat`` times (the medians of wall and CPU time are reported: the CPU time is
the figure to compare on a shared machine; PostgreSQL's own is not in it), over loopback HTTP to
an in-process app (Starlette's test client: the request's whole server side, no
network). Run it with an older tree on PYTHONPATH for the before figures (each tree
builds its own database: the schemas differ).

    PYTHONPATH=src python bench/fallout_list.py --runs 20000
    PYTHONPATH=src python bench/fallout_list.py --runs 20000 \\
        --db postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from baton.errors import StepFailure
from baton.flows import FlowContext, flow
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker

OUTAGE = textwrap.dedent("""
    kind: orchestration
    name: outage
    trigger:
      type: autolaunched
      input: {n: {type: int, required: true}}
    stages:
      - name: only
        steps:
          - {name: charge, type: background, flow: bench_fallout.charge, retry: {max: 1}}
          - {name: notify, type: background, flow: bench_fallout.notify, retry: {max: 1}}
          - {name: close, type: background, flow: bench_fallout.ok, after: [charge, notify]}
    """)
ERRORS = ("billing answered 503", "billing timed out after 30 s", "card declined: do not honor")
PASSWORD = "pw-bench-fallout-1"


@flow("bench_fallout.charge")
def _charge(ctx: FlowContext) -> dict[str, Any]:
    raise StepFailure(ERRORS[int(ctx.input["n"]) % 3], retryable=False)


@flow("bench_fallout.notify")
def _notify(ctx: FlowContext) -> dict[str, Any]:
    raise StepFailure(f"mail relay refused: {ERRORS[int(ctx.input['n']) % 3]}", retryable=False)


@flow("bench_fallout.ok")
def _ok(ctx: FlowContext) -> dict[str, Any]:
    return {}


def build(url: str, n: int, batch: int) -> None:
    engine = Engine(url)
    try:
        engine.deploy(texts={"outage.yaml": OUTAGE}, known_flows=None, actor="bench")
        engine.directory.add_user("opal", roles=["operator"], password=PASSWORD)
        worker = Worker(engine, batch=256)
        for start in range(0, n, batch):  # (a worker pass per batch: its jobs stay few)
            for i in range(start, min(n, start + batch)):
                engine.start("outage", {"n": i}, actor="bench")
            worker.run(until_idle=True)
    finally:
        engine.close()


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """The median wall time and the median CPU time (this process's and its children's:
    the CLI's) of ``repeat`` calls, and the last call's answer."""
    spans, cpus, out = [], [], None
    for _ in range(repeat):
        c0, t0 = _cpu(), time.perf_counter()
        out = fn()
        spans.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    return statistics.median(spans), statistics.median(cpus), out


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(url: str, n: int, repeat: int) -> None:
    from fastapi.testclient import TestClient

    from baton.web.app import create_app

    engine = Engine(url)
    try:
        token = engine.directory.create_token("opal", "bench")[1]
        with TestClient(create_app(engine), base_url="http://127.0.0.1") as client:
            auth = {"Authorization": f"Bearer {token}"}

            def api(offset: int = 0) -> dict[str, Any]:
                r = client.get("/api/fallout", params={"limit": 50, "offset": offset},
                               headers=auth)
                assert r.status_code == 200, r.text[:300]
                return r.json()  # type: ignore[no-any-return]

            med, cpu, page = timed(api, repeat)
            assert page["total"] == 2 * n and len(page["items"]) == min(50, 2 * n), \
                (page["total"], len(page["items"]))
            print(f"  GET /api/fallout?limit=50            median {med * 1000:9.1f} ms  "
                  f"CPU {cpu * 1000:9.1f} ms  (total {page['total']:,})", flush=True)
            if 2 * n > 20_000:
                med, cpu, page = timed(lambda: api(20_000), repeat)
                print(f"  GET /api/fallout?limit=50&offset=20000 median {med * 1000:7.1f} ms  "
                      f"CPU {cpu * 1000:9.1f} ms", flush=True)
            form = client.get("/login")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
            r = client.post("/login", data={"username": "opal", "password": PASSWORD,
                                             **({"csrf_token": csrf[1]} if csrf else {})},
                            follow_redirects=False)
            assert r.status_code in (302, 303), r.text[:300]

            def ui() -> str:
                r = client.get("/fallout")
                assert r.status_code == 200, r.text[:300]
                return r.text

            med, cpu, html = timed(ui, repeat)
            assert f"{2 * n:,} step" in html, "the page's total"
            assert html.count('<section class="fallout"') == min(50, 2 * n)
            print(f"  GET /fallout (the page)              median {med * 1000:9.1f} ms  "
                  f"CPU {cpu * 1000:9.1f} ms", flush=True)
    finally:
        engine.close()
    baton = Path(sys.executable).with_name("baton")
    cmd = [str(baton), "--db", url, "fallout", "list", "--limit", "50", "--json"]
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}

    def cli() -> str:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        assert done.returncode == 0, done.stderr[-500:]
        return done.stdout

    med, cpu, out = timed(cli, repeat)
    assert out.count('"id"') >= min(50, 2 * n), out[:300]
    print(f"  baton fallout list --limit 50        median {med * 1000:9.1f} ms  "
          f"CPU {cpu * 1000:9.1f} ms", flush=True)


def _pg(admin: str, sql: str) -> None:
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(sql))
    eng.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="20000", help="N (runs in fallout), comma-separated")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--db", default="", help="a PostgreSQL admin URL (default: SQLite files)")
    args = p.parse_args()
    logging.getLogger("baton").setLevel(logging.ERROR)  # (2N steps fail: not a line each)
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.runs.split(",")):
            name = f"baton_fallout_{uuid.uuid4().hex[:8]}"
            if args.db:
                _pg(args.db, f'CREATE DATABASE "{name}"')
                url = args.db.rsplit("/", 1)[0] + "/" + name
            else:
                url = f"sqlite:///{Path(tmp) / f'{name}.db'}"
            try:
                t0 = time.perf_counter()
                build(url, n, args.batch)
                print(f"N={n:,} runs in fallout ({2 * n:,} steps) built in "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
                measure(url, n, args.repeat)
            finally:
                if args.db:
                    _pg(args.db, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
