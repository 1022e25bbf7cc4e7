"""Makes ``migration7.json``: a database written by Baton at schema migration 7 (commit
e31b4f7, before migration 10), with case-triage runs in flight. Run with THAT code:

    git worktree add /tmp/at7 e31b4f7
    PYTHONPATH=/tmp/at7/src python tests/contract/data/make_migration7.py /tmp/at7/examples

What it holds (virtual time from 2026-01-05 09:00 UTC; the SLA is 4 h, jeopardy 1 h):
c1..c3 created at 09:00, their SLA in jeopardy (fired at 12:05), triage items open; c4..c6
created at 12:05, on track, items open; c1's item then completed (close) and c4's
(escalate) with their next step jobs not yet run. SLA timer jobs of c2, c3 (overdue) and
c5, c6 (both) are pending; run states are format 1; events one row each.
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from baton.clock import VirtualClock
from baton.project import load_project
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.store import schema as s
from baton.store.migrations import LATEST

TABLES = ("baton_definitions", "baton_records", "baton_runs", "baton_work_items",
          "baton_jobs", "baton_events")


def main(examples: Path) -> None:
    assert LATEST == 7, f"run this with the code at migration 7, not {LATEST}"
    project = load_project(examples / "case_triage")
    project.import_flows()
    clock = VirtualClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(f"sqlite:///{tmp}/at7.db", clock=clock)
        engine.deploy([project.definitions_dir], actor="fixture")
        worker = Worker(engine)

        def case(i: int) -> dict[str, object]:
            return {"subject": f"invoice question {i}" if i % 2 else f"login broken {i}",
                    "number": i, "origin": "Web", "level": 1}

        engine.create_records("Case", [case(i) for i in (1, 2, 3)], actor="fixture")
        worker.run(until_idle=True)
        clock.advance(timedelta(hours=3, minutes=5))
        worker.run(until_idle=True)  # c1..c3: in jeopardy
        engine.create_records("Case", [case(i) for i in (4, 5, 6)], actor="fixture")
        worker.run(until_idle=True)
        items = {engine.get_record(it["record_id"])["number"]: it
                 for q in ("tier1", "tier2") for it in engine.list_work(queue=q)}
        engine.complete(items[1]["id"], "fixture", {"resolution": "close"})
        engine.complete(items[4]["id"], "fixture", {"resolution": "escalate"})
        out: dict[str, object] = {"schema_version": LATEST, "now": clock.now().isoformat()}
        with engine.store.read() as tx:
            for name in TABLES:
                t = s.metadata.tables[name]
                out[name] = [dict(r._mapping) for r in tx.conn.execute(select(t).order_by(t.c.id))]
        engine.close()
    path = Path(__file__).with_name("migration7.json")
    path.write_text(json.dumps(out, indent=0, sort_keys=True) + "\n")
    print(f"wrote {path}: " + ", ".join(f"{len(out[n])} {n}" for n in TABLES))  # type: ignore[arg-type]


if __name__ == "__main__":
    main(Path(sys.argv[1]))
