"""A flow of a line-, bundle- or group-scoped plan step reads a step template by its name as
the step's expressions do: ``ctx.steps["reserve"]`` in ``ship[L2.1]`` is ``reserve[L2.1]``
(the same line's), ``ctx.steps["kit"]`` the line's bundle's, ``ctx.steps["install"]`` in
``activate[L5.1]`` its group's, a plan template its single step, the step's own template
itself; ``get`` and ``in`` alike, the full name as before. A reading that would name several
steps (a bundle step reading a line template, a plan step reading one) raises
``AmbiguousStep`` naming them: not retried, the step goes to fallout with it. In the
worker's thread and in a flow process (a step with a ``timeout``). Real Engine and Worker
on SQLite and PostgreSQL; the order_fulfillment example's objects and catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from baton import flow
from baton.flows import AmbiguousStep, FlowContext
from tests.conftest import Harness

EXAMPLE = Path(__file__).parents[2] / "examples" / "order_fulfillment" / "definitions"


def _ambiguous(ctx: FlowContext, name: str) -> str | None:
    """The message of reading ``name`` (and of ``name in ctx.steps``), if it is ambiguous."""
    try:
        ctx.steps[name]
    except AmbiguousStep as exc:
        with pytest.raises(AmbiguousStep):
            ctx.steps.get(name)
        return str(exc)
    return None


@flow("edges.note")
def _note(ctx: FlowContext) -> dict[str, Any]:
    return {"ok": True}


@flow("edges.reserve")
def _reserve(ctx: FlowContext) -> dict[str, Any]:
    (line,) = ctx.input["plan"]["lines"]
    return {"serial": f"SN-{line['key']}"}


@flow("edges.kit")
def _kit(ctx: FlowContext) -> dict[str, Any]:
    return {"self": ctx.steps["kit"].name, "ambiguous": _ambiguous(ctx, "reserve")}


@flow("edges.ship")
def _ship(ctx: FlowContext) -> dict[str, Any]:
    key = ctx.input["plan"]["instance"]
    reserve = ctx.steps["reserve"]
    kit = ctx.steps.get("kit")
    return {"serial": reserve.output["serial"], "reserve": reserve.name,
            "full": ctx.steps[f"reserve[{key}]"].output["serial"],
            "kit": None if kit is None else [kit.name, kit.output["self"]],
            "credit": ctx.steps["credit_check"].status, "self": ctx.steps["ship"].name,
            "survey": ctx.steps.get("survey", "none"), "unknown": ctx.steps.get("nosuch"),
            "in": ["reserve" in ctx.steps, "survey" in ctx.steps, "nosuch" in ctx.steps]}


@flow("edges.survey")
def _survey(ctx: FlowContext) -> dict[str, Any]:
    return {"site": ctx.input["plan"]["instance"]}


@flow("edges.install")
def _install(ctx: FlowContext) -> dict[str, Any]:
    return {"survey": ctx.steps["survey"].output["site"], "ambiguous": _ambiguous(ctx, "activate")}


@flow("edges.activate")
def _activate(ctx: FlowContext) -> dict[str, Any]:
    install = ctx.steps["install"]
    return {"install": install.name, "survey": ctx.steps["survey"].name,
            "in": "install" in ctx.steps}


@flow("edges.wrapup")
def _wrapup(ctx: FlowContext) -> dict[str, Any]:
    return {"ship": ctx.steps["ship"].name}  # several: AmbiguousStep, the step in fallout


def fulfillment(ship_options: str) -> str:
    return f"""
kind: fulfillment
name: edges
trigger: {{type: record, object: Order, on: [create, update], when: '=record.status == "Submitted"', changed_to_meet: true}}
lines: {{object: OrderLine}}
lanes: [billing, inventory, shipping, field]
scenarios:
  - name: every_order
    when: '=true'
    steps:
      - {{name: credit_check, type: background, lane: billing, scope: plan, flow: edges.note}}
      - {{name: wrapup, type: background, lane: billing, scope: plan, flow: edges.wrapup,
         after: [ship, activate]}}
  - name: devices
    when: '=line.product.family == "Provisioning"'
    steps:
      - {{name: reserve, type: background, lane: inventory, flow: edges.reserve, after: [credit_check]}}
      - {{name: kit, type: background, lane: shipping, scope: bundle, flow: edges.kit, after: [reserve]{ship_options}}}
      - {{name: ship, type: background, lane: shipping, flow: edges.ship, after: [reserve, kit]{ship_options}}}
  - name: broadband
    when: '=line.product.code == "BB-ACCESS"'
    steps:
      - {{name: survey, type: background, lane: field, scope: {{group_by: '=line.attributes.site'}},
         flow: edges.survey, after: [credit_check]}}
      - {{name: install, type: background, lane: field, scope: {{group_by: '=line.attributes.site'}},
         flow: edges.install, after: [survey]}}
      - {{name: activate, type: background, lane: field, flow: edges.activate, after: [install]}}
"""


LINES = [
    {"product": "LAPTOP-BUNDLE"},                                   # L1: a bundle of
    {"product": "LAPTOP-PRO", "bundle": "#1", "attributes": {"color": "red"}},  # L2 -> L2.1
    {"product": "DOCK", "bundle": "#1"},                            # L3
    {"product": "LAPTOP-PRO", "attributes": {"color": "blue"}},     # L4 -> L4.1, no bundle
    {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}},   # L5.1
    {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}},   # L6.1
    {"product": "BROADBAND", "attributes": {"site": "LYON", "speed": "1G"}},    # L7.1
]


@pytest.mark.parametrize("where", ["thread", "process"])
def test_a_line_scoped_flow_reads_a_template_as_its_expressions_would(
        harness: Harness, where: str) -> None:
    texts = {f.name: f.read_text() for f in EXAMPLE.iterdir()
             if f.name in ("objects.yaml", "catalog.yaml")}
    # (a step with a timeout runs its flow in a flow process, its ctx.steps read over a pipe)
    options = ", timeout: 30s" if where == "process" else ""
    harness.engine.deploy(texts={**texts, "edges.yaml": fulfillment(options)},
                          known_flows=None)
    order = str(harness.engine.create_record("Order", {"number": "E-1", "status": "Submitted"},
                                             children={"OrderLine": LINES})["id"])
    run_id = str(harness.engine.plans.show(order)["run_id"])
    harness.work()
    run = harness.engine.get_run(run_id)
    status = {n: s.status.value for n, s in run.steps.items()}
    assert status == {**{n: "completed" for n in status}, "wrapup": "fallout"}, status
    assert sorted(status) == sorted([
        "credit_check", "wrapup", "reserve[L2.1]", "reserve[L4.1]", "kit[L1]", "ship[L2.1]",
        "ship[L4.1]", "survey[PARIS]", "survey[LYON]", "install[PARIS]", "install[LYON]",
        "activate[L5.1]", "activate[L6.1]", "activate[L7.1]"])

    # a line step: the same line's reserve, its bundle's kit (none outside a bundle), the
    # plan's credit_check, itself; a group template its line has none of: missing
    ship = {k: run.steps[f"ship[{k}]"].output for k in ("L2.1", "L4.1")}
    for key, kit in (("L2.1", ["kit[L1]", "kit[L1]"]), ("L4.1", None)):
        out = ship[key]
        assert out.pop("in") == [True, False, False]
        assert out == {"serial": f"SN-{key}", "reserve": f"reserve[{key}]",
                       "full": f"SN-{key}", "kit": kit, "credit": "completed",
                       "self": f"ship[{key}]", "survey": "none", "unknown": None}, out

    # a bundle step: its own template is itself; a line template names the bundle's lines'
    kit_out = run.steps["kit[L1]"].output
    assert kit_out["self"] == "kit[L1]"
    assert kit_out["ambiguous"] == (
        "ctx.steps['reserve'] in step 'kit[L1]' (scope bundle) names several steps: "
        "'reserve' has scope line_item, one step per line (reserve[L2.1]); read one by its "
        "full name, e.g. ctx.steps['reserve[L2.1]']")

    # a group step: the same group's; a line step: its group's
    for site, lines in (("PARIS", ["L5.1", "L6.1"]), ("LYON", ["L7.1"])):
        install = run.steps[f"install[{site}]"].output
        assert install["survey"] == site
        assert install["ambiguous"] is not None
        assert all(f"activate[{k}]" in install["ambiguous"] for k in lines), install
        for k in lines:
            assert run.steps[f"activate[{k}]"].output == {
                "install": f"install[{site}]", "survey": f"survey[{site}]", "in": True}

    # a plan step reading a line template: every line's step, refused by name; not retried
    (fallout,) = harness.engine.list_fallout()
    assert fallout["step"] == "wrapup" and fallout["attempts"] == 1
    error = run.steps["wrapup"].error
    assert error is not None and error["type"] == "AmbiguousStep"
    assert error["retryable"] is False
    assert ("ctx.steps['ship'] in step 'wrapup' (scope plan) names several steps: 'ship' "
            "has scope line_item, one step per line (ship[L2.1], ship[L4.1])") in error["message"]
