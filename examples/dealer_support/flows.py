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
        # one child case per dealer (the several_dealers stage): each is routed on its own
        update["status"] = "Split"
        ctx.update_record(update)
        return {"decision": "several_dealers", "queue": None}
    if not ids or intent.get("outcome") == "review":
        decision = "dispatch"
        update["queue"] = "dispatch"
    if ids:
        dealer = ctx.records.get(ids[0]) or {}
        update.update(dealer=ids[0], brand=dealer.get("brand"), pod=dealer.get("pod"))
        if decision == "routed":
            update["queue"] = queue_for(str(dealer.get("pod")), category)
            update["team"] = TEAMS[category]
    update["status"] = "Dispatch" if decision != "routed" else "Routed"
    ctx.update_record(update)
    return {"decision": decision, "queue": update["queue"]}


@flow("dealers.route_split")
def route_split(ctx: FlowContext) -> dict[str, Any]:
    """A child case of a split message (dealer_case): the dealer and the intent came from
    the message's case; the same rule gives the queue (``dispatch`` without an intent)."""
    dealer = ctx.records.get(str(ctx.record["dealer"])) or {}
    intent = ctx.record.get("intent")
    update: dict[str, Any] = {"brand": dealer.get("brand"), "pod": dealer.get("pod"),
                              "dealers_named": 1}
    if intent in TEAMS:
        update.update(queue=queue_for(str(dealer.get("pod")), str(intent)), status="Routed",
                      team=TEAMS[str(intent)])
        decision = "routed"
    else:
        update.update(queue="dispatch", status="Dispatch")
        decision = "dispatch"
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
    for name in ("answer", "dispatch"):
        step = ctx.steps.get(name)
        if step is not None and step.output:
            update["resolution"] = step.output.get("resolution")
    split = ctx.steps.get("split")
    if split is not None and split.output:
        children = split.output.get("children") or []
        update["resolution"] = f"split into {len(children)} cases: " + ", ".join(
            str(c["record_id"]) for c in children)
    if ctx.record.get("status") not in ("Retained", "Cancelled"):
        update["status"] = "Closed"
    ctx.update_record(update)
    return update
