"""Shell completion as a person at a terminal gets it, and on PostgreSQL.

* bash, for real: an interactive ``bash`` on a pseudo-terminal with the script Typer
  installs, keys typed, TAB pressed, and the command line read back (Ctrl-A, ``echo``,
  Enter). bash splits the words it hands the script at ``:`` and ``=``
  (``COMP_WORDBREAKS``): the ``RUN_ID:STEP`` of a step in fallout and an
  ``--option=VALUE`` still complete after them (``baton.cli.complete.BashComplete``);
* zsh the same way, when it is installed;
* a project on PostgreSQL (``baton.toml`` or ``BATON_DB``) offers its ids and names as a
  SQLite one does, and a server that does not answer offers nothing rather than hang.

Real subprocesses on a small project of ours (tests/e2e/test_cli.py's helpers): one
orchestration whose run leaves two steps (``charge``, ``pack``) in fallout.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import socket
import struct
import subprocess
import sys
import termios
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import _env, baton, ok, ok_json

DEFS = """
kind: object
name: Order
fields:
  ref: {type: string, required: true}
---
kind: orchestration
name: fulfil
trigger: {type: record, object: Order, on: [create]}
stages:
  - name: go
    steps:
      - {name: charge, type: background, flow: shop.decline}
      - {name: pack, type: background, flow: shop.decline}
      - {name: ship, type: background, flow: shop.ok, after: [charge, pack]}
"""

FLOWS = """
from baton import flow
from baton.errors import StepFailure


@flow("shop.decline")
def decline(ctx):
    raise StepFailure("declined", retryable=False)


@flow("shop.ok")
def ok(ctx):
    return {}
"""


def make_project(root: Path, database: str) -> dict[str, Any]:
    """The project deployed on ``database``, one order's run with two steps in fallout."""
    (root / "definitions").mkdir(parents=True)
    (root / "definitions" / "defs.yaml").write_text(textwrap.dedent(DEFS))
    (root / "shop.py").write_text(FLOWS)
    (root / "baton.toml").write_text(f'database = "{database}"\nflows = ["shop"]\n')
    ok(baton("deploy", cwd=root))
    rec = ok_json(baton("records", "create", "Order", "--data", '{"ref": "A1"}', "--json",
                        cwd=root))
    ok(baton("worker", "--until-idle", cwd=root))
    fallout = ok_json(baton("fallout", "list", "--json", cwd=root))
    assert sorted(f["step"] for f in fallout) == ["charge", "pack"], fallout
    return {"root": root, "run": fallout[0]["run_id"], "record": rec["id"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return make_project(tmp_path_factory.mktemp("completion") / "shop", "sqlite:///baton.db")


# ---- a shell on a pseudo-terminal ---------------------------------------------------------
class Terminal:
    """An interactive shell on a pseudo-terminal (250 columns: no line wraps)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.master, child = pty.openpty()
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 250, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=child, stdout=child, stderr=child, cwd=cwd,
                                     env=env, start_new_session=True)
        os.close(child)
        self.out = ""
        self.asked = 0

    def until(self, pattern: str, timeout: float = 90) -> re.Match[str]:
        """The first match of ``pattern`` in what the terminal has shown (waiting for it:
        ``timeout`` only guards against a shell that hangs)."""
        end = time.monotonic() + timeout
        while (found := re.search(pattern, self.out)) is None:
            ready, _, _ = select.select([self.master], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                raise AssertionError(f"{pattern!r} not shown; the terminal:\n{self.out}")
            try:
                data = os.read(self.master, 65536)
            except OSError:  # (Linux: EIO once the shell has gone)
                data = b""
            if not data:
                raise AssertionError(f"the shell ended; the terminal:\n{self.out}")
            self.out += data.decode(errors="replace")
        return found

    def run(self, command: str) -> None:
        """``command`` typed and run, waited for."""
        self.asked += 1
        self.type(f"{command}; echo DONE-$(({self.asked}*1000))\n")
        self.until(rf"\nDONE-{self.asked * 1000}\r\n")

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def completed(self, keys: str) -> tuple[str, str]:
        """The command line after typing ``keys`` (TABs among them), and what the terminal
        showed meanwhile (a list of candidates). The line is read back by prefixing it with
        ``echo`` (Ctrl-A: to its start) and pressing Enter; the keys after the TABs wait
        in the terminal until the completion has been done."""
        self.asked += 1
        mark = f"LINE-{self.asked * 1000}"
        start = len(self.out)
        self.type(f"{keys}\x01echo LINE-$(({self.asked}*1000)): \n")
        found = self.until(rf"\n{mark}: (.*)\r\n")
        return found.group(1).rstrip(), self.out[start:found.start()]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)


def shell_env(home: Path) -> dict[str, str]:
    """The tests' environment, with a ``baton`` command on PATH (this checkout's, run by
    this Python) and nothing of the user's shell set-up."""
    bin_dir = home / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "baton").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m baton.cli.main "$@"\n')
    (bin_dir / "baton").chmod(0o755)
    env = _env(None)
    return env | {"PATH": f"{bin_dir}{os.pathsep}{env['PATH']}", "HOME": str(home),
                  "TERM": "dumb", "PS1": "$ ", "INPUTRC": os.devnull}


def script(shell: str, env: dict[str, str], where: Path) -> Path:
    """The completion script Typer installs for ``shell`` (``--install-completion`` writes
    this same text), as a file."""
    made = subprocess.run(["baton"], env=env | {"_BATON_COMPLETE": f"source_{shell}"},
                          cwd=where, capture_output=True, text=True, timeout=120, check=True)
    assert "_BATON_COMPLETE=complete_" in made.stdout, made.stdout
    path = where / f"completion.{shell}"
    path.write_text(made.stdout)
    return path


def test_bash_completes_after_the_colon_of_a_fallout_id_and_the_equals_of_an_option(
        project: dict[str, Any], tmp_path: Path) -> None:
    root, run = project["root"], project["run"]
    env = shell_env(tmp_path)
    term = Terminal(["bash", "--norc", "--noprofile", "-i"], env, root)
    try:
        term.run(f"source {script('bash', env, tmp_path)}")
        # a step after RUN_ID: (bash hands over `RUN_ID`, `:`, `p`)
        assert term.completed(f"baton fallout retry {run}:p\t")[0] == \
            f"baton fallout retry {run}:pack"
        # right after the colon: the steps listed by their names (a second TAB), the line kept
        line, shown = term.completed(f"baton fallout skip {run}:\t\t")
        assert line == f"baton fallout skip {run}:"
        assert re.search(r"\ncharge +pack *\r\n", shown), shown
        # the run id alone: up to the colon both steps share
        assert term.completed(f"baton fallout complete {run[:-3]}\t")[0] == \
            f"baton fallout complete {run}:"
        # --option=VALUE (bash hands over `--orchestration`, `=`, `fu`)
        assert term.completed("baton runs list --orchestration=fu\t")[0] == \
            "baton runs list --orchestration=fulfil"
        assert term.completed("baton runs list --orchestration=\t")[0] == \
            "baton runs list --orchestration=fulfil"
        # the plain cases as before: an id, a subcommand
        assert term.completed("baton runs show run_\t")[0] == f"baton runs show {run}"
        assert term.completed("baton fallout re\t")[0] == "baton fallout retry"
        # from elsewhere, a --db URL before (its colons split too)
        term.run("cd /")
        db = f"sqlite:///{root}/baton.db"
        assert term.completed(f"baton --db {db} fallout retry {run}:c\t")[0] == \
            f"baton --db {db} fallout retry {run}:charge"
    finally:
        term.close()


@pytest.mark.skipif(shutil.which("zsh") is None,
                    reason="zsh is not installed (apt-get install zsh): its completion untested")
def test_zsh_completes_ids_and_a_fallout_id_after_its_colon(project: dict[str, Any],
                                                            tmp_path: Path) -> None:
    root, run = project["root"], project["run"]
    env = shell_env(tmp_path)
    term = Terminal(["zsh", "-f", "-i"], env, root)
    try:
        term.run(f"autoload -Uz compinit; compinit -D; source {script('zsh', env, tmp_path)}")
        assert term.completed(f"baton fallout retry {run}:p\t")[0] == \
            f"baton fallout retry {run}:pack"
        assert term.completed("baton runs show run_\t")[0] == f"baton runs show {run}"
        assert term.completed("baton records show re\t")[0] == \
            f"baton records show {project['record']}"
    finally:
        term.close()


# ---- PostgreSQL ---------------------------------------------------------------------------
def ask(cwd: Path, *words: str, env: dict[str, str] | None = None) -> list[str]:
    """What ``baton`` offers for the last of ``words``, asked as bash's script asks it
    (``COMP_WORDS`` as bash splits them: ``a:b`` is ``a : b``)."""
    p = subprocess.run([sys.executable, "-m", "baton.cli.main"], cwd=cwd,
                       env=_env("400") | (env or {}) | {
                           "_BATON_COMPLETE": "complete_bash",
                           "COMP_WORDS": " ".join(["baton", *words]),
                           "COMP_CWORD": str(len(words))},
                       capture_output=True, text=True, timeout=120, check=False)
    assert (p.returncode, p.stderr) == (0, ""), (p.returncode, p.stdout, p.stderr)
    return p.stdout.split()


def test_completion_reads_a_postgresql_database(pg_url: str, tmp_path: Path) -> None:
    made = make_project(tmp_path / "shop", pg_url)
    root, run, record = made["root"], made["run"], made["record"]
    assert ask(root, "runs", "show", "") == [run]
    assert ask(root, "runs", "cancel", run[:6]) == [run]
    assert ask(root, "runs", "show", "run%") == []  # what is typed, not a LIKE pattern
    assert ask(root, "runs", "show", "run_0_") == []
    assert ask(root, "records", "show", "rec_") == [record]
    assert ask(root, "fallout", "retry", "") == [f"{run}:pack", f"{run}:charge"]
    assert ask(root, "fallout", "retry", run, ":", "c") == ["charge"]  # (bash's pieces)
    assert ask(root, "start", "") == ["fulfil"]
    assert ask(root, "records", "create", "O") == ["Order"]
    assert ask(root, "work", "claim", "") == []  # (no work item)
    # BATON_DB names it, outside any project
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert ask(outside, "runs", "show", "", env={"BATON_DB": pg_url}) == [run]
    assert ask(outside, "--db", *re.split("(:)", pg_url), "fallout", "skip", "") == [
        f"{run}:pack", f"{run}:charge"]  # (the URL as bash splits it)
    assert ask(outside, "runs", "show", "") == []  # (no project, no database: nothing)
    assert json.loads(ok(baton("runs", "list", "--json", cwd=root)).stdout)[0]["id"] == run


def test_a_postgresql_server_that_does_not_answer_completes_nothing(tmp_path: Path) -> None:
    """A port that accepts connections and never says a word (a server hung, a tunnel to
    nowhere): the completion gives up (after a second) and offers nothing; the shell is
    not kept waiting (the subprocess' timeout guards against a hang)."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as silent:
        port = silent.getsockname()[1]
        (tmp_path / "baton.toml").write_text(
            f'database = "postgresql://postgres@127.0.0.1:{port}/baton"\n')
        assert ask(tmp_path, "runs", "show", "") == []
        assert ask(tmp_path, "fallout", "retry", "run_1", ":", "") == []
    # the port closed now: refused at once, nothing offered and nothing said (ask: no stderr)
    assert ask(tmp_path, "runs", "show", "") == []
