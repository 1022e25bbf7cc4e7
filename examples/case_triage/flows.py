"""Flows of the case-triage example (and of the benchmark workload).

The bodies are deliberately trivial (plain dict work), exactly as the benchmark
workload (bench/WORKLOAD.md) describes them, so throughput figures measure the
engine and not the flows. A real project would look up agents, write to a CRM, etc.
"""

from __future__ import annotations

from typing import Any

from baton import FlowContext, flow

AGENT_POOLS: dict[str, list[str]] = {
    "billing": ["ann", "bob"],
    "tech": ["cyd", "dan", "eve"],
}


def _category(subject: str) -> str:
    return "billing" if "invoice" in subject else "tech"


def _level(ctx: FlowContext) -> int:
    return int(ctx.vars.get("level", ctx.record.get("level") or 1))


@flow("cases.classify")
def classify(ctx: FlowContext) -> dict[str, Any]:
    """Category from the subject, a priority, and tags; written to the case too."""
    subject = str(ctx.record.get("subject") or "")
    category = _category(subject)
    priority = 1 + len(subject) % 3
    ctx.update_record({"category": category, "priority": priority})
    return {"category": category, "priority": priority, "tags": sorted({category, "triaged"})}


@flow("cases.find_agent")
def find_agent(ctx: FlowContext) -> dict[str, Any]:
    """Pick an agent from the category's pool, spread by case number.

    find_agent runs concurrently with classify, so classify's output of *this*
    iteration may not exist yet: the category is derived from the subject by the
    same rule instead of being read from ``ctx.steps["classify"]``.
    """
    category = _category(str(ctx.record.get("subject") or ""))
    pool = AGENT_POOLS[category]
    number = int(ctx.record.get("number") or 0)
    agent = pool[number % len(pool)]
    ctx.update_record({"agent": agent})
    return {"agent": agent, "queue": f"L{_level(ctx)}"}


@flow("cases.raise_level")
def raise_level(ctx: FlowContext) -> dict[str, Any]:
    """Escalation: the next support tier takes over."""
    level = int(ctx.vars.get("level", 1)) + 1
    ctx.vars["level"] = level
    ctx.update_record({"level": level, "status": "Escalated"})
    return {"level": level}


@flow("cases.close")
def close(ctx: FlowContext) -> dict[str, Any]:
    """Close the case, noting who resolved it at which level."""
    found = ctx.steps.get("find_agent")
    agent = ((found.output or {}).get("agent") if found else None) or ctx.record.get("agent")
    resolution = {"by": agent, "level": _level(ctx)}
    ctx.update_record({"status": "Closed", "resolution": resolution})
    return {"status": "Closed", "resolution": resolution}


@flow("cases.send_survey")
def send_survey(ctx: FlowContext) -> dict[str, Any]:
    """Send the customer a satisfaction survey (here: pretend to)."""
    number = ctx.record.get("number") or 0
    return {"survey": {"to": f"customer-{number}", "sent": True}}
