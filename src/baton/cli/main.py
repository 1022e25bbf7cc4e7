"""The ``baton`` command's entry point (``baton = "baton.cli.main:main"``).

Kept tiny, because every ``baton`` call imports it first: importing Typer, Rich and the
command modules costs ~0.1-0.2 s of CPU before a command does anything. :func:`main`
first offers the command line to the lean read path (:mod:`baton.cli.reads`): the
common read commands (``runs list``, ``records show`` ...) on a SQLite database at the
current schema are answered there with the stdlib's ``sqlite3`` and Rich only, printing
exactly what the full path prints. Everything else (any other command, ``--help``, an
option or value the lean path does not know, PostgreSQL, a database to migrate, an id that
is not found) goes to the Typer app in :mod:`baton.cli.commands`, unchanged.
``BATON_CLI_LEAN=0`` turns the lean path off.

The Typer app's names (``app``, ``state``, ``describe_event`` ...) are still reachable as
``baton.cli.main.NAME``: they are loaded from :mod:`baton.cli.commands` on first use.
"""

from __future__ import annotations

import sys
from typing import Any


def main() -> None:
    from baton.cli.reads import answer

    try:
        if answer(sys.argv[1:]):
            return
    except BrokenPipeError:  # `baton runs list | head`: the reader left (as the full path)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (Python's recipe)
        sys.exit(1)
    from baton.cli.commands import main as full_main

    full_main()


def __getattr__(name: str) -> Any:
    # ``from baton.cli.main import app, state``: the Typer app's module, loaded on first use
    # (not for the import system's own questions: ``__path__`` is asked on every import).
    if name.startswith("__"):
        raise AttributeError(f"module 'baton.cli.main' has no attribute {name!r}")
    from baton.cli import commands

    try:
        return getattr(commands, name)
    except AttributeError:
        raise AttributeError(f"module 'baton.cli.main' has no attribute {name!r}") from None


if __name__ == "__main__":
    # `python -m baton.cli.main`: this file runs as `__main__`; the command modules import
    # `baton.cli.commands` (one `state`, the one that saw --db and --project), so running
    # this copy's main is safe.
    main()
