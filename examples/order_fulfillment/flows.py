"""Flows of the order fulfillment example: each stands for a call to a fulfillment system
and says what it did to which line (``ctx.input["plan"]``: the step's scope instance and
its lines), so the plan's story can be read from the step outputs and the audit log."""

from __future__ import annotations

from typing import Any

from baton import flow
from baton.flows import FlowContext


def _lines(ctx: FlowContext) -> list[Any]:
    return list((ctx.input.get("plan") or {}).get("lines") or [])


@flow("orders.credit_check")
def credit_check(ctx: FlowContext) -> dict[str, Any]:
    return {"approved": True, "customer": ctx.record.get("customer")}


@flow("orders.reserve")
def reserve(ctx: FlowContext) -> dict[str, Any]:
    line = _lines(ctx)[0]
    return {"reserved": line["qty"], "product": line["product"]["code"],
            "reservation": f"RES-{line['key']}"}


@flow("orders.release")
def release(ctx: FlowContext) -> dict[str, Any]:
    return {"released": _lines(ctx)[0]["key"]}


@flow("orders.recall")
def recall(ctx: FlowContext) -> dict[str, Any]:
    return {"recalled": _lines(ctx)[0]["key"]}


@flow("orders.provision")
def provision(ctx: FlowContext) -> dict[str, Any]:
    line = _lines(ctx)[0]
    return {"device": line["attributes"].get("model"), "color": line["attributes"].get("color")}


@flow("orders.activate")
def activate(ctx: FlowContext) -> dict[str, Any]:
    line = _lines(ctx)[0]
    return {"activated": line["attributes"].get("site"), "region": line["attributes"].get("region")}


@flow("orders.deactivate")
def deactivate(ctx: FlowContext) -> dict[str, Any]:
    return {"deactivated": _lines(ctx)[0]["key"]}


@flow("orders.cease")
def cease(ctx: FlowContext) -> dict[str, Any]:
    line = _lines(ctx)[0]
    return {"ceased": line["attributes"].get("site"), "access": line["key"]}


@flow("orders.bill")
def bill(ctx: FlowContext) -> dict[str, Any]:
    return {"invoice": f"INV-{ctx.record.get('number')}"}
