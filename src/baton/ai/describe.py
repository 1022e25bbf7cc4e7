"""An ``ai`` step's answer in one line, for timelines (the CLI's and the record page's): what
it decided, how sure it was, why, and which provider, model and prompt version answered."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def is_ai_answer(output: Any) -> bool:
    """Is a ``step_completed`` event's output an ai step's answer (it carries ``ai``)?"""
    return isinstance(output, Mapping) and isinstance(output.get("ai"), Mapping)


def describe_answer(out: Mapping[str, Any]) -> str:
    """``classified: billing (0.84) because invoice; charged twice [offline/…, prompt …]``."""
    if "category" in out:
        decided = str(out["category"])
    elif "fields" in out:
        decided = ", ".join(f"{k}={v!r}" for k, v in (out.get("fields") or {}).items()
                            if v is not None) or "nothing found"
    else:
        ids = out.get("record_ids") or ([out["record_id"]] if out.get("record_id") else [])
        decided = ", ".join(str(i) for i in ids) or "no record"
    conf = out.get("confidence")
    sure = f" ({float(conf):.2f})" if isinstance(conf, int | float) else ""
    why = "; ".join(str(r) for r in out.get("rationale") or []) or "-"
    ai = out.get("ai") or {}
    return (f"{out.get('outcome', 'answered')}: {decided}{sure} because {why} "
            f"[{ai.get('provider')}/{ai.get('model')}, prompt {ai.get('prompt_version')}]")
