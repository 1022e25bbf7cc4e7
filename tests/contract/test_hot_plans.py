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


def test_the_attention_index_costs_the_run_writes_nothing_while_a_run_needs_nothing(
        db_url: str) -> None:
    """Migration 13's index is partial (only the runs that need an operator are in it),
    so the writer's whole-row UPDATE of any other run maintains no entry there; on
    PostgreSQL such an update stays a heap-only (HOT) update when no indexed value
    changed, attention (NULL before and after) included."""
    from baton.clock import VirtualClock, iso
    from baton.engine.state import Run
    from baton.runtime.apply import run_row

    store = SqlStore(db_url)
    store.migrate()
    now = iso(VirtualClock().now())
    run = Run(id="run_hot", orchestration="o", version=1, record_id="rec_hot",
              current_stage="s", created_at=now, seq=1)
    with store.write() as tx:
        tx.insert_run_txn(run_row(run, now))
    with store.read() as tx:
        if store.dialect == "postgresql":
            ddl = tx.conn.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_runs_attention'").scalar_one()
        else:
            ddl = tx.conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'ix_runs_attention'").scalar_one()
    assert "WHERE" in ddl and "attention IS NOT NULL" in ddl, ddl
    if store.dialect == "postgresql":
        with store.write() as tx:
            run.vars = {"touched": 1}  # the state changes, no indexed column does
            tx.update_run_txn({**run_row(run, now), "seq": 2}, 1)
            hot = tx.conn.exec_driver_sql(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables "
                "WHERE relname = 'baton_runs'").one()
        assert tuple(hot) == (1, 1), hot
    store.close()
