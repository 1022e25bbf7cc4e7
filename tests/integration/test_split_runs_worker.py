"""A worker runs a large plan (its run stored split) keeping the run it committed between its
batches: the next batch reads the run's seq, not its ~300 steps, while no one else wrote it;
when someone does, it reads the run again (issue 13 item 9)."""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baton.cli.demo_carrier import DemoCarrier, pointed_at
from baton.engine.state import SPLIT_STEPS, Run
from baton.engine.status import RunStatus, StepStatus
from baton.flows import get_flow
from baton.project import load_project
from baton.runtime.apply import run_row
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "order_fulfillment"


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    carrier = DemoCarrier(busy_first=False).start()
    if get_flow("orders.credit_check") is None:  # (another test module may have made them)
        load_project(EXAMPLE).import_flows()
    settings = dataclasses.replace(Settings.from_environment(os.environ),
                                   secrets_env={"CARRIER_TOKEN": carrier.token})
    eng = Engine(f"sqlite:///{tmp_path / 'baton.db'}", settings=settings)
    eng.deploy(texts=pointed_at(EXAMPLE / "definitions", carrier.url), known_flows=None)
    yield eng
    eng.close()
    carrier.stop()


def test_a_worker_keeps_the_split_run_it_committed(engine: Engine,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    lines = [{"product": "LAPTOP-PRO" if i % 2 else "DOCK",
              "attributes": {"color": "grey"} if i % 2 else {}} for i in range(200)]
    order = engine.create_record("Order", {"number": "O-BIG", "status": "Submitted"},
                                 children={"OrderLine": lines})["id"]
    run_id = engine.plans.show(order)["run_id"]
    decoded: Counter[str] = Counter()
    real = Run.from_json.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Run], data: dict[str, Any]) -> Run:
        if data.get("split"):
            decoded[data["id"]] += 1
        return real(cls, data)  # type: ignore[no-any-return]

    monkeypatch.setattr(Run, "from_json", classmethod(counting))
    worker = Worker(engine, batch=8)
    batches = 0
    while worker.run_once():
        batches += 1
        if batches == 5:  # someone else writes the run: the worker must read it again
            _touch(engine, run_id)
    run = engine.get_run(run_id)
    assert len(run.steps) > 4 * SPLIT_STEPS
    assert run.status is RunStatus.COMPLETED, run.error
    assert all(sr.status is StepStatus.COMPLETED for sr in run.steps.values())
    assert batches >= 10
    # Read whole at its first batch and after the outside write (and by get_run above);
    # not at every batch.
    assert decoded[run_id] <= 4, (decoded, batches)


def _touch(engine: Engine, run_id: str) -> None:
    """Write the run from outside the worker (its seq moves on; nothing else changes)."""
    with engine.store.write() as tx:
        row = tx.get_run_txn(run_id, for_update=True)
        assert row is not None
        run = Run.from_json(row["state"])
        expected = run.seq
        run.seq += 1
        tx.update_run_txn(run_row(run, "2026-12-03T10:00:00.000Z"), expected)
