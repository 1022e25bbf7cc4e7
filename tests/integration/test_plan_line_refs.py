"""``steps.<template>`` inside a line-scoped plan step reads the same line's step (brief
H10): ``ship[L2]``'s request reads ``reserve[L2]``'s output, ``label[L2]``'s input and
``when`` read ``reserve[L2]`` and ``ship[L2]``. Real Engine and Worker on SQLite and
PostgreSQL; ``ship`` is a callout to the demo carrier on loopback (its answer echoes the
order it was sent), ``reserve`` and ``label`` background flows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baton import flow
from baton.cli.demo_carrier import DemoCarrier, pointed_at
from baton.flows import FlowContext
from tests.conftest import Harness

EXAMPLE = Path(__file__).parents[2] / "examples" / "order_fulfillment" / "definitions"
LABELS: dict[str, dict[str, Any]] = {}


@flow("line_refs.reserve")
def _reserve(ctx: FlowContext) -> dict[str, Any]:
    (line,) = ctx.input["plan"]["lines"]
    return {"serial": f"SN-{line['key']}-{line['attributes']['color']}"}


@flow("line_refs.label")
def _label(ctx: FlowContext) -> dict[str, Any]:
    LABELS[ctx.input["plan"]["instance"]] = {k: ctx.input[k] for k in
                                             ("serial", "tracking", "booked_for")}
    return {"ok": True}


@flow("line_refs.check")
def _check(ctx: FlowContext) -> dict[str, Any]:
    return {"ok": True}


FULFILLMENT = """
kind: fulfillment
name: line_refs
trigger: {type: record, object: Order, on: [create, update], when: '=record.status == "Submitted"', changed_to_meet: true}
lines: {object: OrderLine}
lanes: [billing, inventory, shipping]
scenarios:
  - name: every_order
    when: '=true'
    steps:
      - {name: credit_check, type: background, lane: billing, scope: plan, flow: line_refs.check}
      - {name: done, type: milestone, scope: plan, after: [label]}
  - name: devices
    when: '=line.product.family == "Provisioning"'
    steps:
      - {name: reserve, type: background, lane: inventory, flow: line_refs.reserve, after: [credit_check]}
      - {name: ship, type: callout, lane: shipping, after: [reserve], connection: carrier,
         method: POST, path: /shipments,
         body: {order: '=record.number + "/" + steps.reserve.output.serial'},
         output: {tracking: '=response.body.trackingId', booked_for: '=response.body.order'}}
      - {name: label, type: background, lane: shipping, flow: line_refs.label, after: [ship],
         when: '=steps["reserve"].output.serial.startsWith("SN-") && has(steps.ship)',
         input: {serial: '=steps.reserve.output.serial', tracking: '=steps.ship.output.tracking',
                 booked_for: '=steps.ship.output.booked_for'}}
"""


@pytest.fixture
def carrier() -> Iterator[DemoCarrier]:
    c = DemoCarrier(busy_first=False).start()
    yield c
    c.stop()


def test_a_line_step_reads_the_same_lines_steps(harness: Harness, carrier: DemoCarrier) -> None:
    LABELS.clear()
    texts = {k: v for k, v in pointed_at(EXAMPLE, carrier.url).items()
             if k in ("objects.yaml", "catalog.yaml", "carrier.yaml")}
    harness.setenv(CARRIER_TOKEN=carrier.token)
    harness.engine.deploy(texts={**texts, "line_refs.yaml": FULFILLMENT}, known_flows=None)
    lines = [{"product": "DEVICE-PROVISION", "attributes": {"color": "red"}},
             {"product": "DEVICE-PROVISION", "attributes": {"color": "blue"}}]
    rec = harness.engine.create_record("Order", {"number": "O-7", "status": "Submitted"},
                                       children={"OrderLine": lines})
    order = str(rec["id"])
    plan = harness.engine.plans.show(order)
    steps = {s["name"]: s for s in plan["steps"]}
    assert list(steps) == ["credit_check", "done", "reserve[L1]", "reserve[L2]", "ship[L1]",
                           "ship[L2]", "label[L1]", "label[L2]"]
    harness.work()
    plan = harness.engine.plans.show(order)
    assert plan["status"] == "completed", [(s["name"], s["status"]) for s in plan["steps"]]
    # each line's shipment was booked with that line's serial, and its label got both
    run = harness.engine.get_run(plan["run_id"])
    assert run.steps["ship[L1]"].output["booked_for"] == "O-7/SN-L1-red"
    assert run.steps["ship[L2]"].output["booked_for"] == "O-7/SN-L2-blue"
    assert LABELS == {
        "L1": {"serial": "SN-L1-red", "tracking": run.steps["ship[L1]"].output["tracking"],
               "booked_for": "O-7/SN-L1-red"},
        "L2": {"serial": "SN-L2-blue", "tracking": run.steps["ship[L2]"].output["tracking"],
               "booked_for": "O-7/SN-L2-blue"}}
    assert LABELS["L1"]["tracking"] != LABELS["L2"]["tracking"]
    assert carrier.stats.booked == 2
