"""Flows: the Python code your background steps run.

A flow receives a context (``ctx``) and returns a dict, which becomes the step's output
(``steps.<name>.output`` in expressions):

* ``ctx.record`` - the run's record (read-only); ``ctx.update_record({...})`` changes it
  when the step completes, atomically with the step;
* ``ctx.vars`` - the run's variables (a dict you may change);
* ``ctx.input`` - the run's input; ``ctx.steps["name"].output`` - earlier steps' outputs;
* ``ctx.log`` - a logger.
"""

from __future__ import annotations

from typing import Any

from baton import FlowContext, flow


@flow("tickets.categorize")
def categorize(ctx: FlowContext) -> dict[str, Any]:
    text = f"{ctx.record.get('subject') or ''} {ctx.record.get('description') or ''}".lower()
    category = "billing" if ("invoice" in text or "payment" in text) else "general"
    ctx.update_record({"category": category})
    return {"category": category}


@flow("tickets.escalate")
def escalate(ctx: FlowContext) -> dict[str, Any]:
    ctx.log.info("ticket escalated to engineering")
    ctx.update_record({"status": "Escalated", "reply": ctx.steps["reply"].output.get("reply")})
    return {"escalated": True}


@flow("tickets.close")
def close(ctx: FlowContext) -> dict[str, Any]:
    ctx.update_record({"status": "Closed", "reply": ctx.steps["reply"].output.get("reply")})
    return {"closed": True}
