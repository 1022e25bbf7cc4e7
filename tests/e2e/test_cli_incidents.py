"""``baton incidents list|retry|dismiss`` end to end (subprocesses)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.costly import COSTLY
from tests.e2e.test_cli import baton, ok, ok_json, one_line_error
from tests.e2e.test_cli_leftovers import complete, offered

DEFS = f"""
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


def test_incidents_list_retry_and_dismiss(tmp_path: Path) -> None:
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "defs.yaml").write_text(textwrap.dedent(DEFS))
    (tmp_path / "baton.toml").write_text('database = "sqlite:///baton.db"\n')
    ok(baton("deploy", cwd=tmp_path))
    recs = [ok_json(baton("records", "create", "Order", "--data", f'{{"ref": "A{i}"}}', "--json",
                          cwd=tmp_path)) for i in (1, 2)]
    listed = ok_json(baton("incidents", "list", "--json", cwd=tmp_path))
    assert [i["record_id"] for i in listed] == [r["id"] for r in recs]
    assert all(i["kind"] == "trigger_failed" and "too costly" in i["error"] for i in listed)
    assert "too costly" in ok(baton("incidents", "list", cwd=tmp_path)).stdout
    first, second = (i["id"] for i in listed)
    # a TAB after `incidents retry` offers the open incidents, newest first
    assert offered(complete(tmp_path, "incidents", "retry", "")) == [second, first]

    ok(baton("records", "update", recs[0]["id"], "--data", '{"rush": false}', cwd=tmp_path))
    done = ok_json(baton("incidents", "retry", first, "--reason", "rush flag cleared", "--json",
                         cwd=tmp_path))
    assert done["status"] == "resolved" and done["run_id"]
    runs = ok_json(baton("runs", "list", "--json", cwd=tmp_path))
    assert [r["id"] for r in runs] == [done["run_id"]]
    one_line_error(baton("incidents", "dismiss", second, "--reason", "", cwd=tmp_path), "reason")
    ok(baton("incidents", "dismiss", second, "--reason", "duplicate order", cwd=tmp_path))
    assert ok_json(baton("incidents", "list", "--json", cwd=tmp_path)) == []
    assert offered(complete(tmp_path, "incidents", "dismiss", "")) == []  # none open
    closed = ok_json(baton("incidents", "list", "--status", "resolved", "--status", "dismissed",
                           "--json", cwd=tmp_path))
    assert {(i["id"], i["status"], i["resolved_by"]) for i in closed} == {
        (first, "resolved", "cli"), (second, "dismissed", "cli")}
    one_line_error(baton("incidents", "retry", second, "--reason", "x", cwd=tmp_path),
                   "dismissed")
