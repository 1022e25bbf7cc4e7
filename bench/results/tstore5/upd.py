"""What SQLite pays to have a run's id in its UPDATE's SET list (tstore5, cut 3).

A table shaped and indexed as ``baton_runs`` (20,000 rows, a 1 KB state), updated with
one executemany per variant, CPU time per row (the best of 4): ``all`` is the statement
the store ran before (every run_row column, id included), ``noid`` the same without id
(what it runs now), ``mut`` only the columns a triage run's writes change (not done: the
version, the record and created_at are not assumed unchanged).

    python bench/results/tstore5/upd.py
    valgrind --tool=callgrind --collect-atstart=no \
        --toggle-collect='*_operator_call*' python upd.py all   # (noid, mut)
"""

import json
import operator
import os
import sqlite3
import tempfile
import time

N = 20000
COLS = ("orchestration, version, record_id, status, current_stage, state, seq, created_at, "
        "updated_at, completed_at, sla_at, attention")
MUTABLE = "status, current_stage, state, seq, updated_at, completed_at, sla_at, attention"
INDEXES = ["record_id, created_at, id", "status, created_at, id", "created_at, id",
           "orchestration, status, created_at, id", "current_stage, status, created_at, id",
           "sla_at", "parent_run_id, parent_step"]
STATE = json.dumps({"steps": {f"s{i}": {"status": "done", "iteration": 1, "x": "y" * 40}
                              for i in range(8)}})


def _db() -> sqlite3.Connection:
    db = sqlite3.connect(os.path.join(tempfile.mkdtemp(), "x.db"), isolation_level=None)
    db.execute("pragma journal_mode=wal")
    db.execute("pragma synchronous=off")
    db.execute("""create table baton_runs (id varchar(40) primary key,
        orchestration varchar(200) not null, version int not null, record_id varchar(40),
        status varchar(20) not null, current_stage varchar(200), state json not null,
        seq int not null, created_at varchar(40) not null, updated_at varchar(40) not null,
        completed_at varchar(40), sla_at varchar(40), parent_run_id varchar(40),
        parent_step varchar(200), attention smallint)""")
    for i, ix in enumerate(INDEXES):
        db.execute(f"create index ix_{i} on baton_runs ({ix})")
    db.execute("begin")
    db.executemany("insert into baton_runs values (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", [
        (f"run_{i:08d}", "case_triage", 3, f"rec_{i:08d}", "in_progress", "triage", STATE, 1,
         f"2026-01-01T00:{i % 60:02d}:00", "2026", None, None, None, None, None)
        for i in range(N)])
    db.execute("commit")
    return db


def _update(db: sqlite3.Connection, which: str, seq: int) -> float:
    cols = {"all": "id, " + COLS, "noid": COLS, "mut": MUTABLE}[which].split(", ")
    sql = (f"update baton_runs set {', '.join(c + '=?' for c in cols)} "
           "where id=? and seq=?")
    rows = []
    for i in range(N):
        rid = f"run_{i:08d}"
        full = {"id": rid, "orchestration": "case_triage", "version": 3,
                "record_id": f"rec_{i:08d}", "status": "in_progress", "current_stage": "review",
                "state": STATE, "seq": seq + 1, "created_at": f"2026-01-01T00:{i % 60:02d}:00",
                "updated_at": "2027", "completed_at": None, "sla_at": None, "attention": None}
        rows.append((*(full[c] for c in cols), rid, seq))
    t = time.process_time()
    db.execute("begin")
    operator.call(db.executemany, sql, rows)  # (what callgrind counts: see above)
    db.execute("commit")
    return time.process_time() - t


def main() -> None:
    import sys

    if len(sys.argv) > 1:  # one variant, once (under callgrind: see the docstring)
        _update(_db(), sys.argv[1], 1)
        return
    db, seq = _db(), 1
    res: dict[str, list[float]] = {"all": [], "noid": [], "mut": []}
    for _ in range(4):
        for which, times in res.items():
            times.append(_update(db, which, seq))
            seq += 1
    for which, times in res.items():
        print(which, f"min {min(times) / N * 1e6:.1f} us/row")


if __name__ == "__main__":
    main()
