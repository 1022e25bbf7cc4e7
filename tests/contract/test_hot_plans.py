"""Query plans of the writers' hot path on SQLite, which keeps no statistics: a record's
active runs must be read through the record's index, not through every run in progress.

Once the list indexes of migration 8 existed, SQLite chose ix_runs_status for
``record_id = ? AND status = 'in_progress'`` and every record write read every run in
progress: the triage bench fell from ~800 to ~220 runs/s with 2.3 million page reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from baton.store import schema as s
from baton.store.sql import SqlStore
from baton.store.sql.plan import PlanAborted
from baton.store.sql.statements import ACTIVE_RUNS, Hot, active_runs_of
from baton.store.sql.tx import SqlTx


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


def _runs_of_records(store: SqlStore) -> None:
    from baton.clock import VirtualClock, iso
    from baton.engine.state import Run
    from baton.runtime.apply import run_row

    now = iso(VirtualClock().now())
    with store.write() as tx:
        for rid, rec in (("run_a", "rec_1"), ("run_b", "rec_1"), ("run_c", "rec_2")):
            tx.insert_run_txn(run_row(Run(id=rid, orchestration="o", version=1, record_id=rec,
                                          current_stage="s", created_at=now, seq=1), now))
        tx.conn.execute(update(s.runs).where(s.runs.c.id == "run_b").values(status="completed"))


def test_the_active_runs_of_many_records_are_read_in_one_statement(db_url: str) -> None:
    store = SqlStore(db_url)
    store.migrate()
    _runs_of_records(store)
    with store.read() as tx:
        many = tx.active_run_ids_for_records_txn(["rec_1", "rec_2", "rec_none"])
        one = {r: sorted(tx.active_run_ids_for_record_txn(r)) for r in ("rec_1", "rec_2", "rec_none")}
        assert tx.active_run_ids_for_records_txn([]) == {}
        if store.dialect == "sqlite":  # through the record's index, as ACTIVE_RUNS (above)
            h = Hot(active_runs_of(4), tx.conn.dialect)
            plan = " ".join(str(r[-1]) for r in tx.conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + h.sql,
                h.params({f"_i{i}": f"rec_{i}" for i in range(4)})))
            assert "ix_runs_record" in plan, plan
    store.close()
    assert many == one == {"rec_1": ["run_a"], "rec_2": ["run_c"], "rec_none": []}


def test_the_active_runs_of_many_records_are_compiled_once_per_power_of_two(
        db_url: str) -> None:
    """The statement used to be built and compiled by SQLAlchemy on every call (once per
    worker batch; a third of the checks' cost): now one compiled statement per power of
    two of the count serves every batch size, padded with the last id."""
    store = SqlStore(db_url)
    store.migrate()
    _runs_of_records(store)
    rec = {"rec_1": ["run_a"], "rec_2": ["run_c"]}
    with store.read() as tx:
        for ids in (["rec_2"], ["rec_1", "rec_none"], ["rec_none", "rec_2", "rec_1"],
                    ["rec_x", "rec_2", "rec_none", "rec_1"], ["a", "b", "rec_1", "c", "d"]):
            assert tx.active_run_ids_for_records_txn(ids) == {i: rec.get(i, []) for i in ids}
        sizes = sorted(k[1] for k in tx._hot if isinstance(k, tuple) and k[0] == "active_runs_of")
    store.close()
    assert sizes == [1, 2, 4, 8]


def test_a_plan_reads_a_records_active_runs_once_and_checks_them_all_in_one_statement(
        db_url: str) -> None:
    """A worker's plan used to read a record's runs in progress once per record update of
    the batch, and check each record again under the lock: one round trip apiece, ~5 per
    triage run on PostgreSQL. Now the plan answers a second read from the first (the
    answer it is checked against), and the check is one statement for every record."""
    store = SqlStore(db_url)
    store.migrate()
    _runs_of_records(store)
    reads: list[str] = []

    def count(tx: SqlTx) -> None:
        run = tx._run

        def counted(h: Any, values: dict[str, Any]) -> Any:
            if "_record" in values:
                reads.append(values["_record"])
            return run(h, values)
        tx._run = counted  # type: ignore[method-assign]

    with store.plan() as p:
        count(p)
        assert p.active_run_ids_for_record_txn("rec_1") == ["run_a"]
        assert p.active_run_ids_for_record_txn("rec_2") == ["run_c"]
        assert p.active_run_ids_for_record_txn("rec_1") == ["run_a"]
    assert reads == ["rec_1", "rec_2"]
    batched: list[list[str]] = []
    with store.write() as tx:
        count(tx)
        many = tx.active_run_ids_for_records_txn

        def spy(ids: Any) -> dict[str, list[str]]:
            batched.append(sorted(ids))
            return many(ids)
        tx.active_run_ids_for_records_txn = spy  # type: ignore[method-assign]
        p.commit_into(tx)
    assert batched == [["rec_1", "rec_2"]] and reads == ["rec_1", "rec_2"]

    # A run of a record the plan read ends after the plan read it: the plan is refused,
    # even though its second read (answered from the first) could not see the change.
    with store.plan() as p2:
        assert p2.active_run_ids_for_record_txn("rec_1") == ["run_a"]
        with store.write() as tx:
            tx.conn.execute(update(s.runs).where(s.runs.c.id == "run_a").values(status="completed"))
        assert p2.active_run_ids_for_record_txn("rec_1") == ["run_a"]
    with pytest.raises(PlanAborted, match="rec_1"), store.write() as tx:
        p2.commit_into(tx)
    store.close()


def test_runs_read_ahead_answer_the_plan_and_only_those_it_read_are_checked(db_url: str) -> None:
    store = SqlStore(db_url)
    store.migrate()
    _runs_of_records(store)
    reads: list[str] = []
    with store.plan() as p:
        p.prefetch_active_runs(["rec_1", "rec_2"])
        run = p._run

        def counted(h: Any, values: dict[str, Any]) -> Any:
            if "_record" in values:
                reads.append(values["_record"])
            return run(h, values)
        p._run = counted  # type: ignore[method-assign]
        assert p.active_run_ids_for_record_txn("rec_2") == ["run_c"]
    assert reads == []
    # rec_1 was read ahead but never by the plan: its run ending does not spoil the plan.
    with store.write() as tx:
        tx.conn.execute(update(s.runs).where(s.runs.c.id == "run_a").values(status="completed"))
    with store.write() as tx:
        p.commit_into(tx)
    # rec_2's, which the plan read, does.
    with store.plan() as p2:
        p2.prefetch_active_runs(["rec_2"])
        assert p2.active_run_ids_for_record_txn("rec_2") == ["run_c"]
    with store.write() as tx:
        tx.conn.execute(update(s.runs).where(s.runs.c.id == "run_c").values(status="completed"))
    with pytest.raises(PlanAborted, match="rec_2"), store.write() as tx:
        p2.commit_into(tx)
    store.close()
