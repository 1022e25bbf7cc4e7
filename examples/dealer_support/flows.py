"""Flows of the dealer-support example: the routing rules, and what is written on the case."""

from __future__ import annotations

from typing import Any

from baton import FlowContext, flow

TEAMS = {"new_lead": "sales", "billing": "billing", "technical": "technical",
         "cancellation": "retention", "privacy_request": "privacy"}
"""Which team of a pod takes an intent: the queue is ``<pod>_<team>``."""


def queue_for(pod: str, intent: str) -> str:
    """The deterministic rule: the dealer's brand pod, the team for the intent."""
    return f"{pod}_{TEAMS[intent]}"


@flow("dealers.route")
def route(ctx: FlowContext) -> dict[str, Any]:
    """Write what the ai steps found on the case and decide where it goes: ``routed`` (to
    the pod's queue for the intent), ``dispatch`` (the classifier asks for review, or no
    dealer was found) or ``several_dealers`` (the message names more than one)."""
    intent = ctx.steps["intent"].output or {}
    found = ctx.steps["dealer"].output or {}
    ids = list(found.get("record_ids") or [])
    category = str(intent.get("category"))
    update: dict[str, Any] = {"intent": category, "confidence": intent.get("confidence"),
                              "dealers_named": len(ids)}
    decision = "routed"
    if len(ids) > 1:
        decision = "several_dealers"
        update["queue"] = "dispatch"
    elif not ids or intent.get("outcome") == "review":
        decision = "dispatch"
        update["queue"] = "dispatch"
    if ids:
        dealer = ctx.records.get(ids[0]) or {}
        update.update(dealer=ids[0], brand=dealer.get("brand"), pod=dealer.get("pod"))
        if decision == "routed":
            update["queue"] = queue_for(str(dealer.get("pod")), category)
    update["status"] = "Dispatch" if decision != "routed" else "Routed"
    ctx.update_record(update)
    return {"decision": decision, "queue": update["queue"]}


@flow("dealers.retention")
def retention(ctx: FlowContext) -> dict[str, Any]:
    """Whether the retention call kept the dealer."""
    form = ctx.steps["retention_call"].output or {}
    status = "Retained" if form.get("outcome") == "retained" else "Cancelled"
    ctx.update_record({"status": status, "resolution": form.get("resolution")})
    return {"status": status}


@flow("dealers.close")
def close(ctx: FlowContext) -> dict[str, Any]:
    """Close the case with the resolution the person wrote (a retention call's status stays)."""
    update: dict[str, Any] = {}
    for name in ("answer", "dispatch", "split_by_hand"):
        step = ctx.steps.get(name)
        if step is not None and step.output:
            update["resolution"] = step.output.get("resolution")
    if ctx.record.get("status") not in ("Retained", "Cancelled"):
        update["status"] = "Closed"
    ctx.update_record(update)
    return update
