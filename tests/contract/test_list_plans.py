"""The paged lists read indexes, never a whole table, on both databases.

Every statement a list or its count sends (each probe of :mod:`baton.store.sql.pages`, for
every filter combination the Monitor offers, every Work Guide order and scope, records
with and without a type, first pages and pages after a cursor) is EXPLAINed on a database
holding 20,000 runs, work items and records spread over statuses, orchestrations, queues
and priorities. PostgreSQL is VACUUMed and ANALYZEd (as autovacuum keeps it), so its
planner chooses by cost; SQLite has none (Baton never runs ANALYZE), as in production.

A plan passes when each big table is read through an index (on SQLite, which has no
statistics, one that takes every equality the probe gives; on both, for a small probe, its
selective column: run, record, claimer) (SQLite: ``SEARCH``, or for an
unfiltered list ``SCAN … USING INDEX`` in the list's order; PostgreSQL: an index scan,
never a ``Seq Scan``) and nothing is sorted except the handful of rows of a probe the
module marks small (a run's or record's work items, a user's claimed ones). PostgreSQL
may also choose to fetch a probe's few matches by bitmap and sort them when its statistics
say they are few: such a sort passes when its estimate is under SORT_BOUND rows (the rows
of one probe, read by index: never the table).
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, event, insert

from baton.auth.directory import User
from baton.engine.status import RunStatus
from baton.store import schema as s
from baton.store.sql import SqlStore

N = 20_000
BIG = ("baton_runs", "baton_work_items", "baton_records")
SORT_BOUND = 2000
ORCHS = ("case_triage", "order_fulfillment", "onboarding")
STAGES = ("triage", "escalate", "close")


def _populate(conn: Connection) -> dict[str, Any]:
    rng = random.Random(7)
    stamp = (f"2026-01-{1 + i // 1000 % 28:02d}T{i // 60 % 24:02d}:{i % 60:02d}:00.000Z"
             for i in itertools.count())
    runs, items, records = [], [], []
    statuses = ["completed"] * 6 + ["in_progress"] * 3 + ["failed", "canceled"]
    for i in range(N):
        at = next(stamp)
        status = rng.choice(statuses)
        orch = ORCHS[0] if rng.random() < 0.7 else rng.choice(ORCHS[1:])
        records.append({"id": f"rec_{i:06d}", "object_type": "Case" if i % 4 else "Account",
                        "data": {"subject": f"s{i}"}, "version": 1, "created_at": at,
                        "updated_at": at})
        runs.append({"id": f"run_{i:06d}", "orchestration": orch, "version": 1 + (i % 3 == 0),
                     "record_id": f"rec_{i:06d}", "status": status,
                     "current_stage": None if status == "completed" else rng.choice(STAGES),
                     "state": {}, "seq": 1, "created_at": at, "updated_at": at,
                     "completed_at": at if status != "in_progress" else None,
                     # a few in-progress runs need attention (fallout 1, SLA breached 2)
                     "attention": rng.choice((1, 2, 3)) if status == "in_progress"
                     and rng.random() < 0.1 else None})
        kind, who = rng.choice([("queue", "tier1"), ("queue", "tier1"), ("queue", "tier2"),
                                ("group", "billing"), ("user", "ann"), ("user", "bob")])
        wstatus = rng.choice(["open"] * 7 + ["claimed", "completed", "canceled"])
        items.append({"id": f"wi_{i:06d}", "run_id": f"run_{i:06d}",
                      "record_id": f"rec_{i:06d}", "orchestration": orch, "stage": "triage",
                      "step": "triage", "iteration": 1, "title": "Triage", "instructions": None,
                      "form": [], "status": wstatus, "assignee_kind": kind, "assignee": who,
                      "claimed_by": "ann" if wstatus == "claimed" else None, "data": None,
                      "version": 1, "created_at": at, "updated_at": at, "completed_at": None,
                      "completed_by": None, "priority": rng.randrange(4),
                      "due_at": None if i % 2 else f"2026-02-{1 + i % 28:02d}T10:00:00.000Z"})
    for table, rows in ((s.records, records), (s.runs, runs), (s.work_items, items)):
        for chunk in range(0, len(rows), 2000):
            conn.execute(insert(table), rows[chunk:chunk + 2000])
    return {"run": next(r for r in runs if r["attention"] == 3), "item": items[456]}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def populated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
              ) -> Iterator[tuple[SqlStore, dict[str, Any]]]:
    if request.param == "postgres":
        from tests.conftest import _pg_admin, _pg_url_for

        template = request.getfixturevalue("pg_template")
        name = f"{template}_plans"
        with _pg_admin() as admin:  # type: ignore[attr-defined]
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        url = _pg_url_for(name)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('plans') / 'baton.db'}"
    store = SqlStore(url)
    store.migrate()
    with store.write() as tx:
        sample = _populate(tx.conn)
    if store.dialect == "postgresql":  # what autovacuum does
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:  # VACUUM: outside a transaction
            conn.execute("VACUUM ANALYZE")
    yield store, sample
    store.close()
    if request.param == "postgres":
        with _pg_admin() as admin:  # type: ignore[attr-defined]
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _captured(tx: Any, call: Any) -> list[tuple[str, Any]]:
    """The SELECTs ``call`` sends: through SQLAlchemy, and the hot path's (statements
    compiled once, run on the DB-API cursor, which SQLAlchemy's events do not see)."""
    seen: list[tuple[str, Any]] = []
    conn: Connection = tx.conn

    def grab(_c: Any, _cur: Any, statement: str, params: Any, _ctx: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    run = tx._run

    def hot(h: Any, values: dict[str, Any]) -> Any:
        grab(None, None, h.sql, h.params(values), None, False)
        return run(h, values)

    event.listen(conn, "before_cursor_execute", grab)
    tx._run = hot
    try:
        call()
    finally:
        event.remove(conn, "before_cursor_execute", grab)
        del tx._run
    return seen


def _probe_where(statement: str) -> str:
    """The WHERE clause of the probe's own read (not of a count's lookup of each row it
    gave, ``FROM baton_… AS _row WHERE``)."""
    found = re.search(r"FROM baton_\w+\s+WHERE", statement)
    return statement[found.end():] if found else ""


def _small(statement: str) -> bool:
    """A probe of a handful of rows (its index does not hold the order): sorted, fine."""
    where = _probe_where(statement)
    where = where.split("(", 1)[0] if where.lstrip().startswith("(") else where
    first = where.strip().split(" ", 1)[0]
    return any(first.endswith(c) for c in (".run_id", ".record_id", ".claimed_by")) \
        and "baton_work_items" in statement


def _equalities(statement: str) -> list[str]:
    """The columns a probe's own terms fix (the keyset clause, in parentheses, aside)."""
    where = _probe_where(statement)
    head = re.split(r" AND \(| ORDER BY|\) AS ", where, maxsplit=1)[0]
    return re.findall(r"baton_\w+\.(\w+) = ", head)


def _sqlite_problems(conn: Connection, statement: str, params: Any) -> list[str]:
    rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, params).all()
    plan = [r[3] for r in rows]
    bad = []
    searched = {c for line in plan if line.startswith("SEARCH baton_")
                for c in re.findall(r"(\w+)[<>=]", line.split(" (", 1)[-1])}
    wanted = set(_equalities(statement))
    if _small(statement):
        wanted = {_equalities(statement)[0]}  # its selective column (the rest is checked on it)
    if not wanted <= searched:
        bad.append(f"the index does not take {sorted(wanted - searched)}")
    for line in plan:
        for table in BIG:
            if line.startswith(f"SCAN {table}") and "INDEX" not in line:
                bad.append(f"full scan: {line}")
            if line.startswith(f"SCAN {table}") and "WHERE" in statement \
                    and "count(*)" not in statement and " = " in statement.split("WHERE")[1] \
                    .split("ORDER BY")[0] and not _only_keyset(statement):
                bad.append(f"an index walked whole though a filter is given: {line}")
        if "TEMP B-TREE" in line and not _small(statement):
            bad.append(f"sort: {line}")
    if not any("INDEX" in line for line in plan):
        bad.append("no index used")
    return [f"{b}\n  in {statement}\n  plan {plan}" for b in bad]


def _only_keyset(statement: str) -> bool:
    """The unfiltered list after a cursor: its only equalities are the cursor's ties."""
    where = statement.split("WHERE", 1)[1].split("ORDER BY")[0]
    return where.lstrip().startswith(("baton_runs.created_at <=", "baton_records.created_at <=",
                                      "(baton_runs.created_at, baton_runs.id) <",
                                      "(baton_records.created_at, baton_records.id) <"))


def _pg_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from _pg_nodes(child)


def _fed_by_index(node: dict[str, Any]) -> bool:
    below = [n for child in node.get("Plans", []) for n in _pg_nodes(child)]
    scans = [n for n in below if "Scan" in n["Node Type"]]
    return bool(scans) and all("Index" in n["Node Type"] or n["Node Type"] == "Bitmap Heap Scan"
                               for n in scans)


def _pg_problems(conn: Connection, statement: str, params: Any) -> list[str]:
    plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params).scalar_one()
    nodes = list(_pg_nodes(plan[0]["Plan"]))
    bad = []
    # (Which index: PostgreSQL's cost-based choice. Walking the list's order and testing a
    # common status on each row may well beat the status index; a small probe's column,
    # though, must be searched.)
    conds = " ".join(n.get("Index Cond", "") + n.get("Recheck Cond", "") for n in nodes)
    wanted = _equalities(statement)[:1] if _small(statement) else []
    missing = [c for c in wanted if c not in conds]
    if missing:
        bad.append(f"the index does not take {missing}")
    for n in nodes:
        if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in BIG:
            bad.append(f"Seq Scan on {n['Relation Name']}")
        if n["Node Type"] in ("Sort", "Incremental Sort") and not _small(statement) and not (
                n["Plan Rows"] <= SORT_BOUND and _fed_by_index(n)):
            bad.append(f"{n['Node Type']} of {n.get('Plan Rows')} rows")
    if not any("Index" in n["Node Type"] for n in nodes):
        bad.append("no index used")
    return [f"{b}\n  in {statement}\n  plan {[n['Node Type'] for n in nodes]}" for b in bad]


def _parts(statement: str, params: Any) -> Iterator[tuple[str, Any]]:
    """The probes a statement sends at once (UNION ALL of one read per probe), each with
    its parameters, so each is judged as the probe it is (small or not)."""
    if " UNION ALL " not in statement:
        yield statement, params
        return
    at = 0
    for part in statement.split(" UNION ALL "):
        if isinstance(params, dict):
            yield part, params
        else:
            n = part.count("?")
            yield part, tuple(params[at:at + n])
            at += n


def _check(store: SqlStore, call: Any) -> list[str]:
    with store.read() as tx:
        statements = _captured(tx, lambda: call(tx))
        assert statements, "the call sent no SELECT"
        check = _pg_problems if store.dialect == "postgresql" else _sqlite_problems
        return [p for st, params in statements for part, ps in _parts(st, params)
                for p in check(tx.conn, part, ps)]


def _run_filter_sets(run: dict[str, Any]) -> Iterator[dict[str, Any]]:
    values = {"orchestration": run["orchestration"], "version": run["version"],
              "status": run["status"], "current_stage": run["current_stage"] or "triage",
              "record_id": run["record_id"], "attention": True}
    keys = list(values)
    for n in range(len(keys) + 1):
        for combo in itertools.combinations(keys, n):
            yield {k: values[k] for k in combo}


def test_every_monitor_filter_combination_reads_an_index(
        populated: tuple[SqlStore, dict[str, Any]]) -> None:
    store, sample = populated
    problems = []
    for filters in _run_filter_sets(sample["run"]):
        with store.read() as tx:
            first = tx.page_runs_txn(filters, None, 0, 50)
        problems += _check(store, lambda tx, f=filters: tx.page_runs_txn(f, None, 0, 50))
        problems += _check(store, lambda tx, f=filters: tx.count_runs_bounded_txn(f))
        if first.next:
            problems += _check(store, lambda tx, f=filters, c=first.next:
                               tx.page_runs_txn(f, c, 0, 50))
    # the status filter alone, for every status (their shares differ a lot)
    for st in RunStatus:
        problems += _check(store, lambda tx, v=st.value: tx.page_runs_txn({"status": v}, None, 0, 50))
    assert not problems, "\n".join(problems[:10])


def _work_filter_sets(item: dict[str, Any]) -> Iterator[dict[str, Any]]:
    open_ = ["open", "claimed"]
    ann = User("ann", "Ann", None, frozenset({"agent"}), frozenset({"billing"}),
               frozenset({"tier1", "tier2"}))
    scope = (ann.name, ann.groups, ann.queues)
    yield {"statuses": open_}
    yield {"statuses": ["completed"]}
    yield {"statuses": open_, "scope": scope}
    yield {"statuses": open_, "assignee_kind": "queue", "assignee": "tier1"}
    yield {"statuses": open_, "scope": scope, "assignee_kind": "queue", "assignee": "tier2"}
    yield {"statuses": open_, "user": "bob"}
    yield {"statuses": open_, "record_id": item["record_id"]}
    yield {"statuses": open_, "run_id": item["run_id"]}
    yield {"statuses": open_, "record_id": item["record_id"], "scope": scope}
    # the Work Guide's tabs (mine, unclaimed, all) with its search and filters (residual:
    # checked on the rows an index range gives, in order), and "next item"'s read
    yield {"statuses": open_, "user": "ann", "search": "triage"}
    yield {"statuses": ["open"], "scope": scope, "orchestration": "onboarding"}
    yield {"statuses": ["open"], "scope": scope}
    yield {"statuses": open_, "sla": ("overdue", "2026-02-10T00:00:00.000Z")}
    yield {"statuses": open_, "scope": scope, "search": "no such words",
           "sla": ("on_track", "2026-01-15T00:00:00.000Z"), "assignee_kind": "queue",
           "assignee": "tier1"}


def test_every_work_list_order_and_scope_reads_an_index(
        populated: tuple[SqlStore, dict[str, Any]]) -> None:
    store, sample = populated
    problems = []
    for filters in _work_filter_sets(sample["item"]):
        problems += _check(store, lambda tx, f=filters: tx.count_work_items_bounded_txn(f))
        for order in ("created", "due", "priority"):
            with store.read() as tx:
                first = tx.page_work_items_txn(filters, order, None, 0, 50)
            problems += _check(store, lambda tx, f=filters, o=order:
                               tx.page_work_items_txn(f, o, None, 0, 50))
            if first.next:
                problems += _check(store, lambda tx, f=filters, o=order, c=first.next:
                                   tx.page_work_items_txn(f, o, c, 0, 50))
    assert not problems, "\n".join(problems[:10])


def test_records_with_and_without_a_type_read_an_index(
        populated: tuple[SqlStore, dict[str, Any]]) -> None:
    store, _ = populated
    problems = []
    for object_type in (None, "Case", "Account", "Nothing"):
        with store.read() as tx:
            first = tx.page_records_txn(object_type, None, 0, 50)
        problems += _check(store, lambda tx, t=object_type: tx.page_records_txn(t, None, 0, 50))
        problems += _check(store, lambda tx, t=object_type: tx.count_records_bounded_txn(t))
        if first.next:
            problems += _check(store, lambda tx, t=object_type, c=first.next:
                               tx.page_records_txn(t, c, 0, 50))
    assert not problems, "\n".join(problems[:10])


def _range_conds(store: SqlStore, call: Any) -> list[str]:
    """What each statement ``call`` sends gives its index as the range to read: SQLite's
    SEARCH lines, PostgreSQL's index conditions."""
    out = []
    with store.read() as tx:
        for statement, params in _captured(tx, lambda: call(tx)):
            for part, ps in _parts(statement, params):
                if store.dialect == "postgresql":
                    plan = tx.conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + part,
                                                   ps).scalar_one()
                    out.append(" ".join(n.get("Index Cond", "")
                                        for n in _pg_nodes(plan[0]["Plan"])))
                else:
                    rows = tx.conn.exec_driver_sql("EXPLAIN QUERY PLAN " + part, ps).all()
                    out.append(" ".join(r[3] for r in rows if r[3].startswith("SEARCH")))
    return out


def test_a_page_after_a_cursor_starts_its_index_range_at_the_cursor_id_included(
        populated: tuple[SqlStore, dict[str, Any]]) -> None:
    """The range starts at the cursor's (created_at, id), not at its created_at: a page
    deep in many rows of one created_at (a bulk import's) reads a page, not all of them."""
    store, _ = populated
    calls = {"records": lambda tx, c: tx.page_records_txn(None, c, 0, 50),
             "Case records": lambda tx, c: tx.page_records_txn("Case", c, 0, 50),
             "runs": lambda tx, c: tx.page_runs_txn({}, c, 0, 50),
             "runs of a status": lambda tx, c: tx.page_runs_txn({"status": "completed"},
                                                                c, 0, 50)}
    wanted = (r"ROW\(\(?created_at\)?(::\w+)?, \(?id\)?(::\w+)?\) < ROW\(" if store.dialect == "postgresql"
              else r"\(created_at,id\)<\(\?,\?\)")
    for what, call in calls.items():
        with store.read() as tx:
            cursor = call(tx, None).next
        assert cursor is not None
        conds = _range_conds(store, lambda tx, f=call, c=cursor: f(tx, c))
        assert conds and all(re.search(wanted, c) for c in conds), (what, conds)


def test_the_needs_attention_filter_reads_its_partial_index(
        populated: tuple[SqlStore, dict[str, Any]]) -> None:
    """The Monitor's "needs attention" filter: one range of ix_runs_attention per value
    (a partial index: the runs that need nothing are not in it), newest first, no sort;
    its count reads the same index, and the rows are those the column marks."""
    store, _ = populated
    with store.read() as tx:
        statements = _captured(tx, lambda: (tx.page_runs_txn({"attention": True}, None, 0, 50),
                                                 tx.count_runs_bounded_txn({"attention": True})))
        plans = []
        for statement, params in statements:
            for part, ps in _parts(statement, params):
                if store.dialect == "postgresql":
                    plan = tx.conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + part, ps).scalar_one()
                    plans.append(" ".join(n.get("Index Name", "") + n["Node Type"]
                                          for n in _pg_nodes(plan[0]["Plan"])))
                else:
                    plans.append(" ".join(r[3] for r in tx.conn.exec_driver_sql(
                        "EXPLAIN QUERY PLAN " + part, ps).all()))
        page = tx.page_runs_txn({"attention": True}, None, 0, 50)
        marked = tx.conn.exec_driver_sql(
            "SELECT id FROM baton_runs WHERE attention IS NOT NULL "
            "ORDER BY created_at DESC, id DESC LIMIT 50").scalars().all()
    assert len(plans) >= 4, plans  # a read per value (3) and the count's
    for plan in plans:
        assert "ix_runs_attention" in plan, plan
        assert "TEMP B-TREE" not in plan and "Seq Scan" not in plan, plan
    assert [r["id"] for r in page.rows] == list(marked) and len(marked) == 50
    assert all(r["attention"] in (1, 2, 3) for r in page.rows)


def test_the_fallout_list_reads_only_the_runs_marked_in_fallout(
        populated: tuple[SqlStore, dict[str, Any]]) -> None:
    """The Fallout page reads the runs whose attention has the fallout bit through the
    partial index, not every run in progress."""
    store, _ = populated
    with store.read() as tx:
        statements = _captured(tx, lambda: tx.list_runs_txn({"attention": (1, 3)}, 100_000, 0))
        (statement, params), = statements
        if store.dialect == "postgresql":
            plan = tx.conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params).scalar_one()
            text = " ".join(n.get("Index Name", "") + " " + n["Node Type"]
                            for n in _pg_nodes(plan[0]["Plan"]))
        else:
            text = " ".join(r[3] for r in tx.conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + statement, params).all())
        rows = tx.list_runs_txn({"attention": (1, 3)}, 100_000, 0)
        marked = tx.conn.exec_driver_sql(
            "SELECT count(*) FROM baton_runs WHERE attention IN (1, 3)").scalar_one()
    assert "ix_runs_attention" in text and "Seq Scan" not in text, text
    assert len(rows) == marked > 0 and all(r["attention"] in (1, 3) for r in rows)
