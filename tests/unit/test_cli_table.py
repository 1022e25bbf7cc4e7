"""The CLI's tables size their columns by what is printed, not by the markup behind it."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.markup import escape

from baton.cli import output


def _render(monkeypatch: pytest.MonkeyPatch, width: int, columns: list[str],
            rows: list[list[str]], ids: tuple[str, ...]) -> str:
    buf = io.StringIO()
    monkeypatch.setattr(output, "console", Console(file=buf, width=width, soft_wrap=True,
                                                   color_system=None))
    output.table("t", columns, rows, ids=ids)
    return buf.getvalue()


def test_markup_does_not_widen_an_id_column(monkeypatch: pytest.MonkeyPatch) -> None:
    # `baton plans show`: the step is the id column, marked when it is the point of no
    # return. Printed, "reserve_inventory PONR" takes 22 cells and the table keeps its
    # borders at 60 columns; measured raw (43 characters of markup) it dropped them.
    rows = [["reserve_inventory [bold red]PONR[/bold red]", "line L1", "flow",
             output.styled("completed")],
            [escape("ship[a1]"), "line L2", "callout", output.styled("in_jeopardy")]]
    text = _render(monkeypatch, 60, ["step", "scope", "type", "status"], rows, ("step",))
    assert "│" in text  # the bordered table
    assert "reserve_inventory PONR" in text and "[bold" not in text
    assert "ship[a1]" in text


def test_wide_characters_count_as_two_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    assert output._shown_width("受付") == 4
    assert output._shown_width("[green]ok[/green]") == 2
    assert output._shown_width("step[a1]") == len("step")  # Rich reads [a1] as a tag
    assert output._shown_width("[/nothing open]") == len("[/nothing open]")
