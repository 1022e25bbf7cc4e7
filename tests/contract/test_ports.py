"""The store's transactions provide every repository protocol callers depend on, and a plan
handles every transaction method the way the method declares (no hand-written shadow).

mypy checks the same conformance statically (baton.store.sql.conformance); this checks the
signatures at run time too, so a missing or diverging method fails the suite without mypy.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from baton.store import ports
from baton.store.sql import PlanAborted, PlanTx, SqlStore, SqlTx
from baton.store.sql.conformance import repositories
from baton.store.sql.marks import ATTR, Read, Refuse, Write

NOW = "2026-01-05T09:00:00.000Z"
PROTOCOLS = [ports.Definitions, ports.Records, ports.Runs, ports.WorkItems, ports.Jobs,
             ports.Events, ports.People, ports.IdempotencyKeys, ports.Incidents, ports.Schedules,
             ports.Messages, ports.Classifiers, ports.Callbacks, ports.Plans, ports.Routing,
             ports.Savepoints, ports.PlannedCommit]


def _methods(protocol: type) -> dict[str, Any]:
    return {name: fn for name, fn in vars(protocol).items()
            if inspect.isfunction(fn) and not name.startswith("_")}


def _shape(fn: Any) -> list[tuple[str, Any, Any]]:
    """Parameter names, kinds and defaults (the annotations are mypy's to compare)."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_transactions_provide_each_protocol_method_with_its_signature(protocol: type) -> None:
    methods = _methods(protocol)
    assert methods, f"{protocol.__name__} lists no methods"
    impls = [PlanTx] if protocol is ports.PlannedCommit else [SqlTx, PlanTx]
    for impl in impls:
        for name, fn in methods.items():
            assert hasattr(impl, name), f"{impl.__name__} lacks {protocol.__name__}.{name}"
            assert _shape(getattr(impl, name)) == _shape(fn), f"{impl.__name__}.{name}"


def test_every_transaction_method_callers_use_is_in_a_protocol() -> None:
    listed = {name for p in PROTOCOLS for name in _methods(p)}
    public = {name for name in dir(SqlTx)
              if name.endswith("_txn") and not name.startswith("_") and name != "flush_txn"}
    assert public <= listed, f"not in any protocol: {sorted(public - listed)}"


def test_a_plan_wraps_every_declared_method() -> None:
    declared = {name: getattr(fn, ATTR) for name in dir(SqlTx)
                if (fn := getattr(SqlTx, name)) is not None and hasattr(fn, ATTR)}
    assert {type(m) for m in declared.values()} == {Read, Write, Refuse}
    for name in declared:
        assert vars(PlanTx).get(name) is not None, f"PlanTx does not handle {name}"
        assert vars(PlanTx)[name] is not getattr(SqlTx, name)


def test_the_conformance_module_hands_back_both_transactions(store: SqlStore) -> None:
    with store.read() as tx, store.plan() as plan:
        repos = repositories(tx, plan)
    assert repos["records"] is tx and repos["planned"] is plan


def test_a_plan_refuses_writes_of_the_people_tables(store: SqlStore) -> None:
    """Directory writes are not deferrable: refused before anything reaches the snapshot
    (PostgreSQL's reader connection would otherwise take them)."""
    with pytest.raises(PlanAborted, match="user directory"), store.plan() as plan:
        plan.insert_user_txn({"name": "ann", "display_name": "Ann", "email": None,
                              "roles": ["admin"], "password_hash": None, "active": True,
                              "created_at": NOW, "updated_at": NOW})
    with store.read() as tx:
        assert tx.user_rows_txn() == []


def test_a_plan_lists_work_items_until_it_writes_one(store: SqlStore) -> None:
    with store.plan() as plan:
        assert plan.list_work_items_txn({}, 10, 0) == []
        plan.update_work_item_txn("wi_1", ["open"], None, {"status": "claimed"})
        with pytest.raises(PlanAborted, match="work items"):
            plan.list_work_items_txn({}, 10, 0)
