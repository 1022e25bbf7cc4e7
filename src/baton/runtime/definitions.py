"""Deployed definitions: deploy (versioned by content), load back frozen, cache.

A definition's version is bumped only when its YAML text changes; runs stay
pinned to the version they started on. Parsed definitions are cached per
(kind, name, version) — they are frozen, so every run shares them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from baton.calendars import BusinessCalendar
from baton.clock import Clock, iso
from baton.definitions.loader import load_definitions, load_text
from baton.definitions.model import (
    CalendarDefinition,
    ObjectTypeDefinition,
    OrchestrationDefinition,
)
from baton.errors import NotFound
from baton.store.sql import SqlStore, SqlTx


REFRESH_INTERVAL_S = 1.0


@dataclass(frozen=True)
class DeployResult:
    kind: str
    name: str
    version: int
    changed: bool


def checksum(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


class DefinitionRepo:
    def __init__(self, store: SqlStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self._lock = threading.Lock()
        self._parsed: dict[tuple[str, str, int], Any] = {}
        self._generation = -1
        self._active: dict[tuple[str, str], int] = {}  # (kind, name) -> active version
        self._sources: dict[tuple[str, str, int], tuple[str, str]] = {}
        self._next_check = 0.0

    # ---- deploy -------------------------------------------------------------------------
    def deploy(
        self, paths: Sequence[str | Path], known_flows: Collection[str] | None, actor: str
    ) -> list[DeployResult]:
        """Validate everything first; deploy all or nothing."""
        docs = load_definitions(paths, known_flows=known_flows, deployed_objects=self.object_types())
        results = []
        now = iso(self.clock.now())
        with self.store.write() as tx:
            for doc in docs:
                digest = checksum(doc.source)
                latest = tx.latest_definition_txn(doc.kind, doc.name)
                if latest is not None and latest.checksum == digest:
                    results.append(DeployResult(doc.kind, doc.name, latest.version, False))
                    continue
                version = (latest.version if latest else 0) + 1
                tx.insert_definition_txn(dict(
                    kind=doc.kind, name=doc.name, version=version, checksum=digest,
                    source=doc.source, file=doc.file, active=True, deployed_at=now,
                    deployed_by=actor,
                ))
                tx.set_active_txn(doc.kind, doc.name, version)
                results.append(DeployResult(doc.kind, doc.name, version, True))
        self._generation = -1
        return results

    # ---- lookups ------------------------------------------------------------------------
    def refresh(self, tx: SqlTx | None = None) -> None:
        """Reload the index of active versions if anything was deployed since."""
        if tx is None:
            with self.store.read() as rtx:
                self.refresh(rtx)
            return
        # Another process may deploy at any time; looking at most once a second keeps that
        # visible without a query in every transaction of the hot path.
        now = time.monotonic()
        if self._generation >= 0 and now < self._next_check:
            return
        self._next_check = now + REFRESH_INTERVAL_S
        gen = tx.definitions_generation_txn()
        if gen == self._generation:
            return
        rows = tx.list_definitions_txn()
        with self._lock:
            self._active = {(r.kind, r.name): r.version for r in rows if r.active}
            for r in rows:
                self._sources[(r.kind, r.name, r.version)] = (r.source, r.file)
            self._generation = gen

    def _parse(self, kind: str, name: str, version: int) -> Any:
        key = (kind, name, version)
        hit = self._parsed.get(key)
        if hit is not None:
            return hit
        if key not in self._sources:
            self._generation = -1
            self.refresh()
        if key not in self._sources:
            raise NotFound(kind, f"{name} v{version}")
        source, file = self._sources[key]
        if kind == "orchestration":
            objects = self.object_types()
        else:  # an object type's ref fields only need the names of the other types
            objects = {n: ObjectTypeDefinition(n, ()) for (k, n) in self._active if k == "object"}
        docs = load_text(source, file, deployed_objects=objects)
        definition = docs[0].definition
        if isinstance(definition, OrchestrationDefinition):
            definition = replace(definition, calendars=MappingProxyType(self._calendars(definition)))
        with self._lock:
            self._parsed[key] = definition
        return definition

    def _calendars(self, defn: OrchestrationDefinition) -> dict[str, BusinessCalendar]:
        """The active version of every calendar the orchestration's SLAs name (those deployed).

        A calendar that is not deployed is left out; its SLAs then count wall-clock time and
        say so in the audit log (``sla_calendar_missing``).
        """
        names = {(step.options.get("sla") or {}).get("calendar")
                 for stage in defn.stages for step in stage.steps}
        out = {}
        for name in sorted(n for n in names if n):
            version = self._active.get(("calendar", name))
            if version is not None:
                cal: CalendarDefinition = self._parse("calendar", name, version)
                out[name] = BusinessCalendar.from_spec(name, cal.spec())
        return out

    def object_types(self) -> dict[str, ObjectTypeDefinition]:
        self.refresh()
        return {
            name: self._parse("object", name, v)
            for (kind, name), v in list(self._active.items())
            if kind == "object"
        }

    def object_type(self, name: str, tx: SqlTx | None = None) -> ObjectTypeDefinition:
        self.refresh(tx)
        v = self._active.get(("object", name))
        if v is None:
            known = sorted(n for k, n in self._active if k == "object")
            raise NotFound("object type", name, f"deployed object types: {', '.join(known) or 'none'}")
        return self._parse("object", name, v)  # type: ignore[no-any-return]

    def orchestration(self, name: str, version: int | None = None,
                      tx: SqlTx | None = None) -> tuple[OrchestrationDefinition, int]:
        self.refresh(tx)
        if version is None:
            version = self._active.get(("orchestration", name))
            if version is None:
                raise NotFound("orchestration", name)
        return self._parse("orchestration", name, version), version

    def record_triggers(self, object_type: str, op: str,
                        tx: SqlTx | None = None) -> list[tuple[OrchestrationDefinition, int]]:
        """Active orchestrations started by ``op`` (create/update) on ``object_type`` records."""
        self.refresh(tx)
        out = []
        for (kind, name), v in list(self._active.items()):
            if kind != "orchestration":
                continue
            d: OrchestrationDefinition = self._parse(kind, name, v)
            t = d.trigger
            if t.type == "record" and t.object == object_type and op in t.on:
                out.append((d, v))
        return sorted(out, key=lambda dv: dv[0].name)
