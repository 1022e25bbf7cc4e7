"""Worker phases natively (for py-spy). Usage: PYTHONPATH=CHECKOUT/src python wrun.py CHECKOUT N REPEAT"""
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT, N, REP = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, str(ROOT))
import baton.runtime.definitions as defs
import baton.runtime.worker as wm
from baton.project import load_project
from baton.runtime import heap
from baton.runtime.engine import Engine
from bench import triage as bt

defs.REFRESH_INTERVAL_S = 1e9
wm.CHAIN_SECONDS = 1e9
url = f"sqlite:///{tempfile.mkdtemp()}/b.db"
project = load_project(ROOT / "examples" / "case_triage"); project.import_flows()
e = Engine(url); e.deploy([project.definitions_dir], actor="bench")
w = wm.Worker(e, batch=256, heartbeat_interval=1e9)
def create(lo, hi):
    for i in range(lo, hi + 1, 100):
        e.create_records("Case", [bt.case_fields(j) for j in range(i, min(hi, i + 99) + 1)], actor="bench")
def complete():
    items = [dict(it) for q in bt.QUEUES for it in e.list_work(queue=q, limit=100_000)]
    if items: bt._complete_items(e, items)
    return len(items)
create(1, 300); w.run(until_idle=True)
while complete(): w.run(until_idle=True)
heap.settle()
cpu = 0.0
for r in range(REP):
    create(10000 * (r + 1) + 1, 10000 * (r + 1) + N)
    while True:
        t = time.process_time(); w.run(until_idle=True); cpu += time.process_time() - t
        if not complete(): break
print(json.dumps({"N": N, "rep": REP, "worker_cpu_ms_per_run": round(1000 * cpu / N / REP, 4), "stats": w.stats.__dict__}))
