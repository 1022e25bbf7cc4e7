"""Rows the store hands out as values rather than dicts.

What callers ask of a transaction is in :mod:`baton.store.ports`; the one implementation
(:class:`baton.store.sql.SqlStore`) serves SQLite and PostgreSQL through SQLAlchemy Core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SLA_JOB = "sla"
"""The kind of the jobs a claim makes of runs whose ``sla_at`` has come: they have no row
(the instant is kept on the run, ``baton.engine.sla``); the payload is ``{"at": sla_at}``."""


@dataclass(frozen=True)
class Job:
    id: int | None  # None: no row (a step run in the batch that made it ready, an SLA instant)
    kind: str  # "step" | "condition" | "evaluate" | "sla" | …
    run_id: str | None
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class DefinitionRow:
    id: int
    kind: str
    name: str
    version: int
    checksum: str
    source: str
    file: str
    active: bool
    deployed_at: str
    deployed_by: str
