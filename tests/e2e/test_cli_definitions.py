"""``baton definitions list|show``: versions, the active one, a schedule's next tick."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_cli import baton, copy_example, ok, ok_json, one_line_error

NIGHTLY = """kind: orchestration
name: nightly_close
trigger: {type: schedule, cron: "0 2 * * *", timezone: Europe/Paris}
stages:
  - name: work
    steps: [{name: sweep, type: background, flow: cases.close}]
"""


def test_definitions_list_and_show(tmp_path: Path) -> None:
    proj = copy_example(tmp_path)
    (proj / "definitions" / "nightly.yaml").write_text(NIGHTLY)
    ok(baton("deploy", cwd=proj))
    rows = {(d["kind"], d["name"]): d for d in ok_json(baton("definitions", "list", "--json", cwd=proj))}
    assert rows[("orchestration", "case_triage")] == {
        "kind": "orchestration", "name": "case_triage", "active": 1, "latest": 1,
        "next_run_at": None}
    nightly = rows[("orchestration", "nightly_close")]
    assert nightly["active"] == 1 and nightly["next_run_at"].endswith(":00:00.000Z"), nightly
    assert nightly["next_run_at"][11:13] in ("00", "01"), "02:00 in Paris is 00:00 or 01:00 UTC"

    shown = ok_json(baton("definitions", "show", "nightly_close", "--json", cwd=proj))
    assert shown["schedule"]["cron"] == "0 2 * * *" and shown["source"] == NIGHTLY
    text = ok(baton("definitions", "show", "nightly_close", cwd=proj)).stdout
    assert "next run" in text and "Europe/Paris" in text
    objects = ok_json(baton("definitions", "list", "--kind", "object", "--json", cwd=proj))
    assert {d["kind"] for d in objects} == {"object"}

    one_line_error(baton("definitions", "show", "nope", cwd=proj), "not found")
    p = baton("definitions", "list", "--kind", "bogus", cwd=proj)
    assert p.returncode == 2 and "orchestration" in p.stderr, p.stderr


GUARDED = """kind: orchestration
name: guarded
trigger: {type: record, object: Case}
stages:
  - name: work
    steps:
      - {name: check, type: background, flow: cases.close, when: '=record.origin == "Web"'}
"""


def test_validate_shows_warnings_and_still_passes(tmp_path: Path) -> None:
    """A warning (a stage that may never complete) is printed with its line and the
    word "warning", but the definitions are valid: exit 0, deployable."""
    proj = copy_example(tmp_path)
    (proj / "definitions" / "guarded.yaml").write_text(GUARDED)
    p = ok(baton("validate", cwd=proj))
    assert "guarded.yaml:7 warning: stages[0].steps[0].when: step 'check' starts only" \
        in p.stdout, p.stdout
    assert "valid" in p.stdout and "1 warning" in p.stderr
    shown = ok_json(baton("validate", "--json", cwd=proj))
    assert [i["level"] for i in shown] == ["warning"]
    ok(baton("deploy", cwd=proj))


def test_definitions_activate_rolls_back_and_deactivate_stops_new_runs(tmp_path: Path) -> None:
    """An admin rolls a definition back to an earlier version from the CLI, as from the API
    and the Definitions page: the schedule follows the active version; deactivated, it
    fires no more; an unknown version or an object type is refused in one line."""
    proj = copy_example(tmp_path)
    nightly = proj / "definitions" / "nightly.yaml"
    nightly.write_text(NIGHTLY)
    ok(baton("deploy", cwd=proj))
    nightly.write_text(NIGHTLY.replace('"0 2 * * *"', '"30 4 * * *"'))
    ok(baton("deploy", cwd=proj))

    back = ok_json(baton("definitions", "activate", "nightly_close", "--version", "1", "--json",
                         cwd=proj))
    assert back == {"kind": "orchestration", "name": "nightly_close", "active": 1, "latest": 2}
    shown = ok_json(baton("definitions", "show", "nightly_close", "--json", cwd=proj))
    assert shown["schedule"]["cron"] == "0 2 * * *", shown["schedule"]
    assert [v["active"] for v in shown["versions"]] == [True, False]

    text = ok(baton("definitions", "deactivate", "nightly_close", cwd=proj)).stdout
    assert "nightly_close deactivated" in text, text
    rows = {d["name"]: d for d in ok_json(baton("definitions", "list", "--json", cwd=proj))}
    assert rows["nightly_close"]["active"] is None and rows["nightly_close"]["next_run_at"] is None

    one_line_error(baton("definitions", "activate", "nightly_close", "-v", "7", cwd=proj),
                   "not found")
    one_line_error(baton("definitions", "deactivate", "Case", "--kind", "object", cwd=proj),
                   "cannot be deactivated")
    text = ok(baton("definitions", "activate", "nightly_close", "-v", "2", cwd=proj)).stdout
    assert "version 2 is active" in text, text
