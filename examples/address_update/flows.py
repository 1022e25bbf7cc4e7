"""Flows of the address-update example."""

from __future__ import annotations

import hashlib
from typing import Any

from baton import FlowContext, flow


def _form(ctx: FlowContext) -> dict[str, Any]:
    """What the back-office agent submitted in ``verify_documents``."""
    step = ctx.steps.get("verify_documents")
    return dict(step.output or {}) if step else {}


@flow("requests.send_to_bank")
def send_to_bank(ctx: FlowContext) -> dict[str, Any]:
    """Build the bank's address-change payload and record the bank's reference.

    For now nothing is sent: the reference is derived deterministically from the
    record id ("BNK-" + the first 8 hex digits of its SHA-256), so reruns give the
    same answer. A real HTTP call to the bank (a `callout` step against a named
    connection, with an idempotency key) replaces this in a later issue.
    """
    record = ctx.record
    payload = {
        "account_number": record["account_number"],
        "customer": record["customer"],
        "new_address": record["new_address"],
        "documents": list(record.get("documents") or []),
    }
    reference = "BNK-" + hashlib.sha256(str(record["id"]).encode()).hexdigest()[:8]
    ctx.update_record({"bank_reference": reference, "status": "Sent"})
    return {"payload": payload, "bank_reference": reference}


@flow("requests.reject")
def reject(ctx: FlowContext) -> dict[str, Any]:
    """Mark the request rejected, with the agent's notes as the reason."""
    reason = _form(ctx).get("notes") or "The documents do not prove the new address."
    ctx.update_record({"status": "Rejected", "rejection_reason": reason})
    return {"status": "Rejected", "rejection_reason": reason}


@flow("requests.close")
def close(ctx: FlowContext) -> dict[str, Any]:
    """Close the request once the bank has it."""
    ctx.update_record({"status": "Closed"})
    return {"status": "Closed"}
