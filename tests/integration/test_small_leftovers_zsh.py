"""zsh completes the VALUE of an ``--option=VALUE`` word, as bash does: a real interactive
``zsh`` on a pseudo-terminal with the script Typer installs, TAB pressed and the command
line read back (tests/e2e/test_completion_shells.py's terminal, on its small project)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_completion_shells import Terminal, make_project, script, shell_env

pytestmark = pytest.mark.skipif(
    shutil.which("zsh") is None,
    reason="zsh is not installed (apt-get install zsh): its completion untested")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_project(tmp_path_factory.mktemp("zsh") / "shop", "sqlite:///baton.db")


def test_zsh_completes_the_value_of_an_option_after_its_equals(
        project: dict[str, Any], tmp_path: Path) -> None:
    root, run = project["root"], project["run"]
    env = shell_env(tmp_path)
    term = Terminal(["zsh", "-f", "-i"], env, root)
    try:
        term.run(f"autoload -Uz compinit; compinit -D; source {script('zsh', env, tmp_path)}")
        assert term.completed("baton runs list --orchestration=fu\t")[0] == \
            "baton runs list --orchestration=fulfil"
        assert term.completed("baton runs list --orchestration=\t")[0] == \
            "baton runs list --orchestration=fulfil"
        # a value that is an id (read from the database)
        assert term.completed("baton runs list --record=re\t")[0] == \
            f"baton runs list --record={project['record']}"
        # nothing that matches: the word left as typed
        assert term.completed("baton runs list --orchestration=zz\t")[0] == \
            "baton runs list --orchestration=zz"
        # what completed before still does: an option's name, an id, a word with no "="
        assert term.completed("baton runs list --orchestr\t")[0] == \
            "baton runs list --orchestration"
        assert term.completed("baton runs show run_\t")[0] == f"baton runs show {run}"
        assert term.completed("baton runs list --orchestration fu\t")[0] == \
            "baton runs list --orchestration fulfil"
    finally:
        term.close()
