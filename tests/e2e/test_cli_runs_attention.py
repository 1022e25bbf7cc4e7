"""``baton runs list`` shows each run's record title, duration and what needs an operator,
and ``--attention`` keeps only those runs: real subprocesses on both databases."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from tests.e2e.test_cli import baton, ok, ok_json

DEFS = """
kind: object
name: Order
fields:
  ref: {type: string, required: true}
  card: {type: string}
---
kind: orchestration
name: fulfil
trigger: {type: record, object: Order, on: [create]}
stages:
  - name: charge
    steps:
      - {name: charge, type: background, flow: shop.charge}
"""

FLOWS = """
from baton import flow
from baton.errors import StepFailure


@flow("shop.charge")
def charge(ctx):
    if ctx.record.get("card") == "declined":
        raise StepFailure("card declined", retryable=False)
    return {}
"""


def test_runs_list_marks_and_filters_the_runs_that_need_attention(tmp_path: Path,
                                                                  db_url: str) -> None:
    proj = tmp_path / "shop"
    (proj / "definitions").mkdir(parents=True)
    (proj / "baton.toml").write_text('database = "sqlite:///baton.db"\nflows = ["flows"]\n')
    (proj / "definitions" / "orders.yaml").write_text(textwrap.dedent(DEFS))
    (proj / "flows.py").write_text(textwrap.dedent(FLOWS))

    def b(*args: str) -> subprocess.CompletedProcess[str]:
        return baton("--project", proj, "--db", db_url, *args, cwd=tmp_path)

    ok(b("deploy"))
    paid = ok_json(b("records", "create", "Order", "--data", '{"ref": "A-1 paid"}', "--json"))
    stuck = ok_json(b("records", "create", "Order", "--data",
                      '{"ref": "A-2 stuck", "card": "declined"}', "--json"))
    ok(b("worker", "--until-idle"))

    every = {r["record_id"]: r for r in ok_json(b("runs", "list", "--json"))}
    assert every[paid["id"]]["attention"] == [] and every[paid["id"]]["status"] == "completed"
    assert every[stuck["id"]]["attention"] == ["fallout"]
    assert every[stuck["id"]]["title"] == "A-2 stuck"
    assert every[paid["id"]]["duration_seconds"] is not None
    (only,) = ok_json(b("runs", "list", "--attention", "--json"))
    assert only["record_id"] == stuck["id"] and only["status"] == "in_progress"

    table = ok(b("runs", "list", "--attention")).stdout
    assert "A-2 stuck" in table and "step in fallout" in table and only["id"] in table
    assert "A-1 paid" not in table
    table = ok(b("runs", "list")).stdout
    assert "A-1 paid" in table and "A-2 stuck" in table
    assert "--attention" in ok(b("runs", "list", "--help")).stdout

    ok(b("fallout", "skip", f"{only['id']}:charge", "--reason", "charged by phone"))
    ok(b("worker", "--until-idle"))
    assert ok_json(b("runs", "list", "--attention", "--json")) == []
