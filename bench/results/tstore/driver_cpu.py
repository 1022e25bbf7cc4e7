"""The bench driver's own work in one process, natively: CPU seconds (time.process_time) of
creating N cases (100 per transaction) and of listing and completing their triage items (the
bench's chunks), a worker run in the same process between phases (not counted). Warmed
first (statements compiled, imports done) with 300 cases end to end.

    PYTHONPATH=CHECKOUT/src python bench/results/tstore/driver_cpu.py CHECKOUT 1000
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT, N = Path(sys.argv[1]), int(sys.argv[2])
sys.path.insert(0, str(ROOT))

import baton.runtime.definitions as defs
import baton.runtime.worker as wm
from baton.project import load_project
from baton.runtime.engine import Engine
from bench import triage as bt

defs.REFRESH_INTERVAL_S = 1e9
wm.CHAIN_SECONDS = 1e9
url = f"sqlite:///{tempfile.mkdtemp()}/b.db"
project = load_project(ROOT / "examples" / "case_triage")
project.import_flows()
e = Engine(url)
e.deploy([project.definitions_dir], actor="bench")
w = wm.Worker(e, batch=256, heartbeat_interval=1e9)


def create(lo: int, hi: int) -> None:
    for i in range(lo, hi + 1, 100):
        e.create_records("Case", [bt.case_fields(j) for j in range(i, min(hi, i + 99) + 1)],
                         actor="bench")


def complete() -> int:
    items = [dict(it) for q in bt.QUEUES for it in e.list_work(queue=q, limit=100_000)]
    if items:
        bt._complete_items(e, items)
    return len(items)


create(1, 300)
w.run(until_idle=True)
while complete():
    w.run(until_idle=True)
t0 = time.process_time()
create(1001, 1000 + N)
c = time.process_time() - t0
w.run(until_idle=True)
d = 0.0
while True:
    t0 = time.process_time()
    n = complete()
    d += time.process_time() - t0
    if not n:
        break
    w.run(until_idle=True)
print(json.dumps({"runs": N, "create_cpu_s": round(c, 3), "complete_cpu_s": round(d, 3),
                  "driver_ms_per_run": round((c + d) / N * 1e3, 3)}))
