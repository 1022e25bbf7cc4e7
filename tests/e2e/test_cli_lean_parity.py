"""The lean read path (``baton.cli.reads``) prints what the full path prints, byte for byte.

A real project (``baton init``'s template, plus an object type with a decimal field) is
deployed and run through the real engine (records created, the worker run: runs in
progress with work items, audit events); then each read command, with filters, ``--json``,
``--wide``, ``--limit`` and the ``--after`` cursor it gives, runs twice in fresh processes:
through the lean path and with ``BATON_CLI_LEAN=0`` (the Typer commands over the Engine).
Their stdout, stderr and exit code must be the same. A run's duration runs on with the
clock between the two calls, so the runs list is compared with durations masked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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


def _baton(root: Path, *args: str, lean: bool) -> subprocess.CompletedProcess[str]:
    env = _env("160")
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
    ok(_baton(root, "deploy", lean=True))
    for i in range(4):
        ok(_baton(root, "records", "create", "Ticket", "--data",
                  json.dumps({"subject": f"Printer {i} [on fire]"}), lean=True))
    inv = json.loads(ok(_baton(root, "records", "create", "Invoice", "--data",
                               '{"customer": "ACME", "amount": 1234.50, "lines": [1, 2]}',
                               "--json", lean=True)).stdout)
    ok(_baton(root, "worker", "--until-idle", lean=True))
    runs = json.loads(ok(_baton(root, "runs", "list", "--json", lean=True)).stdout)
    tickets = json.loads(ok(_baton(root, "records", "list", "Ticket", "--json",
                                   lean=True)).stdout)
    return {"root": str(root), "run": runs[0]["id"], "invoice": inv["id"],
            "ticket": tickets[0]["id"]}


def _same(project: dict[str, str], *args: str, mask: bool = False) -> str:
    root = Path(project["root"])
    lean, full = _baton(root, *args, lean=True), _baton(root, *args, lean=False)
    out = []
    for p in (lean, full):
        text = p.stdout + "\n--stderr--\n" + p.stderr
        if mask:  # a running run's duration moves on between the two calls
            text = re.sub(r'"duration_seconds": [0-9.]+', '"duration_seconds": D', text)
            text = re.sub(r"\d+(\.\d+)? (ms|s|min|h|d)\b[^│\n]*", "DURATION", text)
        out.append((p.returncode, text))
    assert out[0] == out[1], f"baton {' '.join(args)}: lean\n{out[0][1]}\nfull\n{out[1][1]}"
    assert lean.returncode == 0 and lean.stdout.strip(), lean.stderr
    return lean.stdout + lean.stderr


READS = [
    ["definitions", "list"], ["definitions", "list", "--json"],
    ["definitions", "list", "--kind", "object"],
    ["definitions", "show", "ticket_flow"], ["definitions", "show", "ticket_flow", "--json"],
    ["definitions", "show", "Invoice", "--kind", "object", "--version", "1"],
    ["work", "list"], ["work", "list", "--json"], ["work", "list", "--wide"],
    ["work", "list", "--all", "--limit", "2"], ["work", "list", "--status", "open", "--json"],
    ["records", "list"], ["records", "list", "--json"], ["records", "list", "Ticket", "-w"],
    ["records", "list", "--limit", "2", "--offset", "1"],
    ["records", "show", "{invoice}"], ["records", "show", "{invoice}", "--json"],
    ["records", "show", "{ticket}"],
    ["runs", "show", "{run}"],
    ["fallout", "list"], ["fallout", "list", "--json"],
    ["incidents", "list"], ["incidents", "list", "--status", "open", "--status", "resolved"],
]


@pytest.mark.parametrize("command", READS, ids=[" ".join(c) for c in READS])
def test_lean_and_full_print_the_same(project: dict[str, str], command: list[str]) -> None:
    _same(project, *[a.format(**project) for a in command])


def test_runs_list_and_its_pages(project: dict[str, str]) -> None:
    for args in (["runs", "list"], ["runs", "list", "--json"], ["runs", "list", "--wide"],
                 ["runs", "list", "--status", "in_progress", "--orchestration", "ticket_flow"],
                 ["runs", "list", "--attention"]):
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
