"""(bench/results/tdriver3) Driver phases in one process: function calls (cProfile, deterministic) and CPU
(process_time, no profiler), after warming with 300 cases end to end. Also the worker's
phases' calls. Usage: PYTHONPATH=CHECKOUT/src python calls.py CHECKOUT N [prof]"""
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT, N = Path(sys.argv[1]), int(sys.argv[2])
PROF = len(sys.argv) > 3 and sys.argv[3] == "prof"
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
heap.settle()  # (as the bench driver does)
out = {}
def phase(name, fn):
    if PROF:
        p = cProfile.Profile(); p.enable(); r = fn(); p.disable()
        st = pstats.Stats(p); out[name + "_calls"] = st.total_calls
        st.dump_stats(f"{tempfile.gettempdir()}/calls-{name}.prof")
    else:
        t0 = time.process_time(); r = fn(); out[name + "_cpu"] = round(time.process_time() - t0, 4)
    return r
base = 1000
phase("create", lambda: create(base + 1, base + N))
wk = 0
k = 0
while True:
    phase(f"worker{k}", lambda: w.run(until_idle=True))
    n = phase(f"complete{k}", complete)
    k += 1
    if not n: break
if PROF:
    tot = {"create": out["create_calls"], "complete": sum(v for kk, v in out.items() if kk.startswith("complete")),
           "worker": sum(v for kk, v in out.items() if kk.startswith("worker"))}
else:
    tot = {"create": out["create_cpu"], "complete": sum(v for kk, v in out.items() if kk.startswith("complete")),
           "worker": sum(v for kk, v in out.items() if kk.startswith("worker"))}
print(json.dumps({"N": N, **tot}))
