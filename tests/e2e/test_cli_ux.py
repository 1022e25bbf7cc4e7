"""The CLI as a script in CI uses it: ``--json`` errors a program can read, exit codes that
tell a usage error (2) from an error the user can act on (1), tables piped at 80 columns.

Real subprocesses on a copy of examples/case_triage (tests/e2e/test_cli.py's helpers).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import baton, copy_example, ok, ok_json

ANSI = re.compile(r"\x1b\[")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """case_triage deployed, two cases through the worker: two open work items; alice
    claimed the first."""
    root = copy_example(tmp_path_factory.mktemp("ux"))
    ok(baton("deploy", cwd=root))
    for n in (1, 2):
        ok(baton("records", "create", "Case", "--data",
                 json.dumps({"subject": f"Inverter {n} fails", "number": n}), cwd=root))
    ok(baton("worker", "--until-idle", cwd=root))
    for name in ("alice", "bob"):
        ok(baton("users", "add", name, "--role", "agent", "--queue", "tier1", cwd=root))
    items = ok_json(baton("work", "list", "--json", cwd=root))
    ok(baton("work", "claim", items[0]["id"], "--user", "alice", cwd=root))
    return {"root": root, "items": [i["id"] for i in items],
            "runs": [r["id"] for r in ok_json(baton("runs", "list", "--json", cwd=root))]}


def json_error(p: subprocess.CompletedProcess[str], code: int, kind: str) -> dict[str, Any]:
    """Exit ``code``, nothing on stdout, stderr exactly one JSON object ``{"error": ...}``."""
    assert p.returncode == code, f"{p.args} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert p.stdout == "", p.stdout
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    body = json.loads(lines[0])["error"]
    assert (body["kind"], body["exit_code"]) == (kind, code), body
    assert body["message"], body
    return body  # type: ignore[no-any-return]


def test_errors_under_json_are_one_json_object_on_stderr(project: dict[str, Any]) -> None:
    root = project["root"]
    for args in (["runs", "show", "run_nope"], ["records", "show", "rec_nope"],
                 ["work", "show", "wi_nope"], ["records", "timeline", "rec_nope"]):
        body = json_error(baton(*args, "--json", cwd=root), 1, "not-found")
        assert args[2] in body["message"], body
    # Someone else's item: a conflict, as the API's 409.
    body = json_error(baton("work", "claim", project["items"][0], "--user", "bob", "--json",
                            cwd=root), 1, "conflict")
    assert "alice" in body["message"], body
    # A record that does not fit: each field's problem, as the API's 422 lists them.
    body = json_error(baton("records", "create", "Case", "--data", '{"subject": 1}', "--json",
                            cwd=root), 1, "validation")
    assert body["errors"] == [{"field": "subject", "message": "expected text, got int"}], body
    # Bad JSON in --data: where in it.
    body = json_error(baton("records", "create", "Case", "--data", '{"subject": "x",', "--json",
                            cwd=root), 1, "bad-request")
    assert "line 1 column 17" in body["message"], body
    # A usage error too: no Rich box, the command's help named.
    body = json_error(baton("runs", "list", "--status", "bogus", "--json", cwd=root), 2, "usage")
    assert "in_progress" in body["message"] and body["help"].endswith(" runs list --help"), body
    json_error(baton("runs", "list", "--bogus", "--json", cwd=root), 2, "usage")
    json_error(baton("runs", "show", "--json", cwd=root), 2, "usage")


def test_a_refused_deploy_under_json_lists_the_issues_and_says_so_in_json(tmp_path: Path) -> None:
    root = copy_example(tmp_path)
    p = baton("deploy", tmp_path / "missing", "--json", cwd=root)
    assert p.returncode == 1, p.stderr
    (issue,) = json.loads(p.stdout)
    assert issue["file"].endswith("missing"), issue
    (line,) = p.stderr.splitlines()
    assert json.loads(line)["error"]["kind"] == "definition", line


def test_without_json_errors_stay_one_line_of_text(project: dict[str, Any]) -> None:
    p = baton("runs", "show", "run_nope", cwd=project["root"])
    assert (p.returncode, p.stdout, p.stderr) == (1, "", "error: run 'run_nope' not found\n")


def test_a_limit_out_of_range_is_a_usage_error_like_one_that_is_not_a_number(
        project: dict[str, Any]) -> None:
    root = project["root"]
    for args in (["runs", "list", "--limit", "0"], ["runs", "list", "--limit", "-1"],
                 ["work", "list", "--limit", "501"], ["records", "list", "--offset", "-1"],
                 ["fallout", "list", "--limit", "0"], ["incidents", "list", "--limit", "-2"],
                 ["runs", "list", "--limit", "abc"]):
        p = baton(*args, cwd=root)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert p.stdout == "" and "Traceback" not in p.stderr, p.stderr
        assert f"Invalid value for '{args[2]}'" in p.stderr, p.stderr
        json_error(baton(*args, "--json", cwd=root), 2, "usage")


def test_tables_piped_at_80_columns_have_no_colour_and_whole_ids(project: dict[str, Any]) -> None:
    root = project["root"]
    runs = ok(baton("runs", "list", cwd=root, columns="80")).stdout
    work = ok(baton("work", "list", cwd=root, columns="80")).stdout
    for out in (runs, work):
        assert not ANSI.search(out), out
        assert max(len(line) for line in out.splitlines()) <= 80, out
    for run_id in project["runs"]:
        assert run_id in runs, runs
    for item_id in project["items"]:
        assert item_id in work, work


def test_version_and_no_arguments(tmp_path: Path) -> None:
    p = ok(baton("--version", cwd=tmp_path))
    assert re.fullmatch(r"baton \S+\n", p.stdout), p.stdout
    p = baton(cwd=tmp_path)
    assert p.returncode == 2 and "Usage: " in p.stdout and "Traceback" not in p.stderr
