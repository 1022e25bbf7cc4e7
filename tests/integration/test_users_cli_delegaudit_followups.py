"""``baton users update --delegate/--from/--until/--no-delegate`` (the CLI as subprocesses,
SQLite and PostgreSQL) audits every change of the delegation as ``delegation_changed``
by ``cli``, with the delegate and dates before and after; a refused change, or one that
changes nothing, writes none; ``baton users show`` lists who gave whom approval power."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import Harness
from tests.integration.test_delegation_end import cli, ok


def written(harness: Harness) -> list[dict[str, Any]]:
    with harness.engine.store.read() as tx:
        return [e for e in tx.events_txn() if e["type"] == "delegation_changed"]


def test_the_cli_audits_each_change_and_users_show_lists_them(
        harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "240")  # (a table's lines whole, for the checks below)
    eng = harness.engine
    for name in ("dora", "ann", "cyd"):
        eng.directory.add_user(name, roles=["agent"])
    ok(cli(harness, "users", "update", "dora", "--delegate", "ann", "--until", "2026-12-24"))
    ok(cli(harness, "users", "update", "dora", "--from", "2026-12-01"))
    # refused: not a user; dates the wrong way round; --no-delegate with a delegate
    for args in (["--delegate", "nobody"], ["--from", "2026-12-30"],
                 ["--no-delegate", "--delegate", "cyd"]):
        assert cli(harness, "users", "update", "dora", *args).returncode != 0, args
    assert cli(harness, "users", "update", "nobody", "--delegate", "ann").returncode != 0
    ok(cli(harness, "users", "update", "cyd", "--no-delegate"))  # (she names none: no change)
    ok(cli(harness, "users", "update", "dora", "--no-delegate"))
    events = written(harness)
    assert [(e["actor"], e["data"]["user"], e["data"]["change"], e["data"]["before"],
             e["data"]["after"]) for e in events] == [
        ("cli", "dora", "set", None,
         {"delegate": "ann", "delegate_from": None, "delegate_until": "2026-12-24"}),
        ("cli", "dora", "changed",
         {"delegate": "ann", "delegate_from": None, "delegate_until": "2026-12-24"},
         {"delegate": "ann", "delegate_from": "2026-12-01", "delegate_until": "2026-12-24"}),
        ("cli", "dora", "ended",
         {"delegate": "ann", "delegate_from": "2026-12-01", "delegate_until": "2026-12-24"},
         None)]

    shown = json.loads(ok(cli(harness, "users", "show", "dora", "--json")))
    assert (shown["name"], shown["delegate"]) == ("dora", None)
    assert [(h["change"], h["actor"], h["id"]) for h in shown["delegation_history"]] == [
        (e["data"]["change"], "cli", e["id"]) for e in reversed(events)]
    # the delegate's face too: whose approvals she was given, by whom, until when
    text = " ".join(ok(cli(harness, "users", "show", "ann")).split())
    assert "Delegation history of ann" in text
    assert "dora names ann (until 2026-12-24) as delegate" in text
    assert "dora's delegate: ann (until 2026-12-24) → ann (from 2026-12-01 to 2026-12-24)" \
        in text
    assert "dora's delegation to ann (from 2026-12-01 to 2026-12-24) ended" in text
    assert "no changes recorded" in ok(cli(harness, "users", "show", "cyd"))
    missing = cli(harness, "users", "show", "nobody")
    assert missing.returncode != 0 and "nobody" in missing.stderr
