"""Printing for the CLI: Rich tables for people, ``--json`` for scripts.

``--json`` prints what the API returns: both are built by ``baton.runtime.views``.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from baton.engine.state import Run

if TYPE_CHECKING:
    from baton.runtime.engine import Engine

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


def run_detail(engine: Engine, run: Run) -> dict[str, Any]:
    """The run as the API shows it (``runtime/views.py``; the definition gives the order),
    with the stages and steps it reached."""
    return engine.run_detail(run, reached_only=True)


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[("" if v is None else str(v)) for v in r])
    console.print(t)
