"""One line of plain text per audit event, for timelines (the CLI has its own version)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from baton.ai.describe import describe_answer, is_ai_answer
from baton.ai.views import describe_ai_call, describe_child_link
from baton.intake.views import describe_message
from baton.runtime.views import approval_history_line
from baton.work.routing import OFFER_EVENTS, describe_decision, describe_offer


def describe_event(e: Mapping[str, Any]) -> str:
    d = e.get("data") or {}
    t = e.get("type", "")
    if t == "ai_call":
        return describe_ai_call(d)
    link = describe_child_link(t, d)
    if link is not None and t == "child_runs_started":
        return link
    if t == "record_updated":
        return ", ".join(f"{k}: {_short(v[0])} → {_short(v[1])}"
                         for k, v in (d.get("changes") or {}).items())
    if t in ("routed", "offered", "waiting_for_routing"):
        return describe_decision(d, t)
    if t in OFFER_EVENTS:
        return describe_offer(t, d)
    if t == "record_created":
        fields = ", ".join(f"{k}={_short(v)}" for k, v in (d.get("fields") or {}).items()
                           if v is not None)[:300]
        return f"{fields}; {link}" if link else fields
    approval = approval_history_line(t, str(e.get("actor") or ""), d)
    if approval is not None:
        return _short(approval, 300)
    if t == "decision_taken":
        label = f" ({d['label']})" if d.get("label") else ""
        return (f"after stage {d.get('stage')} (iteration {d.get('iteration')}) → "
                f"{d.get('goto')}{label}")
    if t == "step_completed" and is_ai_answer(d.get("output")):  # what the AI decided, and why
        return (f"{d.get('stage')} / {d.get('step')} (iteration {d.get('iteration')}) "
                f"{describe_answer(d['output'])}")
    if t.startswith("step_") or t == "milestone_reached":
        error = (d.get("error") or {}).get("message", "") if isinstance(d.get("error"), dict) else ""
        return f"{d.get('stage')} / {d.get('step')} (iteration {d.get('iteration')}) {error}".strip()
    if t.startswith("stage_"):
        return f"{d.get('stage')} (iteration {d.get('iteration')})"
    if t.startswith("work_item_"):
        bits = [str(d.get("step") or ""), str(d.get("work_item") or "")]
        bits += [f"{k}: {d[k]}" for k in ("assignee", "from", "to", "reason") if k in d]
        if d.get("on_behalf_of"):
            bits.append(f"on behalf of {d['on_behalf_of']}")
        if "data" in d:
            bits.append(_short(d["data"]))
        return " ".join(b for b in bits if b)
    if t in ("trigger_failed", "condition_flow_failed"):
        error = d.get("error")
        message = error.get("message", "") if isinstance(error, dict) else str(error or "")
        what = d.get("orchestration") or d.get("flow") or ""
        return f"{what} {_short(message)} (incident {d.get('incident') or '-'})".strip()
    if t in ("incident_retried", "incident_dismissed"):
        outcome = f" → {d['outcome']}" if d.get("outcome") else ""
        return (f"incident {d.get('incident')} ({d.get('orchestration')} v{d.get('version')})"
                f"{outcome}, reason: {_short(d.get('reason') or '')}")
    if t == "http_call":
        answer = d.get("status") if d.get("status") is not None else f"no response: {d.get('error')}"
        return (f"{d.get('step')}: {d.get('method')} {d.get('url')} → {answer} in "
                f"{d.get('duration_ms')} ms ({d.get('request_bytes')} B sent, "
                f"{d.get('response_bytes')} B received)")
    if t == "message_received":
        return describe_message(d)
    if t == "run_started":
        return f"{d.get('orchestration')} v{d.get('version')}"
    if t == "mcp_called":  # an mcp step's tool call (its arguments redacted already)
        text = (f"{d.get('step')} (iteration {d.get('iteration')}): {d.get('connection')}."
                f"{d.get('tool')} {_short(d.get('arguments'), 120)} → {d.get('outcome')} in "
                f"{d.get('duration_ms')} ms")
        return f"{text}: {_short(d['error'])}" if d.get("error") else text
    if t.startswith("child_run"):
        return _child_event(t, d)
    return _short(d) if d else ""


def _child_event(t: str, d: Mapping[str, Any]) -> str:
    step = f"step {d.get('step')}"
    if t == "child_runs_started":
        n = len(d.get("children") or [])
        return f"{step}: {n} child run{'s' if n != 1 else ''} of {d.get('orchestration')} v{d.get('version')}"
    if t == "child_run_finished":
        return f"{step}: child #{d.get('index')} {d.get('run_id')} {d.get('status')}"
    if t == "child_runs_canceled":
        return f"{step}: canceling child runs {', '.join(d.get('run_ids') or [])}"
    if t == "child_run_not_started":
        error = d.get("error")
        message = error.get("message", "") if isinstance(error, dict) else str(error or "")
        return f"{step}: child #{d.get('index')} not started: {_short(message)}"
    if t == "child_runs_restarted":
        return f"{step}: child runs restarted for elements {d.get('indexes')}"
    return _short(d) if d else ""


def _short(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"
