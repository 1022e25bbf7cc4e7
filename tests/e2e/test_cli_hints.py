"""The CLI's words point the right way (subprocesses on a real SQLite project): a definition
not found names ``baton definitions list``, a close name, or the kind a definition of that
name is; a timeline describes an escalation flow's failure (its error's type and message),
wrapped within the terminal, never cut; a work item's priority is shown by name; a fallout
action on a step not in fallout says what state the step and its run are in."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path

import pytest

from baton.cli.render import describe_event
from tests.e2e.test_cli import baton, ok, ok_json, one_line_error

DEFS = """
kind: object
name: Ticket
fields:
  ref: {type: string, required: true}
---
kind: orchestration
name: handle
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: go
    steps:
      - name: look
        type: interactive
        assign: {queue: tier1}
        priority: high
        sla: {duration: 1h, jeopardy: 3599s, on_jeopardy: {flow: hints.page}}
      - {name: dead, type: background, flow: hints.boom}
"""

FLOWS = '''
from baton import flow
from baton.errors import StepFailure


@flow("hints.page")
def page(ctx):
    raise RuntimeError(("the pager service refused the call: " + "every word of it kept " * 8)
                       .strip())


@flow("hints.boom")
def boom(ctx):
    raise StepFailure("no such account", retryable=False)
'''
PAGER = ("the pager service refused the call: " + "every word of it kept " * 8).strip()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("hints")
    (root / "definitions").mkdir()
    (root / "definitions" / "defs.yaml").write_text(textwrap.dedent(DEFS))
    (root / "hints.py").write_text(FLOWS)
    (root / "baton.toml").write_text('database = "sqlite:///baton.db"\nflows = ["hints"]\n')
    ok(baton("deploy", cwd=root))
    rec = ok_json(baton("records", "create", "Ticket", "--data", '{"ref": "T-1"}', "--json",
                        cwd=root))
    ok(baton("worker", "--until-idle", cwd=root))
    (run,) = ok_json(baton("runs", "list", "--json", cwd=root))
    # The SLA's jeopardy comes a second after the step started: then the escalation flow runs.
    deadline = time.monotonic() + 60
    while True:
        time.sleep(1.5)
        ok(baton("worker", "--until-idle", cwd=root))
        events = ok_json(baton("records", "timeline", rec["id"], "--json", cwd=root))
        if any(e["type"] == "escalation_flow_failed" for e in events) \
                or time.monotonic() > deadline:
            break
    return {"root": str(root), "record": rec["id"], "run": run["id"]}


def test_a_definition_not_found_points_to_what_exists(project: dict[str, str]) -> None:
    root = Path(project["root"])
    line = one_line_error(baton("definitions", "show", "nope", cwd=root), "'nope' not found")
    assert "see `baton definitions list`" in line, line
    line = one_line_error(baton("definitions", "show", "handel", cwd=root))
    assert "did you mean 'handle'? see `baton definitions list`" in line, line
    line = one_line_error(baton("definitions", "show", "nope", "--kind", "routing", cwd=root))
    assert "see `baton definitions list --kind routing`" in line, line
    line = one_line_error(baton("definitions", "show", "handle", "--version", "9", cwd=root))
    assert "orchestration 'handle v9' not found (its versions are 1: see `baton " \
           "definitions show handle`)" in line, line
    for args in (["deactivate", "Ticket"], ["activate", "Ticket", "--version", "1"],
                 ["show", "Ticket"]):
        line = one_line_error(baton("definitions", *args, cwd=root))
        assert line == ("error: orchestration 'Ticket' not found ('Ticket' is an object, not "
                        "an orchestration: add --kind object)"), line
    p = baton("definitions", "deactivate", "Ticket", "--json", cwd=root)
    assert p.returncode == 1 and p.stdout == ""
    error = json.loads(p.stderr)["error"]
    assert error["kind"] == "not-found" and "add --kind object" in error["message"]


def test_the_escalation_flow_failure_reads_whole_in_the_timeline(
        project: dict[str, str]) -> None:
    root = Path(project["root"])
    events = ok_json(baton("records", "timeline", project["record"], "--json", cwd=root))
    (failed,) = [e for e in events if e["type"] == "escalation_flow_failed"]
    assert failed["data"]["error"]["message"] == PAGER
    (jeopardy,) = [e for e in events if e["type"] == "sla_in_jeopardy"]
    line = describe_event(failed)
    assert line == (f"look: escalation flow hints.page (sla in_jeopardy) failed: RuntimeError: "
                    f"{PAGER}"), line
    assert describe_event(jeopardy).startswith("go.look #1 in jeopardy: due ")
    for columns in ("400", "80"):
        shown = ok(baton("records", "timeline", project["record"], cwd=root,
                         columns=columns)).stdout
        assert all(len(row) <= int(columns) for row in shown.splitlines())
        words = " ".join(shown.replace("│", " ").split())
        # every word of the message is printed, in order (wrapped, never cut)
        assert " ".join(f"RuntimeError: {PAGER}".split()) in words, shown
        assert "in jeopardy: due" in words


def test_a_work_items_priority_is_shown_by_name(project: dict[str, str]) -> None:
    root = Path(project["root"])
    (item,) = ok_json(baton("work", "list", "--json", cwd=root))
    assert item["priority"] == 2  # the API's number is kept (2: high)
    wide = ok(baton("work", "list", "--wide", cwd=root)).stdout
    header, row = (line for line in wide.splitlines() if "priority" in line or item["id"] in line)
    assert "priority" in header and " high " in row and " 2 " not in row, wide
    shown = ok(baton("work", "show", item["id"], cwd=root)).stdout
    assert "priority high; SLA" in shown, shown


def test_a_fallout_action_on_a_step_not_in_fallout_says_what_state_it_is_in(
        project: dict[str, str]) -> None:
    root = Path(project["root"])
    fallout = f"{project['run']}:dead"
    (item,) = ok_json(baton("fallout", "list", "--json", cwd=root))
    assert item["id"] == fallout
    ok(baton("fallout", "skip", fallout, "--reason", "account closed", cwd=root))
    line = one_line_error(baton("fallout", "skip", fallout, "--reason", "again", cwd=root))
    assert line == (f"error: step 'dead' of run {project['run']} is skipped (iteration 1), not "
                    "in fallout: only a step in fallout can be skipped; the run is in "
                    "progress"), line
    line = one_line_error(baton("fallout", "retry", f"{project['run']}:look", "--reason", "x",
                                cwd=root))
    assert "step 'look' of run" in line and "is waiting for person (iteration 1), not in " \
        "fallout: only a step in fallout can be retried; the run is in progress" in line, line
