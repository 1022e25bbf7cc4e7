"""Flows of the MCP example: what the ERP answered is saved on the lead."""

from __future__ import annotations

from typing import Any

from baton import FlowContext, flow


@flow("leads.save")
def save(ctx: FlowContext) -> dict[str, Any]:
    """Write the account the ERP found, its tier and its credit limit on the lead."""
    account = ctx.steps["find_account"].output or {}
    limit = (ctx.steps["credit_limit"].output or {}).get("limit")
    ctx.update_record({"account_id": account.get("account_id"), "tier": account.get("tier"),
                       "credit_limit": limit})
    return {"account_id": account.get("account_id")}
