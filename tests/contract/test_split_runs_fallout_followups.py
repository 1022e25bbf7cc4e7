"""``baton_fallout`` kept by each of the store's run write paths, a split run's (a plan's,
its steps in rows of their own) included, on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from baton.engine.state import Run
from baton.engine.status import RunStatus, StepStatus
from baton.runtime.apply import run_row
from baton.store import schema as s
from baton.store.sql import SqlStore
from tests.contract.test_split_runs import NOW, _run, _write


def _rows(store: SqlStore, run_id: str) -> list[tuple[str, int, str]]:
    f = s.fallout
    with store.read() as tx:
        return sorted(tuple(r) for r in tx.conn.execute(  # type: ignore[misc]
            select(f.c.step, f.c.pos, f.c.message).where(f.c.run_id == run_id)).all())


def _fail(run: Run, step: str, message: str) -> None:
    sr = run.steps[step]
    sr.status, sr.error = StepStatus.FALLOUT, {"message": message}
    sr.touch()


@pytest.mark.parametrize("how", ["at_once", "lazy", "twice"])
@pytest.mark.parametrize("steps", [5, 90])  # one document; split (more than SPLIT_STEPS)
def test_each_write_path_keeps_the_fallout_rows(store: SqlStore, how: str, steps: int) -> None:
    run = _run(steps)
    _fail(run, "s3", "carrier down")
    with store.write() as tx:
        tx.insert_run_txn(run_row(run, NOW))  # (a run stored with a step in fallout)
    assert _rows(store, run.id) == [("s3", 3, "carrier down")]
    _write(store, run, how)
    assert _rows(store, run.id) == [("s3", 3, "carrier down")]
    _fail(run, "s1", "label printer jammed")
    _write(store, run, how)
    assert _rows(store, run.id) == [("s1", 1, "label printer jammed"), ("s3", 3, "carrier down")]
    run.steps["s3"].status = StepStatus.COMPLETED  # (resolved by hand)
    run.steps["s3"].touch()
    _write(store, run, how)
    assert _rows(store, run.id) == [("s1", 1, "label printer jammed")]
    with store.read() as tx:
        assert tx.count_fallout_txn() == 1
        assert tx.fallout_by_step_txn(None, 10) == [(run.id, "s1")]
    run.status = RunStatus.CANCELED  # (the run ended: its step stays in fallout, unlisted)
    _write(store, run, how)
    assert _rows(store, run.id) == []
    with store.read() as tx:
        assert tx.count_fallout_txn() == 0 and tx.fallout_groups_txn() == []
