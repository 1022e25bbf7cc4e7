"""Rows the store hands out as values rather than dicts.

What callers ask of a transaction is in :mod:`baton.store.ports`; the one implementation
(:class:`baton.store.sql.SqlStore`) serves SQLite and PostgreSQL through SQLAlchemy Core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

SLA_JOB = "sla"
"""The kind of the jobs a claim makes of runs whose ``sla_at`` has come: they have no row
(the instant is kept on the run, ``baton.engine.sla``); the payload is ``{"at": sla_at}``."""


@dataclass(frozen=True, slots=True)
class FalloutGroup:
    """Steps in fallout of one orchestration and step with one error message (the
    Fallout page's "By error" rows: ``baton_fallout``, store/sql/fallout.py)."""

    orchestration: str
    step: str
    message: str
    count: int
    first: str  # the run id of its first step by run id and step (its steps share a name)


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


@dataclass(frozen=True)
class Total:
    """How many rows match: ``exact``, an ``estimate`` (PostgreSQL's planner) or
    ``at_least`` (SQLite: counting further would scan)."""

    value: int
    kind: Literal["exact", "estimate", "at_least"] = "exact"

    @property
    def estimated(self) -> bool:
        return self.kind != "exact"

    def text(self) -> str:
        if self.kind == "exact":
            return f"{self.value:,}"
        return f"about {self.value:,}" if self.kind == "estimate" else f"{self.value:,}+"


@dataclass(frozen=True)
class KeyPage:
    rows: list[dict[str, Any]]
    next: str | None  # the cursor of the page after this one, None on the last
