"""Query plans of the writers' hot path on SQLite, which keeps no statistics: a record's
active runs must be read through the record's index, not through every run in progress.

Once the list indexes of migration 8 existed, SQLite chose ix_runs_status for
``record_id = ? AND status = 'in_progress'`` and every record write read every run in
progress: the triage bench fell from ~800 to ~220 runs/s with 2.3 million page reads."""

from __future__ import annotations

from pathlib import Path

from baton.store.sql import SqlStore
from baton.store.sql.statements import ACTIVE_RUNS


def test_a_records_active_runs_are_read_through_the_records_index(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'plans.db'}")
    store.migrate()
    with store.write() as tx:
        tx.conn.exec_driver_sql(
            "INSERT INTO baton_runs (id, orchestration, version, record_id, status, "
            "current_stage, state, seq, created_at, updated_at) "
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) "
            "SELECT 'run_' || i, 'o', 1, 'rec_' || i, 'in_progress', 's', '{}', 1, "
            "'2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z' FROM n")
    with store.read() as tx:
        sql = str(ACTIVE_RUNS.compile(dialect=tx.conn.dialect,
                                      compile_kwargs={"literal_binds": False}))
        plan = tx.conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, ("rec_7", "", "in_progress")
                                       if sql.count("?") == 3 else ("rec_7",)).fetchall()
    store.close()
    details = " ".join(str(row[-1]) for row in plan)
    assert "ix_runs_record" in details, details
