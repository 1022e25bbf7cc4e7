"""Instructions per records.update_txn call (the worker's flows' record writes), and per
coerce of a work item form, under callgrind: python upd_ir.py CHECKOUT  (run by valgrind)"""
import operator
import sys
import tempfile
from pathlib import Path

ROOT = Path(sys.argv[1]); sys.path.insert(0, str(ROOT))
import baton.runtime.definitions as defs

defs.REFRESH_INTERVAL_S = 1e9
from baton.project import load_project
from baton.runtime.engine import Engine

url = f"sqlite:///{tempfile.mkdtemp()}/b.db"
project = load_project(ROOT / "examples" / "case_triage"); project.import_flows()
e = Engine(url); e.deploy([project.definitions_dir], actor="bench")
rec = e.create_records("Case", [{"subject": "invoice 1", "number": 1, "origin": "Internal"}], actor="b")[0]
N = 400
UPD = [{"category": "tech", "priority": 2}, {"agent": "ann"}, {"status": "Closed", "resolution": {"by": "ann", "level": 1}}, {"level": 2, "status": "Escalated"}]
def work():
    with e.store.write() as tx:
        row = e.records.get_row_txn(tx, rec["id"]); tx.deferred = True
        now = e.clock.now()
        for i in range(N):
            u = dict(UPD[i % 4]);
            if "priority" in u: u["priority"] = i % 3 + 1
            if "level" in u: u["level"] = i
            row = e.records.update_txn(tx, row, u, "flow:x", now, exclude_run=None)
        raise KeyboardInterrupt  # roll back
def go():
    try: work()
    except KeyboardInterrupt: pass
go()  # warm
operator.call(go)
