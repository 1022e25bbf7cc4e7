"""How an AI decision reads on a timeline (the CLI's ``baton records timeline`` and the
record page): one line of an ``ai_call`` audit event. Imports nothing heavy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def describe_ai_call(d: Mapping[str, Any]) -> str:
    """``intent: openai gpt-4o-mini → cancellation (0.93, classified) — because …
    [prompt 1a2b…, 211+17 tokens, $0.0004, 412 ms]``; a failed call: its error."""
    head = f"{d.get('step')}: {d.get('provider')} {d.get('model')}"
    cost = []
    if d.get("prompt_version"):
        cost.append(f"prompt {d['prompt_version']}")
    if d.get("input_tokens") is not None or d.get("output_tokens") is not None:
        cost.append(f"{d.get('input_tokens') or 0}+{d.get('output_tokens') or 0} tokens")
    if d.get("cost") is not None:
        cost.append(f"${d['cost']}")
    if d.get("attempts"):
        cost.append(f"{d['attempts']} asks")
    if d.get("input_cut"):
        cut = f"read the first {d.get('read_chars')} of {d.get('input_chars')} characters"
        cost.append(cut)
    if d.get("latency_ms") is not None:
        cost.append(f"{d['latency_ms']} ms")
    tail = f" [{', '.join(cost)}]" if cost else ""
    error = d.get("error")
    if isinstance(error, Mapping):
        return f"{head} failed: {error.get('type')}: {str(error.get('message'))[:200]}{tail}"
    out = d.get("output") or {}
    if "category" in out:
        what = "no category" if out["category"] is None else str(out["category"])
    elif "fields" in out:
        what = ", ".join(f"{k}={v!r}" for k, v in (out["fields"] or {}).items()
                         if v is not None)[:160] or "no fields"
    elif out.get("record_ids") is not None:
        what = f"{len(out['record_ids'])} records: {', '.join(out['record_ids'][:5])}"
    else:
        what = str(out.get("record_id") or "no record")
    conf = d.get("confidence")
    conf_text = f"{conf:.2f}, " if isinstance(conf, int | float) else ""
    why = "; ".join(str(r) for r in (d.get("rationale") or [])[:3])
    because = f" — because: {why[:240]}" if why else ""
    return f"{head} → {what} ({conf_text}{d.get('outcome')}){because}{tail}"


def describe_child_link(t: str, d: Mapping[str, Any]) -> str | None:
    """The parent/child link of case splitting, on both records' timelines (None: the
    event is not one of them)."""
    if t == "child_runs_started":
        kids = d.get("children") or []
        records = ", ".join(str(c.get("record_id")) for c in kids[:10])
        return (f"step {d.get('step')}: {len(kids)} child run{'s' if len(kids) != 1 else ''} "
                f"of {d.get('orchestration')} v{d.get('version')} on {records}")
    if t == "record_created" and d.get("parent_run_id"):
        return (f"child of record {d.get('parent_record_id') or '-'} (run "
                f"{d.get('parent_run_id')}, step {d.get('step')} #{d.get('index')})")
    return None
