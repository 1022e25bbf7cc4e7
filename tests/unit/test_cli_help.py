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
