"""``baton fallout`` and ``baton runs resume|signal`` end to end (subprocesses)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.e2e.test_cli import baton, ok, ok_json, one_line_error
from tests.e2e.test_cli_leftovers import complete, offered

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
      - {name: charge, type: background, flow: shop.decline, output: {receipt: {type: string, required: true}}}
      - {name: pack, type: background, flow: shop.ok}
      - {name: ship, type: background, flow: shop.ok, after: [charge]}
      - {name: docs, type: pause, signal: docs_received}
"""

FLOWS = """
from baton import flow
from baton.errors import StepFailure


@flow("shop.decline")
def decline(ctx):
    raise StepFailure("card declined", retryable=False)


@flow("shop.ok")
def ok(ctx):
    return {}
"""


def test_fallout_list_complete_and_signal(tmp_path: Path) -> None:
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "defs.yaml").write_text(textwrap.dedent(DEFS))
    (tmp_path / "shop.py").write_text(FLOWS)
    (tmp_path / "baton.toml").write_text('database = "sqlite:///baton.db"\nflows = ["shop"]\n')
    ok(baton("deploy", cwd=tmp_path))
    rec = ok_json(baton("records", "create", "Order", "--data", '{"ref": "A1"}', "--json",
                        cwd=tmp_path))
    ok(baton("worker", "--until-idle", cwd=tmp_path))
    (item,) = ok_json(baton("fallout", "list", "--json", cwd=tmp_path))
    assert item["step"] == "charge" and item["error"]["message"] == "card declined"
    assert item["id"] == f"{item['run_id']}:charge" and item["record_id"] == rec["id"]
    assert "card declined" in ok(baton("fallout", "list", cwd=tmp_path)).stdout
    # a TAB after `fallout complete` offers the step in fallout (and only it)
    assert offered(complete(tmp_path, "fallout", "complete", "")) == [item["id"]]
    one_line_error(baton("fallout", "complete", item["id"], "--reason", "paid", "--data", "{}",
                         cwd=tmp_path), "receipt")
    ok(baton("fallout", "complete", item["id"], "--reason", "paid by phone",
             "--data", '{"receipt": "R-9"}', cwd=tmp_path))
    ok(baton("worker", "--until-idle", cwd=tmp_path))
    assert ok_json(baton("fallout", "list", "--json", cwd=tmp_path)) == []
    assert offered(complete(tmp_path, "fallout", "skip", "")) == []
    one_line_error(baton("fallout", "skip", item["id"], "--reason", "x", cwd=tmp_path),
                   "not in fallout")
    run = ok_json(baton("runs", "signal", item["run_id"], "docs_received", "--data",
                        '{"pages": 2}', "--json", cwd=tmp_path))
    assert run["status"] == "completed"
    detail = ok_json(baton("runs", "show", item["run_id"], "--json", cwd=tmp_path))
    steps = {s["name"]: s for s in detail["steps"]}
    assert steps["docs"]["output"] == {"pages": 2} and steps["ship"]["status"] == "completed"
    one_line_error(baton("runs", "resume", item["run_id"], "--reason", "why", cwd=tmp_path),
                   "only a failed run can be resumed")
