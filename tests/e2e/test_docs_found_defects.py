"""What a QA pass of the docs found the CLI doing otherwise than they say, end to end
(subprocesses): ``validate FILE`` outside a project, ``definitions --kind`` for every kind,
``start`` of a run that ends at once, ``incidents list`` at 80 columns, and the file names
``validate`` prints (as the reference now says)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from baton.definitions import KINDS
from tests.costly import COSTLY
from tests.e2e.test_cli import EXAMPLES, _env, baton, ok, ok_json

# Every place a definition names an object type, each naming one deployed elsewhere (or
# nowhere): Case, Account, Ticket, Order, OrderLine. Two real mistakes besides.
ELSEWHERE = """\
kind: object
name: Note
fields:
  about: {type: ref, object: Case}
  text:  {type: text}
---
kind: mailbox
name: support
object: Case
fields: {subject: subject}
---
kind: intake_form
name: contact
object: Case
fields: [subject]
---
kind: orchestration
name: triage
trigger: {type: record, object: Case, on: [create], when: '=record.subject != ""'}
stages:
  - name: s
    steps:
      - {name: look, type: interactive, assign: {queue: q}, priorty: high}
      - name: find
        type: ai
        task: match
        text: '=record.subject'
        match: {object: Account, fields: [name]}
      - name: split
        type: orchestration
        orchestration: noting
        record: {create: Ticket, fields: {subject: '=record.subject'}}
        wait: false
      - name: note
        type: orchestration
        orchestration: noting
        record: {create: Note, fields: {txt: '=record.subject'}}
        wait: false
---
kind: orchestration
name: noting
trigger: {type: autolaunched, input: {case: {type: ref, object: Case}}}
stages:
  - name: s
    steps: [{name: p, type: pause, for: 1h}]
---
kind: fulfillment
name: deliver
trigger: {type: record, object: Order, on: [create]}
lines: {object: OrderLine}
scenarios:
  - name: every
    when: '=true'
    steps: [{name: ship, type: background, flow: orders.ship}]
"""
MISTAKES = [  # what is wrong whatever is deployed
    (23, "stages[0].steps[0].priorty", "unknown key 'priorty' (did you mean 'priority'?)"),
    (37, "stages[0].steps[3].record.fields.txt",
     "unknown field 'txt' of Note (did you mean 'text'?)"),
]
NOT_DEPLOYED = [  # what a database without those object types adds
    (4, "fields.about.object", "Case"), (9, "object", "Case"), (14, "object", "Case"),
    (19, "trigger.object", "Case"), (28, "stages[0].steps[1].match.object", "Account"),
    (32, "stages[0].steps[2].record.create", "Ticket"),
    (42, "trigger.input.case.object", "Case"), (49, "trigger.object", "Order"),
    (50, "lines.object", "OrderLine"),
]


def issues_of(p: subprocess.CompletedProcess[str]) -> list[tuple[int, str, str]]:
    return [(i["line"], i["path"], i["message"]) for i in json.loads(p.stdout)]


def test_validate_outside_a_project_leaves_object_types_to_the_deployment(
        tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    nowhere.mkdir()
    p = ok(baton("validate", EXAMPLES / "case_triage" / "definitions" / "case_triage.yaml",
                 cwd=nowhere))
    assert p.stdout.strip() == "valid"
    assert "flow names and deployed object types are not checked" in p.stderr

    given = tmp_path / "elsewhere.yaml"
    given.write_text(ELSEWHERE)
    p = baton("validate", given, "--json", cwd=nowhere)
    assert p.returncode == 1, p.stderr
    assert issues_of(p) == MISTAKES  # everything else is still checked

    # A database named: its object types are known, so the references are checked.
    p = baton("--db", f"sqlite:///{tmp_path / 'empty.db'}", "validate", given, "--json",
              cwd=nowhere)
    assert p.returncode == 1, p.stderr
    found = issues_of(p)
    assert [i for i in found if i in MISTAKES] == MISTAKES
    unknown = [(line, path, msg.split("'")[1]) for line, path, msg in found
               if "unknown object type" in msg]
    assert unknown == NOT_DEPLOYED, found


def test_validate_in_a_project_checks_object_types(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "definitions").mkdir(parents=True)
    (proj / "baton.toml").write_text('database = "sqlite:///baton.db"\n')
    (proj / "definitions" / "elsewhere.yaml").write_text(ELSEWHERE)
    p = baton("validate", "--json", cwd=proj)
    assert p.returncode == 1, p.stderr
    assert sum("unknown object type" in m for _, _, m in issues_of(p)) == len(NOT_DEPLOYED)


# ---- baton validate: file names --------------------------------------------------------
BROKEN = """\
kind: orchestration
name: broken
trigger: {type: autolaunched}
stages:
  - name: s
    steps: [{name: p, type: pause, for: 1h, complete_when: '=true'}]
"""


def test_validate_names_files_as_the_path_was_given(tmp_path: Path) -> None:
    """As the reference says: a path as given, and with no path the definitions folder's
    files by their absolute path (the names `baton deploy` prints and stores)."""
    proj = tmp_path / "proj"
    (proj / "definitions").mkdir(parents=True)
    (proj / "baton.toml").write_text('database = "sqlite:///baton.db"\n')
    broken = proj / "definitions" / "broken.yaml"
    broken.write_text(BROKEN)
    problem = ("broken.yaml:6 stages[0].steps[0].complete_when: complete_when does not apply "
               "to a pause step (only to interactive or approval steps)")
    for cwd in (proj, proj / "definitions"):  # wherever in the project it runs
        p = baton("validate", cwd=cwd)
        assert p.returncode == 1 and p.stdout.splitlines() == [
            f"{proj.resolve()}/definitions/{problem}"], p.stdout
    p = baton("validate", "definitions", cwd=proj)
    assert p.returncode == 1 and p.stdout.splitlines() == [f"definitions/{problem}"], p.stdout
    p = baton("validate", "definitions/broken.yaml", "--json", cwd=proj)
    assert [i["file"] for i in json.loads(p.stdout)] == ["definitions/broken.yaml"]


# ---- baton definitions --kind ------------------------------------------------------------
def test_every_kind_of_definition_can_be_listed_and_shown(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "definitions").mkdir(parents=True)
    (proj / "baton.toml").write_text('database = "sqlite:///baton.db"\n')
    (proj / "definitions" / "catalog.yaml").write_text(
        "kind: catalog\nproducts: [{code: LAPTOP, family: Computer}]\n")
    ok(baton("deploy", cwd=proj))
    listed = ok_json(baton("definitions", "list", "--kind", "catalog", "--json", cwd=proj))
    assert [(d["kind"], d["name"], d["active"]) for d in listed] == [("catalog", "catalog", 1)]
    shown = ok_json(baton("definitions", "show", "catalog", "--kind", "catalog", "--json",
                          cwd=proj))
    assert "LAPTOP" in shown["source"]
    for lean in ("1", "0"):  # the lean read path and Typer take the same kinds
        for kind in KINDS:
            p = subprocess.run(
                [sys.executable, "-m", "baton.cli.main", "definitions", "list", "-k", kind,
                 "--json"], cwd=proj, env=_env("400") | {"BATON_CLI_LEAN": lean},
                capture_output=True, text=True, timeout=180, check=False)
            assert [d["kind"] for d in json.loads(ok(p).stdout)] == (
                ["catalog"] if kind == "catalog" else []), (lean, kind)


def test_the_api_takes_the_same_kinds() -> None:
    """(the API's path parameter is an enum of its own: it must not drift either)"""
    from baton.web.api.definitions import Kind

    assert sorted(k.value for k in Kind) == sorted(KINDS)


# ---- baton start --------------------------------------------------------------------------
RUNS = """\
kind: orchestration
name: instant
trigger: {type: autolaunched}
stages:
  - name: s
    steps: [{name: p, type: pause, until: '=true'}]
---
kind: orchestration
name: waits
trigger: {type: autolaunched}
stages:
  - name: first
    steps: [{name: p, type: pause, signal: go}]
---
kind: orchestration
name: dead_end
trigger: {type: autolaunched}
stages:
  - name: s
    next: [{when: '=false', goto: end}]
"""


def test_start_says_where_the_run_is_and_no_stage_when_it_ended(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "definitions").mkdir(parents=True)
    (proj / "baton.toml").write_text('database = "sqlite:///baton.db"\n')
    (proj / "definitions" / "runs.yaml").write_text(RUNS)
    ok(baton("deploy", cwd=proj))
    out = ok(baton("start", "instant", cwd=proj)).stdout
    assert out.rstrip().endswith("of instant v1 (completed)") and "None" not in out, out
    out = ok(baton("start", "waits", cwd=proj)).stdout
    assert out.rstrip().endswith("of waits v1 (in_progress, stage first)"), out
    out = ok(baton("start", "dead_end", cwd=proj)).stdout
    assert out.rstrip().endswith("(failed, stage s: stage 's': no next rule matched)"), out


# ---- baton incidents list at 80 columns ------------------------------------------------
ORDERS = f"""
kind: object
name: Order
fields:
  ref: {{type: string, required: true}}
  rush: {{type: bool, default: true}}
---
kind: orchestration
name: expedite
trigger: {{type: record, object: Order, on: [create], when: '=record.rush ? ({COSTLY}) : true'}}
stages:
  - name: go
    steps: [{{name: look, type: interactive, assign: {{queue: ops}}}}]
"""


@pytest.mark.parametrize("lean", ["1", "0"])
def test_incidents_list_is_readable_at_80_columns(tmp_path: Path, lean: str) -> None:
    proj = tmp_path / "proj"
    (proj / "definitions").mkdir(parents=True)
    (proj / "baton.toml").write_text('database = "sqlite:///baton.db"\n')
    (proj / "definitions" / "defs.yaml").write_text(textwrap.dedent(ORDERS))
    ok(baton("deploy", cwd=proj))
    recs = [ok_json(baton("records", "create", "Order", "--data", f'{{"ref": "A{i}"}}',
                          "--json", cwd=proj))["id"] for i in (1, 2)]
    incidents = ok_json(baton("incidents", "list", "--json", cwd=proj))

    def listed(columns: str) -> list[str]:
        p = subprocess.run([sys.executable, "-m", "baton.cli.main", "incidents", "list"],
                           cwd=proj, env=_env(columns) | {"BATON_CLI_LEAN": lean},
                           capture_output=True, text=True, timeout=180, check=False)
        return ok(p).stdout.splitlines()

    lines = listed("80")
    for inc, rec in zip(incidents, recs, strict=True):
        head = next(line for line in lines if line.startswith(inc["id"]))
        assert head.split() == [inc["id"], "trigger_failed", "open", inc["created_at"]]
        assert f"  record        {rec}" in lines and "  orchestration expedite v1" in lines
        assert f"  expression    {inc['expression']}" in lines
        assert f"  error         {inc['error']}" in lines  # whole, on one line
    assert all(len(line) <= 80 for line in lines if not line.startswith(
        ("  expression", "  error"))), lines  # (those two: as long as they are)
    # Wide enough, it is the table (every column's header on its line).
    header = next(line for line in listed("400") if " id " in line)
    assert all(f" {c} " in header for c in ("kind", "status", "orchestration", "record",
                                            "run", "expression", "error", "since")), header
