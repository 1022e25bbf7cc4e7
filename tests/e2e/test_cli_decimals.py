"""Exact ``decimal`` fields through the ``baton`` command (issue 17, defect 6), as real
subprocesses on both databases: ``--data`` numbers kept to the last digit, answers as
exact strings, a flow's update run by ``baton worker`` exact, a value beyond the field's
limits a one-line error."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

from tests.e2e.test_cli import baton, ok, ok_json, one_line_error

EIGHTEEN = "1234567890123456.78"

DEFINITIONS = """
kind: object
name: Order
fields:
  a:     {type: decimal}
  b:     {type: decimal}
  total: {type: decimal}
  big:   {type: decimal}
---
kind: orchestration
name: add_up
trigger: {type: record, object: Order, on: [update], when: '=has(record.b) && !has(record.total)'}
stages:
  - name: add
    steps: [{name: add, type: background, flow: orders.add}]
    next:
      - {when: '=record.total == 0.3 && decimal.compare(record.big, "1234567890123456.79") == 0',
         goto: end}
      - {goto: wrong}
  - name: wrong
    steps: [{name: never, type: background, flow: orders.add}]
"""

FLOWS = """
from decimal import Decimal

from baton import flow


@flow("orders.add")
def add(ctx):
    assert isinstance(ctx.record["a"], Decimal), ctx.record
    ctx.update_record({"total": ctx.record["a"] + ctx.record["b"],
                       "big": ctx.record["big"] + Decimal("0.01")})
    return {}
"""


def project(tmp_path: Path) -> Path:
    proj = tmp_path / "shop"
    (proj / "definitions").mkdir(parents=True)
    (proj / "baton.toml").write_text('database = "sqlite:///baton.db"\nflows = ["flows"]\n')
    (proj / "definitions" / "orders.yaml").write_text(textwrap.dedent(DEFINITIONS))
    (proj / "flows.py").write_text(textwrap.dedent(FLOWS))
    return proj


def test_the_cli_keeps_decimals_exact(tmp_path: Path, db_url: str) -> None:
    proj = project(tmp_path)

    def b(*args: str) -> subprocess.CompletedProcess[str]:
        return baton("--project", proj, "--db", db_url, *args, cwd=tmp_path)

    ok(b("deploy"))
    rec = ok_json(b("records", "create", "Order", "--data",
                    f'{{"a": 0.1, "big": {EIGHTEEN}}}', "--json"))
    assert (rec["a"], rec["big"]) == ("0.10", EIGHTEEN)
    shown = ok_json(b("records", "show", rec["id"], "--json"))
    assert (shown["a"], shown["big"]) == ("0.10", EIGHTEEN)
    listed = ok(b("records", "list", "Order"))
    assert EIGHTEEN in listed.stdout
    one_line_error(b("records", "update", rec["id"], "--data", '{"b": 0.125}'),
                   "b: 0.125 has 3 decimal places: at most 2")
    upd = ok_json(b("records", "update", rec["id"], "--data", '{"b": 0.2}', "--json"))
    assert upd["b"] == "0.20"
    ok(b("worker", "--until-idle"))
    after = ok_json(b("records", "show", rec["id"], "--json"))
    assert (after["total"], after["big"]) == ("0.30", "1234567890123456.79")
    (run,) = ok_json(b("runs", "list", "--json"))
    assert run["status"] == "completed" and run["current_stage"] != "wrong", run
