"""Every ``baton`` command and every one of its options and arguments says what it is for
in ``--help``: this walks the whole Typer app (sub-apps too) and names each one missing."""

from __future__ import annotations

from typing import Any

import typer.main

from baton.cli.main import app


def _walk(command: Any, path: str) -> list[str]:
    missing = []
    if not (command.help or "").strip():
        missing.append(f"{path}: the command has no help")
    for param in command.params:
        if param.name == "help":
            continue
        if not (getattr(param, "help", None) or "").strip():
            kind = "option" if param.param_type_name == "option" else "argument"
            missing.append(f"{path} {'/'.join(param.opts)}: the {kind} has no help")
    for name, sub in getattr(command, "commands", {}).items():
        missing += _walk(sub, f"{path} {name}")
    return missing


def test_every_command_option_and_argument_has_help() -> None:
    root = typer.main.get_command(app)
    assert len(getattr(root, "commands", {})) > 10  # the walk reached the commands
    missing = _walk(root, "baton")
    assert missing == [], "\n".join(missing)


def test_a_group_lists_each_command_on_lines_the_terminal_wraps() -> None:
    """A command's summary in its group's list is its help's first paragraph on one line:
    Typer's rich mode kept the docstring's own line breaks there, so ``baton work --help``
    broke ``list``'s summary mid-sentence at 80 columns."""
    from typer.testing import CliRunner

    def shorts(command: Any, path: str) -> list[tuple[str, str]]:
        out = []
        for name, sub in getattr(command, "commands", {}).items():
            if hasattr(sub, "commands"):  # a group: its one-line help= is its summary
                out += shorts(sub, f"{path} {name}")
            else:
                out.append((f"{path} {name}", sub.short_help or ""))
        return out

    found = shorts(typer.main.get_command(app), "baton")
    assert len(found) > 50
    assert [p for p, s in found if not s.strip() or "\n" in s] == []
    page = CliRunner().invoke(app, ["work", "--help"],
                              env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"}).output
    assert "(all open items if none is given), oldest first (a page" in page, page
