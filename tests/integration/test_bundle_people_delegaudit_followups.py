"""A bundle's import (``baton import`` with people) that adds a user ends the delegations
made to that name before the user existed, as ``baton users add`` does, and audits each
as ``delegation_changed`` by the importer, with why (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from baton.runtime.bundle import apply_import, plan_import
from tests.conftest import Harness


def test_an_imported_user_ends_the_delegations_to_their_name_audited(harness: Harness) -> None:
    eng = harness.engine
    eng.directory.add_user("ann", roles=["agent"])
    # ann may not list users: a delegate who is nobody yet is kept as named
    eng.directory.update_user("ann", delegate="zed", delegate_until="2026-03-01",
                              may_list_users=False, actor="ann")
    bundle: dict[str, Any] = {"manifest.json": {"format": 1}, "definitions.json": [],
                              "people.json": [{"name": "zed", "roles": ["agent"]}]}
    apply_import(eng, plan_import(eng, bundle), "importer")
    assert eng.directory.get_user("ann").delegation is None
    with eng.store.read() as tx:
        events = [e for e in tx.events_txn() if e["type"] == "delegation_changed"]
    assert [(e["actor"], e["data"]["change"], e["data"]["before"], e["data"]["after"])
            for e in events] == [
        ("ann", "set", None,
         {"delegate": "zed", "delegate_from": None, "delegate_until": "2026-03-01"}),
        ("importer", "ended",
         {"delegate": "zed", "delegate_from": None, "delegate_until": "2026-03-01"}, None)]
    assert "a user 'zed' was added" in events[-1]["data"]["reason"]
    assert [c.change for c in eng.directory.delegation_history("zed")] == ["ended", "set"]
