"""Driver and worker phases under cProfile, warm. PYTHONPATH=CHECKOUT/src python prof.py ROOT N OUTPREFIX"""
import cProfile
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
import collections

import baton.store.sql.statements as st

cnt = collections.Counter(); _op = st.Hot.params; _or = st.Hot.row
def sp(self, v):
    cnt[("P", self.sql[:60], len(self.procs))] += 1; return _op(self, v)
def sr(self, v):
    cnt[("R", self.sql[:60], len(self.row_procs))] += 1; return _or(self, v)
st.Hot.params = sp; st.Hot.row = sr
pw, pd = cProfile.Profile(), cProfile.Profile()
pd.enable(); create(1001, 1000 + N); pd.disable()
while True:
    pw.enable(); w.run(until_idle=True); pw.disable()
    pd.enable(); n = complete(); pd.disable()
    if not n: break
pstats.Stats(pw).dump_stats(OUT + "-worker.prof")
pstats.Stats(pd).dump_stats(OUT + "-driver.prof")
[print(v, k) for k, v in sorted(cnt.items(), key=lambda kv: -kv[1])]
