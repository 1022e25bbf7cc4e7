"""``baton COMMAND`` runs an app holding only COMMAND (Typer converts every command it holds
before parsing): it must parse, help and fail exactly as the full app does for it."""

from __future__ import annotations

import pytest
import typer.main
from typer.testing import CliRunner

from baton.cli.main import app, app_for


def _names(a: typer.Typer) -> list[str]:
    return sorted([g.name for g in a.registered_groups if g.name] +
                  [c.name or typer.main.get_command_name(c.callback.__name__)  # type: ignore[union-attr]
                   for c in a.registered_commands])


def test_a_group_or_command_named_gets_an_app_with_only_it() -> None:
    assert _names(app_for(["runs", "list"])) == ["runs"]
    assert _names(app_for(["--db", "sqlite:///x.db", "-p", "here", "work", "list"])) == ["work"]
    assert _names(app_for(["--project=here", "records", "show", "rec_1"])) == ["records"]
    assert _names(app_for(["init", "folder"])) == ["init"]
    assert _names(app_for(["export"])) == ["export"]
    assert _names(app_for(["--version"])) == []


@pytest.mark.parametrize("args", [[], ["--help"], ["nosuch", "list"], ["-x", "runs", "list"],
                                  ["--", "runs"], ["--help", "--version"]])
def test_no_known_command_first_gets_the_full_app(args: list[str]) -> None:
    assert app_for(args) is app


def test_every_command_is_reachable_on_its_own() -> None:
    names = _names(app)
    assert len(names) > 20
    for name in names:
        assert _names(app_for([name])) == [name]


@pytest.mark.parametrize("args", [["runs", "--help"], ["runs", "list", "--help"],
                                  ["runs", "lst"], ["work", "list", "--status", "bogus"],
                                  ["deploy", "--help"], ["--version"]])
def test_the_lean_app_answers_as_the_full_one(args: list[str]) -> None:
    runner = CliRunner()
    full = runner.invoke(app, args, prog_name="baton", terminal_width=100)
    lean = runner.invoke(app_for(args), args, prog_name="baton", terminal_width=100)
    assert (lean.exit_code, lean.output) == (full.exit_code, full.output)
    assert full.output.strip()
