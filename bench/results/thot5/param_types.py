"""The types of the parameters sqlite3 binds over a whole triage (driver and worker in this
process): which of them take sqlite3's adapter path (anything not exactly int, float, str
or bytearray). Each connection is made with a cursor class that tallies its parameters.

    PYTHONPATH=src python bench/results/thot5/param_types.py . 200
"""

from __future__ import annotations

import collections
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(sys.argv[1]).resolve()
N = int(sys.argv[2])
sys.path.insert(0, str(ROOT))
tally: collections.Counter[str] = collections.Counter()
EXACT = (int, float, str, bytearray)


def count(params: Any) -> None:
    for v in params.values() if isinstance(params, dict) else params:
        t = type(v)
        tally[("exact " if t in EXACT else "adapted ") + t.__name__] += 1


class Cur(sqlite3.Cursor):
    def execute(self, sql: str, params: Any = (), /) -> Any:
        count(params)
        return super().execute(sql, params)

    def executemany(self, sql: str, seq: Any, /) -> Any:
        rows = list(seq)
        for p in rows:
            count(p)
        return super().executemany(sql, rows)


class Conn(sqlite3.Connection):
    def cursor(self, factory: Any = Cur) -> Any:
        return super().cursor(factory)

    def execute(self, sql: str, params: Any = (), /) -> Any:
        return self.cursor().execute(sql, params)


def main() -> None:
    real = sqlite3.connect
    sqlite3.connect = sqlite3.dbapi2.connect = (  # type: ignore[misc]
        lambda *a, **k: real(*a, factory=Conn, **k))
    import baton.runtime.worker as wm
    from baton.project import load_project
    from baton.runtime.engine import Engine
    from bench import triage as bt

    url = f"sqlite:///{tempfile.mkdtemp(prefix='param_types')}/bench.db"
    project = load_project(ROOT / "examples" / "case_triage")
    project.import_flows()
    eng = Engine(url)
    eng.deploy([project.definitions_dir], actor="bench")
    tally.clear()
    for i in range(1, N + 1, 100):
        eng.create_records("Case", [bt.case_fields(j) for j in range(i, min(N, i + 99) + 1)],
                           actor="bench")
    while True:
        wm.Worker(eng, batch=256, heartbeat_interval=1e9).run(until_idle=True)
        items = [dict(it) for q in bt.QUEUES for it in eng.list_work(queue=q, limit=100_000)]
        if not items:
            break
        bt._complete_items(eng, items)
    for kind, n in tally.most_common():
        print(f"{kind:24} {n / N:8.1f} per run")


if __name__ == "__main__":
    main()
