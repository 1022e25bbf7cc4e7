"""The lean read path (``baton.cli.reads``) prints what the full path prints, byte for byte.

A real project (``baton init``'s template, plus an object type with a decimal field) is
deployed and run through the real engine (records created, in this process as
``baton records create`` creates them, the worker run: runs in progress with work items,
audit events); then each read command, with filters, ``--json``,
``--wide``, ``--limit`` and the ``--after`` cursor it gives, runs twice in fresh processes:
through the lean path and with ``BATON_CLI_LEAN=0`` (the Typer commands over the Engine).
Their stdout, stderr and exit code must be the same. A running run's duration runs on with
the clock between the two calls: the runs in progress are moved three days back (the table
says "3 d 0 h" in both) and the JSON's ``duration_seconds`` are masked.
"""

from __future__ import annotations

import dataclasses
import decimal
import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import pytest

from tests.costly import COSTLY
from tests.e2e.test_cli import _env, ok

INVOICE = """\
kind: object
name: Invoice
title_field: customer
fields:
  customer: {type: string, required: true}
  amount:   {type: decimal, precision: 12, scale: 2}
  lines:    {type: json}
"""


SHOP = f"""\
kind: object
name: Order
fields:
  ref: {{type: string, required: true}}
  total: {{type: decimal, precision: 10, scale: 2}}
  rush: {{type: bool, default: false}}
---
kind: orchestration
name: fulfil
trigger: {{type: record, object: Order, on: [create], when: '=record.rush ? ({COSTLY}) : true'}}
stages:
  - name: go
    steps:
      - {{name: charge, type: background, flow: shop.charge}}
      - {{name: ship, type: background, flow: shop.ok, after: [charge]}}
---
kind: orchestration
name: nightly
trigger: {{type: schedule, cron: "0 2 * * *", timezone: Europe/Paris}}
stages:
  - name: work
    steps: [{{name: sweep, type: background, flow: shop.ok}}]
"""

SHOP_FLOWS = """\
from baton import flow
from baton.errors import StepFailure


@flow("shop.charge")
def charge(ctx):
    if ctx.record["ref"].startswith("BAD"):
        raise StepFailure("card declined: <insufficient funds> [bank]", retryable=False)
    return {"receipt": "R-1"}


@flow("shop.ok")
def ok(ctx):
    return {}
"""


def _baton(root: Path, *args: str, lean: bool, columns: str = "160"
           ) -> subprocess.CompletedProcess[str]:
    env = _env(columns)
    env = {k: v for k, v in env.items() if not k.startswith("BATON_")}
    env["PYTHONPATH"] = _env(None)["PYTHONPATH"]
    if not lean:
        env["BATON_CLI_LEAN"] = "0"
    return subprocess.run([sys.executable, "-c", "from baton.cli.main import main; main()",
                           *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=180, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("lean") / "p"
    ok(_baton(root.parent, "init", str(root), lean=True))
    (root / "definitions" / "invoice.yaml").write_text(INVOICE)
    (root / "definitions" / "shop.yaml").write_text(SHOP)
    (root / "shop.py").write_text(SHOP_FLOWS)
    toml = (root / "baton.toml").read_text().replace('flows = ["flows"]', 'flows = ["flows", "shop"]')
    (root / "baton.toml").write_text(toml)
    ok(_baton(root, "deploy", lean=True))
    # The records, created as `baton records create --data JSON` creates them (the JSON's
    # fractions exact, actor "cli"), in this process: nine CLI processes fewer.
    from baton.project import load_project
    from baton.runtime.engine import Engine
    from baton.settings import Settings

    found = load_project(root)
    settings = dataclasses.replace(
        Settings.from_environment({k: v for k, v in os.environ.items()
                                   if not k.startswith("BATON_")}, project=found.settings),
        project_dir=str(root))
    engine = Engine(found.database_url(None), settings=settings)
    try:
        def create(object_type: str, data: str) -> dict[str, object]:
            return engine.create_record(object_type, json.loads(data, parse_float=decimal.Decimal),
                                        actor="cli")

        for ref, extra in (("GOOD-1", ', "total": 10.5'), ("BAD-1", ', "total": 99.99'),
                           ("BAD-2", ""), ("RUSH-1", ', "rush": true')):
            create("Order", f'{{"ref": "{ref}"{extra}}}')
        for i in range(4):
            create("Ticket", json.dumps({"subject": f"Printer {i} [on fire]"}))
        inv = create("Invoice", '{"customer": "ACME", "amount": 1234.50, "lines": [1, 2]}')
    finally:
        engine.close()
    ok(_baton(root, "worker", "--until-idle", lean=True))
    runs = json.loads(ok(_baton(root, "runs", "list", "--json", lean=True)).stdout)
    tickets = [r for r in runs if r["orchestration"] == "ticket_flow"]
    ok(_baton(root, "runs", "cancel", tickets[-1]["id"], lean=True))
    fallout = json.loads(ok(_baton(root, "fallout", "list", "--json", lean=True)).stdout)
    assert len(fallout) == 2 and "declined" in fallout[0]["error"]["message"]
    incidents = json.loads(ok(_baton(root, "incidents", "list", "--json", lean=True)).stdout)
    assert len(incidents) == 1
    runs = json.loads(ok(_baton(root, "runs", "list", "--json", lean=True)).stdout)
    statuses = {r["status"] for r in runs}
    assert statuses == {"in_progress", "completed", "canceled"}, statuses
    # A running run's duration grows between the lean and the full call: started three days
    # earlier, it shows as "3 d 0 h" in both (the JSON's seconds are masked).
    with sqlite3.connect(root / "baton.db") as db:
        for run_id, created in db.execute(
                "SELECT id, created_at FROM baton_runs WHERE status = 'in_progress'").fetchall():
            earlier = datetime.fromisoformat(created) - timedelta(days=3)
            db.execute("UPDATE baton_runs SET created_at = ? WHERE id = ?",
                       (earlier.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                        run_id))
    # (the first Order and the first Ticket `records list TYPE` gives: the same order)
    records = json.loads(ok(_baton(root, "records", "list", "--json", lean=True)).stdout)
    assert len(records) == 9, records
    return {"root": str(root), "run": tickets[0]["id"], "invoice": str(inv["id"]),
            "ticket": next(r["id"] for r in records if r["object_type"] == "Ticket"),
            "fallout_run": fallout[0]["run_id"],
            "order": next(r["id"] for r in records if r["object_type"] == "Order"),
            "done_run": next(r["id"] for r in runs if r["status"] == "completed"),
            "canceled_run": tickets[-1]["id"]}


def _same(project: dict[str, str], *args: str, mask: bool = False) -> str:
    return _same_in(project["root"], args, mask)


@cache  # a command two tests compare (records show INVOICE --json) is compared once
def _same_in(root_dir: str, args: tuple[str, ...], mask: bool) -> str:
    root = Path(root_dir)
    lean, full = _baton(root, *args, lean=True), _baton(root, *args, lean=False)
    out = []
    for p in (lean, full):
        text = p.stdout + "\n--stderr--\n" + p.stderr
        if mask:  # a running run's duration moves on between the two calls (to the ms)
            text = re.sub(r'"duration_seconds": [0-9.]+', '"duration_seconds": D', text)
        out.append((p.returncode, text))
    assert out[0] == out[1], f"baton {' '.join(args)}: lean\n{out[0][1]}\nfull\n{out[1][1]}"
    assert lean.returncode == 0 and lean.stdout.strip(), lean.stderr
    return lean.stdout + lean.stderr


READS = [
    ["--version"], ["definitions", "list"], ["definitions", "list", "--json"],
    ["definitions", "list", "--kind", "object"],
    ["definitions", "show", "ticket_flow"], ["definitions", "show", "ticket_flow", "--json"],
    ["definitions", "show", "Invoice", "--kind", "object", "--version", "1"],
    ["definitions", "show", "nightly"], ["definitions", "show", "nightly", "--json"],
    ["work", "list"], ["work", "list", "--json"], ["work", "list", "--wide"],
    ["work", "list", "--all", "--limit", "2"], ["work", "list", "--status", "open", "--json"],
    ["records", "list"], ["records", "list", "--json"], ["records", "list", "Ticket", "-w"],
    ["records", "list", "--limit", "2", "--offset", "1"],
    ["records", "show", "{invoice}"], ["records", "show", "{invoice}", "--json"],
    ["records", "show", "{ticket}"],
    ["runs", "show", "{run}"], ["runs", "show", "{fallout_run}"], ["runs", "show", "{done_run}"],
    ["runs", "show", "{canceled_run}"], ["runs", "show", "{run}", "--json"],
    ["records", "show", "{order}"], ["records", "show", "{order}", "--json"],
    ["records", "list", "Order", "--json"], ["records", "timeline", "{ticket}"],
    ["records", "timeline", "{order}", "--json"], ["records", "timeline", "{invoice}"], ["fallout", "list", "--limit", "1"],
    ["incidents", "list", "--json"], ["--db", "sqlite:///baton.db", "definitions", "list"],
    ["--project", ".", "records", "list", "--limit=3"],
    ["fallout", "list"], ["fallout", "list", "--json"],
    ["incidents", "list"], ["incidents", "list", "--status", "open", "--status", "resolved"],
]


@pytest.mark.parametrize("command", READS, ids=[" ".join(c) for c in READS])
def test_lean_and_full_print_the_same(project: dict[str, str], command: list[str]) -> None:
    _same(project, *[a.format(**project) for a in command])


def test_runs_list_and_its_pages(project: dict[str, str]) -> None:
    for args in (["runs", "list"], ["runs", "list", "--json"], ["runs", "list", "--wide"],
                 ["runs", "list", "--status", "in_progress", "--orchestration", "ticket_flow"],
                 ["runs", "list", "--attention"], ["runs", "list", "--status", "canceled"],
                 ["runs", "list", "--orchestration", "fulfil", "--attention", "--json"],
                 ["runs", "list", "--status", "completed", "--wide"],
                 ["runs", "list", "--record", "{order}", "--json"]):
        args = [a.format(**project) for a in args]
        _same(project, *args, mask=True)
    first = _same(project, "runs", "list", "--limit", "2", "--json", mask=True)
    cursor = re.search(r"more: --after (\S+)", first)
    assert cursor, first
    _same(project, "runs", "list", "--limit", "2", "--after", cursor.group(1), mask=True)
    work = _same(project, "work", "list", "--all", "--limit", "1")
    cursor = re.search(r"more: --after (\S+)", work)
    assert cursor, work
    _same(project, "work", "list", "--all", "--limit", "1", "--after", cursor.group(1))


def test_what_the_lean_path_leaves_to_the_full_path(project: dict[str, str]) -> None:
    """Errors, help and the cases it does not read print exactly as before."""
    for args in (["runs", "show", "run_nope"], ["records", "show", "rec_nope"],
                 ["records", "timeline", "rec_nope"],
                 ["runs", "list", "--status", "bogus"], ["runs", "list", "--limit", "0"],
                 ["runs", "list", "--after", "garbage"], ["runs", "list", "--help"],
                 ["definitions", "show", "nope"]):
        root = Path(project["root"])
        lean, full = _baton(root, *args, lean=True), _baton(root, *args, lean=False)
        assert (lean.returncode, lean.stdout, lean.stderr) == \
            (full.returncode, full.stdout, full.stderr), args
        assert lean.returncode != 0 or "Usage" in lean.stdout


def test_the_decimal_is_its_exact_string(project: dict[str, str]) -> None:
    shown = json.loads(_same(project, "records", "show", project["invoice"], "--json"))
    assert shown["amount"] == "1234.50" and shown["customer"] == "ACME"
    assert os.path.exists(Path(project["root"]) / "baton.db")
