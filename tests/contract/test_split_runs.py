"""Large runs stored split (state format 4, ``baton_run_steps``), on both databases.

A run of more than SPLIT_STEPS steps is written as its document without ``steps`` plus a
row per step, only the changed steps rewritten; every read puts them back. The property
test drives random mutation sequences (every way the engine changes a step: status,
output, SLA and children changed in place, attempts, steps added, removed, reordered, the
run shrunk below the split size and grown again) through every write path (at once,
deferred and lazy, several writes of a batch, a store that has not read the run) and every
read path, and checks that what is read back is the run in memory, and that the step rows
are exactly the run's steps.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from baton.engine import sla
from baton.engine.state import SPLIT_STEPS, Run, StepRun
from baton.engine.status import StepStatus
from baton.errors import TransitionConflict
from baton.runtime.apply import run_row
from baton.store import schema as s
from baton.store.sql import SqlStore, runsteps
from baton.store.sql.plan import PlanTx
from baton.store.sql.tx import SqlTx

NOW = "2026-12-03T10:00:00.000Z"
_ids = itertools.count()


def _run(n: int, prefix: str = "r") -> Run:
    run = Run(f"{prefix}{next(_ids)}", "plan:O-1", 1, None, created_at=NOW,
              current_stage="fulfil")
    for i in range(n):
        run.steps[f"s{i}"] = StepRun(f"s{i}", "fulfil", 1)
    return run


def _insert(store: SqlStore, run: Run, *, split: bool = True) -> None:
    """Store a new run; ``split``: and write it once (a run is split at its first write)."""
    with store.write() as tx:
        tx.insert_run_txn(run_row(run, NOW))
    if split:
        _write(store, run, "at_once")


def _stored_steps(store: SqlStore, run_id: str) -> list[str]:
    t = s.run_steps
    with store.read() as tx:
        return [r[0] for r in tx.conn.execute(
            select(t.c.step).where(t.c.run_id == run_id).order_by(t.c.pos))]


def _state(store: SqlStore, run_id: str) -> dict[str, Any]:
    with store.read() as tx:
        return dict(tx.conn.execute(select(s.runs.c.state).where(s.runs.c.id == run_id)).scalar_one())


def _write(store: SqlStore, run: Run, how: str) -> None:
    """Write ``run`` (its seq moved on by one) by one of the store's write paths."""
    expected = run.seq
    run.seq = expected + 1
    if how == "at_once":
        with store.write() as tx:
            tx.update_run_txn(run_row(run, NOW), expected)
    elif how == "lazy":  # the worker's batch: deferred, the row built at flush
        with store.write() as tx:
            tx.deferred = True
            tx.update_run_lazy_txn(run.id, lambda: run_row(run, NOW), expected)
    else:  # "twice": two decisions of one batch on the run, the last row wins
        with store.write() as tx:
            tx.deferred = True
            tx.update_run_lazy_txn(run.id, lambda: {**run_row(run, NOW), "state": {}}, expected)
            tx.update_run_lazy_txn(run.id, lambda: run_row(run, NOW), run.seq)


def _read(store: SqlStore, run_id: str, how: str) -> dict[str, Any]:
    with store.write() if how == "ahead" else store.read() as tx:
        if how == "one":
            row = tx.get_run_txn(run_id)
        elif how == "many":
            row = tx.get_runs_txn([run_id, "nope"])[run_id]
        elif how == "list":
            row = next(r for r in tx.list_runs_txn({"orchestration": "plan:O-1"}, 10_000, 0)
                       if r["id"] == run_id)
        else:
            tx.read_ahead_txn("runs", [run_id])
            row = tx.get_run_txn(run_id)
        assert row is not None
        return row


# (No NUL, no lone surrogate: PostgreSQL's JSONB refuses them, in a run's one document as
# in a step row.)
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                max_size=4)
_json = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2)
                     | _text, lambda kids: st.lists(kids, max_size=3)
                     | st.dictionaries(_text, kids, max_size=3), max_leaves=6)
_op = st.one_of(
    st.tuples(st.just("status"), st.integers(0, 10_000), st.sampled_from(list(StepStatus))),
    st.tuples(st.just("output"), st.integers(0, 10_000), st.dictionaries(_text, _json, max_size=3)),
    st.tuples(st.just("output_in_place"), st.integers(0, 10_000), st.tuples(_text, _json)),
    st.tuples(st.just("sla_in_place"), st.integers(0, 10_000), st.sampled_from(["on_track", "in_jeopardy", "overdue"])),
    st.tuples(st.just("child_in_place"), st.integers(0, 10_000), st.sampled_from(["in_progress", "completed"])),
    st.tuples(st.just("attempts"), st.integers(0, 10_000), st.integers(0, 5)),
    st.tuples(st.just("add"), st.integers(0, 10_000), st.just(None)),
    st.tuples(st.just("remove"), st.integers(0, 10_000), st.just(None)),
    st.tuples(st.just("to_end"), st.integers(0, 10_000), st.just(None)),
    st.tuples(st.just("truncate"), st.integers(SPLIT_STEPS - 4, SPLIT_STEPS + 2), st.just(None)),
    st.tuples(st.just("vars"), st.integers(0, 10_000), _json),
)


def _mutate(run: Run, op: tuple[str, int, Any]) -> None:
    kind, i, arg = op
    names = list(run.steps)
    sr = run.steps[names[i % len(names)]] if names else None
    if kind == "add":
        name = f"n{next(_ids)}"
        run.steps[name] = StepRun(name, "fulfil", 1)
    elif kind == "vars":
        run.vars[f"v{i % 5}"] = arg
    elif kind == "truncate":
        for name in names[i:]:
            del run.steps[name]
    elif sr is None:
        return
    elif kind == "status":
        sr.status = arg
    elif kind == "output":
        sr.output = arg
    elif kind == "output_in_place":  # changed in place: no attribute is assigned
        if sr.output is None:
            sr.output = {}
        sr.output[arg[0]] = arg[1]
        sr.touch()  # (as the engine marks what it changes in place)
    elif kind == "sla_in_place":
        if sr.sla is None:
            sr.sla = {"status": "on_track", "due_at": NOW, "jeopardy_at": None}
        else:
            sr.sla["status"] = arg
            sr.touch()
    elif kind == "child_in_place":
        if sr.children is None:
            sr.children = []
        if sr.children and i % 2:
            sr.children[-1]["status"] = arg
        else:
            sr.children.append({"index": len(sr.children), "status": arg, "run_id": None})
        sr.touch()
    elif kind == "attempts":
        sr.attempts = arg
    elif kind == "remove":
        del run.steps[sr.name]
    elif kind == "to_end":
        run.steps[sr.name] = run.steps.pop(sr.name)


def _check(store: SqlStore, run: Run, read_how: str) -> Run:
    row = _read(store, run.id, read_how)
    back = Run.from_json(row["state"])
    assert back.to_json() == run.to_json()
    split = len(run.steps) > SPLIT_STEPS
    # the steps in their order, one document or split (PostgreSQL: json, not jsonb, since
    # migration 26; step rows keep theirs by ``pos``)
    assert list(back.steps) == list(run.steps)
    assert list(back.stages) == list(run.stages)
    if split:
        head = _state(store, run.id)
        assert head["format"] == 4 and head["split"] is True and "steps" not in head
        assert _stored_steps(store, run.id) == list(run.steps)
    else:
        assert "split" not in _state(store, run.id)
    return back


@pytest.fixture
def cold(db_url: str) -> Iterator[SqlStore]:
    """A second store on the same database: it has read nothing (no step texts kept)."""
    other = SqlStore(db_url)
    yield other
    other.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(SPLIT_STEPS - 2, SPLIT_STEPS + 40),
       rounds=st.lists(st.tuples(st.lists(_op, min_size=1, max_size=4),
                                 st.sampled_from(["at_once", "lazy", "twice"]),
                                 st.sampled_from(["one", "many", "list", "ahead"]),
                                 st.booleans(), st.booleans()),
                       min_size=1, max_size=6))
def test_a_split_run_reads_back_as_written(store: SqlStore, cold: SqlStore, size: int,
                                           rounds: list[Any]) -> None:
    run = _run(size)
    with store.write() as tx:  # stored as one document: split at its first write
        tx.insert_run_txn(run_row(run, NOW))
    assert "split" not in _state(store, run.id)
    assert Run.from_json(_read(store, run.id, "one")["state"]).to_json() == run.to_json()
    for ops, write_how, read_how, from_read, by_cold in rounds:
        for op in ops:
            _mutate(run, op)
        _write(cold if by_cold else store, run, write_how)
        back = _check(store, run, read_how)
        if from_read:  # go on with the run as read (its values are the read document's)
            run = back


def test_only_the_steps_that_changed_are_written(store: SqlStore, cold: SqlStore,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(200)
    _insert(store, run)
    written: list[list[str]] = []
    real = SqlTx._write_steps

    def spy(self: SqlTx, writes: Any) -> None:
        written.append([u[1] for w in writes for u in w.upserts])
        real(self, writes)

    monkeypatch.setattr(SqlTx, "_write_steps", spy)
    row = _read(store, run.id, "one")
    run = Run.from_json(row["state"])
    run.steps["s7"].status = StepStatus.COMPLETED
    run.steps["s9"].output = {"x": 1}
    _write(store, run, "lazy")
    assert written == [["s7", "s9"]]
    _read(store, run.id, "many")
    run.steps["s9"].output["x"] = True  # in place, and equal to 1 in Python: still a change
    run.steps["s9"].touch()
    _write(store, run, "at_once")
    assert written[-1] == ["s9"]
    # Written by this store, not read since: compared with what it committed.
    run.steps["s1"].attempts = 2
    _write(store, run, "lazy")
    assert written[-1] == ["s1"]
    # A store that has not seen the run rewrites every step (correct, slower).
    run.steps["s2"].attempts = 3
    _write(cold, run, "at_once")
    assert len(written[-1]) == 200
    # ... and one whose write did not commit compares with nothing it wrote then.
    run.steps["s3"].attempts = 4
    with pytest.raises(RuntimeError), store.write() as tx:
        run.seq += 1
        tx.update_run_txn(run_row(run, NOW), run.seq - 1)
        raise RuntimeError("rolled back")
    run.seq -= 1
    _write(store, run, "at_once")  # (this store last saw the run before cold's write)
    assert len(written[-1]) == 200
    back = _read(store, run.id, "one")["state"]["steps"]
    assert back["s9"]["output"] == {"x": True} and back["s1"]["attempts"] == 2
    assert back["s2"]["attempts"] == 3 and back["s3"]["attempts"] == 4


def test_a_stale_write_changes_no_step_row(store: SqlStore) -> None:
    run = _run(100)
    _insert(store, run)
    _read(store, run.id, "one")
    before = _read(store, run.id, "one")["state"]
    run.steps["s3"].status = StepStatus.COMPLETED
    run.seq = 5  # not the stored seq (1): the compare-and-set refuses, the steps stay
    with pytest.raises(TransitionConflict), store.write() as tx:
        tx.update_run_txn(run_row(run, NOW), 4)
    with pytest.raises(TransitionConflict), store.write() as tx:
        tx.deferred = True
        tx.update_run_lazy_txn(run.id, lambda: run_row(run, NOW), 4)
    assert _read(store, run.id, "one")["state"] == before


def test_formats_2_and_3_stay_readable_and_a_big_run_moves_at_its_next_write(store: SqlStore) -> None:
    run = _run(120)
    row = {**run_row(run, NOW), "state": run.to_json()}
    with store.write() as tx:  # as stored before migration 25: one document, format 3
        tx.conn.execute(s.runs.insert().values(**row))
    assert _state(store, run.id)["format"] == 3
    assert Run.from_json(_read(store, run.id, "one")["state"]).to_json() == run.to_json()
    run.steps["s0"].status = StepStatus.RUNNING
    _write(store, run, "lazy")
    assert _state(store, run.id)["format"] == 4
    _check(store, run, "many")


def test_a_split_state_read_without_its_steps_is_refused(store: SqlStore) -> None:
    run = _run(70)
    _insert(store, run)
    with pytest.raises(ValueError, match="without its steps"):
        Run.from_json(_state(store, run.id))


def test_step_slas_and_fallout_read_a_split_run_steps(store: SqlStore) -> None:
    run = _run(80)
    run.steps["s5"].sla = {"status": "overdue", "due_at": NOW, "jeopardy_at": None}
    run.steps["s5"].iteration = 2
    run.steps["s6"].status = StepStatus.FALLOUT
    _insert(store, run)
    with store.read() as tx:
        slas = tx.step_slas_txn([(run.id, "s5"), (run.id, "s6"), (run.id, "nope")])
    assert slas[(run.id, "s5")] == (2, run.steps["s5"].sla)
    assert slas[(run.id, "s6")] == (1, None)
    assert slas[(run.id, "nope")] == (None, None)
    from baton.store.sql.metrics import steps_in_fallout

    with store.read() as tx:  # (its steps merged: s6 is a row of its own; plan:O-1 is "plan")
        assert steps_in_fallout(tx) == {"plan": 1}  # type: ignore[arg-type]


def test_a_planned_commit_carries_the_step_rows(store: SqlStore) -> None:
    run = _run(90)
    _insert(store, run)
    with store.plan() as plan:
        assert isinstance(plan, PlanTx)
        got = Run.from_json(plan.get_run_txn(run.id)["state"])  # type: ignore[index]
        got.steps["s2"].status = StepStatus.COMPLETED
        got.seq += 1
        plan.update_run_lazy_txn(run.id, lambda: run_row(got, NOW), got.seq - 1)
        new = _run(75, "child")
        plan.insert_run_txn(run_row(new, NOW))
    with store.write() as tx:
        plan.commit_into(tx)
    _check(store, got, "one")
    assert Run.from_json(_read(store, new.id, "many")["state"]).to_json() == new.to_json()
    assert "split" not in _state(store, new.id)  # (a new run: split at its first write)
    with store.read() as tx:
        assert tx.conn.execute(select(func.count()).select_from(s.run_steps)).scalar_one() == 90


def test_a_run_written_twice_in_one_transaction(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    run = _run(100)
    _insert(store, run)
    _read(store, run.id, "one")
    written: list[list[str]] = []
    real = SqlTx._write_steps

    def spy(self: SqlTx, writes: Any) -> None:
        written.append([u[1] for w in writes for u in w.upserts])
        real(self, writes)

    monkeypatch.setattr(SqlTx, "_write_steps", spy)

    def write(tx: SqlTx, step: str) -> None:
        run.steps[step].status = StepStatus.COMPLETED
        run.seq += 1
        tx.update_run_txn(run_row(run, NOW), run.seq - 1)

    with store.write() as tx:  # the second write compares with what the first wrote
        write(tx, "s1")
        write(tx, "s2")
    assert written == [["s1"], ["s2"]]
    _check(store, run, "one")
    with store.write() as tx:  # a savepoint rolled back takes its step rows with it
        with pytest.raises(RuntimeError), tx.savepoint():
            write(tx, "s3")
            raise RuntimeError("the block fails")
        run.seq -= 1
        run.steps["s3"].status = StepStatus.NOT_STARTED
        write(tx, "s4")
    assert written[2:] == [["s3"], ["s4"]]
    back = _check(store, run, "many")
    assert back.steps["s3"].status is StepStatus.NOT_STARTED


def test_the_lean_reader_merges_a_split_run(store: SqlStore) -> None:
    if store.dialect != "sqlite":
        pytest.skip("the CLI's lean reader reads SQLite files")
    from baton.store.lean import LeanReader

    run = _run(90)
    run.steps["s4"].status = StepStatus.FALLOUT
    run.steps["s5"].sla = {"status": "overdue", "due_at": NOW, "jeopardy_at": None}
    with store.write() as tx:
        row = run_row(run, NOW)
        assert row["attention"] is not None  # (a step in fallout: the CLI lists the run)
        tx.insert_run_txn(row)
    _write(store, run, "at_once")  # (split at its first write)
    assert _state(store, run.id)["format"] == 4
    reader = LeanReader(store.path)
    try:
        state = reader.run_state(run.id)
        assert Run.from_json(state).to_json() == run.to_json()
        assert list(state["steps"]) == list(run.steps)
        assert [Run.from_json(s).id for s in reader.fallout_states()] == [run.id]
    finally:
        reader.close()


def test_the_step_texts_a_store_keeps_are_bounded() -> None:
    from baton.store.sql.runsteps import StepsSeen

    seen = StepsSeen(cap=3, cap_steps=250)
    for i in range(10):
        seen.put(f"r{i}", 1, {f"s{j}": (j, "{}") for j in range(100)})
        seen.put(f"r{i}", 2, {f"s{j}": (j, "{}") for j in range(100)})  # (replaced, not added)
    assert [r for r in (f"r{i}" for i in range(10)) if seen.get(r, 2) is not None] == ["r8", "r9"]
    assert seen.get("r9", 1) is None  # (only at the seq it was kept at)
    seen.put("big", 1, {f"s{j}": (j, "{}") for j in range(1000)})  # alone over the cap: kept
    assert seen.get("big", 1) is not None and seen.get("r9", 2) is None


_marked_op = _op.filter(lambda op: op[0] not in ("remove", "to_end", "truncate"))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(SPLIT_STEPS + 1, SPLIT_STEPS + 40),
       rounds=st.lists(st.tuples(st.lists(_marked_op, min_size=0, max_size=5),
                                 st.sampled_from(["at_once", "lazy"]), st.booleans()),
                       min_size=1, max_size=6))
def test_the_steps_marked_changed_write_what_a_comparison_writes(
        store: SqlStore, size: int, rounds: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Engine-like changes (assignments, changes in place marked, steps added) to a run this
    store read or wrote last: its write encodes only the steps marked (the marks path), and
    writes exactly the rows a comparison of every step writes (``VERIFY_CHANGED``, on in the
    suite, checks each write); what is read back is the run in memory."""
    assert runsteps.VERIFY_CHANGED
    used: list[int] = []
    real = runsteps._changed_rows

    def spy(rid: str, steps: Any, base: Any) -> Any:
        got = real(rid, steps, base)
        used.append(-1 if got is None else len(steps.changed))
        return got

    monkeypatch.setattr(runsteps, "_changed_rows", spy)
    run = _run(size)
    _insert(store, run)  # (its first write: every row, compared with none)
    run = Run.from_json(_read(store, run.id, "one")["state"])
    for ops, write_how, from_read in rounds:
        before = len(used)
        for op in ops:
            _mutate(run, op)
        _write(store, run, write_how)
        assert used[before:] and used[-1] >= 0  # the marks path, every time
        assert used[-1] <= len(ops)  # (each op marks one step at most)
        back = _check(store, run, "one")
        if from_read:
            run = back


def test_an_unmarked_change_in_place_is_caught_in_the_suite(
        store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sla, "VERIFY_INDEX", False)  # (the step index's check, which sees
    run = _run(80)  # it first, is tested in tests/unit/test_step_index.py: here, the write's)
    _insert(store, run)
    run = Run.from_json(_read(store, run.id, "one")["state"])
    run.steps["s3"].sla = {"status": "on_track", "due_at": NOW, "jeopardy_at": None}
    _write(store, run, "at_once")
    run.steps["s3"].sla["status"] = "overdue"  # in place, not marked (no touch())
    run.steps["s4"].attempts = 1
    with pytest.raises(AssertionError, match=r"unmarked: \['s3'\]"):
        _write(store, run, "at_once")
