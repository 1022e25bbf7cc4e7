"""Three loose ends of the ``baton`` command, end to end on a real SQLite project:

* tables stay readable at 80 and 120 columns: ids and statuses whole on one line, free
  text (titles) wrapped at word boundaries, never cut mid-word;
* shell completion: Typer's ``--show-completion``, and the names and ids it offers from
  the project, asked as the shell asks (``_BATON_COMPLETE=complete_bash``), silent and
  harmless where there is no database;
* every command that changes something answers ``--json`` with one JSON object.

Real subprocesses on a copy of examples/case_triage (tests/e2e/test_cli.py's helpers).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import _env, baton, copy_example, ok, ok_json
from tests.e2e.test_cli_ux import json_error

TITLE = "Inverter {n} in the north hall trips its breaker every night around midnight"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """case_triage deployed, two cases with long subjects through the worker: two runs in
    progress, each with an open work item titled by its case."""
    root = copy_example(tmp_path_factory.mktemp("leftovers"))
    ok(baton("deploy", cwd=root))
    for n in (1, 2):
        ok(baton("records", "create", "Case", "--data",
                 json.dumps({"subject": TITLE.format(n=n), "number": n}), cwd=root))
    ok(baton("worker", "--until-idle", cwd=root))
    runs = ok_json(baton("runs", "list", "--json", cwd=root))
    items = ok_json(baton("work", "list", "--json", cwd=root))
    assert len(runs) == 2 and len(items) == 2
    return {"root": root, "runs": runs, "items": items}


def _words(text: str) -> set[str]:
    return set(text.replace("│", " ").replace("┃", " ").split())


@pytest.mark.parametrize("columns", [80, 120])
def test_tables_keep_ids_and_statuses_whole_and_wrap_titles_at_words(
        project: dict[str, Any], columns: int) -> None:
    root, runs, items = project["root"], project["runs"], project["items"]
    titles = " ".join(TITLE.format(n=n) for n in (1, 2)).split()
    shown = {args: ok(baton(*args, cwd=root, columns=str(columns))).stdout
             for args in (("runs", "list"), ("runs", "list", "--wide"), ("work", "list"),
                          ("work", "list", "--wide"), ("runs", "show", runs[0]["id"]))}
    for args, out in shown.items():
        if args[1] == "list":  # (runs show's first line is a sentence, not a table)
            assert max(len(line) for line in out.splitlines()) <= columns, (args, out)
        words = _words(out)
        ids = [r["id"] for r in runs] if args[1] == "list" and args[0] == "runs" else \
            [i["id"] for i in items] if args[0] == "work" else [runs[0]["id"]]
        assert set(ids) <= words, (args, out)  # whole, on one line
        if args[1] == "list":  # every word of the titles whole: none cut mid-word
            assert set(titles) <= words, (args, sorted(set(titles) - words), out)
    assert "in_progress" in _words(shown[("runs", "list")])
    assert {"open", "on_track"} <= _words(shown[("work", "list")])
    wide = shown[("runs", "list", "--wide")]
    assert {r["record_id"] for r in runs} <= _words(wide), wide
    assert {i["run_id"] for i in items} <= _words(shown[("work", "list", "--wide")])
    if columns == 80:  # too narrow for the columns: each title on the lines under its run
        lines = shown[("runs", "list")].splitlines()
        at = next(k for k, line in enumerate(lines) if line.startswith(runs[0]["id"]))
        assert "in_progress" in lines[at].split() and runs[0]["orchestration"] in lines[at]
        assert " ".join(" ".join(lines[at + 1:at + 3]).split()).startswith(
            runs[0]["title"]), lines


def complete(cwd: Path, *words: str) -> subprocess.CompletedProcess[str]:
    """What bash's completion asks ``baton`` for the last of ``words`` (``""``: a TAB after
    a space), as the script of ``baton --show-completion bash`` asks it."""
    env = _env("400") | {"_BATON_COMPLETE": "complete_bash",
                         "COMP_WORDS": " ".join(["baton", *words]),
                         "COMP_CWORD": str(len(words))}
    return subprocess.run([sys.executable, "-m", "baton.cli.main"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def offered(p: subprocess.CompletedProcess[str]) -> list[str]:
    assert (p.returncode, p.stderr) == (0, ""), (p.returncode, p.stdout, p.stderr)
    return p.stdout.split()


def test_completion_offers_the_projects_names_and_ids(project: dict[str, Any],
                                                      tmp_path: Path) -> None:
    root, runs, items = project["root"], project["runs"], project["items"]
    run_ids = sorted((r["id"] for r in runs), reverse=True)  # newest first
    assert offered(complete(root, "runs", "show", "")) == run_ids
    one = runs[0]["id"]
    typed = next(one[:n] for n in range(4, len(one)) if
                 sum(r["id"].startswith(one[:n]) for r in runs) == 1)
    assert offered(complete(root, "runs", "cancel", typed)) == [one]
    assert offered(complete(root, "work", "claim", "")) == sorted(
        (i["id"] for i in items), reverse=True)
    assert offered(complete(root, "start", "")) == ["case_triage"]
    assert offered(complete(root, "records", "create", "C")) == ["Case"]
    # from elsewhere, with --project
    assert offered(complete(tmp_path, "--project", str(root), "runs", "show", "")) == run_ids
    # the commands themselves still complete
    assert offered(complete(root, "ru")) == ["runs"]


def test_completion_without_a_database_offers_nothing_and_creates_nothing(
        tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    ok(baton("init", fresh, cwd=tmp_path))
    before = sorted(p.name for p in fresh.iterdir())
    for where, words in ((fresh, ("runs", "show", "")), (fresh, ("start", "")),
                         (tmp_path, ("work", "claim", "")),  # outside any project
                         (tmp_path, ("--project", str(tmp_path / "nowhere"), "runs", "show",
                                     ""))):
        assert offered(complete(where, *words)) == [], words
    assert sorted(p.name for p in fresh.iterdir()) == before  # no database made
    script = ok(baton("--show-completion", "bash", cwd=tmp_path)).stdout
    assert "_BATON_COMPLETE=complete_bash" in script and "-F _baton_completion baton" in script


def test_every_command_that_changes_something_answers_json(tmp_path: Path) -> None:
    from typer.main import get_command

    from baton.cli.commands import app

    without = []

    def walk(cmd: Any, path: list[str]) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])
        if not hasattr(cmd, "commands") and not any(
                "--json" in getattr(p, "opts", ()) for p in cmd.params):
            without.append(" ".join(path))
    walk(get_command(app), [])
    assert sorted(without) == ["demo", "serve"]  # a showcase and a server: no result to print

    made = ok_json(baton("init", tmp_path / "p", "--json", cwd=tmp_path))
    root = Path(made["project"])
    assert root == (tmp_path / "p").resolve() and "baton.toml" in made["files"]
    applied = ok_json(baton("db", "upgrade", "--json", cwd=root))["applied"]
    assert applied and all(isinstance(a, str) for a in applied)
    ok(baton("users", "add", "ann", "--role", "agent", cwd=root))
    token = ok_json(baton("tokens", "create", "ann", "--json", cwd=root))
    revoked = ok_json(baton("tokens", "revoke", token["id"], "--json", cwd=root))
    assert (revoked["id"], revoked["user"]) == (token["id"], "ann") and revoked["revoked_at"]
    json_error(baton("tokens", "revoke", "tok_nope", "--json", cwd=root), 1, "not-found")
    assert ok_json(baton("users", "unlock", "ann", "--json", cwd=root)) == {
        "kind": "account", "target": "ann", "was_locked": False, "locked_until": None}
    wrote = ok_json(baton("export", "-o", "b.tar.gz", "--json", cwd=root))
    assert wrote["output"] == "b.tar.gz" and wrote["bytes"] == os.path.getsize(root / "b.tar.gz")
    json_error(baton("export", "--json", cwd=root), 2, "usage")  # (the bundle is stdout)
    assert ok_json(baton("worker", "--until-idle", "--json", cwd=root)) == {
        "workers": 1, "jobs": 0, "steps_completed": 0, "steps_failed": 0}
