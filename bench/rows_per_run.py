"""Rows written per triage run, by table and operation (SQLite).

Runs ``baton bench triage`` once with temporary triggers installed in its fresh database
(after the deploy, before the workers start) that count every INSERT, UPDATE and DELETE
per table, in the same transactions as the writes; the counts are read before the
database is disposed of and printed per run. The triggers' own writes are not counted.

    python bench/rows_per_run.py --runs 500 [--examples DIR]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import triage

_COUNTS: dict[str, int] = {}


def _install(url: str) -> None:
    path = url.split(":///", 1)[1]
    con = sqlite3.connect(path)
    tables = [r[0] for r in con.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name LIKE 'baton_%'")]
    con.execute("CREATE TABLE bench_row_counts (name TEXT PRIMARY KEY, n INTEGER NOT NULL)")
    for t in tables:
        for op in ("INSERT", "UPDATE", "DELETE"):
            key = f"{t}.{op.lower()}"
            con.execute(f"INSERT INTO bench_row_counts VALUES ('{key}', 0)")
            con.execute(f"CREATE TRIGGER bench_count_{t}_{op.lower()} AFTER {op} ON {t} "
                        f"BEGIN UPDATE bench_row_counts SET n = n + 1 WHERE name = '{key}'; END")
    con.commit()
    con.close()


def _read(url: str) -> None:
    path = url.split(":///", 1)[1]
    con = sqlite3.connect(path)
    try:
        _COUNTS.update({k: n for k, n in con.execute("SELECT name, n FROM bench_row_counts")})
    finally:
        con.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--examples", type=Path, default=None)
    args = ap.parse_args()
    urls: list[str] = []
    durability = triage._durability
    dispose = triage._Databases.dispose

    def durability_and_triggers(engine: Any) -> dict[str, Any]:
        _install(engine.store.url)
        urls.append(engine.store.url)
        return durability(engine)

    def read_then_dispose(self: Any, url: str) -> None:
        if url in urls:
            _read(url)
        dispose(self, url)

    triage._durability = durability_and_triggers  # type: ignore[assignment]
    triage._Databases.dispose = read_then_dispose  # type: ignore[method-assign]
    out = triage.run_benchmark(triage.BenchConfig(runs=args.runs, examples=args.examples))
    n = args.runs
    per_run = {k: round(v / n, 2) for k, v in sorted(_COUNTS.items()) if v}
    # Rows written by the benchmark's own verification reads: none (reads only).
    print(json.dumps({"runs": n, "runs_per_s": out["runs_per_s"], "per_run": per_run,
                      "total_per_run": round(sum(_COUNTS.values()) / n, 2)}, indent=1))


if __name__ == "__main__":
    main()
