"""Planned commits: a worker works out a batch's commit on a read snapshot and takes the
write lock only to check and write it. The result must be what committing under the lock
gives; a plan whose rows changed meanwhile is dropped and the batch committed the usual way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select

from baton import flow
from baton.flows import FlowContext
from baton.runtime.worker import Worker
from baton.store import schema as s


@flow("t_plan.classify")
def _classify(ctx: FlowContext) -> dict[str, Any]:
    ctx.update_record({"status": "Triaged", "category": "billing" if "invoice" in ctx.record["subject"] else "tech"})
    ctx.vars["level"] = ctx.vars.get("level", 1) + 1
    return {"ok": True}


@flow("t_plan.tag")
def _tag(ctx: FlowContext) -> dict[str, Any]:
    return {"tag": ctx.record["subject"].split()[0]}


DEFS = """
kind: object
name: Case
fields:
  subject:  {type: string, required: true}
  priority: {type: int, default: 1}
  status:   {type: choice, choices: [New, Triaged, Closed], default: New}
  category: {type: string}
---
kind: orchestration
name: t_plan
trigger: {type: record, object: Case, on: [create]}
variables: {level: 1}
stages:
  - name: s
    steps:
      - {name: classify, type: background, flow: t_plan.classify}
      - {name: tag, type: background, flow: t_plan.tag}
      - {name: review, type: interactive, after: [classify, tag],
         assign: {queue: '="tier" + string(vars.level)'}, sla: {duration: 4h, jeopardy: 1h}}
"""


def _shape(harness: Any, record_id: str) -> tuple[Any, ...]:
    """What a run left behind, without ids and times."""
    eng = harness.engine
    rec = eng.get_record(record_id)
    (run,) = eng.list_runs(record_id=record_id)
    items = [(i["step"], i["assignee"], i["status"]) for i in eng.list_work(run_id=run.id)]
    events = [(e["type"], e["actor"]) for e in eng.timeline(record_id)]
    return ({k: rec.get(k) for k in ("status", "category", "version")}, run.vars,
            {n: (sr.status.value, sr.output) for n, sr in run.steps.items()}, items, events)


def test_a_planned_commit_leaves_what_a_commit_under_the_lock_leaves(harness: Any) -> None:
    harness.deploy_text(DEFS)
    eng = harness.engine
    planned = eng.create_record("Case", {"subject": "invoice 1"})
    harness.work()
    assert harness.worker.stats.planned_commits >= 1
    assert harness.worker.stats.unplanned_commits == 0

    locked_worker = Worker(eng)
    locked_worker.plan_commits = False
    locked = eng.create_record("Case", {"subject": "invoice 2"})
    locked_worker.run(until_idle=True)
    assert locked_worker.stats.planned_commits == 0

    assert _shape(harness, planned["id"]) == _shape(harness, locked["id"])
    shape = _shape(harness, planned["id"])
    assert shape[0] == {"status": "Triaged", "category": "billing", "version": 2}
    assert shape[3] == [("review", "tier2", "open")]  # the item, assigned with the new vars


def test_a_plan_whose_record_changed_meanwhile_is_not_used(harness: Any) -> None:
    """Someone updates the record after the worker planned but before it took the lock: the
    plan is dropped, and the batch is committed under the lock on top of that change."""
    harness.deploy_text(DEFS)
    eng = harness.engine
    rec = eng.create_record("Case", {"subject": "invoice 3"})
    store = eng.store
    plan = store.plan

    @contextmanager
    def plan_then_someone_writes() -> Iterator[Any]:
        with plan() as p:
            yield p
        if harness.worker.stats.unplanned_commits == 0:  # once
            eng.update_record(rec["id"], {"priority": 7}, actor="olga")

    store.plan = plan_then_someone_writes  # type: ignore[method-assign]
    try:
        harness.work()
    finally:
        store.plan = plan  # type: ignore[method-assign]
    assert harness.worker.stats.unplanned_commits == 1
    after = eng.get_record(rec["id"])
    # Olga's change and the flow's: neither lost.
    assert (after["priority"], after["status"], after["category"]) == (7, "Triaged", "billing")
    assert after["version"] == 3
    (run,) = eng.list_runs(record_id=rec["id"])
    assert {n: sr.status.value for n, sr in eng.get_run(run.id).steps.items()} == {
        "classify": "completed", "tag": "completed", "review": "waiting_for_person"}
    assert len([e for e in eng.timeline(rec["id"]) if e["type"] == "step_completed"]) == 2


@flow("t_plan.step")
def _step(ctx: FlowContext) -> dict[str, Any]:
    return {"step": ctx.step, "saw": sorted(n for n, s in ctx.steps.items() if s.status == "completed")}


CHAIN = """
kind: orchestration
name: t_chain
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: one
    steps:
      - {name: a, type: background, flow: t_plan.step}
      - {name: b, type: background, flow: t_plan.step, after: [a]}
    next: [{goto: two}]
  - name: two
    steps:
      - {name: c, type: background, flow: t_plan.step}
"""


def test_steps_made_ready_by_a_batch_run_in_that_batch(harness: Any) -> None:
    """a → b → (stage two) c: one claimed job, one commit; b and c never become job rows,
    and the run ends exactly as with one job per step."""
    harness.deploy_text(DEFS.split("---")[0] + "---\n" + CHAIN)
    eng = harness.engine
    chained = eng.create_record("Case", {"subject": "invoice 4"})
    harness.work()
    assert harness.worker.stats.chained == 2
    assert harness.worker.stats.planned_commits == 1
    (run,) = eng.list_runs(record_id=chained["id"])
    run = eng.get_run(run.id)
    assert run.status.value == "completed"
    assert run.steps["c"].output == {"step": "c", "saw": ["a", "b"]}

    one_by_one = Worker(eng)
    one_by_one.plan_commits = False
    other = eng.create_record("Case", {"subject": "invoice 5"})
    one_by_one.run(until_idle=True)
    assert one_by_one.stats.jobs == 3 and one_by_one.stats.chained == 0
    assert _shape(harness, chained["id"])[1:] == _shape(harness, other["id"])[1:]


def test_chaining_stops_at_its_budget(harness: Any, monkeypatch: Any) -> None:
    import baton.runtime.worker as worker_module

    monkeypatch.setattr(worker_module, "CHAIN_LIMIT", 1)
    harness.deploy_text(DEFS.split("---")[0] + "---\n" + CHAIN)
    eng = harness.engine
    rec = eng.create_record("Case", {"subject": "invoice 6"})
    harness.work()
    assert harness.worker.stats.chained == 1  # b in a's batch; c waited for the next batch
    assert harness.worker.stats.planned_commits == 2
    (run,) = eng.list_runs(record_id=rec["id"])
    assert eng.get_run(run.id).status.value == "completed"


def test_a_plans_new_work_items_are_inserted_in_one_statement(harness: Any, monkeypatch: Any) -> None:
    """Replaying a plan inserts its consecutive new work items with one executemany (on
    PostgreSQL a round trip per item was 1.2 of the worker's ~4 per triage run)."""
    from baton.store.sql.tx import SqlTx

    harness.deploy_text(DEFS)
    eng = harness.engine
    batches: list[int] = []
    singles: list[str] = []
    many, one = SqlTx.insert_work_items_txn, SqlTx.insert_work_item_txn

    def spy_many(self: SqlTx, rows: Any) -> None:
        batches.append(len(rows))
        many(self, rows)

    def spy_one(self: SqlTx, row: Any) -> None:
        if type(self) is SqlTx:  # the replay under the lock, not the plan recording it
            singles.append(row["id"])
        one(self, row)

    monkeypatch.setattr(SqlTx, "insert_work_items_txn", spy_many)
    monkeypatch.setattr(SqlTx, "insert_work_item_txn", spy_one)
    recs = eng.create_records("Case", [{"subject": f"invoice {i}"} for i in range(3)], actor="t")
    harness.work()
    assert harness.worker.stats.planned_commits >= 1 and harness.worker.stats.unplanned_commits == 0
    assert batches == [3] and singles == []
    items = eng.list_work(limit=10)
    assert sorted(i["record_id"] for i in items) == sorted(r["id"] for r in recs)
    assert {(i["step"], i["assignee"], i["status"]) for i in items} == {("review", "tier2", "open")}


def test_a_batchs_records_active_runs_are_read_in_one_statement(harness: Any, monkeypatch: Any) -> None:
    """Each record update of a plan reads the record's runs in progress (to wake the others):
    the worker reads them for the whole batch in one statement, and the check under the lock
    is one more; no statement per record."""
    from baton.store.sql.tx import SqlTx

    harness.deploy_text(DEFS)
    eng = harness.engine
    per_record: list[str] = []
    batched: list[int] = []
    run, many = SqlTx._run, SqlTx.active_run_ids_for_records_txn

    def spy_run(self: SqlTx, h: Any, values: dict[str, Any]) -> Any:
        if "_record" in values:
            per_record.append(values["_record"])
        return run(self, h, values)

    def spy_many(self: SqlTx, ids: Any) -> dict[str, list[str]]:
        batched.append(len(ids))
        return many(self, ids)

    recs = eng.create_records("Case", [{"subject": f"invoice {i}"} for i in range(3)], actor="t")
    monkeypatch.setattr(SqlTx, "_run", spy_run)
    monkeypatch.setattr(SqlTx, "active_run_ids_for_records_txn", spy_many)
    harness.work()
    assert harness.worker.stats.planned_commits >= 1 and harness.worker.stats.unplanned_commits == 0
    assert per_record == []
    assert batched and set(batched) == {3}  # read ahead for the batch, checked under the lock
    for rec in recs:
        assert eng.get_record(rec["id"])["status"] == "Triaged"


def _job_counts(eng: Any) -> dict[str, int]:
    with eng.store.read() as tx:
        return dict(tx.count_jobs_txn())


def test_the_next_batch_is_claimed_in_the_commit_of_the_last(harness: Any, monkeypatch: Any) -> None:
    """A worker's loop claims its next batch in the transaction that commits the last one:
    a transaction of its own claims only the first batch and the empty one at the end."""
    from baton.store.sql.jobs import JobQueue

    harness.deploy_text(DEFS)
    eng = harness.engine
    alone: list[int] = []  # claims in a transaction of their own (claim_jobs)
    ahead: list[int] = []  # claims in a batch's commit (claim_jobs_txn, called by the worker)
    inside: list[bool] = []
    claim, claim_txn = JobQueue.claim_jobs, JobQueue.claim_jobs_txn

    def spy(self: Any, *args: Any, **kw: Any) -> Any:
        inside.append(True)
        try:
            alone.append(len(got := claim(self, *args, **kw)))
        finally:
            inside.pop()
        return got

    def spy_txn(self: Any, *args: Any, **kw: Any) -> Any:
        got = claim_txn(self, *args, **kw)
        if not inside:
            ahead.append(len(got))
        return got

    monkeypatch.setattr(JobQueue, "claim_jobs", spy)
    monkeypatch.setattr(JobQueue, "claim_jobs_txn", spy_txn)
    recs = eng.create_records("Case", [{"subject": f"invoice {i}"} for i in range(3)], actor="t")
    worker = Worker(eng, batch=1)
    worker.run(until_idle=True)
    assert worker.stats.jobs == 6 and worker.stats.planned_commits == 6
    assert [n for n in alone if n] == [1]  # the first batch; then only the last, empty claim
    assert ahead == [1, 1, 1, 1, 1, 0]  # the last commit found none to claim
    assert _job_counts(eng) == {}  # nothing left claimed
    assert {(i["step"], i["status"]) for i in eng.list_work(limit=10)} == {("review", "open")}
    assert sorted(i["record_id"] for i in eng.list_work(limit=10)) == sorted(r["id"] for r in recs)

    # run_once() on its own claims its one batch itself and claims none ahead.
    alone.clear()
    ahead.clear()
    eng.create_records("Case", [{"subject": f"invoice {i}"} for i in range(2)], actor="t")
    assert Worker(eng, batch=1).run_once() == 1
    assert alone == [1] and ahead == []
    assert _job_counts(eng) == {"ready": 3}


def test_jobs_claimed_ahead_are_released_when_the_worker_stops(harness: Any) -> None:
    """Stopped right after a commit that claimed the next batch, the worker hands those jobs
    back (ready, claimed by no one); another worker runs them."""
    harness.deploy_text(DEFS)
    eng = harness.engine
    eng.create_records("Case", [{"subject": f"invoice {i}"} for i in range(2)], actor="t")
    worker = Worker(eng, batch=1)

    class StopAfterCommit:
        def hit(self, point: str) -> None:
            if point == "after_commit":
                worker.stop()

    worker._faults = StopAfterCommit()  # type: ignore[assignment]
    worker.run(until_idle=True)
    assert worker.stats.jobs == 1
    assert _job_counts(eng) == {"ready": 3}
    with eng.store.read() as tx:
        rows = tx.conn.execute(select(s.jobs.c.claimed_by, s.jobs.c.attempts)).all()
    assert {r.claimed_by for r in rows} == {None}
    # The one claimed ahead is handed back with its claim not counted as an attempt: it never
    # began (as the unrun jobs of a batch stopped in), so a job's attempts count what ran.
    assert sorted(r.attempts for r in rows) == [0, 0, 0]
    Worker(eng).run(until_idle=True)
    assert _job_counts(eng) == {}
    assert len(eng.list_work(limit=10)) == 2
