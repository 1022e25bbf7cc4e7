"""tworker3 probe: what cyclic garbage does a worker batch leave? In-process, like worker_ir."""
import gc
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(sys.argv[1]).resolve()
N = int(sys.argv[2]) if len(sys.argv) > 2 else 300
sys.path.insert(0, str(ROOT))
import baton.runtime.worker as wm
from baton.project import load_project
from baton.runtime.engine import Engine
from bench import triage as bt

folder = tempfile.mkdtemp(prefix="tw3cyc")
url = f"sqlite:///{folder}/bench.db"
project = load_project(ROOT / "examples" / "case_triage"); project.import_flows()
engine = Engine(url); engine.deploy([project.definitions_dir], actor="bench")
for i in range(1, N + 1, 100):
    engine.create_records("Case", [bt.case_fields(j) for j in range(i, min(N, i + 99) + 1)], actor="bench")
weng = Engine(url, migrate=False)
worker = wm.Worker(weng, batch=256, heartbeat_interval=1e9)
# warm one pass, then measure the next phases
gc.collect(); gc.freeze(); gc.disable()
gc.set_debug(gc.DEBUG_SAVEALL)
while True:
    worker.run(until_idle=True)
    items = [dict(it) for q in bt.QUEUES for it in engine.list_work(queue=q, limit=100_000)]
    if not items:
        break
    gc.collect(); gc.freeze()  # the driver's garbage is not the worker's: out of view
    bt._complete_items(engine, items)
    gc.collect(); gc.freeze()
    del gc.garbage[:]
gc.collect()
g = gc.garbage
print("jobs", worker.stats.jobs, "garbage objects", len(g), "per job", round(len(g) / max(1, worker.stats.jobs), 1))
c = Counter(type(o).__qualname__ for o in g)
for k, n in c.most_common(25):
    print(f"  {n:8d} {k}")
# who refers to each kind of 'root-ish' object within the garbage
ids = {id(o) for o in g}
def refs(o):
    return [r for r in gc.get_referrers(o) if id(r) in ids]
seen = set()
for typ in ("PlanTx", "_Writes", "Run", "_Result", "SqlTx", "Connection"):
    objs = [o for o in g if type(o).__qualname__ == typ][:1]
    for o in objs:
        print(f"== {typ} referred to by:")
        for r in refs(o)[:6]:
            desc = type(r).__qualname__
            if isinstance(r, dict):
                owners = [type(x).__qualname__ for x in refs(r)[:3]]
                desc += f" (keys {list(r)[:6]}) owned by {owners}"
            elif type(r).__name__ == "cell":
                owners = [getattr(x, "__qualname__", type(x).__qualname__) for x in refs(r)[:3]]
                owners2 = [[getattr(y, "__qualname__", type(y).__qualname__) for y in refs(x)[:3]] for x in refs(r)[:3]]
                desc += f" in {owners} <- {owners2}"
            print("   ", desc)
