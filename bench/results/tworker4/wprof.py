"""Worker phases under cProfile (deterministic call counts), after warming with 300 cases.
Usage: PYTHONPATH=CHECKOUT/src python wprof.py CHECKOUT N OUT.prof"""
import cProfile
import json
import pstats
import sys
import tempfile
from pathlib import Path

ROOT, N, OUT = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
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
create(1001, 1000 + N)
p = cProfile.Profile()
calls = 0
while True:
    p.enable(); w.run(until_idle=True); p.disable()
    if not complete(): break
st = pstats.Stats(p); st.dump_stats(OUT)
print(json.dumps({"N": N, "calls": st.total_calls, "stats": w.stats.__dict__}))
