"""Flows of the upgrade fixtures' own definitions (``upg_*.yaml``), imported both by the old
code that made the fixtures (``make_old_db.py``) and by the test that upgrades them.

``requests.send_to_bank`` is the flow examples/address_update had before its callout step
(commit 7eb1957): runs pinned to that version of address_update still call it after an
upgrade, so the project they belong to keeps it (a copy of it, as it was)."""

from __future__ import annotations

import hashlib
from typing import Any

from baton import FlowContext, flow
from baton.flows import get_flow


@flow("upg.flaky")
def flaky(ctx: FlowContext) -> dict[str, Any]:
    """Fails until an operator sets the ticket's ``fixed``: the step goes to fallout."""
    if not ctx.record.get("fixed"):
        raise RuntimeError(f"ticket {ctx.record.get('title')} is not fixed yet")
    return {"fixed": True}


@flow("upg.note")
def note(ctx: FlowContext) -> dict[str, Any]:
    """Writes a line on the ticket (after a pause, a signal, a retried step)."""
    done = int(ctx.record.get("notes") or 0) + 1
    ctx.update_record({"notes": done})
    return {"notes": done}


@flow("upg.tick")
def tick(ctx: FlowContext) -> dict[str, Any]:
    """Does nothing but say which step it was (a scheduled run's, an expense's end)."""
    return {"step": ctx.step}


def _send_to_bank(ctx: FlowContext) -> dict[str, Any]:
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


if get_flow("requests.send_to_bank") is None:  # (the old example's own, when imported)
    flow("requests.send_to_bank")(_send_to_bank)
