"""A batch of completions (``complete_many``) reads its items, their runs and records with
one statement per table, read ahead, and writes the runs' updates together at commit; what
each completion does is unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from baton.store.sql.tx import SqlTx

FLOW = """
kind: object
name: Ticket
fields:
  subject: {type: string, required: true}
---
kind: orchestration
name: handle
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: work
    steps:
%s
"""
ONE = "      - {name: answer, type: interactive, assign: {queue: support}, form: [{name: reply, type: text, required: true}]}"
TWO = ONE + "\n" + ONE.replace("answer", "check")


def _spy(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = {"fetch_one": [], "write": [], "write_many": []}
    for name in seen:
        orig = getattr(SqlTx, f"_{name}")

        def spy(self: SqlTx, key: Any, *a: Any, _o: Any = orig, _n: str = name, **kw: Any) -> Any:
            seen[_n].append(key)
            return _o(self, key, *a, **kw)

        monkeypatch.setattr(SqlTx, f"_{name}", spy)
    return seen


def test_a_batch_reads_its_rows_ahead_and_writes_its_runs_together(
        harness: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.deploy_text(FLOW % ONE)
    e = harness.engine
    e.create_records("Ticket", [{"subject": f"t{i}"} for i in range(5)])
    harness.work()
    items = e.list_work(queue="support")
    assert len(items) == 5
    seen = _spy(monkeypatch)
    results = e.complete_many([(i["id"], "ann", {"reply": "ok"}) for i in items])
    monkeypatch.undo()
    assert [r["status"] for r in results] == ["completed"] * 5
    # No item, run or record is read by id on its own, and no run is updated on its own.
    assert [k for k in seen["fetch_one"] if k[0] in ("get_item", "get_run", "get_record")] == []
    assert [k for k in seen["write"] if k[0] == "update_run"] == []
    assert seen["write_many"].count("update_run") == 1
    harness.work()
    runs = {e.get_run(i["run_id"]).status.value for i in items}
    assert runs == {"completed"}
    with e.store.read() as tx:
        done = tx.events_txn(types=["work_item_completed"])
    assert sorted(ev["data"]["work_item"] for ev in done) == sorted(i["id"] for i in items)


def test_two_items_of_one_run_in_a_batch_see_each_others_changes(harness: Any) -> None:
    """The second item's completion reads the run the first one changed (its row read
    ahead is dropped when the run is written): both steps complete, the run finishes."""
    harness.deploy_text(FLOW % TWO)
    e = harness.engine
    e.create_records("Ticket", [{"subject": "a"}, {"subject": "b"}])
    harness.work()
    items = sorted(e.list_work(queue="support"), key=lambda i: (i["run_id"], i["step"]))
    assert [i["step"] for i in items] == ["answer", "check", "answer", "check"]
    results = e.complete_many([(i["id"], "ann", {"reply": i["step"]}) for i in items])
    assert [type(r).__name__ for r in results] == ["dict"] * 4
    assert results[1]["run"].steps["answer"].status.value == "completed"
    harness.work()
    for i in items:
        run = e.get_run(i["run_id"])
        assert run.status.value == "completed"
        assert {n: s.status.value for n, s in run.steps.items()} == {
            "answer": "completed", "check": "completed"}


def test_an_item_completed_twice_in_a_batch_is_an_error_and_the_rest_commits(harness: Any) -> None:
    harness.deploy_text(FLOW % ONE)
    e = harness.engine
    e.create_records("Ticket", [{"subject": "a"}, {"subject": "b"}])
    harness.work()
    a, b = (i["id"] for i in e.list_work(queue="support"))
    results = e.complete_many([(a, "ann", {"reply": "1"}), (a, "ann", {"reply": "2"}),
                               (b, "ann", {"reply": "3"})])
    assert [type(r).__name__ for r in results] == ["dict", "TransitionConflict", "dict"]
    assert e.get_work_item(a)["data"] == {"reply": "1"}
    assert e.get_work_item(b)["status"] == "completed"


def test_a_row_read_ahead_is_dropped_when_the_transaction_writes_it(harness: Any) -> None:
    harness.deploy_text(FLOW % ONE)
    e = harness.engine
    e.create_record("Ticket", {"subject": "a"})
    harness.work()
    (item,) = e.list_work(queue="support")
    with e.store.write() as tx:
        rows = tx.read_ahead_txn("work_items", [item["id"]])
        run = tx.read_ahead_txn("runs", [item["run_id"]])[item["run_id"]]
        rec = tx.read_ahead_txn("records", [item["record_id"]])[item["record_id"]]
        assert rows[item["id"]]["version"] == item["version"]
        assert tx.update_work_item_txn(item["id"], ["open"], item["version"],
                                       {"claimed_by": "ann", "status": "claimed"})
        tx.update_run_txn({**run, "current_stage": "elsewhere"}, run["seq"])
        tx.update_record_txn(rec["id"], {"subject": "b"}, rec["version"], rec["updated_at"])
        assert tx.get_work_item_txn(item["id"])["status"] == "claimed"  # type: ignore[index]
        assert tx.get_run_txn(run["id"])["current_stage"] == "elsewhere"  # type: ignore[index]
        assert tx.get_record_txn(rec["id"])["data"] == {"subject": "b"}  # type: ignore[index]
        # Used once: the next read is the database's (the caller may change what it got).
        tx.read_ahead_txn("records", [rec["id"]])
        first = tx.get_record_txn(rec["id"])
        assert first is not None
        first["data"] = {"subject": "changed by the caller"}
        assert tx.get_record_txn(rec["id"])["data"] == {"subject": "b"}  # type: ignore[index]
        # A savepoint rolled back forgets what it read ahead (it may hold the block's writes).
        with pytest.raises(RuntimeError), tx.savepoint():
            tx.update_record_txn(rec["id"], {"subject": "c"}, rec["version"] + 1, rec["updated_at"])
            tx.read_ahead_txn("records", [rec["id"]])
            raise RuntimeError("roll back")
        assert tx.get_record_txn(rec["id"])["data"] == {"subject": "b"}  # type: ignore[index]
