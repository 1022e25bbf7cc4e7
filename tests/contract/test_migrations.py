"""Migrating an empty database yields the canonical schema of store/schema.py."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, inspect

from baton.store import schema
from baton.store.migrations import LATEST
from baton.store.sql import SqlStore


def _shape(url: str) -> dict[str, tuple[set[str], set[str]]]:
    eng = create_engine(url)
    insp = inspect(eng)
    out = {}
    for table in insp.get_table_names():
        cols = {c["name"] for c in insp.get_columns(table)}
        idx = {i["name"] for i in insp.get_indexes(table) if i["name"]}
        out[table] = (cols, idx)
    with eng.connect() as conn:  # the triggers that keep baton_record_refs (migration 24)
        sql = ("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
               if eng.dialect.name == "postgresql"
               else "SELECT name FROM sqlite_master WHERE type = 'trigger'")
        out["(triggers)"] = (set(conn.exec_driver_sql(sql).scalars()), set())
    eng.dispose()
    return out


def test_migrations_produce_the_canonical_schema(tmp_path: Path) -> None:
    migrated = f"sqlite:///{tmp_path / 'migrated.db'}"
    store = SqlStore(migrated)
    applied = store.migrate()
    assert applied and applied[-1].startswith(f"{LATEST:03d}")
    assert store.schema_version() == LATEST
    store.close()

    canonical = f"sqlite:///{tmp_path / 'canonical.db'}"
    eng = create_engine(canonical)
    schema.metadata.create_all(eng)
    eng.dispose()
    assert _shape(migrated) == _shape(canonical)


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'b.db'}")
    assert store.migrate()
    assert store.migrate() == []
    store.close()


def test_migrations_produce_the_canonical_schema_on_postgres(pg_template: str) -> None:
    from tests.conftest import _pg_admin, _pg_url_for

    names = [f"baton_mig_{os.getpid()}_{kind}" for kind in ("migrated", "canonical")]
    with _pg_admin() as admin:  # type: ignore[attr-defined]
        for name in names:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {name}")
    try:
        store = SqlStore(_pg_url_for(names[0]))
        assert store.migrate()[-1].startswith(f"{LATEST:03d}")
        assert store.migrate() == []
        store.close()
        canonical = _pg_url_for(names[1]).replace("postgresql://", "postgresql+psycopg://")
        eng = create_engine(canonical)
        schema.metadata.create_all(eng)
        eng.dispose()
        migrated = _shape(_pg_url_for(names[0]).replace("postgresql://", "postgresql+psycopg://"))
        assert {k: v for k, v in migrated.items()} == _shape(canonical)
    finally:
        with _pg_admin() as admin:  # type: ignore[attr-defined]
            for name in names:
                admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_migration_26_keeps_a_jsonb_run_state_and_its_order_after(pg_url: str) -> None:
    """A database made before migration 26 holds run states as jsonb (keys sorted its way):
    migrated, the column is json, the run stored before reads back whole, and a document
    written after keeps its keys in the order written."""
    from sqlalchemy import delete, insert, text

    store = SqlStore(pg_url)
    state = {"format": 3, "id": "run_old", "stages": {"triage_first": {}, "ok": {}}}
    row = {"id": "run_old", "orchestration": "o", "version": 1, "status": "in_progress",
           "state": state, "seq": 1, "created_at": "2026-01-01T00:00:00.000Z",
           "updated_at": "2026-01-01T00:00:00.000Z"}
    with store.write() as tx:
        tx.conn.exec_driver_sql("ALTER TABLE baton_runs ALTER COLUMN state TYPE jsonb "
                                "USING state::jsonb")
        tx.conn.execute(delete(schema.schema_migrations).where(
            schema.schema_migrations.c.version == 26))
        tx.conn.execute(insert(schema.runs).values(**row))
    assert [m.split()[0] for m in store.migrate()] == ["026"]
    with store.read() as tx:
        kind = tx.conn.execute(text(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'baton_runs' AND column_name = 'state'")).scalar_one()
        old = tx.conn.execute(schema.runs.select().where(schema.runs.c.id == "run_old")).one()
    assert kind == "json"
    assert old.state == state and list(old.state["stages"]) == ["ok", "triage_first"]
    with store.write() as tx:  # (jsonb's order, kept; a write after keeps its own)
        tx.conn.execute(schema.runs.update().where(schema.runs.c.id == "run_old")
                        .values(state={**state, "stages": {"triage_first": {}, "ok": {}}}))
    with store.read() as tx:
        again = tx.conn.execute(schema.runs.select().where(schema.runs.c.id == "run_old")).one()
    assert list(again.state["stages"]) == ["triage_first", "ok"]
    store.close()


# ---- a database at migration 7 with runs in flight, carried forward ----------------------
DATA = Path(__file__).with_name("data") / "migration7.json"


def _at_migration_7(url: str) -> None:
    """The schema as migrations 1..7 left it: the canonical tables made by migration 1,
    minus what migrations 10 and 13 added (the runs' sla_at, attention and their indexes)."""
    from sqlalchemy import insert

    from baton.clock import SystemClock, iso
    from baton.store.migrations import MIGRATIONS

    store = SqlStore(url)
    with store.write() as tx:
        schema.metadata.drop_all(tx.conn)  # PostgreSQL's test database comes migrated
        schema.schema_migrations.create(tx.conn)
        for m in MIGRATIONS:
            if m.version <= 7:
                m.apply(tx.conn)
                tx.conn.execute(insert(schema.schema_migrations).values(
                    version=m.version, name=m.name, applied_at=iso(SystemClock().now())))
        tx.conn.exec_driver_sql("DROP INDEX ix_runs_sla_at")
        tx.conn.exec_driver_sql("ALTER TABLE baton_runs DROP COLUMN sla_at")
        tx.conn.exec_driver_sql("DROP INDEX ix_runs_attention")  # migration 13's
        tx.conn.exec_driver_sql("ALTER TABLE baton_runs DROP COLUMN attention")
        for column in ("summary", "jeopardy_at", "step_type"):  # migrations 17's and 21's
            tx.conn.exec_driver_sql(f"ALTER TABLE baton_work_items DROP COLUMN {column}")
    assert store.schema_version() == 7
    store.close()


def _load_rows(url: str, data: dict[str, Any]) -> None:
    from sqlalchemy import insert, text

    store = SqlStore(url)
    with store.write() as tx:
        for name in ("baton_definitions", "baton_records", "baton_runs", "baton_work_items",
                     "baton_jobs", "baton_events"):
            rows = data[name]
            if rows:
                tx.conn.execute(insert(schema.metadata.tables[name]), rows)
            if store.dialect == "postgresql" and name in ("baton_definitions", "baton_jobs",
                                                          "baton_events") and rows:
                tx.conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                                     f"{max(r['id'] for r in rows)})"))
    store.close()


def test_a_database_at_migration_7_with_runs_in_flight_is_carried_forward(
        db_url: str, tmp_path: Path) -> None:
    """Written by the code at migration 7 (tests/contract/data/make_migration7.py): six
    case-triage runs waiting on triage items, SLA timers pending as jobs (c2, c3 in
    jeopardy, c5, c6 on track), c1's and c4's items completed with their next steps queued.
    After migration 10 every SLA instant fires exactly once from the runs' sla_at, the
    queued steps run, and every run completes with the timeline it should have."""
    import json
    from datetime import datetime, timedelta

    from sqlalchemy import select

    from baton.clock import VirtualClock, iso, parse_iso
    from baton.project import load_project
    from baton.runtime.engine import Engine
    from baton.runtime.worker import Worker

    data = json.loads(DATA.read_text())
    _at_migration_7(db_url)
    _load_rows(db_url, data)
    root = Path(__file__).resolve().parents[2]
    load_project(root / "examples" / "case_triage").import_flows()
    clock = VirtualClock(datetime.fromisoformat(data["now"]))
    t0 = parse_iso(data["baton_records"][0]["created_at"])  # c1..c3; c4..c6 at t0 + 3h05
    engine = Engine(db_url, clock=clock)  # migrates: 10 is applied
    try:
        assert engine.store.schema_version() == LATEST
        with engine.store.read() as tx:
            jobs = [dict(r._mapping) for r in tx.conn.execute(select(schema.jobs))]
            sla_at = dict(tx.conn.execute(select(schema.runs.c.record_id, schema.runs.c.sla_at)).all())
            jeopardy = dict(tx.conn.execute(select(schema.work_items.c.record_id,
                                                   schema.work_items.c.jeopardy_at)).all())
        number = {r["id"]: r["data"]["number"] for r in data["baton_records"]}
        by_number = {number[rid]: at for rid, at in sla_at.items()}
        # migration 12: the open items know when their SLA turns in_jeopardy (due - 1h)
        assert {number[rid]: at for rid, at in jeopardy.items()} == {
            1: None, 4: None,
            2: iso(t0 + timedelta(hours=3)), 3: iso(t0 + timedelta(hours=3)),
            5: iso(t0 + timedelta(hours=6, minutes=5)), 6: iso(t0 + timedelta(hours=6, minutes=5))}
        # the SLA timer jobs are gone; the instants to come are on the runs
        assert sorted(j["payload"].get("flow") for j in jobs) == ["cases.close", "cases.raise_level"]
        assert by_number == {1: None, 4: None,
                             2: iso(t0 + timedelta(hours=4)), 3: iso(t0 + timedelta(hours=4)),
                             5: iso(t0 + timedelta(hours=6, minutes=5)),
                             6: iso(t0 + timedelta(hours=6, minutes=5))}
        worker = Worker(engine)
        worker.run(until_idle=True)  # c1 closes; c4 escalates and is back in triage
        for instant in (timedelta(hours=4), timedelta(hours=6, minutes=5),
                        timedelta(hours=7, minutes=5), timedelta(hours=8)):
            clock.set(t0 + instant)
            worker.run(until_idle=True)
            worker.run(until_idle=True)  # a second pass fires nothing more
        items = [it for q in ("tier1", "tier2") for it in engine.list_work(queue=q)]
        assert sorted(number[it["record_id"]] for it in items) == [2, 3, 4, 5, 6]
        for it in items:
            engine.complete(it["id"], "ops", {"resolution": "close"})
        worker.run(until_idle=True)
        runs = engine.list_runs(limit=100)
        assert sorted(r.status.value for r in runs) == ["completed"] * 6
        for run in runs:
            n = number[run.record_id or ""]
            with engine.store.read() as tx:
                events = tx.events_txn(run_id=run.id)
            kinds = [e["type"] for e in events]
            assert kinds[0] == "run_started" and kinds[-1] == "run_completed", (n, kinds)
            ids = [e["id"] for e in events]
            assert ids == sorted(ids) and len(set(ids)) == len(ids)
            # each SLA instant once per triage iteration that lived long enough for it (c4's
            # first one closed on track; its second started at the upgrade, 3h05 after t0)
            expected = {1: (1, 0), 2: (1, 1), 3: (1, 1), 4: (1, 1), 5: (1, 1), 6: (1, 1)}[n]
            assert (kinds.count("sla_in_jeopardy"), kinds.count("sla_overdue")) == expected, (n, kinds)
            assert kinds.count("step_completed") == (9 if n == 4 else 5), (n, kinds)
            timeline = engine.timeline(run.record_id or "")
            assert timeline[0]["type"] == "record_created"
            assert [e for e in timeline if e["run_id"] == run.id] == events
        with engine.store.read() as tx:
            assert list(tx.conn.execute(select(schema.jobs))) == []
            assert {r[0] for r in tx.conn.execute(select(schema.runs.c.sla_at))} == {None}
    finally:
        engine.close()


def test_migration_8_remakes_the_list_indexes_of_an_existing_database(tmp_path: Path) -> None:
    """A database from before migration 8 (its old list indexes, version 7) is carried
    forward: the redefined indexes get their new columns, the new ones are made."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = SqlStore(url)
    store.migrate()
    with store.write() as tx:
        for name, table, cols in (("ix_runs_status", "baton_runs", "status, orchestration"),
                                  ("ix_runs_record", "baton_runs", "record_id, status"),
                                  ("ix_records_created", "baton_records", "created_at"),
                                  ("ix_work_items_assignee", "baton_work_items",
                                   "status, assignee_kind, assignee")):
            tx.conn.exec_driver_sql(f"DROP INDEX {name}")
            tx.conn.exec_driver_sql(f"CREATE INDEX {name} ON {table} ({cols})")
        for name in ("ix_runs_created", "ix_runs_stage", "ix_work_items_urgent"):
            tx.conn.exec_driver_sql(f"DROP INDEX {name}")
        tx.conn.exec_driver_sql("DELETE FROM baton_schema_migrations WHERE version >= 8")
    assert store.schema_version() == 7
    assert store.migrate()[0].startswith("008")
    store.close()
    eng = create_engine(url)
    cols = {i["name"]: i["column_names"] for t in ("baton_runs", "baton_records")
            for i in inspect(eng).get_indexes(t)}
    eng.dispose()
    assert cols["ix_runs_status"] == ["status", "created_at", "id"]
    assert cols["ix_runs_record"] == ["record_id", "created_at", "id"]
    assert cols["ix_records_created"] == ["created_at", "id"]
    assert cols["ix_runs_created"] == ["created_at", "id"]
    # (SQLAlchemy does not reflect expression indexes on SQLite: ask SQLite itself)
    con = sqlite3.connect(tmp_path / "old.db")
    names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    con.close()
    assert {"ix_work_items_urgent", "ix_work_items_assignee_urgent", "ix_runs_stage"} <= names


def test_the_child_runs_migration_links_runs_in_an_existing_database(db_url: str) -> None:
    """A database at the migration before child runs' (no parent columns) with a run in it
    is carried forward (whatever number the migration ends up with):
    the columns and their index are made, the old run has no parent, and a child run
    started afterwards is found through the index."""
    import json
    import textwrap

    from sqlalchemy import insert, inspect, select

    from baton.clock import SystemClock, iso
    from baton.runtime.engine import Engine
    from baton.store.migrations import MIGRATIONS

    mine = next(m for m in MIGRATIONS if m.name.startswith("child runs"))
    before = [m for m in MIGRATIONS if m.version < mine.version]
    store = SqlStore(db_url)
    with store.write() as tx:
        schema.metadata.drop_all(tx.conn)  # PostgreSQL's test database comes migrated
        schema.schema_migrations.create(tx.conn)
        for m in before:
            m.apply(tx.conn)
            tx.conn.execute(insert(schema.schema_migrations).values(
                version=m.version, name=m.name, applied_at=iso(SystemClock().now())))
        tx.conn.exec_driver_sql("DROP INDEX ix_runs_parent")
        tx.conn.exec_driver_sql("ALTER TABLE baton_runs DROP COLUMN parent_run_id")
        tx.conn.exec_driver_sql("ALTER TABLE baton_runs DROP COLUMN parent_step")
        state = {"format": 2, "id": "run_old", "orchestration": "legacy", "version": 1,
                 "status": "completed", "created_at": "2026-01-01T00:00:00.000Z", "seq": 3}
        tx.conn.exec_driver_sql(
            "INSERT INTO baton_runs (id, orchestration, version, status, state, seq, created_at,"
            " updated_at) VALUES ('run_old', 'legacy', 1, 'completed', '"
            + json.dumps(state) + "', 3, '2026-01-01T00:00:00.000Z',"
            " '2026-01-01T00:00:00.000Z')")
    assert store.schema_version() == before[-1].version
    store.close()

    engine = Engine(db_url)  # migrates: the child runs' migration is applied
    try:
        assert engine.store.schema_version() == LATEST
        with engine.store.read() as tx:
            insp = inspect(tx.conn)
            columns = {c["name"] for c in insp.get_columns("baton_runs")}
            indexes = {i["name"] for i in insp.get_indexes("baton_runs")}
            old = tx.conn.execute(select(schema.runs.c.parent_run_id, schema.runs.c.parent_step)
                                  .where(schema.runs.c.id == "run_old")).one()
        assert {"parent_run_id", "parent_step"} <= columns and "ix_runs_parent" in indexes
        assert tuple(old) == (None, None)
        assert engine.get_run("run_old").parent is None
        engine.deploy(texts={"d.yaml": textwrap.dedent("""
            kind: orchestration
            name: kid
            trigger: {type: autolaunched}
            stages: [{name: s, steps: [{name: w, type: pause, signal: go}]}]
            ---
            kind: orchestration
            name: mom
            trigger: {type: autolaunched}
            stages: [{name: s, steps: [{name: k, type: orchestration, orchestration: kid}]}]
            """)}, known_flows=())
        mom = engine.start("mom", {}, actor="test")
        [kid] = engine.child_runs(mom.id)
        assert kid["parent_step"] == "k" and kid["orchestration"] == "kid"
        assert engine.get_run(kid["id"]).parent.run_id == mom.id  # type: ignore[union-attr]
    finally:
        engine.close()


def test_the_delegation_migration_tells_open_approvals_apart(db_url: str) -> None:
    """A database at the migration before delegation's, with two open work items (one with
    the approval form, one with another form) and a user, is carried forward: the users get
    the delegate columns (none named), the approval item is known as one (its assignee's
    delegate may act on it), the other's step type stays unknown."""
    import json

    from sqlalchemy import insert, select

    from baton.clock import SystemClock, iso
    from baton.runtime.engine import Engine
    from baton.store.migrations import MIGRATIONS

    mine = next(m for m in MIGRATIONS if m.name.startswith("delegation"))
    before = [m for m in MIGRATIONS if m.version < mine.version]
    approval_form = [{"name": "decision", "type": "choice", "required": True,
                      "choices": ["approve", "reject"], "default": None, "label": "Decision"},
                     {"name": "comments", "type": "text", "required": False, "choices": [],
                      "default": None, "label": "Comments"}]
    other_form = [{"name": "done", "type": "bool", "required": False, "choices": [],
                   "default": None, "label": None}]
    store = SqlStore(db_url)
    with store.write() as tx:
        schema.metadata.drop_all(tx.conn)  # PostgreSQL's test database comes migrated
        schema.schema_migrations.create(tx.conn)
        for m in before:
            m.apply(tx.conn)
            tx.conn.execute(insert(schema.schema_migrations).values(
                version=m.version, name=m.name, applied_at=iso(SystemClock().now())))
        tx.conn.exec_driver_sql("DROP INDEX ix_users_delegate")
        for column in ("delegate", "delegate_from", "delegate_until"):
            tx.conn.exec_driver_sql(f"ALTER TABLE baton_users DROP COLUMN {column}")
        tx.conn.exec_driver_sql("ALTER TABLE baton_work_items DROP COLUMN step_type")
        tx.conn.exec_driver_sql(
            "INSERT INTO baton_users (name, display_name, roles, active, created_at, updated_at)"
            " VALUES ('ann', 'Ann', '[\"agent\"]', true, '2026-01-01', '2026-01-01')")
        for item_id, form in (("wi_approval", approval_form), ("wi_other", other_form)):
            tx.conn.exec_driver_sql(
                "INSERT INTO baton_work_items (id, run_id, orchestration, stage, step, iteration,"
                " title, form, status, assignee_kind, assignee, version, created_at, updated_at)"
                f" VALUES ('{item_id}', 'run_x', 'o', 's', 'st', 1, 't', '{json.dumps(form)}',"
                " 'open', 'user', 'ann', 1, '2026-01-01', '2026-01-01')")
    store.close()

    engine = Engine(db_url)  # migrates
    try:
        with engine.store.read() as tx:
            kinds = dict(tx.conn.execute(select(schema.work_items.c.id,
                                                schema.work_items.c.step_type)).all())
        assert kinds == {"wi_approval": "approval", "wi_other": None}
        ann = engine.directory.get_user("ann")
        assert ann.delegation is None and ann.acting_for == frozenset()
    finally:
        engine.close()
