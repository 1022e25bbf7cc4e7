"""Names longer than the terminal stay within it in the human output of ``runs list``,
``work list``, ``runs show`` and ``work show`` (folded onto the lines under, nothing cut),
and are whole in ``--json``: real ``baton`` processes on a real SQLite project, at 40 and 80
columns."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.test_cli import baton, ok, ok_json

ORCHESTRATION = "reconcile_the_quarterly_supplier_invoices_against_purchase_orders_and_receipts"
STAGE = "review_every_line_of_the_supplier_invoice_before_the_payment_goes_out_to_them"
STEP = "check_the_supplier_invoice_lines_against_the_purchase_order_and_its_goods_receipt"
QUEUE = "accounts_payable_team_for_the_northern_european_region_office_in_stockholm"
TITLE = "Invoice_INV-2024-000123456789_from_Acme_Industrial_Supplies_GmbH_for_the_third_quarter"
INSTRUCTIONS = ("Compare each line, tick [x] when it matches. "
                "Lines_named_like_this_one_that_run_on_far_longer_than_any_terminal_is_wide "
                "are folded.")
NAMES = (ORCHESTRATION, STAGE, STEP, QUEUE, TITLE)
DEFS = f"""
kind: object
name: Ticket
title_field: subject
fields:
  subject: {{type: string}}
---
kind: orchestration
name: {ORCHESTRATION}
trigger: {{type: record, object: Ticket, on: [create]}}
stages:
  - name: {STAGE}
    steps:
      - name: {STEP}
        type: interactive
        assign: {{queue: {QUEUE}}}
        instructions: "{INSTRUCTIONS}"
        form:
          - {{name: ok, type: bool}}
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("long_names")
    (root / "baton.toml").write_text('database = "sqlite:///baton.db"\n')
    (root / "definitions").mkdir()
    (root / "definitions" / "long.yaml").write_text(DEFS)
    ok(baton("deploy", cwd=root))
    ok(baton("records", "create", "Ticket", "--data", json.dumps({"subject": TITLE}), cwd=root))
    ok(baton("worker", "--until-idle", cwd=root))
    (run,) = ok_json(baton("runs", "list", "--json", cwd=root))
    (item,) = ok_json(baton("work", "list", "--json", cwd=root))
    return {"root": root, "run": run, "item": item}


@pytest.mark.parametrize("columns", [40, 80])
def test_long_names_stay_within_the_terminal_and_whole_in_json(
        project: dict[str, Any], columns: int) -> None:
    root, run, item = project["root"], project["run"], project["item"]
    commands = {"runs list": ("runs", "list"), "work list": ("work", "list"),
                "runs show": ("runs", "show", run["id"]),
                "work show": ("work", "show", item["id"])}
    for what, args in commands.items():
        out = ok(baton(*args, cwd=root, columns=str(columns))).stdout
        lines = out.splitlines()
        too_long = [line for line in lines if len(line) > columns]
        assert not too_long, (what, columns, out)
        # nothing cut: each name is there, folded onto the lines under it where it must be
        joined = "".join(out.split())
        shown = {"runs list": (TITLE, ORCHESTRATION, STAGE),
                 "work list": (TITLE, STEP, QUEUE),
                 "runs show": (ORCHESTRATION, STAGE, STEP),
                 "work show": (TITLE, QUEUE, "".join(INSTRUCTIONS.split()))}[what]
        for name in shown:
            assert name in joined, (what, columns, name, out)
        assert "…" not in out, out
        # the ids whole on one line (one can paste them)
        ids = [run["id"]] if what.startswith("runs") else [item["id"]]
        assert all(any(i in line.split() for line in lines) for i in ids), (what, out)
        # the first line: the id first, and within the width like the rest
        assert lines[0].split()[0] == ids[0] or lines[0] in ("Runs", "Work items"), out
        # --json: as the API answers, nothing folded
        as_json = ok_json(baton(*args, "--json", cwd=root, columns=str(columns)))
        values = json.dumps(as_json)
        assert [name for name in shown if name in NAMES and name not in values] == [], what
    # the instructions are text, not Rich markup: "[x]" printed as it is
    shown = ok(baton("work", "show", item["id"], cwd=root, columns=str(columns))).stdout
    assert "tick [x] when" in " ".join(shown.split())
    # short enough, the first line has the status beside the id
    first = ok(baton("runs", "show", run["id"], cwd=root, columns=str(columns))).stdout
    if columns == 80:
        assert first.splitlines()[0].split() == [run["id"], "in_progress"]
    else:  # (40: the status on a line of its own under the id, whole)
        assert first.splitlines()[0].split() == [run["id"]]
        assert "in_progress" in [line.strip() for line in first.splitlines()]
