"""The store's transactions satisfy every repository protocol of :mod:`baton.store.ports`.

Checked by mypy (``mypy --strict src``): each assignment below fails to type-check if a
method a protocol lists is missing from ``SqlTx`` or ``PlanTx`` or its signature differs.
``tests/contract/test_ports.py`` calls :func:`repositories` and compares the signatures at
run time as well.
"""

from __future__ import annotations

from baton.store import ports
from baton.store.sql.plan import PlanTx
from baton.store.sql.tx import SqlTx


def repositories(tx: SqlTx, plan: PlanTx) -> dict[str, object]:
    """``tx`` and ``plan`` as each protocol (the annotations are the check)."""
    definitions: ports.Definitions = tx
    records: ports.Records = tx
    runs: ports.Runs = tx
    work_items: ports.WorkItems = tx
    jobs: ports.Jobs = tx
    events: ports.Events = tx
    people: ports.People = tx
    idempotency_keys: ports.IdempotencyKeys = tx
    incidents: ports.Incidents = tx
    routing: ports.Routing = tx
    savepoints: ports.Savepoints = tx
    transaction: ports.Transaction = tx
    planned_transaction: ports.Transaction = plan
    planned: ports.PlannedCommit = plan
    return {"definitions": definitions, "records": records, "runs": runs,
            "work_items": work_items, "jobs": jobs, "events": events, "people": people,
            "idempotency_keys": idempotency_keys, "incidents": incidents,
            "routing": routing, "savepoints": savepoints, "transaction": transaction,
            "planned_transaction": planned_transaction, "planned": planned}
