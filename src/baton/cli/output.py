"""Printing for the CLI: Rich tables for people, ``--json`` for scripts.

``--json`` prints what the API returns: both are built by ``baton.runtime.views``.
Imports are kept light here (every command loads this module): Rich's table and progress
modules load when a command prints one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from rich.console import Console

if TYPE_CHECKING:
    from baton.engine.state import Run
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


json_errors = False
"""Set by the entry point when ``--json`` is among the options: an error is then one JSON
object on one line of stderr (:func:`print_error`), never ``error: ...`` text."""


def print_error(message: str, *, kind: str = "bad-request", exit_code: int = 1,
                **extra: Any) -> None:
    """An error that ends the command, on stderr: ``error: MESSAGE`` for a person, or under
    ``--json`` one line ``{"error": {"kind", "message", "exit_code", ...}}`` for a script
    (``kind`` as the API's problem types name it: ``not-found``, ``conflict``,
    ``validation``, ``usage``, ``internal`` ...; ``extra``: ``errors`` or ``issues``)."""
    if json_errors:
        body = {"kind": kind, "message": message, "exit_code": exit_code,
                **{k: v for k, v in extra.items() if v is not None}}
        sys.stdout.flush()
        sys.stderr.write(json.dumps({"error": body}, default=str) + "\n")
        sys.stderr.flush()
        return
    from rich.markup import escape

    err_console.print(f"[red]error:[/red] {escape(message)}", highlight=False)


def error_kind(exc: BaseException) -> str:
    """A Baton error's kind, as the API's problem ``type`` names it (web/problems.py)."""
    from baton import errors

    kinds: tuple[tuple[type[BaseException], str], ...] = (
        (errors.ValidationError, "validation"), (errors.DefinitionError, "definition"),
        (errors.ExpressionError, "expression"), (errors.NotFound, "not-found"),
        (errors.TransitionConflict, "conflict"), (errors.PermissionDenied, "forbidden"),
        (errors.ConfigError, "config"))
    return next((k for cls, k in kinds if isinstance(exc, cls)), "bad-request")


def run_detail(engine: Engine, run: Run) -> dict[str, Any]:
    """The run as the API shows it (``runtime/views.py``; the definition gives the order),
    with the stages and steps it reached."""
    return engine.run_detail(run, reached_only=True)


ID_COLUMNS = frozenset({"id", "run", "record", "run id", "record id", "work item", "token"})
"""Headers whose values are ids: printed whole (a truncated id cannot be pasted into the
next command), the other columns wrap first."""
OTHER_MIN_WIDTH = 6  # what a wrapping column keeps at least, so it stays readable


def print_timeline(engine: Engine, record_id: str, heading: str,
                   keep: Callable[[Mapping[str, Any]], bool]) -> None:
    """Print a heading and the record's timeline events that ``keep`` selects, one line
    each as ``baton records timeline`` describes them (the demos' "why" sections)."""
    from rich.markup import escape

    from baton.cli.render import describe_event

    console.print(heading)
    for e in engine.timeline(record_id):
        if keep(e):
            console.print(f"  {e['at'][11:23]}  {escape(describe_event(e))}")
    console.print()


def is_routing_event(event: Mapping[str, Any]) -> bool:
    """A routing decision on a timeline: assigned, or waiting because nobody qualified."""
    return bool(event["type"] in ("routed", "waiting_for_routing"))


def _shown_width(value: str) -> int:
    """The cells a value takes once printed: Rich renders a cell's markup
    (``[bold red]PONR[/bold red]`` shows as ``PONR``) and wide characters take two cells, so
    ``len`` of the raw string would size a column by text nobody sees."""
    if "[" not in value and value.isascii():
        return len(value)
    from rich.errors import MarkupError
    from rich.text import Text

    try:
        return Text.from_markup(value).cell_len
    except MarkupError:
        return len(value)


def table(title: str, columns: list[str], rows: list[list[Any]],
          ids: Collection[str] = ID_COLUMNS) -> None:
    """A Rich table on stdout. Columns named in ``ids`` are printed whole: the other columns
    wrap first, and an id column never shrinks below its longest value. Where the ids leave
    too little room with borders, the table drops its borders; on a terminal too narrow
    even then, ids fold onto more lines (every character still printed) rather than end in
    an ellipsis."""
    from rich import box
    from rich.table import Table

    cells = [[("" if v is None else str(v)) for v in r] + [""] * (len(columns) - len(r))
             for r in rows]  # a short row leaves its last cells empty
    widths = [max([_shown_width(c)] + [_shown_width(r[i]) for r in cells])
              for i, c in enumerate(columns)]
    id_room = sum(w for c, w in zip(columns, widths, strict=True) if c in ids)
    n_other = max(1, sum(1 for c in columns if c not in ids))
    # Room left per other column, with borders (3 characters a column) and without (1).
    bordered = (console.width - id_room - 3 * len(columns) - 1) // n_other
    borderless = (console.width - id_room - 2 * (len(columns) - 1)) // n_other
    if bordered >= OTHER_MIN_WIDTH or borderless < 1:
        t, room = Table(title=title, title_justify="left"), bordered
    else:
        t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0),
                  pad_edge=False, show_edge=False)
        room = borderless
    ids_fit = room >= 1
    for c, w in zip(columns, widths, strict=True):
        if c in ids:
            t.add_column(c, no_wrap=ids_fit, overflow="fold", min_width=w if ids_fit else None)
        else:
            t.add_column(c, overflow="fold", min_width=max(1, min(w, OTHER_MIN_WIDTH, room)))
    for r in cells:
        t.add_row(*r)
    console.print(t)


def show_progress(as_json: bool = False) -> bool:
    """Progress bars only for a person watching: stdout is a terminal and not ``--json``."""
    return not as_json and console.is_terminal


@contextmanager
def progress(label: str, total: int | None, *, enabled: bool) -> Iterator[Callable[..., None]]:
    """A Rich progress bar on stderr (stdout keeps the result) when ``enabled``; yields
    ``advance(n=1, total=None)``. Disabled, it yields a function that does nothing, so a
    command's code is the same whether a person or a script runs it."""
    if not enabled:
        yield lambda *_a, **_k: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=total)

        def advance(n: int = 1, total: int | None = None, description: str | None = None,
                    completed: int | None = None) -> None:
            if total is not None:
                bar.update(task, total=total)
            if description is not None:
                bar.update(task, description=description)
            if completed is not None:
                bar.update(task, completed=completed)
            else:
                bar.advance(task, n)

        yield advance
