"""The ``baton`` command end to end: real subprocesses on a temporary copy of a project.

Every call is ``python -m baton.cli.main ...`` with ``src/`` on PYTHONPATH, so these
tests run whether or not the package is installed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

# Rich wraps output to the terminal width, 80 columns when stdout is not a terminal.
# The tests give the CLI a wide "terminal" so long lines stay whole; see
# test_long_lines_are_not_wrapped_when_output_is_not_a_terminal for the default width.
WIDE = "400"
ISSUE_LINE = re.compile(r"^(?P<file>\S+\.ya?ml):(?P<line>\d+) (?P<path>\S+): (?P<message>.+)$")
BROKEN = """\
kind: orchestration
name: broken_triage
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: triage
    steps:
      - {name: classify, type: background, flow: cases.classify}
      - {name: decide, type: background, flow: cases.clasify, after: [clasify]}
    next:
      - {goto: nowhere}
"""


def _env(columns: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("BATON_DB", "BATON_FAULT", "COLUMNS", "LINES")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    if columns is not None:
        env["COLUMNS"] = columns
    return env


def baton(*args: str | Path, cwd: Path, columns: str | None = WIDE,
          timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "baton.cli.main", *map(str, args)], cwd=cwd,
                          env=_env(columns), capture_output=True, text=True, timeout=timeout,
                          check=False)


def ok(p: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert p.returncode == 0, f"{p.args} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert "Traceback" not in p.stderr, p.stderr
    return p


def ok_json(p: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(p).stdout)


def one_line_error(p: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 1, nothing on stdout, exactly one line on stderr: ``error: ...``."""
    assert p.returncode == 1, f"{p.args} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    assert p.stdout == "", p.stdout
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def copy_example(tmp_path: Path, name: str = "case_triage") -> Path:
    dest = tmp_path / name
    shutil.copytree(EXAMPLES / name, dest, ignore=shutil.ignore_patterns("__pycache__", "*.db", "*.db-*"))
    return dest


def examples_without(tmp_path: Path, *left_out: str) -> Path:
    """An examples folder (links to the repository's examples) without ``left_out``: the
    demo skips an optional example it does not find (order_fulfillment, mcp_erp), so a test
    of one part does not wait on the others (the orders' carrier retry waits ~10 s)."""
    folder = tmp_path / "examples"
    folder.mkdir()
    for example in sorted(EXAMPLES.iterdir()):
        if example.is_dir() and example.name not in left_out:
            (folder / example.name).symlink_to(example, target_is_directory=True)
    return folder


def definitions_table(db: Path) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT kind, name, version, checksum, active FROM baton_definitions "
                           "ORDER BY kind, name, version").fetchall()
    finally:
        con.close()


# ---- the seed case through the CLI ------------------------------------------------------
def test_case_triage_from_deploy_to_completed_run(tmp_path: Path) -> None:
    proj = copy_example(tmp_path)

    def b(*args: str) -> subprocess.CompletedProcess[str]:
        return baton("--project", proj, *args, cwd=tmp_path)

    out = ok(b("deploy")).stdout
    for name in ("Account", "Case", "case_triage"):
        assert re.search(rf"{name}\s*│\s*1\s*│\s*new version", out), out
    assert (proj / "baton.db").exists()  # baton.toml's database, relative to the project
    again = ok_json(b("deploy", "--json"))
    assert sorted((d["kind"], d["name"], d["version"], d["changed"]) for d in again) == [
        ("object", "Account", 1, False), ("object", "Case", 1, False),
        ("orchestration", "case_triage", 1, False)]

    # Bad JSON: a one-line error, nothing created.
    one_line_error(b("records", "create", "Case", "--data", '{"subject": "x",'), "--data", "JSON")
    one_line_error(b("records", "create", "Case", "--data", '["subject"]'), "--data", "JSON object")
    assert ok_json(b("records", "list", "--json")) == []
    assert ok_json(b("runs", "list", "--json")) == []

    rec = ok_json(b("records", "create", "Case", "--data",
                    '{"subject": "invoice question 1", "number": 1}', "--json"))
    assert rec["id"].startswith("rec_") and rec["subject"] == "invoice question 1"
    assert rec["level"] == 1 and rec["version"] == 1
    (run,) = ok_json(b("runs", "list", "--json"))
    assert run["record_id"] == rec["id"] and run["status"] == "in_progress"
    assert run["current_stage"] == "triage"

    assert "2 jobs, 2 steps completed, 0 failed" in ok(b("worker", "--until-idle")).stdout

    (item,) = ok_json(b("work", "list", "--queue", "tier1", "--json"))
    assert item["id"].startswith("wi_")
    assert (item["status"], item["step"], item["run_id"], item["record_id"]) == (
        "open", "triage", run["id"], rec["id"])
    assert (item["assignee_kind"], item["assignee"], item["assigned_to"], item["claimed_by"]) == (
        "queue", "tier1", "queue:tier1", None)
    assert [f["name"] for f in item["form"]] == ["resolution", "notes"]
    # titled from the case (Case.title_field), the step's summary under it
    assert (item["title"], item["summary"]) == ("invoice question 1", "Web case, support tier 1")
    table = ok(b("work", "list", "--queue", "tier1")).stdout
    assert "invoice question 1" in table and "Web case, support tier 1" in table, table
    assert ok_json(b("work", "list", "--queue", "tier2", "--json")) == []

    assert f"{item['id']} claimed by ann" in ok(b("work", "claim", item["id"], "--user", "ann")).stdout
    one_line_error(b("work", "claim", item["id"], "--user", "bob"), item["id"], "claimed by ann")
    one_line_error(b("work", "complete", item["id"], "--user", "bob", "--data",
                     '{"resolution": "close"}'), "claimed by ann")
    one_line_error(b("work", "complete", item["id"], "--user", "ann", "--data", "{resolution: close}"),
                   "--data", "JSON")
    one_line_error(b("work", "complete", item["id"], "--user", "ann", "--data",
                     '{"resolution": "maybe"}'), "resolution", "maybe")
    (claimed,) = ok_json(b("work", "list", "--user", "ann", "--json"))
    assert (claimed["id"], claimed["status"], claimed["claimed_by"]) == (item["id"], "claimed", "ann")

    done = ok_json(b("work", "complete", item["id"], "--user", "ann", "--data",
                     '{"resolution": "close", "notes": "answered by phone"}', "--json"))
    assert done["status"] == "completed" and done["completed_by"] == "ann"
    assert done["data"] == {"resolution": "close", "notes": "answered by phone"}
    assert done["run"]["current_stage"] == "close"
    one_line_error(b("work", "complete", item["id"], "--user", "ann", "--data",
                     '{"resolution": "close"}'), "completed")
    assert ok_json(b("work", "list", "--json")) == []

    assert "2 jobs, 2 steps completed, 0 failed" in ok(b("worker", "--until-idle")).stdout
    assert ": 0 jobs" in ok(b("worker", "--until-idle")).stdout

    shown = ok_json(b("runs", "show", run["id"], "--json"))
    assert shown["status"] == "completed" and shown["completed_at"] and shown["current_stage"] is None
    assert [(s["name"], s["status"], s["iteration"]) for s in shown["stages"]] == [
        ("triage", "completed", 1), ("close", "completed", 1)]
    assert {s["name"]: s["status"] for s in shown["steps"]} == {
        "classify": "completed", "find_agent": "completed", "triage": "completed",
        "close_case": "completed", "send_survey": "completed"}
    assert [(d["stage"], d["goto"]) for d in shown["decisions"]] == [("triage", "close"), ("close", "end")]
    human = ok(b("runs", "show", run["id"])).stdout
    assert run["id"] in human and "completed" in human and "send_survey" in human

    case = ok_json(b("records", "show", rec["id"], "--json"))
    assert case["status"] == "Closed" and case["category"] == "billing"
    assert case["resolution"] == {"by": case["agent"], "level": 1}

    events = ok_json(b("records", "timeline", rec["id"], "--json"))
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert events[0]["type"] == "record_created" and events[-1]["type"] == "run_completed"
    assert all(e["record_id"] == rec["id"] for e in events)

    def key(e: dict[str, Any]) -> tuple[str, ...]:
        d = e["data"]
        if e["type"] in ("step_started", "step_completed"):
            return (e["type"], d["step"])
        if e["type"] in ("stage_started", "stage_completed"):
            return (e["type"], d["stage"])
        if e["type"] == "decision_taken":
            return (e["type"], d["goto"])
        if e["type"] in ("work_item_claimed", "work_item_completed"):
            return (e["type"], e["actor"])
        if e["type"] == "record_updated":
            return (e["type"], e["actor"])
        return (e["type"],)

    keys = [key(e) for e in events]
    expected_in_order = [
        ("record_created",), ("run_started",), ("stage_started", "triage"),
        ("step_started", "classify"), ("record_updated", "flow:classify"),
        ("step_completed", "classify"), ("work_item_assigned",), ("work_item_claimed", "ann"),
        ("work_item_completed", "ann"), ("step_completed", "triage"), ("stage_completed", "triage"),
        ("decision_taken", "close"), ("stage_started", "close"), ("record_updated", "flow:close_case"),
        ("step_completed", "close_case"), ("step_completed", "send_survey"),
        ("stage_completed", "close"), ("decision_taken", "end"), ("run_completed",),
    ]
    pos = 0
    for k in keys:  # expected_in_order is a subsequence of the timeline
        if pos < len(expected_in_order) and k == expected_in_order[pos]:
            pos += 1
    assert pos == len(expected_in_order), f"missing {expected_in_order[pos]} in order in {keys}"
    assert keys.index(("step_completed", "find_agent")) < keys.index(("work_item_assigned",))
    human = ok(b("records", "timeline", rec["id"])).stdout
    assert "record_created" in human and "run_completed" in human

    one_line_error(b("runs", "show", "run_nope"), "run_nope", "not found")
    one_line_error(b("work", "claim", "wi_nope", "--user", "ann"), "wi_nope", "not found")


# ---- invalid definitions -------------------------------------------------------------------
def test_validate_lists_every_problem_and_a_broken_deploy_changes_nothing(tmp_path: Path) -> None:
    proj = copy_example(tmp_path)
    ok(baton("deploy", cwd=proj))  # from inside the project folder: no --project needed
    before = definitions_table(proj / "baton.db")
    assert [(k, n, v) for k, n, v, _c, _a in before] == [
        ("object", "Account", 1), ("object", "Case", 1), ("orchestration", "case_triage", 1)]
    assert "valid" in ok(baton("validate", cwd=proj)).stdout

    # A valid change (would be Case v2) and a broken new file, deployed together.
    case_yaml = proj / "definitions" / "case.yaml"
    case_yaml.write_text(case_yaml.read_text() + "  notes:   {type: text}\n")
    (proj / "definitions" / "broken.yaml").write_text(BROKEN)

    for args in (("validate",), ("validate", "definitions/broken.yaml")):
        p = baton(*args, cwd=proj)
        assert p.returncode == 1, (p.stdout, p.stderr)
        assert "Traceback" not in p.stderr
        lines = p.stdout.splitlines()
        parsed = [ISSUE_LINE.match(line) for line in lines]
        assert lines and all(parsed), f"not file:line path: message lines:\n{p.stdout}"
        found = {(Path(m["file"]).name, int(m["line"]), m["path"]): m["message"]
                 for m in parsed if m}
        assert {k[0] for k in found} == {"broken.yaml"}, found
        after = found[("broken.yaml", 8, "stages[0].steps[1].after")]
        assert "clasify" in after and "did you mean 'classify'" in after, after
        assert "cases.clasify" in found[("broken.yaml", 8, "stages[0].steps[1].flow")]
        assert "nowhere" in found[("broken.yaml", 10, "stages[0].next[0].goto")]
        assert re.search(rf"{len(lines)} problems?", p.stderr), p.stderr

    as_json = baton("validate", "--json", cwd=proj)
    assert as_json.returncode == 1
    issues = json.loads(as_json.stdout)
    assert {(Path(i["file"]).name, i["line"], i["path"]) for i in issues} >= {
        ("broken.yaml", 8, "stages[0].steps[1].after"), ("broken.yaml", 8, "stages[0].steps[1].flow"),
        ("broken.yaml", 10, "stages[0].next[0].goto")}

    for args in (("deploy",), ("deploy", "definitions/broken.yaml"), ("deploy", "--json")):
        p = baton(*args, cwd=proj)
        assert p.returncode == 1, (args, p.stdout, p.stderr)
        assert "Traceback" not in p.stderr
        assert "nothing was deployed" in p.stderr, p.stderr
        if "--json" in args:  # the issues as validate --json gives them
            assert json.loads(p.stdout) == [i for i in issues if i["level"] == "error"]
        else:
            assert any(ISSUE_LINE.match(line) for line in p.stdout.splitlines()), p.stdout
        assert definitions_table(proj / "baton.db") == before, args

    # The database still works, and the definitions are still the old ones.
    assert ok_json(baton("runs", "list", "--json", cwd=proj)) == []
    rec = ok_json(baton("records", "create", "Case", "--data", '{"subject": "x"}', "--json", cwd=proj))
    assert "notes" not in rec
    (run,) = ok_json(baton("runs", "list", "--json", cwd=proj))
    assert (run["orchestration"], run["version"]) == ("case_triage", 1)

    # Without the broken file the valid change deploys (so it really was held back).
    (proj / "definitions" / "broken.yaml").unlink()
    deployed = ok_json(baton("deploy", "--json", cwd=proj))
    assert sorted((d["name"], d["version"], d["changed"]) for d in deployed) == [
        ("Account", 1, False), ("Case", 2, True), ("case_triage", 1, False)]


# ---- baton init ----------------------------------------------------------------------------
def test_init_creates_a_project_that_deploys_and_runs_as_its_readme_says(tmp_path: Path) -> None:
    proj = tmp_path / "helpdesk"
    p = ok(baton("init", proj, cwd=tmp_path))
    for f in ("baton.toml", "README.md", "flows.py", "definitions"):
        assert (proj / f).exists(), f
    assert not list(proj.rglob("__pycache__"))
    one_line_error(baton("init", proj, cwd=tmp_path), "not empty")

    # The hint init prints: deploy, create a record, run the worker, list the work.
    hint = p.stdout.split("Next:", 1)[1].strip()
    cmds = [shlex.split(c) for c in hint.split("&&")]
    assert cmds[0][0] == "cd" and Path(cmds[0][1]).name == "helpdesk", hint
    for cmd in cmds[1:]:
        assert cmd[0] == "baton", hint
        ok(baton(*cmd[1:], cwd=proj))
    (item,) = ok_json(baton("work", "list", "--json", cwd=proj))
    # out of the way (to a user: a project without people takes any name; a queue must be
    # one a definition names or someone is in)
    ok(baton("work", "reassign", item["id"], "--to", "user:elsewhere", cwd=proj))

    # The README's walk-through, command by command, from inside the project folder.
    readme = (proj / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", readme, re.DOTALL)
    assert block, readme
    steps = [shlex.split(line.split("  #")[0]) for line in block[1].splitlines()
             if line.startswith("baton ")]
    assert any(s[1:3] == ["records", "create"] for s in steps), steps
    ids: dict[str, str] = {}
    for step in steps:
        args = [ids.get(a, a) for a in step[1:]]
        out = ok(baton(*args, cwd=proj)).stdout
        if args[:2] == ["records", "create"]:
            ids["RECORD"] = re.search(r"\brec_[0-9a-z]+", out)[0]  # type: ignore[index]
        elif args[:2] == ["work", "list"]:
            items = ok_json(baton(*args, "--json", cwd=proj))
            mine = [i for i in items if i["record_id"] == ids["RECORD"]]
            assert len(mine) == 1, items
            ids["ITEM"] = mine[0]["id"]
            assert ids["ITEM"] in out, out
        elif args[:2] == ["records", "timeline"]:
            assert "run_completed" in out, out
    assert {"RECORD", "ITEM"} <= set(ids), (steps, ids)

    runs = {r["record_id"]: r for r in ok_json(baton("runs", "list", "--json", cwd=proj))}
    assert runs[ids["RECORD"]]["status"] == "completed", runs
    ticket = ok_json(baton("records", "show", ids["RECORD"], "--json", cwd=proj))
    assert ticket["object_type"] == "Ticket" and ticket["status"] == "Closed", ticket
    assert (proj / "baton.db").exists()


# ---- baton demo ----------------------------------------------------------------------------
def test_demo_runs_the_examples_and_prints_the_summary(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    # As the README runs it: from the repository root, it finds the examples itself.
    p = ok(baton("demo", "--db-file", db, cwd=REPO))
    out = p.stdout
    for title in ("Runs per orchestration", "Stage paths", "Timeline of escalated case"):
        assert title in out, out
    assert re.search(r"case_triage\s*│\s*completed\s*│\s*200\b", out), out
    assert re.search(r"address_update\s*│\s*completed\s*│\s*20\b", out), out
    # the leads are looked up in the ERP example, an MCP server the worker starts over stdio
    assert re.search(r"lead_enrichment\s*│\s*completed\s*│\s*6\b", out), out
    assert re.search(r"erp\.find_account\s*│\s*ok\s*│\s*6\b", out), out
    assert re.search(r"erp\.credit_limit\s*│\s*ok\s*│\s*6\b", out), out
    assert re.search(r"triage → close → end\s*│\s*160\b", out), out
    assert re.search(r"triage → escalate → triage → close → end\s*│\s*40\b", out), out
    assert re.search(r"Finished in \d+(\.\d+)? s", out), out
    # the tier queues are routed (examples/case_triage/routing): agents come and go in
    # waves, and the demo prints who got what, the waits and one case's routing reasons
    assert "Wave: after 60 triage items: bob goes away" in out, out
    assert "Wave: after 100 triage items: hal comes online" in out, out
    assert "Routing of the support cases by the tier queues' rules" in out, out
    rows = {m[0]: m[1:] for m in re.findall(
        r"│\s*(ann|bob|cyd|dan|eve|hal)\s*│.*?│\s*(available|away|offline)\s*│\s*(\d+)\s*│"
        r"\s*(\d+)\s*│\s*(\d+)\s*│", out)}
    assert set(rows) == {"ann", "bob", "cyd", "dan", "eve", "hal"}, out
    assert rows["bob"][0] == "away" and rows["hal"][0] == "available", rows
    assert sum(int(r[1]) for r in rows.values()) == 200, rows  # tier1: every case once
    assert sum(int(r[2]) for r in rows.values()) == 40, rows  # tier2: the escalated ones
    assert int(rows["hal"][1]) > 0 and int(rows["hal"][2]) == 0, rows  # late; not tier 2
    assert rows["ann"][2] == rows["bob"][2] == rows["hal"][2] == "0", rows
    assert re.search(r"Waits: 240 triage items routed, \d+ of them waited for routing", out), out
    assert "Routing of escalated case" in out, out
    assert re.search(r"triage → \w+ \(rule tier1_agents; least_loaded;", out), out
    assert re.search(r"triage → \w+ \(rule tier2_agents; most_skilled;", out), out
    # address_update called the demo bank over HTTP and took its signed acknowledgments
    # (18 approved requests; a call the bank dropped under load is retried, same key)
    assert re.search(r"\d+ calls to the bank, audited \(18 × 202", out), out
    assert "Calls to the demo bank" in out
    assert re.search(r"│\s*\d+\s*│\s*18\s*│\s*0\s*│\s*18\s*│\s*18\s*│", out), out
    # three orders planned: one fulfilled, one canceled before its PONR (rolled back), one
    # amended
    assert "Orders (examples/order_fulfillment)" in out
    assert re.search(r"fulfilled\s*│\s*completed r1\s*│\s*10\s*│", out), out
    assert re.search(r"canceled before the PONR\s*│\s*canceled r1\s*│\s*10\s*│\s*2 completed",
                     out), out
    assert "Rolled back on cancel: rollback_reserve[L2.1], rollback_ship[L2.1]" in out
    assert re.search(r"the Lyon site removed\s*│\s*completed r2", out), out
    assert db.exists()

    # --examples DIR names the folder; --cases/--requests/--leads scale it. (Its examples
    # leave out order_fulfillment and mcp_erp, checked above: their orders and leads are
    # no part of what this run checks. dealer_support is in, so --no-dealer-mail is what
    # keeps it out.)
    examples = examples_without(tmp_path, "order_fulfillment", "mcp_erp")
    p = ok(baton("demo", "--db-file", tmp_path / "small.db", "--examples", examples,
                 "--cases", "5", "--requests", "2", "--leads", "0", "--no-dealer-mail",
                 cwd=tmp_path))
    assert re.search(r"case_triage\s*│\s*completed\s*│\s*5\b", p.stdout), p.stdout
    assert re.search(r"address_update\s*│\s*completed\s*│\s*2\b", p.stdout), p.stdout
    assert "Dealer support" not in p.stdout  # --no-dealer-mail (tests/e2e/test_demo_dealers.py)


# ---- output that scripts and editors parse -------------------------------------------------
def test_long_lines_are_not_wrapped_when_output_is_not_a_terminal(tmp_path: Path) -> None:
    proj = copy_example(tmp_path / "a-rather-long-folder-name-as-ci-runners-have")
    (proj / "definitions" / "broken.yaml").write_text(BROKEN)
    p = baton("--project", proj, "validate", cwd=tmp_path, columns=None)
    issues = json.loads(baton("--project", proj, "validate", "--json", cwd=tmp_path).stdout)
    assert p.returncode == 1
    assert len(p.stdout.splitlines()) == len(issues), p.stdout
    assert all(ISSUE_LINE.match(line) for line in p.stdout.splitlines()), p.stdout

    p = baton("--project", proj, "records", "create", "Case", "--data", "{subject: 1}",
              cwd=tmp_path, columns=None)
    one_line_error(p, "--data", "JSON")


def test_list_commands_page_with_after(tmp_path: Path) -> None:
    """``baton runs|work|records list`` read the API's paged queries: a page, then
    ``more: --after CURSOR`` on stderr; that cursor gives the following page."""
    proj = copy_example(tmp_path)

    def b(*args: str) -> subprocess.CompletedProcess[str]:
        return baton("--project", proj, *args, cwd=tmp_path)

    ok(b("deploy"))
    for i in range(3):
        ok(b("records", "create", "Case", "--data", f'{{"subject": "invoice {i}"}}'))
    ok(b("worker", "--until-idle"))
    for command in (("runs", "list"), ("work", "list"), ("records", "list")):
        seen: list[str] = []
        args = [*command, "--limit", "2", "--json"]
        while True:
            p = ok(b(*args))
            seen += [row["id"] for row in json.loads(p.stdout)]
            more = re.search(r"more: --after (\S+)", p.stderr)
            if more is None:
                break
            args = [*command, "--limit", "2", "--json", "--after", more.group(1)]
        assert len(seen) == len(set(seen)) == 3, (command, seen)
    one_line_error(b("runs", "list", "--after", "garbage"), "after", "not a cursor")
    far = b("runs", "list", "--offset", "5000")  # out of range: a usage error (exit 2)
    assert far.returncode == 2 and far.stdout == "", far.stderr
    assert "Invalid value for '--offset'" in far.stderr and "--after" in far.stderr, far.stderr
