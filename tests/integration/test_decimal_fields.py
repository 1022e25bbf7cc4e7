"""Exact ``decimal`` fields end to end (issue 17, defect 6), on SQLite and on PostgreSQL.

A flow's update in the worker's thread and in a flow process, the engine's conditions
(CEL) at the edges, and a value stored as a JSON number before decimals were exact (read
lazily). The REST API: tests/api/test_decimals.py; the CLI: tests/e2e/test_cli_decimals.py;
the pure rules: tests/unit/test_decimals.py.
"""

from __future__ import annotations

import textwrap
from decimal import Decimal
from typing import Any

import pytest

from baton import flow
from baton.errors import ValidationError
from baton.flows import FlowContext

EIGHTEEN = "1234567890123456.78"
NEXT = "1234567890123456.79"

ORDER = """
kind: object
name: Order
fields:
  subject: {type: string}
  a:       {type: decimal}
  b:       {type: decimal}
  total:   {type: decimal}
  big:     {type: decimal}
  rate:    {type: decimal, precision: 7, scale: 4}
  rounded: {type: decimal, rounding: half_even}
  seen:    {type: json}
"""

SUM_FLOW = """
kind: orchestration
name: add_up
trigger: {type: record, object: Order, on: [create], when: '=record.subject == "sum"'}
stages:
  - name: add
    steps: [{name: add, type: background, flow: t_dec.add}]
    next:
      - {when: '=record.total == 0.3', goto: exact}
      - {goto: inexact}
  - name: exact
    steps:
      - {name: more, type: background, flow: t_dec.big, when: '=record.total > 0.29'}
    next:
      - {when: '=decimal.compare(record.big, "1234567890123456.79") == 0 && record.big != record.a',
         goto: big_exact}
      - {goto: inexact}
  - name: big_exact
    steps: [{name: done, type: background, flow: t_dec.noop}]
    next: [{goto: end}]
  - name: inexact
    steps: [{name: wrong, type: background, flow: t_dec.noop}]
"""

FLOAT_FLOW = """
kind: orchestration
name: float_sum
trigger: {type: record, object: Order, on: [create], when: '=record.subject == "float"'}
stages:
  - name: add
    steps: [{name: add, type: background, flow: t_dec.float_add, on_failure: fail_run}]
"""

THRESHOLD = """
kind: orchestration
name: large_orders
trigger: {type: record, object: Order, on: [create], when: '=record.a > 100.10'}
stages:
  - name: s
    steps: [{name: m, type: background, flow: t_dec.noop}]
"""


@flow("t_dec.noop")
def _noop(ctx: FlowContext) -> dict[str, Any]:
    return {}


@flow("t_dec.add")
def _add(ctx: FlowContext) -> dict[str, Any]:
    a, b = ctx.record["a"], ctx.record["b"]
    assert type(a) is Decimal and type(b) is Decimal, (a, b)  # not floats, not strings
    ctx.update_record({"total": a + b})  # exactly 0.30
    return {"types": [type(a).__name__, type(b).__name__]}


@flow("t_dec.big")
def _big(ctx: FlowContext) -> dict[str, Any]:
    total = ctx.record["total"]
    assert total == Decimal("0.30") and type(total) is Decimal
    big = ctx.record["big"]
    ctx.update_record({"big": big + Decimal("0.01"), "a": str(big), "rate": 1,
                       "rounded": Decimal("2.345")})
    return {}


@flow("t_dec.float_add")
def _float_add(ctx: FlowContext) -> dict[str, Any]:
    ctx.update_record({"total": float(ctx.record["a"]) + float(ctx.record["b"])})  # 0.300…04
    return {}


def deploy(engine: Any, tmp: Any, *docs: str) -> None:
    path = tmp / "orders.yaml"
    path.write_text("---\n".join(textwrap.dedent(d) for d in docs))
    engine.deploy([path], known_flows=None)


def decisions(engine: Any, run_id: str) -> list[tuple[str, str]]:
    with engine.store.read() as tx:
        return [(e["data"]["stage"], e["data"]["goto"]) for e in tx.events_txn(run_id=run_id)
                if e["type"] == "decision_taken"]


def stored(engine: Any, record_id: str) -> dict[str, Any]:
    with engine.store.read() as tx:
        row = tx.get_record_txn(record_id)
    assert row is not None
    return dict(row["data"])


# ---- flows and conditions, in the thread and in a flow process ------------------------------
@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_a_flow_update_keeps_decimals_exact_and_cel_compares_them(harness: Any,
                                                                  isolation: str) -> None:
    harness.setenv(BATON_ISOLATION=isolation)
    deploy(harness.engine, harness.tmp, ORDER, SUM_FLOW)
    rec = harness.engine.create_record("Order", {"subject": "sum", "a": "0.1", "b": 0.2,
                                                 "big": EIGHTEEN})
    harness.work()
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    run = harness.engine.get_run(run.id)
    # 0.1 + 0.2 stored exactly, then `record.total == 0.3` held; the flow's 18-digit update
    # was compared exactly (as doubles, EIGHTEEN and NEXT are the same number).
    assert run.status.value == "completed", run
    assert decisions(harness.engine, run.id) == [("add", "exact"), ("exact", "big_exact"),
                                                  ("big_exact", "end")]
    data = stored(harness.engine, rec["id"])
    assert data["total"] == "0.30" and data["big"] == NEXT and data["a"] == EIGHTEEN
    assert data["rate"] == "1.0000" and data["rounded"] == "2.34"  # types unchanged
    view = harness.engine.get_record(rec["id"])
    assert (view["total"], view["big"]) == ("0.30", NEXT)
    assert run.steps["add"].output == {"types": ["Decimal", "Decimal"]}


@pytest.mark.parametrize("isolation", ["thread", "process"])
def test_a_float_that_is_not_exact_at_the_scale_fails_the_step_clearly(harness: Any,
                                                                       isolation: str) -> None:
    harness.setenv(BATON_ISOLATION=isolation)
    deploy(harness.engine, harness.tmp, ORDER, FLOAT_FLOW)
    rec = harness.engine.create_record("Order", {"subject": "float", "a": "0.1", "b": "0.2"})
    harness.work()
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    run = harness.engine.get_run(run.id)
    assert run.status.value == "failed"
    assert "total: 0.30000000000000004 has 17 decimal places: at most 2" in \
        run.steps["add"].error["message"]
    assert "total" not in stored(harness.engine, rec["id"])  # nothing half-written


def test_a_record_trigger_compares_at_the_edge(harness: Any) -> None:
    deploy(harness.engine, harness.tmp, ORDER, THRESHOLD)
    at = harness.engine.create_record("Order", {"a": "100.10"})
    above = harness.engine.create_record("Order", {"a": 100.11})
    assert harness.engine.list_runs(record_id=at["id"]) == []
    assert len(harness.engine.list_runs(record_id=above["id"])) == 1


def test_a_number_stored_before_decimals_were_exact_is_read_exactly(harness: Any) -> None:
    deploy(harness.engine, harness.tmp, ORDER)
    rec = harness.engine.create_record("Order", {"subject": "old"})
    with harness.engine.store.write() as tx:  # as the previous version stored it
        tx.update_record_txn(rec["id"], {"subject": "old", "a": 19.9, "b": 0.125}, 1,
                             rec["updated_at"])
    view = harness.engine.get_record(rec["id"])
    assert view["a"] == "19.90"  # lazily, at the field's scale
    assert view["b"] == "0.125"  # beyond it: shown exactly as stored, not rounded
    harness.engine.update_record(rec["id"], {"a": view["a"]})
    assert stored(harness.engine, rec["id"])["a"] == "19.90"  # written back as a string
    with pytest.raises(ValidationError):
        harness.engine.update_record(rec["id"], {"b": view["b"]})  # 3 places: refused now
