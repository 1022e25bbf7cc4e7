"""Printing for the CLI: Rich tables for people, ``--json`` for scripts.

``--json`` prints what the API returns: both are built by ``baton.runtime.views``.
Imports are kept light here (every command loads this module): Rich's table and progress
modules load when a command prints one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple

from rich.console import Console

if TYPE_CHECKING:
    from rich.text import Text

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
    with the stages and steps it reached, and what a running step waits for (``waiting``)."""
    from baton.runtime.waiting import fill_waits

    return fill_waits(engine.run_detail(run, reached_only=True), engine.store, run)


ID_COLUMNS = frozenset({"id", "run", "record", "run id", "record id", "work item", "token"})
"""Headers whose values are ids: printed whole on one line (a cut id cannot be pasted into
the next command)."""
STATUS_COLUMNS = frozenset({"status", "sla", "SLA", "availability", "outcome", "active"})
"""Headers whose values are statuses: whole, and kept on a narrow table's first line."""
TEXT_COLUMNS = frozenset({
    "title", "attention", "detail", "error", "expression", "fields", "value", "description",
    "subject / reason", "request", "text", "skills", "after", "target", "choices", "label",
    "roles", "groups", "queues", "delegate", "teams", "brands", "arguments (* required)"})
"""Headers whose values are free text: they wrap at word boundaries (only a word longer
than the column is folded). Any other column whose values hold spaces and run longer than
:data:`TEXT_MIN_WIDTH` is free text too."""
TEXT_MIN_WIDTH = 24  # what a wrapping column keeps at least, so it stays readable,
TEXT_LEAST_WIDTH = 16  # or, without borders, this: narrower, its rows go under (stacked)
LONGEST_WORD_KEPT = 40  # a word up to this long (an id in a detail) sets the column's least
GAP = "  "  # between the columns of a narrow table's lines
INDENT = "  "  # before what a narrow table prints under a row
BARE_COLUMNS = frozenset({"title"})  # printed under a row without its header


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
    """The cells a value takes once printed (its widest line): Rich renders a cell's markup
    (``[bold red]PONR[/bold red]`` shows as ``PONR``) and wide characters take two cells,
    so ``len`` of the raw string would size a column by text nobody sees."""
    if "[" not in value and value.isascii():
        return max(len(line) for line in value.split("\n"))
    return max(t.cell_len for t in _rich_text(value).split("\n"))


def _rich_text(value: str) -> Text:
    """A cell as Rich prints it: its markup rendered (a value that is not valid markup as
    it is, as Rich's table would fail on it otherwise)."""
    from rich.errors import MarkupError
    from rich.text import Text

    try:
        return Text.from_markup(value)
    except MarkupError:
        return Text(value)


def _longest_word(values: list[str]) -> int:
    return max((len(w) for v in values for w in v.split()), default=0)


def table(title: str, columns: list[str], rows: list[list[Any]],
          ids: Collection[str] = ID_COLUMNS, texts: Collection[str] = TEXT_COLUMNS) -> None:
    """A table on stdout, readable at any width (80 columns included).

    No value but free text is ever wrapped or cut: ids, statuses, names, times and numbers
    are printed whole on one line. Free text (headers in ``texts``, or any column but a
    status of long values with spaces; never one in ``ids``) wraps at word boundaries, down to
    :data:`TEXT_MIN_WIDTH` cells. Where the terminal holds that, a bordered table, else one
    without borders (free text down to :data:`TEXT_LEAST_WIDTH`); narrower still, each row is one line of the columns that fit (the
    first column and the statuses first), with its free text and the other columns on
    indented lines under it (``header: value``; a title without its header)."""
    cells = [[("" if v is None else str(v)) for v in r] + [""] * (len(columns) - len(r))
             for r in rows]  # a short row leaves its last cells empty
    natural = [max([_shown_width(c)] + [_shown_width(r[i]) for r in cells])
               for i, c in enumerate(columns)]
    is_text = [c not in ids and (c in texts or (c not in STATUS_COLUMNS and natural[i] >
                                                TEXT_MIN_WIDTH and any(" " in r[i] for r in cells)))
               for i, c in enumerate(columns)]
    words = [min(_longest_word([r[i] for r in cells]), LONGEST_WORD_KEPT) if text else 0
             for i, text in enumerate(is_text)]
    n = len(columns)
    for overhead, bordered, text_width in ((3 * n + 1, True, TEXT_MIN_WIDTH),
                                           (2 * (n - 1), False, TEXT_MIN_WIDTH),
                                           (2 * (n - 1), False, TEXT_LEAST_WIDTH)):
        room = console.width - overhead
        least = [min(w, max(text_width, word)) if text else w
                 for w, text, word in zip(natural, is_text, words, strict=True)]
        if sum(least) <= room:
            _rich_table(title, columns, cells, is_text, _fit(natural, least, is_text, room),
                        natural, bordered=bordered)
            return
    _stacked(title, columns, cells, is_text, natural)


def _fit(natural: list[int], least: list[int], is_text: list[bool], room: int) -> list[int]:
    """Column widths within ``room``: the free-text columns give up cells, the widest
    first, down to their ``least``."""
    widths = list(natural)
    excess = sum(widths) - room
    while excess > 0:
        give = [i for i, text in enumerate(is_text) if text and widths[i] > least[i]]
        if not give:
            break
        top = max(widths[i] for i in give)
        for i in give:
            if widths[i] == top and excess > 0:
                widths[i] -= 1
                excess -= 1
    return widths


def _rich_table(title: str, columns: list[str], cells: list[list[str]], is_text: list[bool],
                widths: list[int], natural: list[int], *, bordered: bool) -> None:
    from rich import box
    from rich.table import Table

    if bordered:
        t = Table(title=title, title_justify="left")
    else:
        t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0),
                  pad_edge=False, show_edge=False)
    for c, text, w, full in zip(columns, is_text, widths, natural, strict=True):
        if text:  # (a width only when it had to give up cells: else Rich's own sizing)
            t.add_column(c, overflow="fold", width=w if w < full else None)
        else:
            t.add_column(c, no_wrap=True, min_width=w)
    for r in cells:
        t.add_row(*r)
    console.print(t)


def _stacked(title: str, columns: list[str], cells: list[list[str]], is_text: list[bool],
             natural: list[int]) -> None:
    """A table too wide for the terminal: per row, a line of the columns that fit (whole),
    then the rest on indented lines under it, the free text wrapped at word boundaries."""
    from rich.text import Text

    width, gap = console.width, len(GAP)
    shown, used = {0}, natural[0]  # the first column (the id) always; then what fits,
    statuses = [i for i, c in enumerate(columns) if c in STATUS_COLUMNS]  # statuses first
    for i in statuses + list(range(1, len(columns))):
        if i not in shown and not is_text[i] and used + gap + natural[i] <= width:
            shown.add(i)
            used += gap + natural[i]
    line_cols = sorted(shown)
    under = [i for i in range(len(columns)) if i not in shown]
    bare = next((i for i in under if columns[i] in BARE_COLUMNS), None)

    def line(values: list[Text]) -> Text:
        out = Text(no_wrap=True, end="")
        for k, (i, v) in enumerate(zip(line_cols, values, strict=True)):
            v = v.copy()
            v.plain = v.plain.replace("\n", " ")  # (same length: the styles stay put)
            if k < len(line_cols) - 1:
                v.pad_right(max(0, natural[i] - v.cell_len) + gap)
            out.append_text(v)
        out.rstrip()
        return out

    print_wrapped(Text(title, style="table.title"))
    print_wrapped(line([Text(columns[i], style="table.header") for i in line_cols]))
    console.print(Text("─" * min(width, used), style="table.header"), soft_wrap=True)
    for r in cells:  # (a first column wider than the terminal, a long name, is folded,
        row = line([_rich_text(r[i]) for i in line_cols])  # under its own indent)
        lead = len(row.plain) - len(row.plain.lstrip(" "))
        print_wrapped(row[lead:] if lead else row, " " * lead)
        for i in under:
            if not r[i].strip():
                continue
            value = _rich_text(r[i])
            if i != bare:
                value = Text.assemble((f"{columns[i]}: ", "dim"), value)
            print_wrapped(value, INDENT)


def print_wrapped(value: str | Text, indent: str = "", hang: str = "") -> None:
    """Print ``value`` (Rich markup, or a Text) within the terminal's width, each line
    after ``indent`` (and ``hang`` too, after the first): wrapped at word boundaries, a word
    longer than a line (a long name) folded, so no line passes the terminal (80 columns
    when not a terminal)."""
    from rich.text import Text

    text = _rich_text(value) if isinstance(value, str) else value
    if not indent and "\n" not in text.plain and text.cell_len <= console.width:
        console.print(text, soft_wrap=True)  # (it fits: as it is, trailing spaces too)
        return
    room = max(1, console.width - len(indent) - len(hang))
    for k, wrapped in enumerate(text.wrap(console, room, overflow="fold", no_wrap=False)):
        wrapped.rstrip()  # (no_wrap=False: a no_wrap Text would be cut, not folded)
        lead = indent + hang if k else indent
        console.print(Text(lead, end="").append_text(wrapped), soft_wrap=True)


class Part(NamedTuple):
    """A part of a ``show`` command's first line (``baton runs show``, ``baton work show``)."""

    markup: str  # as printed: Rich markup (free text escaped)
    sep: str = GAP  # what comes before it on the line (the first part's is not printed)
    label: str = ""  # before it on a line of its own (``orchestration``); "": none needed
    keep: bool = False  # always on the first line (the id, the status)
    text: bool = False  # free text: wraps at word boundaries on lines of its own


def first_line(parts: Sequence[Part]) -> None:
    """Print a ``show`` command's first line: ``parts`` in order, each after its ``sep``.

    Where that passes the terminal's width (80 columns when not a terminal), the line keeps
    the first part, the parts marked ``keep`` that fit (the status: all of them but on a
    very narrow terminal), then the other names that still fit, then free text that still
    fits (in their order on the line; none ever cut), and the parts left out follow on
    indented lines of their own: a name after its ``label`` (on the lines under it, further
    in, where both do not fit), free text wrapped at word boundaries, and either folded
    where it is longer than the terminal's line. Nothing is lost: each part is printed
    once, whole."""
    from rich.text import Text

    width = console.width
    cells = [_shown_width(p.markup) for p in parts]
    if sum(cells) + sum(len(p.sep) for p in parts[1:]) <= width:
        console.print(_joined(parts))
        return
    on_line, used = {0}, cells[0]
    for kind in ("keep", "name", "text"):  # what is kept, then names: free text wraps below
        for i, p in enumerate(parts):
            need = len(p.sep) + cells[i]
            if i not in on_line and p.markup and used + need <= width and kind == (
                    "keep" if p.keep else "text" if p.text else "name"):
                on_line.add(i)
                used += need
    print_wrapped(_joined([parts[i] for i in sorted(on_line)]))  # (an id past the width)
    for i, p in enumerate(parts):
        if i in on_line or not p.markup.strip():
            continue
        if p.text:
            print_wrapped(p.markup, INDENT)
            continue
        label = Text(f"{p.label} ") if p.label else Text()  # (what follows it: further in)
        print_wrapped(label.append_text(_rich_text(p.markup)), INDENT, INDENT if p.label else "")


def _joined(parts: Sequence[Part]) -> str:
    return parts[0].markup + "".join(p.sep + p.markup for p in parts[1:])


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
