"""Flows of the address-update example."""

from __future__ import annotations

from typing import Any

from baton import FlowContext, flow


def _form(ctx: FlowContext) -> dict[str, Any]:
    """What the back-office agent submitted in ``verify_documents``."""
    step = ctx.steps.get("verify_documents")
    return dict(step.output or {}) if step else {}


@flow("requests.reject")
def reject(ctx: FlowContext) -> dict[str, Any]:
    """Mark the request rejected, with the agent's notes as the reason."""
    reason = _form(ctx).get("notes") or "The documents do not prove the new address."
    ctx.update_record({"status": "Rejected", "rejection_reason": reason})
    return {"status": "Rejected", "rejection_reason": reason}


@flow("requests.close")
def close(ctx: FlowContext) -> dict[str, Any]:
    """Close the request once the bank has confirmed it (the callout's output holds the
    bank's reference, from its acknowledgment callback)."""
    sent = ctx.steps.get("send_address")
    reference = (sent.output or {}).get("bank_reference") if sent else None
    ctx.update_record({"status": "Closed", "bank_reference": reference})
    return {"status": "Closed", "bank_reference": reference}
