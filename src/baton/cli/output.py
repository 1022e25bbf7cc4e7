"""Printing for the CLI: Rich tables for people, ``--json`` for scripts."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from baton.engine.state import Run

# soft_wrap: a line that is longer than the terminal (or piped to a file) stays one line,
# so `file:line path: message` and one-line errors can be grepped and parsed.
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

STATUS_STYLE = {
    "completed": "green", "in_progress": "cyan", "running": "cyan", "waiting": "yellow",
    "waiting_for_person": "magenta", "not_started": "dim", "failed": "red", "fallout": "red",
    "on_track": "green", "in_jeopardy": "yellow", "overdue": "red",
    "canceled": "dim strike", "skipped": "dim", "open": "magenta", "claimed": "yellow",
}


def styled(status: str) -> str:
    style = STATUS_STYLE.get(status)
    return f"[{style}]{status}[/{style}]" if style else status


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def run_summary(run: Run) -> dict[str, Any]:
    return {
        "id": run.id, "status": run.status.value, "orchestration": run.orchestration,
        "version": run.version, "record_id": run.record_id, "current_stage": run.current_stage,
        "created_at": run.created_at, "completed_at": run.completed_at,
    }


def run_detail(run: Run) -> dict[str, Any]:
    data = run_summary(run)
    data.update(
        stages=[{"name": s.name, "status": s.status.value, "iteration": s.iteration}
                for s in run.stages.values()],
        steps=[{"name": s.name, "stage": s.stage, "iteration": s.iteration, "status": s.status.value,
                "output": s.output, "error": s.error, "work_item_id": s.work_item_id,
                "attempts": s.attempts, "sla_status": (s.sla or {}).get("status"),
                "due_at": (s.sla or {}).get("due_at")}
               for s in run.steps.values()],
        decisions=run.decisions, vars=run.vars, input=run.input, error=run.error,
    )
    return data


def work_item_json(item: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "status", "step", "run_id", "record_id", "orchestration", "stage", "iteration",
            "title", "instructions", "assignee_kind", "assignee", "claimed_by", "form", "data",
            "created_at", "updated_at", "completed_at", "completed_by", "sla_status", "due_at")
    out = {k: item.get(k) for k in keys}
    out["assigned_to"] = f"{item['assignee_kind']}:{item['assignee']}"
    return out


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[("" if v is None else str(v)) for v in r])
    console.print(t)
