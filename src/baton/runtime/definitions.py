"""Deployed definitions: deploy (versioned by content), load back frozen, cache.

A definition's version is bumped only when its YAML text changes; runs stay
pinned to the version they started on. Parsed definitions are cached per
(kind, name, version) — they are frozen, so every run shares them.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import yaml

from baton.ai.rules import activation_issues_txn, definition_issues, definition_issues_txn
from baton.calendars import BusinessCalendar
from baton.clock import Clock, iso
from baton.definitions.checks import (
    RESERVED_FIELDS,
    Checker,
    ChildTarget,
    ParsedDocument,
    item,
    join,
    step_at,
    suggest,
)
from baton.definitions.model import (
    AssigneeKind,
    CalendarDefinition,
    ConnectionDefinition,
    LoadedDefinition,
    MailboxDefinition,
    ObjectTypeDefinition,
    OrchestrationDefinition,
    RoutingDefinition,
)
from baton.definitions.refs import seed_navigated
from baton.definitions.routing import (
    ASSIGN_WORDS,
    ASSIGNS,
    assignments,
    may_hold,
    misreads,
    names_in,
    outcome,
    routes,
    rule_record_reads,
    sla_action,
    unknown_rule,
)
from baton.errors import DefinitionError, Issue, NotFound, TransitionConflict
from baton.ids import IdGenerator, UlidIds
from baton.runtime import schedules
from baton.store.base import DefinitionRow
from baton.store.ports import Definitions, Transaction
from baton.store.sql import SqlStore

if TYPE_CHECKING:
    from baton.records.changes import Survey

log = logging.getLogger(__name__)

REFRESH_INTERVAL_S = 1.0
PLAN_PREFIX = "plan:"  # a plan run's orchestration: "plan:ORDER_ID", its version the revision
# Plan definitions kept built, counted in steps (the oldest used dropped first; the one
# just used always kept): a worker runs plans of every order ever submitted, so keeping
# each would grow without end; a dropped one is built again from its stored graph.
PLAN_CACHE_STEPS = 20_000


@dataclass(frozen=True)
class DeployResult:
    kind: str
    name: str
    version: int
    changed: bool
    # object type: field -> records the deploy changed (given the field's default, or
    # rounded to its scale: :func:`baton.records.changes.rewrite_records_txn`)
    records_changed: Mapping[str, int] = field(default_factory=dict)


def checksum(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


# The kinds whose validation reads object types' fields (the others need only their names).
_READ_FIELDS = frozenset({"orchestration", "mailbox", "fulfillment", "intake_form"})
# The kinds whose steps name a connection (a callout, mcp or ai step) or a child
# orchestration (a child-run step; a fulfillment's step templates too), and the kinds named.
_NAMING = frozenset({"orchestration", "fulfillment"})
_NAMED = frozenset({"connection", "orchestration"})
# What to do about an active definition that a change would break (``{name}``: its name).
# The kinds whose change may change how an orchestration's (or a fulfillment's step
# templates') steps are routed, and the kinds whose steps route work.
_ROUTED = frozenset({"orchestration", "fulfillment", "routing", "object"})
_ROUTERS = ("orchestration", "fulfillment")
DEPLOY_FIX = "deploy a version of {name} that fits, in the same set"
IMPORT_FIX = "import a version of it that fits, or deactivate it, in the same bundle"
DEACTIVATE_FIX = "deactivate {name} first, or deploy a version of it that does not need it"


class DefinitionRepo:
    def __init__(self, store: SqlStore, clock: Clock, ids: IdGenerator | None = None) -> None:
        self.store = store
        self.clock = clock
        self.ids: IdGenerator = ids or UlidIds()
        self._lock = threading.Lock()
        self._parsed: dict[tuple[str, str, int], Any] = {}
        self._plans: OrderedDict[tuple[str, int], OrchestrationDefinition] = OrderedDict()
        self._plan_steps = 0  # steps of the plans in _plans
        # The definitions generation the index was read at (None: read it again at the
        # next lookup); every write to the definitions raises it in its transaction.
        self._generation: int | None = None
        # The newest generation known to be committed here: the index's, or the one a
        # deploy or activation of this repo committed. A refresh stores what it read only
        # if it read it at a newer one (at this one, once the index was dropped): see
        # _refresh_txn. Never lowered (forget() too keeps it), but by a refresh that proves
        # the stored generation went back (a database restored or swapped under this process).
        self._seen = 0
        # Raised (under the lock) whenever _seen changes: a refresh in a transaction of its
        # own begun at the same count began after the generation _seen says was committed,
        # so reading a lower one there is proof it went back, not a race.
        self._seen_count = 0
        self._active: dict[tuple[str, str], int] = {}  # (kind, name) -> active version
        self._sources: dict[tuple[str, str, int], tuple[str, str]] = {}
        self._next_check = 0.0

    # ---- deploy -------------------------------------------------------------------------
    def deploy(
        self, paths: Sequence[str | Path], known_flows: Collection[str] | None, actor: str,
        texts: Mapping[str, str] | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
    ) -> list[DeployResult]:
        """Validate everything first; deploy all or nothing.

        ``texts`` (file name -> YAML) deploys definitions sent over the API instead of files.
        ``on_progress(phase, done, total)``: the loader's phases (``read``, ``validate``),
        then ``write`` as each definition is written (``baton deploy``'s progress bar).
        """
        from baton.definitions.loader import check_texts, load_definitions

        self.refresh(now=True)  # (checked against what another process deployed just now)
        if texts is not None:
            docs, issues = check_texts(texts, known_flows=known_flows,
                                       deployed_objects=self.object_types(),
                                       deployed_orchestrations=self.orchestration_names(),
                                       deployed_connections=self.connection_types(),
                                       deployed_routings=self.routing_names())
            if issues:
                raise DefinitionError(issues)
        else:
            docs = load_definitions(paths, known_flows=known_flows,
                                    deployed_objects=self.object_types(),
                                    deployed_orchestrations=self.orchestration_names(),
                                    deployed_connections=self.connection_types(),
                                    deployed_routings=self.routing_names(),
                                    on_progress=on_progress)
        broken = self._broken_definitions(docs)
        # The stored records judged first in a read transaction (no lock held: records
        # are written meanwhile), then under the lock only those written since.
        surveys = self._survey_records(docs)
        results = []
        now_dt = self.clock.now()
        now = iso(now_dt)
        with self.store.write() as tx:
            tx.lock_definitions_txn()  # (the definitions' writers: one at a time, see set_active)
            # The records are checked in the deploy's own transaction (those the survey
            # judged and that stand as it saw them, as it found them): on SQLite no record
            # write comes between the check and the commit.
            changes = self.object_changes_txn(tx, docs)
            broken += self.changes_break_txn(tx, changes, fills=True, surveys=surveys)
            # active definitions outside it calling a connection, or starting an
            # orchestration, that it changes (judged under the lock: see set_active)
            broken += self.dependents_issues_txn(tx, docs, (), fix=DEPLOY_FIX)
            # steps naming a routing rule not active after it, or routed by one reading
            # a field their record lacks (judged under the lock too)
            broken += self.routing_issues_txn(tx, docs, (), fix=DEPLOY_FIX)
            # steps giving their work to a person who can never do it
            broken += self.assignee_issues_txn(tx, docs)
            # SLAs counting the business time of a calendar not active after it
            broken += self.calendar_issues_txn(tx, docs)
            # rules naming a category their ai step's classifier (its latest version) lacks
            broken += definition_issues_txn(tx, docs, lock=True)
            if broken:
                raise DefinitionError(broken)
            if any(isinstance(d.definition, RoutingDefinition) and d.definition.for_queue
                   for d in docs):
                self._check_bound_queues_txn(tx, docs)
            for done, doc in enumerate(docs, 1):
                if on_progress is not None:
                    on_progress("write", done, len(docs))
                digest = checksum(doc.source)
                latest = tx.latest_definition_txn(doc.kind, doc.name)
                if latest is not None and latest.checksum == digest:
                    results.append(DeployResult(doc.kind, doc.name, latest.version, False))
                    if (doc.kind == "orchestration" and latest.active
                            and tx.get_schedule_txn(doc.name) is None):
                        # deployed before schedules were armed (migration 11): arm it now
                        schedules.arm_txn(tx, doc.definition, doc.name,  # type: ignore[arg-type]
                                          latest.version, now_dt, self.ids)
                    continue
                version = (latest.version if latest else 0) + 1
                tx.insert_definition_txn({
                    "kind": doc.kind, "name": doc.name, "version": version, "checksum": digest,
                    "source": doc.source, "file": doc.file, "active": True, "deployed_at": now,
                    "deployed_by": actor,
                })
                tx.set_active_txn(doc.kind, doc.name, version)
                if doc.kind == "orchestration":
                    schedules.arm_txn(tx, doc.definition, doc.name,  # type: ignore[arg-type]
                                      version, now_dt, self.ids)
                rewritten = self.rewrite_records_txn(
                    tx, [c for c in changes if c[0] is doc], actor, now,
                    f"deploy of {doc.name} v{version}") if doc.kind == "object" else {}
                results.append(DeployResult(doc.kind, doc.name, version, True,
                                            MappingProxyType(rewritten)))
            generation = tx.definitions_generation_txn()  # (what this commits)
        self.invalidate(generation)  # (committed: this Engine's next lookup reads it)
        return results

    def broken_dependents(self, docs: Sequence[LoadedDefinition]) -> list[Issue]:
        """What a changed object type among ``docs`` would break: the definitions that read
        it (:meth:`_broken_definitions`) and the records stored under it
        (:meth:`broken_records_txn`). What ``baton validate`` and the API's validate add
        to the files' own problems; a deploy checks the same."""
        issues = self._broken_definitions(docs) + definition_issues(self.store, docs)
        if any(isinstance(d.definition, ObjectTypeDefinition) for d in docs):
            with self.store.read() as tx:
                issues += self.broken_records_txn(tx, docs, fills=True)
        if any(d.kind in _NAMED for d in docs):
            with self.store.read() as tx:
                issues += self.dependents_issues_txn(tx, docs, (), fix=DEPLOY_FIX)
        if any(d.kind in _ROUTED for d in docs):
            with self.store.read() as tx:
                issues += self.routing_issues_txn(tx, docs, (), fix=DEPLOY_FIX)
                issues += self.assignee_issues_txn(tx, docs)
                issues += self.calendar_issues_txn(tx, docs)
        return issues

    def broken_records_txn(self, tx: Transaction, docs: Sequence[LoadedDefinition], *,
                           fills: bool = False) -> list[Issue]:
        """The records a changed object type among ``docs`` would break: for each field it
        changes (retyped, a choice removed, a length cut, made required, a ``ref`` to
        another type …), the stored records whose value the new version refuses, by the
        rules of a record write (:mod:`baton.records.changes`): a change some record does
        not satisfy is refused, naming the records and what to do. Compared with the
        version active as ``tx`` sees it; the records are read a page at a time.

        ``fills``: the caller then gives the records what the new version says they
        become (:meth:`rewrite_records_txn`: a deploy, an activation), so a record that
        leaves a field now required empty is not broken when the field has a default.
        Without it (a caller that writes no record) such a record is broken."""
        return self.changes_break_txn(tx, self.object_changes_txn(tx, docs), fills=fills)

    def object_changes_txn(self, tx: Transaction, docs: Sequence[LoadedDefinition]
                            ) -> list[tuple[LoadedDefinition, ObjectTypeDefinition, set[str]]]:
        """Each object type among ``docs`` that differs from its version active as ``tx``
        sees it: (the doc, the active version, the names of its new fields that records
        may hold a value under: see :func:`baton.records.changes.changed_fields`)."""
        new = {d.name: d for d in docs if isinstance(d.definition, ObjectTypeDefinition)}
        if not new:
            return []
        out = []
        rows = [r for r in tx.list_definitions_txn("object") if r.name in new]
        for name, old in self._active_objects_txn(rows).items():
            doc = new[name]
            defn = doc.definition
            if not isinstance(defn, ObjectTypeDefinition) or old == defn:
                continue
            # A new field's name that no version ever had a field of is held by no record
            # (its records need not be read for it): a name no version's text holds at all.
            removed = {f.name for f in defn.fields if old.field(f.name) is None
                       and any(f.name in r.source for r in rows if r.name == name)}
            out.append((doc, old, removed))
        return out

    def changes_break_txn(
            self, tx: Transaction,
            changes: Sequence[tuple[LoadedDefinition, ObjectTypeDefinition, set[str]]], *,
            fills: bool, surveys: Mapping[str, Survey] | None = None) -> list[Issue]:
        """The records ``changes`` would break (:meth:`broken_records_txn`). ``surveys``:
        object type -> what :meth:`_survey_records` found for its change in an earlier
        transaction: only the records written since are judged again (a survey of
        another change, the active version having moved since, is not used)."""
        from baton.records.changes import broken_records_txn

        issues: list[Issue] = []
        for doc, old, removed in changes:
            defn = doc.definition
            assert isinstance(defn, ObjectTypeDefinition)
            for b in broken_records_txn(tx, old, defn, removed=removed, fills=fills,
                                        survey=(surveys or {}).get(defn.name)):
                issues.append(Issue(doc.file, _path_line(doc.source, doc.line, b.path),
                                    b.path, b.message()))
        return issues

    def _survey_records(self, docs: Sequence[LoadedDefinition]) -> dict[str, Survey]:
        """Object type -> its stored records judged for its change among ``docs``, in a
        read transaction of its own (:func:`baton.records.changes.survey_records_txn`):
        what a deploy or an activation does before its write transaction, so that under
        the write lock it judges only the records written since. A deploy that judged
        the records under the lock alone held it ~1 s per 30,000 records, every record
        write, run step and create in every process waiting (SQLite)."""
        from baton.records.changes import survey_records_txn

        if not any(isinstance(d.definition, ObjectTypeDefinition) for d in docs):
            return {}
        out = {}
        with self.store.read() as tx:
            for doc, old, removed in self.object_changes_txn(tx, docs):
                defn = doc.definition
                assert isinstance(defn, ObjectTypeDefinition)
                survey = survey_records_txn(tx, old, defn, removed=removed, fills=True)
                if survey is not None:
                    out[defn.name] = survey
        return out

    def rewrite_records_txn(
            self, tx: Transaction,
            changes: Sequence[tuple[LoadedDefinition, ObjectTypeDefinition, set[str]]],
            actor: str, now: str, because: str) -> dict[str, int]:
        """What the new versions in ``changes`` make of the stored records, written
        (:func:`baton.records.changes.rewrite_records_txn`): field -> records changed.
        After :meth:`changes_break_txn` with ``fills`` found none broken, in its
        transaction."""
        from baton.records.changes import rewrite_records_txn

        counts: dict[str, int] = {}
        for doc, old, removed in changes:
            defn = doc.definition
            assert isinstance(defn, ObjectTypeDefinition)
            done = rewrite_records_txn(tx, old, defn, actor=actor, now=now, because=because,
                                       removed=removed)
            if done:
                log.info("%s changed stored %s records: %s", because, defn.name, ", ".join(
                    f"{name} of {n:,}" for name, n in done.items()))
            counts.update(done)
        return counts

    def _active_objects_txn(self, rows: Sequence[DefinitionRow]
                            ) -> dict[str, ObjectTypeDefinition]:
        """The active version of each object type among ``rows`` (versions as a
        transaction read them: not the index of active versions, which may be a second
        old), parsed."""
        out = {}
        for row in rows:
            if row.active:
                self._sources.setdefault(("object", row.name, row.version), (row.source, row.file))
                out[row.name] = self._parse("object", row.name, row.version)
        return out

    def _broken_definitions(self, docs: Sequence[LoadedDefinition]) -> list[Issue]:
        """What a changed object type among ``docs`` would break in the active definitions
        deployed without it (an orchestration's trigger or expressions reading a field the
        new version drops or retypes; a mailbox or form filling it): each such definition
        would no longer load, so its runs could not start (every API call that lists the
        orchestrations would fail). Only problems the change makes are reported: each
        dependent is checked with the object types deployed now and with the new ones."""
        current = self.object_types()
        if not _changed_objects(docs, current):
            return []
        with self.store.read() as tx:
            every, in_use = _readers_txn(tx)
        return _broken_by(docs, current, every, in_use)

    def broken_definitions_txn(
            self, tx: Transaction, docs: Sequence[LoadedDefinition],
            current: Mapping[str, ObjectTypeDefinition], *,
            leaving: Collection[tuple[str, str]] = (),
            fix: str = "deploy a version of it that fits, in the same set") -> list[Issue]:
        """:meth:`_broken_definitions` judged on a state given whole, the definitions read
        in ``tx``: ``current``, the object types active in it; ``docs``, what will be
        active instead (their versions of those definitions, new or not); ``leaving``,
        (kind, name) of definitions deactivated with it (no dependents then, but for the
        runs in progress on their versions). ``fix``: what to do about a dependent that
        is active and stays so."""
        if not _changed_objects(docs, current):
            return []
        every, in_use = _readers_txn(tx)
        return _broken_by(docs, current, every, in_use, leaving, fix)

    def activations_issues_txn(
            self, tx: Transaction, docs: Sequence[LoadedDefinition],
            leaving: Collection[tuple[str, str]], *, definitions: bool = True,
            said: Callable[[LoadedDefinition], str] | None = None) -> list[Issue]:
        """What makes ``docs`` active together (each's version, new or stored; those
        already active included) and ``leaving`` inactive (kind, name) wrong, judged on
        the state after it as ``tx`` sees the others, by the checks :meth:`set_active`
        makes of one activation and a deploy of several: a version that does not fit the
        object types active after it; an active definition (or a version runs in progress
        use) that a changed object type would break; a routing rule bound to a queue
        another rule active after it is bound to; a rule naming a category its ai
        classify step cannot answer; a step naming a connection, or a child orchestration
        (and input it takes), that is not active after it (as a deploy refuses one naming
        what is not deployed and active); an active definition outside them calling a
        connection, or starting an orchestration, that they deactivate or change so that
        it no longer fits (:meth:`dependents_issues_txn`); a step naming a routing rule not
        active after it, or routed by one reading a field its record lacks
        (:meth:`routing_issues_txn`). The records are not among them (the caller writes
        them: :meth:`object_changes_txn`). ``definitions``: False when the definitions
        are known unchanged since these were judged on them (only the classifiers' labels,
        which are not definitions, are looked at again). Issues located in ``docs``'
        files; ``said``: how a doc is named in a message (its kind and name)."""
        from baton.definitions.loader import check_texts

        issues: list[Issue] = []
        if definitions:
            before = self._active_objects_txn(tx.list_definitions_txn("object"))
            after = {**before, **{d.name: d.definition for d in docs
                                  if isinstance(d.definition, ObjectTypeDefinition)}}
            readers = {d.file: d for d in docs if d.kind in _READ_FIELDS}
            if readers:
                texts = {f: d.source for f, d in readers.items()}
                _, found = check_texts(texts, deployed_objects=after)

                def what(i: Issue) -> str:
                    d = readers.get(i.file)
                    return i.file if d is None else said(d) if said else f"{d.kind} '{d.name}'"

                for i in found:
                    issues.append(replace(i, message=f"{i.message} ({what(i)} does not fit "
                                          "the object types active after the import)"))
                # What their steps name, as a deploy checks it (a connection a callout, an
                # mcp or ai step calls; an orchestration a child-run step starts, and the
                # input it takes), judged on what is active after it: refused, as a deploy
                # naming what is not deployed and active is.
                _, named = check_texts(texts, deployed_objects=after,
                                       deployed_orchestrations=self._targets_after_txn(
                                           tx, docs, leaving),
                                       deployed_connections=self._connections_after_txn(
                                           tx, docs, leaving))
                seen = {(i.file, i.line, i.path, i.message) for i in found}
                for i in named:
                    if (i.file, i.line, i.path, i.message) not in seen:
                        issues.append(replace(i, message=f"{i.message} ({what(i)}, judged on "
                                              "the connections and orchestrations active "
                                              "after the import)"))
            issues += self.broken_definitions_txn(
                tx, docs, before, leaving=leaving,
                fix="import a version of it that fits, in the same bundle")
            issues += self.bound_queue_issues_txn(
                tx, [d for d in docs if d.kind == "routing"],
                leaving={name for kind, name in leaving if kind == "routing"}, lock=False)
            issues += self.dependents_issues_txn(tx, docs, leaving, fix=IMPORT_FIX)
            issues += self.routing_issues_txn(tx, docs, leaving, fix=IMPORT_FIX)
            issues += self.calendar_issues_txn(tx, docs, leaving)
        # (lock: the caller's, if any; training takes it before it stores a version)
        issues += definition_issues_txn(tx, docs)
        return issues

    def _connections_after_txn(self, tx: Transaction, docs: Sequence[LoadedDefinition],
                               leaving: Collection[tuple[str, str]]) -> dict[str, str]:
        """Each connection active after ``docs`` are made active and ``leaving``
        deactivated (the others as ``tx`` sees them): its name -> its type."""
        out: dict[str, str] = {}
        for row in tx.list_definitions_txn("connection"):
            if row.active and ("connection", row.name) not in leaving:
                self._sources.setdefault(("connection", row.name, row.version),
                                         (row.source, row.file))
                out[row.name] = self._parse("connection", row.name, row.version).type
        for d in docs:
            if isinstance(d.definition, ConnectionDefinition):
                out[d.name] = d.definition.type
        return out

    def _targets_after_txn(self, tx: Transaction, docs: Sequence[LoadedDefinition],
                           leaving: Collection[tuple[str, str]]) -> dict[str, ChildTarget]:
        """Each orchestration active after ``docs`` are made active and ``leaving``
        deactivated, as a child-run step that starts it sees it (those among ``docs``:
        the loader reads them from their texts)."""
        mine = {d.name for d in docs if d.kind == "orchestration"}
        out: dict[str, ChildTarget] = {}
        for row in tx.list_definitions_txn("orchestration"):
            if (not row.active or row.name in mine
                    or ("orchestration", row.name) in leaving):
                continue
            self._sources.setdefault(("orchestration", row.name, row.version),
                                     (row.source, row.file))
            try:
                out[row.name] = _target(self._parse("orchestration", row.name, row.version))
            except Exception:  # noqa: BLE001 - not known: its input is not checked
                out[row.name] = ChildTarget()
        return out

    def dependents_issues_txn(
            self, tx: Transaction, docs: Sequence[LoadedDefinition],
            leaving: Collection[tuple[str, str]], *, fix: str) -> list[Issue]:
        """What making ``docs`` active (their versions, new or stored) and ``leaving``
        inactive ((kind, name)) would break in the definitions active in ``tx`` outside
        them: an orchestration or a fulfillment whose callout, mcp or ai step calls a
        connection this deactivates or gives another type, or whose child-run step starts
        an orchestration this deactivates or changes as a child-run step sees it (its
        trigger, its input, its record) would fail at run time. Each such dependent (one
        whose text names what changes) is checked as a deploy of its text is, with the
        connections and orchestrations active now and with those active after: only the
        problems the change makes are reported, located in the dependent's file, naming
        it, its step, what it uses and what this does to it; ``fix`` says what to do
        (``{name}``: the dependent's name). Nothing is read when ``docs`` and ``leaving``
        hold no connection nor orchestration."""
        from baton.definitions.loader import check_texts

        touched = {(d.kind, d.name): d for d in docs if d.kind in _NAMED}
        gone = {k for k in leaving if k[0] in _NAMED}
        if not touched and not gone:
            return []
        rows = {kind: self._active_rows_txn(tx, kind) for kind in _NAMED}
        connections = {name: self._parse("connection", name, r.version).type
                       for name, r in rows["connection"].items()}
        # The orchestrations this leaves alone are not parsed: unknown (nothing about them
        # is checked) both before and after, so they make no difference.
        targets: dict[str, ChildTarget] = {name: ChildTarget() for name in rows["orchestration"]}
        connections_after, targets_after = dict(connections), dict(targets)
        changes: dict[tuple[str, str], str] = {}  # (kind, name) -> what this does to it
        for key in sorted(set(touched) | gone):
            kind, name = key
            row = rows[kind].get(name)
            doc = None if key in gone else touched.get(key)
            if row is None or (doc is not None and checksum(doc.source) == row.checksum):
                continue  # (new here, or its active version: nothing uses it otherwise)
            if kind == "connection":
                new = doc.definition.type if doc is not None and isinstance(
                    doc.definition, ConnectionDefinition) else None
                if new == connections[name]:
                    continue
                if new is None:
                    connections_after.pop(name)
                else:
                    connections_after[name] = new
                changes[key] = "deactivate" if new is None else f"make an {new} connection"
                continue
            if doc is None:
                targets_after.pop(name)
                changes[key] = "deactivate"
                continue
            try:
                old: ChildTarget | None = _target(self._parse(kind, name, row.version))
            except Exception:  # noqa: BLE001 - not known: what starts it was not checked
                old = None
            if old is not None and isinstance(doc.definition, OrchestrationDefinition) \
                    and _narrower(old, _target(doc.definition)):
                targets[name], targets_after[name] = old, _target(doc.definition)
                changes[key] = "change"
        if not changes:
            return []
        naming = {**{k: self._active_rows_txn(tx, k) for k in _NAMING - _NAMED},
                  **{k: rows[k] for k in _NAMING & _NAMED}}
        # (a text with no `connection: NAME` nor `orchestration: NAME` of what changes
        # names none of it: not checked; one that may spell it otherwise, an alias
        # `connection: *bank`, is read to know: :func:`_names_any`)
        named = _key_pattern(changes)
        dependents = [r for kind in sorted(naming) for r in naming[kind].values()
                      if (r.kind, r.name) not in touched and (r.kind, r.name) not in leaving
                      and _names_any(named, changes, r.source)]
        if not dependents:
            return []
        objects = self._active_objects_txn(tx.list_definitions_txn("object"))
        issues: list[Issue] = []
        for row in dependents:
            text = {row.file: row.source}
            _, after = check_texts(text, deployed_objects=objects,
                                   deployed_orchestrations=targets_after,
                                   deployed_connections=connections_after)
            if not after:
                continue
            _, before = check_texts(text, deployed_objects=objects,
                                    deployed_orchestrations=targets,
                                    deployed_connections=connections)
            # (a problem its stored text had before, in other words or not, is not this's)
            had = {(i.path, i.message.split(" (")[0]) for i in before}
            new_issues = [i for i in after
                          if (i.path, i.message.split(" (")[0]) not in had]
            if new_issues:
                issues += _dependent_issues(row, new_issues, changes, fix)
        return issues

    def routing_issues_txn(
            self, tx: Transaction, docs: Sequence[LoadedDefinition],
            leaving: Collection[tuple[str, str]], *, fix: str) -> list[Issue]:
        """What making ``docs`` active (their versions, new or stored) and ``leaving``
        inactive ((kind, name)) would leave wrong in how the orchestrations, and the
        fulfillments' step templates (and their rollbacks), active after it route their
        work, judged on the state after it as ``tx`` sees the others: a step
        whose ``assign: {routing: NAME}`` names a rule not active after it (the step would
        fail at start), and a rule a step routes by (the one it names, or the one bound to
        the queue its ``assign: {queue: NAME}`` names: ``for_queue``) whose skill
        expressions read a field of the record that the orchestration's object type lacks,
        or read the record of runs that have none (each item of that step would fall out
        at start). What cannot be judged before a run is not (a record used whole, a field
        a ``has()`` guards, what is read of a field further, an assignee an expression
        gives: :func:`baton.definitions.routing.record_fields_read`).

        An orchestration (a fulfillment) among ``docs`` (a text other than its active
        version's) is judged whole, as a deploy of it is, its problems located in its
        file. One outside them only for what the change makes (a problem it had before is
        not this's), located in the changed rule's file, else the changed object type's,
        else (a rule deactivated) its own, naming it, its step and what it uses; ``fix``
        says what to do about it (``{name}``: its name). Nothing is read when ``docs`` and
        ``leaving`` hold no orchestration, fulfillment, routing rule nor object type."""
        gone = {name for kind, name in leaving if kind == "routing"}
        if not gone and not any(d.kind in _ROUTED for d in docs):
            return []
        rule_rows = self._active_rows_txn(tx, "routing")
        router_rows = {kind: self._active_rows_txn(tx, kind) for kind in _ROUTERS}
        objects = self._active_objects_txn(tx.list_definitions_txn("object"))

        def changed(d: LoadedDefinition, rows: Mapping[str, DefinitionRow]) -> bool:
            return d.name not in rows or rows[d.name].checksum != checksum(d.source)

        new_orchs = [d for d in docs
                     if d.kind in router_rows and changed(d, router_rows[d.kind])]
        new_rules = {d.name: d for d in docs if isinstance(d.definition, RoutingDefinition)
                     and changed(d, rule_rows)}
        new_objects = {d.name: d for d in docs if isinstance(d.definition, ObjectTypeDefinition)
                       and objects.get(d.name) != d.definition}
        if not (new_orchs or new_rules or new_objects or gone):
            return []
        rules: dict[str, RoutingDefinition] = {
            name: self._parse("routing", name, row.version) for name, row in rule_rows.items()}
        rules_after = {**{n: r for n, r in rules.items() if n not in gone},
                       **{d.name: d.definition for d in docs
                          if isinstance(d.definition, RoutingDefinition)}}
        bound, bound_after = _bound(rules), _bound(rules_after)
        objects_after = {**objects, **{d.name: d.definition for d in docs
                                       if isinstance(d.definition, ObjectTypeDefinition)}}
        # The orchestrations to judge: those docs change, whole; the active ones outside
        # them whose text names what the change can break (below), for that.
        routers = [_Router(d.kind, d.name, None, d.file, d.source, d.line, True)
                   for d in new_orchs if may_hold(ASSIGNS, ASSIGN_WORDS, d.source)]
        affected = _affected({d.name: d.definition for d in new_rules.values()
                           if isinstance(d.definition, RoutingDefinition)},
                          {d.name: d.definition for d in new_objects.values()
                           if isinstance(d.definition, ObjectTypeDefinition)},
                             rules, rules_after, objects, gone)
        if affected:
            # (a text that may spell them otherwise than plainly, an alias `routing: *r`,
            # is judged too: its data says what it routes by)
            named, words = _key_pattern(affected), {name for _, name in affected}
            mine = {(d.kind, d.name) for d in new_orchs} | {
                (k, n) for k, n in leaving if k in _ROUTERS}
            routers += [_Router(kind, name, row.version, row.file, row.source, None, False)
                        for kind, rows in router_rows.items()
                        for name, row in sorted(rows.items())
                        if (kind, name) not in mine and may_hold(named, words, row.source)
                        and may_hold(ASSIGNS, ASSIGN_WORDS, row.source)]
        issues: list[Issue] = []
        for o in routers:
            if o.data is None:
                continue  # (a text that does not load: its own checks say so)
            otype = _record_object(o.data)
            if otype is not None and otype not in objects_after:
                continue  # (an object type not deployed: said by its own checks)
            fields_after = _fields(objects_after, otype)
            for path, kind, used in o.assignments():
                if kind == "user":
                    continue  # (:meth:`assignee_issues_txn`)
                rule = (rules_after if kind == "routing" else bound_after).get(used)
                before = (rules if kind == "routing" else bound).get(used)
                if rule is None:
                    if kind == "queue":
                        continue  # (a queue without a rule of its own: assigned as it is)
                    if o.new:
                        issues.append(o.issue(path, unknown_rule(path, used, rules_after)))
                    elif used in gone and before is not None:
                        issues.append(o.issue(path, (
                            f"{o.who(path)} {routes(path, kind, used)}, which this would "
                            f"deactivate (unknown routing rule '{used}'): "
                            f"{fix.format(name=o.name)}")))
                    continue
                bad = misreads(rule, fields_after)
                if bad and not o.new:
                    had = {(before.name, f) for _, f in misreads(
                        before, _fields(objects, otype))} if before is not None and (
                        otype is None or otype in objects) else set()
                    bad = [(p, f) for p, f in bad if (rule.name, f) not in had]
                for rpath, name in bad:
                    issues.append(self._misread_issue(
                        o, path, kind, used, rule, rpath, name, otype, fix,
                        new_rules.get(rule.name), new_objects.get(otype or ""), rule_rows))
        return issues

    def assignee_issues_txn(self, tx: Transaction, docs: Sequence[LoadedDefinition]
                            ) -> list[Issue]:
        """The orchestrations among ``docs`` (a fulfillment's step templates and their
        rollbacks), those a text other than their active version's, whose step gives its
        work to a person who can never do it: ``assign: {user: NAME}``, or an SLA action's
        ``reassign: user:NAME``, naming someone the directory (as ``tx`` sees it) has who
        is deactivated, or whom no role gives the ``work`` permission (a designer): the
        item would wait in their Work Guide for ever. Located in the doc's file, naming
        the step and what to do. A name the directory does not have is not judged (the
        person may be added after the deploy, and the item then waits for them; a
        reassignment to them is checked then), nor an ``=expression``."""
        from baton.auth.roles import GRANTS, ROLES, Permission, permissions

        rows = {kind: self._active_rows_txn(tx, kind) for kind in _ROUTERS
                if any(d.kind == kind for d in docs)}
        issues: list[Issue] = []
        for d in docs:
            row = rows.get(d.kind, {}).get(d.name)
            if d.kind not in rows or (row is not None and row.checksum == checksum(d.source)) \
                    or ("user" not in d.source and "\\" not in d.source):
                continue  # (no `user` key, nor an escape that could spell one: none named)
            o = _Router(d.kind, d.name, None, d.file, d.source, d.line, True)
            for path, kind, name in o.assignments():
                person = tx.user_row_txn(name) if kind == "user" else None
                if person is None:
                    continue
                roles = frozenset(person["roles"] or ())
                works = Permission.WORK in permissions(roles)
                if works and person["active"]:
                    continue
                step, action = step_at(o.data, path), sla_action(path)
                gives = (f"step '{step}' assigns its work to" if action is None else
                         f"step '{step}' reassigns its work "
                         f"{'when in jeopardy' if action == 'on_jeopardy' else 'when overdue'} "
                         f"(sla.{action}) to")
                other = "assign the step" if action is None else "reassign it"
                if not works:
                    had = ", ".join(sorted(roles)) or "no role"
                    also = ", and is deactivated" if not person["active"] else ""
                    can = ", ".join(r for r in ROLES if Permission.WORK in GRANTS[r])
                    said = (f"{gives} user '{name}' ({had}), who may not work items{also}: "
                            "the item would be in their Work Guide, which they cannot open, "
                            "and never done; give them a role with the 'work' permission "
                            f"({can}: `baton users update {name} --role agent`, with their "
                            f"other roles), or {other} to someone else")
                else:
                    said = (f"{gives} user '{name}', who is deactivated and cannot sign in: "
                            "the item would never be done; reactivate them (`baton users "
                            f"update {name} --active`), or {other} to someone else")
                issues.append(o.issue(path, said))
        return issues

    def calendar_issues_txn(self, tx: Transaction, docs: Sequence[LoadedDefinition],
                            leaving: Collection[tuple[str, str]] = ()) -> list[Issue]:
        """The SLAs of the orchestrations among ``docs`` (a fulfillment's step templates
        and defaults), those a text other than their active version's, naming a calendar
        that is neither active after the change (as ``tx`` sees the others; ``leaving``
        deactivated) nor among ``docs``: its SLAs would count wall-clock time, saying so
        only in the audit log (``sla_calendar_missing``), a misspelt name unnoticed.
        Located in the doc's file, as a deploy refuses a step naming a connection that is
        not deployed."""
        wanted = [d for d in docs if d.kind in _ROUTERS and "calendar" in d.source]
        if not wanted:
            return []
        rows = {kind: self._active_rows_txn(tx, kind) for kind in _ROUTERS}
        known = {name for name in self._active_rows_txn(tx, "calendar")
                 if ("calendar", name) not in leaving} | {
            d.name for d in docs if d.kind == "calendar"}
        issues: list[Issue] = []
        for d in wanted:
            row = rows[d.kind].get(d.name)
            if row is not None and row.checksum == checksum(d.source):
                continue  # (its active version: judged when it was deployed)
            o = _Router(d.kind, d.name, None, d.file, d.source, d.line, True)
            for path, name in _sla_calendars(o.data, ""):
                if name in known:
                    continue
                hint = suggest(name, known) or (
                    f" (calendars deployed: {', '.join(sorted(known)) or 'none'})")
                issues.append(o.issue(path, (
                    f"unknown calendar '{name}'{hint}: a calendar deployed and active, or "
                    "deployed with it, is needed, or the SLA would count wall-clock time")))
        return issues

    def _misread_issue(self, o: _Router, path: str, kind: str, used: str,
                       rule: RoutingDefinition, rpath: str, name: str, otype: str | None,
                       fix: str, rule_doc: LoadedDefinition | None,
                       object_doc: LoadedDefinition | None,
                       rule_rows: Mapping[str, DefinitionRow]) -> Issue:
        """A rule's ``rpath`` reading ``record.NAME``, which the record of ``o``'s step at
        ``path`` lacks, located where the change is (see :meth:`routing_issues_txn`)."""
        lacks = (f"record.{name}, which is not a field of {otype}" if otype is not None
                 else f"record.{name}, and its runs have no record (its trigger names no "
                      "object)")
        if object_doc is not None and rule_doc is None and not o.new:
            lacks = f"record.{name}, which {otype} would no longer have"
        how = routes(path, kind, used, None if kind == "routing" else rule.name)
        guard = f"guard the read with has(record.{name}) in the rule"
        if o.new:
            if rule_doc is not None:
                at = f"{rule_doc.file}:{_path_line(rule_doc.source, rule_doc.line, rpath)}"
            else:
                row = rule_rows[rule.name]
                at = f"{row.file}, line {_path_line(row.source, None, rpath)} of v{row.version}"
            return o.issue(path, (
                f"step '{step_at(o.data, path)}' {how}, whose {rpath} ({at}) reads "
                f"{lacks}: {outcome(path)}; "
                + (f"give {otype} the field, or {guard}" if otype is not None else guard)))
        # (what to do about the orchestration, named: "it" would read as the rule)
        todo = fix.format(name=o.name).replace(" of it ", f" of {o.name} ")
        said = (f"{o.who(path)} ({o.where(path)}) {how}, whose {rpath} reads "
                f"{lacks}: {outcome(path, 'every item of that step')}; {guard}, or "
                f"{todo}")
        if rule_doc is not None:
            return Issue(rule_doc.file, _path_line(rule_doc.source, rule_doc.line, rpath),
                         rpath, said)
        if object_doc is not None:
            return Issue(object_doc.file, _key_line(object_doc.source, object_doc.line,
                                                    "fields"), "fields", said)
        return o.issue(path, said)

    def _active_rows_txn(self, tx: Transaction, kind: str) -> dict[str, DefinitionRow]:
        """The active version of each ``kind`` as ``tx`` sees them, by name (their texts
        known to :meth:`_parse`)."""
        out = {}
        for row in tx.list_definitions_txn(kind):
            if row.active:
                self._sources.setdefault((kind, row.name, row.version), (row.source, row.file))
                out[row.name] = row
        return out

    def _check_bound_queues_txn(self, tx: Transaction, docs: Sequence[Any]) -> None:
        """A queue has one routing rule at most (``for_queue: true``): a rule deployed now
        may not take a queue another active rule, not deployed now, is bound to. (The
        files deployed together are checked against each other by the loader.) Checked in
        the deploy's transaction, under the definitions lock: two deploys at once cannot
        both take one queue."""
        issues = self.bound_queue_issues_txn(tx, docs)
        if issues:
            raise DefinitionError(issues)

    def bound_queue_issues_txn(self, tx: Transaction, docs: Sequence[Any], *,
                               leaving: Collection[str] = (), lock: bool = True
                               ) -> list[Issue]:
        """The routing rules among ``docs`` bound to a queue another rule active in ``tx``
        (not among ``docs``, nor in ``leaving``: names of rules deactivated with them) is
        bound to. ``lock``: take the definitions lock first (a writer's transaction)."""
        mine = {d.name for d in docs if d.kind == "routing"} | set(leaving)
        taken = {rule.pool: name for name, rule in self._bound_rules_txn(tx, lock).items()
                 if name not in mine}
        issues = []
        for doc in docs:
            rule = doc.definition
            if doc.kind == "routing" and rule.for_queue and rule.pool in taken:
                issues.append(Issue(doc.file, _key_line(doc.source, doc.line, "for_queue"),
                                    "for_queue", f"queue '{rule.pool}' already has a routing "
                                    f"rule: '{taken[rule.pool]}' is deployed and active (one "
                                    "rule per queue: deactivate it, or deploy it without "
                                    "for_queue, first)"))
        return issues

    def _bound_rules_txn(self, tx: Transaction, lock: bool = True
                         ) -> dict[str, RoutingDefinition]:
        """The active routing rules bound to their queue (``for_queue``), by name, as
        ``tx`` sees them once it holds the definitions lock (so no other deploy or
        activation can change them before it commits; ``lock``: False when ``tx`` only
        reads, or holds it already)."""
        if lock:
            tx.lock_definitions_txn()
        out = {}
        for row in tx.list_definitions_txn("routing"):
            if row.active:
                if ("routing", row.name, row.version) not in self._sources:
                    self._sources[("routing", row.name, row.version)] = (row.source, row.file)
                rule: RoutingDefinition = self._parse("routing", row.name, row.version)
                if rule.for_queue:
                    out[row.name] = rule
        return out

    # ---- versions -----------------------------------------------------------------------
    def list_versions(self, kind: str | None = None, name: str | None = None) -> list[DefinitionRow]:
        with self.store.read() as tx:
            rows = tx.list_definitions_txn(kind)
        return [r for r in rows if name is None or r.name == name]

    def get_version(self, kind: str, name: str, version: int | None = None) -> DefinitionRow:
        """One deployed version (the latest when ``version`` is None)."""
        with self.store.read() as tx:
            row = tx.get_definition_txn(kind, name, version)
        if row is None:
            what = f"{name} v{version}" if version is not None else name
            raise NotFound(kind, what, "see `baton definitions list` or GET /api/definitions")
        return row

    def diff(self, kind: str, name: str, old: int, new: int) -> str:
        """A unified diff of two versions' YAML."""
        a, b = self.get_version(kind, name, old), self.get_version(kind, name, new)
        return "".join(difflib.unified_diff(
            a.source.splitlines(keepends=True), b.source.splitlines(keepends=True),
            fromfile=f"{name} v{old}", tofile=f"{name} v{new}"))

    def set_active(self, kind: str, name: str, version: int | None, actor: str) -> DefinitionRow | None:
        """Make ``version`` the active one (new runs and triggers use it), or with
        ``version=None`` deactivate the definition: no new runs start, running ones go on.
        A version that does not fit the object types deployed now (or, for an object type,
        that the active definitions reading it would not fit), or whose rules name a
        category its ai classify step cannot answer (its classifier's latest version may
        have dropped the label since: :func:`baton.ai.rules.activation_issues_txn`), is
        refused, as a deploy is. So is a connection or an orchestration activated, or
        deactivated, under an active definition whose steps call or start it and would no
        longer fit it (:meth:`dependents_issues_txn`: deactivate that one first, or deploy
        a version of it that fits), and a version of an orchestration or a fulfillment
        naming a connection or a child orchestration not active now; and, as to routing
        (:meth:`routing_issues_txn`), a routing rule deactivated under an active step that
        names it, or a version of an orchestration, a rule or an object type after which a
        step names a rule not active or is routed by one reading a field its record lacks."""
        if version is not None and (kind == "object" or kind in _READ_FIELDS):
            self._check_activation(kind, name, version)
        # (its records judged first without the lock: see deploy)
        surveys = self._survey_activation(name, version) \
            if version is not None and kind == "object" else {}
        with self.store.write() as tx:
            # The definitions' writers, one at a time, each taking this lock first: each
            # raises the definitions generation (its row locked until it commits), and an
            # activation of an object type writes its records before, a deploy after (on
            # PostgreSQL two of them, taking the two in opposite orders, would deadlock).
            tx.lock_definitions_txn()
            if tx.latest_definition_txn(kind, name) is None:
                raise NotFound(kind, name)
            if version is not None:
                row = tx.get_definition_txn(kind, name, version)
                if row is None:
                    raise NotFound(kind, f"{name} v{version}")
                if kind == "routing":
                    self._check_activated_rule_txn(tx, row)
                if kind in _ROUTED:
                    self._check_activated_routing_txn(tx, row)
                if kind == "object":
                    self._check_activated_records_txn(tx, row, actor, surveys)
                # rules naming a category the classifier's latest version lacks (checked
                # under the lock, which training takes before it stores a version)
                if issues := activation_issues_txn(tx, row):
                    raise DefinitionError(issues)
                self._check_activated_names_txn(tx, row)
                tx.set_active_txn(kind, name, version)
            else:
                if kind == "object":
                    raise TransitionConflict(
                        f"object type {name!r} cannot be deactivated: records of it exist or may; "
                        "activate another version instead")
                # the active definitions calling or starting it (under the lock: no deploy
                # or activation of one of them comes between this check and the commit)
                if issues := self.dependents_issues_txn(
                        tx, (), [(kind, name)], fix=DEACTIVATE_FIX) \
                        + self.routing_issues_txn(tx, (), [(kind, name)], fix=DEACTIVATE_FIX):
                    raise DefinitionError(issues)
                tx.set_active_txn(kind, name, -1)
            if kind == "orchestration":
                defn = self._parse(kind, name, version) if version is not None else None
                schedules.arm_txn(tx, defn, name, version, self.clock.now(), self.ids)
            tx.append_events_txn([{
                "at": iso(self.clock.now()), "type": "definition_activated" if version is not None
                else "definition_deactivated", "actor": actor, "record_id": None, "run_id": None,
                "data": {"kind": kind, "name": name, "version": version}}])
            generation = tx.definitions_generation_txn()  # (what this commits)
        self.invalidate(generation)
        return self.get_version(kind, name, version) if version is not None else None

    def _check_activation(self, kind: str, name: str, version: int) -> None:
        from baton.definitions.loader import check_texts

        with self.store.read() as tx:
            row = tx.get_definition_txn(kind, name, version)
        if row is None:
            return  # (said in the transaction below)
        current = self.object_types()
        docs, issues = check_texts({row.file: row.source}, deployed_objects=current)
        if kind == "object":  # (its records are checked in the activation's transaction)
            issues = issues or self._broken_definitions(docs)
        else:
            issues = [replace(i, message=f"{i.message} ({kind} '{name}' v{version} does not "
                                         "fit the object types deployed now)") for i in issues]
        if issues:
            raise DefinitionError(issues)

    def _survey_activation(self, name: str, version: int) -> dict[str, Survey]:
        """:meth:`_survey_records` for activating ``version`` of object type ``name``."""
        with self.store.read() as tx:
            row = tx.get_definition_txn("object", name, version)
        if row is None:
            return {}  # (said in the activation's transaction)
        return self._survey_records([self._object_doc(row)])

    def _object_doc(self, row: DefinitionRow) -> LoadedDefinition:
        """A stored version of an object type as a deploy's doc (located in the version's
        text, as `baton definitions show` prints it)."""
        self._sources.setdefault(("object", row.name, row.version), (row.source, row.file))
        defn = self._parse("object", row.name, row.version)
        return LoadedDefinition("object", row.name, defn, row.source, row.file,
                                _path_line(row.source, None, ""))

    def _check_activated_records_txn(self, tx: Transaction, row: DefinitionRow,
                                     actor: str,
                                     surveys: Mapping[str, Survey] | None = None) -> None:
        """Activating another version of an object type: the records stored under it must
        fit it, as for a deploy (:meth:`broken_records_txn`), and are given what it says
        they become, as for a deploy (:meth:`rewrite_records_txn`). ``surveys``: see
        :meth:`changes_break_txn`."""
        doc = self._object_doc(row)
        changes = self.object_changes_txn(tx, [doc])
        issues = [replace(i, message=f"{i.message} (activating {row.name} v{row.version})")
                  for i in self.changes_break_txn(tx, changes, fills=True, surveys=surveys)]
        if issues:
            raise DefinitionError(issues)
        self.rewrite_records_txn(tx, changes, actor, iso(self.clock.now()),
                                  f"activation of {row.name} v{row.version}")

    def _check_activated_names_txn(self, tx: Transaction, row: DefinitionRow) -> None:
        """Activating a version of a connection or an orchestration: the active definitions
        calling or starting it must fit it (:meth:`dependents_issues_txn`); of an
        orchestration or a fulfillment: the connections and child orchestrations its steps
        name must be active and fit it, as a deploy of its text requires. Under the
        definitions lock (none of them can change before this commits)."""
        from baton.definitions.loader import check_texts

        kind, name, version = row.kind, row.name, row.version
        if kind not in _NAMED and kind not in _NAMING:
            return
        self._sources.setdefault((kind, name, version), (row.source, row.file))
        doc = LoadedDefinition(kind, name, self._parse(kind, name, version), row.source,
                               row.file, _path_line(row.source, None, ""))
        issues = self.dependents_issues_txn(
            tx, [doc], (), fix="deploy a version of {name} that fits, or deactivate it, first")
        if kind in _NAMING:
            text = {row.file: row.source}
            objects = self._active_objects_txn(tx.list_definitions_txn("object"))
            _, fit = check_texts(text, deployed_objects=objects)
            _, named = check_texts(text, deployed_objects=objects,
                                   deployed_orchestrations=self._targets_after_txn(tx, [doc], ()),
                                   deployed_connections=self._connections_after_txn(tx, [doc], ()))
            issues += [replace(i, message=f"{i.message} ({kind} '{name}' v{version} does not "
                                          "fit the connections and orchestrations active now)")
                       for i in named if i not in fit]
        if issues:
            raise DefinitionError(issues)

    def _check_activated_routing_txn(self, tx: Transaction, row: DefinitionRow) -> None:
        """Activating a version of an orchestration, a routing rule or an object type: how
        the active orchestrations route their work must still hold
        (:meth:`routing_issues_txn`: a step naming a rule not active, a rule reading a
        field the record lacks). Under the definitions lock."""
        kind, name, version = row.kind, row.name, row.version
        self._sources.setdefault((kind, name, version), (row.source, row.file))
        doc = LoadedDefinition(kind, name, self._parse(kind, name, version), row.source,
                               row.file, _path_line(row.source, None, ""))
        if issues := self.routing_issues_txn(
                tx, [doc], (), fix="deploy a version of {name} that fits, or deactivate it, "
                                   "first"):
            raise DefinitionError(issues)

    def _check_activated_rule_txn(self, tx: Transaction, row: DefinitionRow) -> None:
        """Activating a version of a rule bound to its queue: no other active rule may be
        bound to that queue (checked under the definitions lock, as deploys are)."""
        name, version = row.name, row.version
        self._sources.setdefault(("routing", name, version), (row.source, row.file))
        rule: RoutingDefinition = self._parse("routing", name, version)
        if not rule.for_queue:
            return
        for other, bound in self._bound_rules_txn(tx).items():
            if other != name and bound.pool == rule.pool:
                raise TransitionConflict(
                    f"routing rule {name!r} v{version} is bound to queue {rule.pool!r}, which "
                    f"active rule {other!r} is bound to already (one rule per queue: "
                    "deactivate it first)")

    def schedules(self) -> dict[str, dict[str, Any]]:
        """Each cron-started orchestration's schedule: ``cron``, ``timezone``, ``version``,
        ``next_at`` (None: deactivated), ``last_at`` and ``last_run_id``."""
        with self.store.read() as tx:
            return {r["orchestration"]: r for r in tx.list_schedules_txn()}

    # ---- lookups ------------------------------------------------------------------------
    def forget(self) -> None:
        """Drop every cached version: the next lookup reads the database (or the
        transaction it is given) again. (The newest generation seen is kept: a refresh
        that read before this still stores nothing older than what was seen.)"""
        with self._lock:
            self._generation = None
            self._parsed.clear()
            self._plans.clear()
            self._plan_steps = 0
            self._sources.clear()
            self._active = {}

    def invalidate(self, generation: int = 0) -> None:
        """The cached index is old: the next lookup reads it again. ``generation``: the
        definitions generation a write to the definitions (a deploy, an activation, an
        import) just committed, read in its transaction: no refresh that read before it
        (at an older generation) stores what it read (:meth:`refresh`)."""
        with self._lock:
            self._generation = None
            self._set_seen(max(self._seen, generation))

    def in_transaction(self, tx: Definitions) -> DefinitionRepo:
        """The definitions as ``tx`` sees them, its own writes included: the lookups of a
        transaction that wrote to the definitions (a bundle's import arms the schedules of
        the versions it activates). They never reach this repo's index, which every
        thread reads without a lock: its writes are not committed (other threads would
        use them before they are, or, rolled back, though they never were). A repo of its
        own, its index read from ``tx`` whenever the transaction's definitions generation
        moved: used in that transaction, then dropped."""
        return _InTransaction(self, tx)

    def warm(self) -> int:
        """Parse every active definition now (YAML, validation, expressions compiled), as
        the first job or request that needs each would: a process that serves from now on
        (``baton worker``, ``baton serve``) pays for it once at start, not in its first
        steps' latency. One that cannot be parsed is left for its first use to report (a
        worker must still start to run the others). Returns how many are parsed."""
        self.refresh()
        parsed = 0
        for (kind, name), version in sorted(self._active.items()):
            try:
                self._parse(kind, name, version)
            except Exception as exc:  # noqa: BLE001 - reported where it is used, not here
                log.warning("%s %s v%s could not be parsed at start (%s); the first step "
                            "that needs it will report it", kind, name, version, exc)
                continue
            parsed += 1
        return parsed

    def refresh(self, tx: Definitions | None = None, *, now: bool = False) -> None:
        """Reload the index of active versions if anything was deployed since (looked at
        most once every REFRESH_INTERVAL_S; ``now``: look now)."""
        # Another process may deploy at any time; looking at most once a second keeps that
        # visible without a query in every transaction of the hot path.
        at = time.monotonic()
        if not now and self._generation is not None and at < self._next_check:
            return
        if tx is None or self._refresh_txn(tx, at):
            # (a caller's transaction read a generation lower than the one seen: an older
            # snapshot, or the stored generation went back; a read of our own tells them apart)
            began = self._seen_count
            with self.store.read() as rtx:
                self._refresh_txn(rtx, at, began)

    def _refresh_txn(self, tx: Definitions, at: float, began: int | None = None) -> bool:
        """Read the index in ``tx`` and store it, unless the one cached is as new.

        The definitions generation (one row, read first) is raised by every write to the
        definitions, in its transaction: unchanged, the index is current; changed, the
        rows are read (as new as it, or newer). Of two reads the one at the higher
        generation is the newer: what was read is stored only if read at a generation
        above the newest seen here (at it, once the index was dropped), compared and set
        under the lock. So a refresh that overlapped another, or a deploy or activation
        of this repo, or ran in a caller's transaction whose snapshot is older than what
        was seen, never puts an older index back. A transaction that wrote to the
        definitions stores nothing (it may be rolled back; :meth:`in_transaction` reads
        its writes). Once a second at most, or after a deploy: the lookups in between pay
        for none of it.

        The generation may also go back: a database restored from a backup (or another
        one put in its place) under running processes. ``began``: the transaction is this
        repo's own, begun when ``_seen_count`` was that (None: a caller's, begun whenever).
        One begun after the newest generation seen here was committed, and that count has
        not moved since, cannot read an older one but from a generation that went back:
        what it read is stored, every parse dropped (a version number may name another text
        there), and said once. Returns True when a caller's transaction read a generation
        lower than the one seen (its snapshot may be older, or the generation went back:
        :meth:`refresh` then reads in a transaction of its own)."""
        self._next_check = at + REFRESH_INTERVAL_S
        if tx.definitions_changed:
            return False
        gen = tx.definitions_generation_txn()
        if gen == self._generation:
            return False
        rows = tx.list_definitions_txn()
        with self._lock:
            if gen > self._seen or (gen == self._seen and self._generation is None):
                self._keep(gen, rows)
                return False
            if gen == self._seen:
                return False  # (the index stored is at it: current)
            if began is None:
                return True  # (proves nothing: see refresh)
            if began != self._seen_count:
                return False  # (read while a newer generation was seen: it may be older)
            log.warning("the definitions generation went back from %s to %s (the database "
                        "was probably restored from a backup, or replaced): the active "
                        "definitions are read again from it", self._seen, gen)
            self._parsed.clear()
            self._plans.clear()
            self._plan_steps = 0
            self._sources.clear()
            self._active = {}
            self._set_seen(gen)
            self._keep(gen, rows)
        return False

    def _set_seen(self, gen: int) -> None:
        """``_seen`` = ``gen`` (under ``_lock``), counted when it moves."""
        if gen != self._seen:
            self._seen = gen
            self._seen_count += 1

    def _keep(self, gen: int, rows: Sequence[DefinitionRow]) -> None:
        """Store ``rows``, read at generation ``gen``, as the index (under ``_lock``)."""
        self._set_seen(max(self._seen, gen))
        active = {(r.kind, r.name): r.version for r in rows if r.active}
        if _linked(active) != _linked(self._active):
            # An orchestration holds the active object types and calendars it was
            # parsed with (its records' titles, its SLAs' hours): parse it again.
            self._parsed = {k: v for k, v in self._parsed.items()
                            if k[0] != "orchestration"}
            self._plans.clear()  # (built again from their stored graphs)
            self._plan_steps = 0
        self._active = active
        for r in rows:
            self._sources[(r.kind, r.name, r.version)] = (r.source, r.file)
        self._generation = gen

    def _parse(self, kind: str, name: str, version: int) -> Any:
        key = (kind, name, version)
        hit = self._parsed.get(key)
        if hit is not None:
            return hit
        if key not in self._sources:
            self.invalidate()
            self.refresh()
        if key not in self._sources:
            raise NotFound(kind, f"{name} v{version}")
        # An orchestration is parsed with the active object types, calendars and routing
        # rules of the index as it is now: kept only if the index is still that one (a
        # refresh that replaced it meanwhile dropped the parses made with the old one).
        index = self._active
        source, file = self._sources[key]
        if kind in _READ_FIELDS:
            objects = self.object_types()
        else:  # an object type's ref fields only need the names of the other types
            objects = {n: ObjectTypeDefinition(n, ()) for (k, n) in self._active if k == "object"}
        from baton.definitions.loader import load_stored  # YAML and validation: on first use

        docs, issues = load_stored(source, file, deployed_objects=objects)
        if issues:  # valid when deployed; a check added since refuses it: used, and said once
            log.warning("%s %s v%s, as deployed, no longer passes validation (deploy a "
                        "corrected version): %s", kind, name, version,
                        "; ".join(str(i) for i in issues[:5]))
        definition = docs[0].definition
        if isinstance(definition, OrchestrationDefinition):
            definition = replace(definition, calendars=MappingProxyType(self._calendars(definition)),
                                 routings=MappingProxyType(self._routings(definition)))
        with self._lock:
            if self._active is index:  # (else parsed again at its next use)
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

    def _routings(self, defn: OrchestrationDefinition) -> dict[str, RoutingDefinition]:
        """The active version of every routing rule the orchestration's steps name, in
        ``assign`` or an SLA action (those deployed; a step naming one that is not fails when
        it starts, an SLA action says so in the audit log)."""
        names: set[str] = set()
        for stage in defn.stages:  # (one pass: a plan's definition may have 10,000s of steps)
            for step in stage.steps:
                assign = step.assign
                if (assign is not None and assign.kind is AssigneeKind.ROUTING
                        and assign.rule is None):
                    names.add(assign.value)
                sla = step.options.get("sla")
                if sla:
                    for key in ("on_jeopardy", "on_overdue"):
                        action = sla.get(key)
                        if action and action.get("routing"):
                            names.add(str(action["routing"]))
        out = {}
        for name in sorted(names):
            version = self._active.get(("routing", name))
            if version is not None:
                out[name] = self._parse("routing", name, version)
        return {**out, **self._queue_routings()}

    def _queue_routings(self) -> dict[str, RoutingDefinition]:
        """Every queue's routing rule (``for_queue: true``), keyed ``queue:NAME`` (a rule
        name is an identifier, so the keys never meet a rule's name): an interactive step
        whose ``assign`` gives that queue is routed by it. Any orchestration may assign
        to any queue (an expression), so every bound rule is there; any change to the
        active rules parses the orchestrations again (``refresh``), so a rule bound later,
        changed or deactivated applies at the next step start. Should two active rules
        claim one queue (concurrent deploys; deploy refuses it otherwise), the first by
        name wins."""
        out: dict[str, RoutingDefinition] = {}
        for (kind, name), version in sorted(self._active.items()):
            if kind == "routing":
                rule: RoutingDefinition = self._parse(kind, name, version)
                if rule.for_queue:
                    out.setdefault(f"queue:{rule.pool}", rule)
        return out

    def routing_names(self) -> frozenset[str]:
        """The routing rules with an active version, by name (what a step's ``assign``
        or SLA action may name: :func:`baton.definitions.validate.validate_documents`)."""
        self.refresh()
        return frozenset(n for k, n in list(self._active) if k == "routing")

    def routing_rule(self, name: str) -> RoutingDefinition | None:
        """The active version of a routing rule, or None."""
        self.refresh()
        version = self._active.get(("routing", name))
        return None if version is None else self._parse("routing", name, version)

    def calendar(self, name: str) -> BusinessCalendar | None:
        """The active version of a calendar as business hours, or None when not deployed."""
        self.refresh()
        version = self._active.get(("calendar", name))
        if version is None:
            return None
        key = ("calendar-hours", name, version)
        hit = self._parsed.get(key)
        if hit is None:
            cal: CalendarDefinition = self._parse("calendar", name, version)
            hit = BusinessCalendar.from_spec(name, cal.spec())
            with self._lock:
                self._parsed[key] = hit
        return hit

    def orchestration_names(self) -> dict[str, ChildTarget]:
        """The orchestrations with an active version, as a child-run step that starts one
        sees it (its trigger and input)."""
        self.refresh()
        out = {}
        for (kind, name), version in list(self._active.items()):
            if kind == "orchestration":
                out[name] = _target(self._parse(kind, name, version))
        return out

    def active_orchestrations(self) -> list[OrchestrationDefinition]:
        """The active version of every orchestration, parsed (one that cannot be parsed is
        left out: its first use reports it)."""
        self.refresh()
        out = []
        for (kind, name), version in sorted(self._active.items()):
            if kind != "orchestration":
                continue
            try:
                defn = self._parse(kind, name, version)
            except Exception as exc:  # noqa: BLE001 - reported where it is used
                log.debug("orchestration %s v%s left out: %s", name, version, exc)
                continue
            if isinstance(defn, OrchestrationDefinition):
                out.append(defn)
        return out

    def mailboxes(self, tx: Definitions | None = None) -> dict[str, MailboxDefinition]:
        """The active version of every mailbox, by name."""
        self.refresh(tx)
        return {name: self._parse("mailbox", name, v)
                for (kind, name), v in list(self._active.items()) if kind == "mailbox"}

    def intake_forms(self) -> dict[str, Any]:
        """The active version of every ``kind: intake_form``, by name
        (:class:`~baton.definitions.intake_form.IntakeFormDefinition`)."""
        self.refresh()
        return {name: self._parse("intake_form", name, v)
                for (kind, name), v in list(self._active.items()) if kind == "intake_form"}

    def object_types(self) -> dict[str, ObjectTypeDefinition]:
        self.refresh()
        return {
            name: self._parse("object", name, v)
            for (kind, name), v in list(self._active.items())
            if kind == "object"
        }

    def connection_types(self) -> dict[str, str]:
        """Each active connection's name -> its type (``http`` | ``mcp``)."""
        self.refresh()
        return {name: self._parse("connection", name, v).type
                for (kind, name), v in list(self._active.items()) if kind == "connection"}

    def _active_version(self, kind: str, name: str, tx: Definitions | None) -> int | None:
        """The active version of ``kind`` ``name``. One not known here may have been
        deployed by another process since the last look: looked for once more, now (a
        miss is an error or a first use, never the hot path's steady state)."""
        version = self._active.get((kind, name))
        if version is None:
            self.refresh(tx, now=True)
            version = self._active.get((kind, name))
        return version

    def connection(self, name: str, tx: Definitions | None = None) -> ConnectionDefinition:
        """The active version of connection ``name``: a callout uses the connection as it
        is deployed when the call is made (a new base URL or credential reference takes
        effect without redeploying the orchestrations that use it)."""
        self.refresh(tx)
        v = self._active_version("connection", name, tx)
        if v is None:
            known = sorted(n for k, n in self._active if k == "connection")
            raise NotFound("connection", name, f"deployed connections: {', '.join(known) or 'none'}")
        return self._parse("connection", name, v)  # type: ignore[no-any-return]

    def object_type(self, name: str, tx: Definitions | None = None) -> ObjectTypeDefinition:
        self.refresh(tx)
        v = self._active_version("object", name, tx)
        if v is None:
            known = sorted(n for k, n in self._active if k == "object")
            raise NotFound("object type", name, f"deployed object types: {', '.join(known) or 'none'}")
        return self._parse("object", name, v)  # type: ignore[no-any-return]

    def orchestration(self, name: str, version: int | None = None,
                      tx: Definitions | None = None) -> tuple[OrchestrationDefinition, int]:
        # (a plan's too: its definition, kept built, holds the active rules and calendars
        # it was built with, and is built again once they change)
        self.refresh(tx)
        if name.startswith(PLAN_PREFIX) and version is not None:
            return self._plan(name, version, tx), version
        if version is None:
            version = self._active_version("orchestration", name, tx)
            if version is None:
                raise NotFound("orchestration", name)
        return self._parse("orchestration", name, version), version

    # ---- plans (their definitions are generated per order, stored with the plan) --------
    def remember_plan(self, name: str, revision: int, defn: OrchestrationDefinition,
                      tx: Definitions | None = None,
                      navigated_paths: tuple[tuple[str, ...], ...] | None = None
                      ) -> OrchestrationDefinition:
        """A plan revision's definition, just generated, with what deployed versions add
        (its records' object type, its SLAs' calendars, the routing rules its steps name
        and the queues' rules: :meth:`_routings`, as for an orchestration); cached as a
        deployed one is (dropped when the active definitions change: built again then)."""
        self.refresh(tx)
        obj = defn.trigger.object
        record_type = self._parse("object", obj, self._active[("object", obj)]) \
            if obj is not None and ("object", obj) in self._active else None
        defn = replace(defn, record_type=record_type,
                       calendars=MappingProxyType(self._calendars(defn)),
                       routings=MappingProxyType(self._routings(defn)))
        if navigated_paths is not None:
            seed_navigated(defn, navigated_paths)
        with self._lock:
            old = self._plans.pop((name, revision), None)
            if old is not None:
                self._plan_steps -= _steps(old)
            self._plans[(name, revision)] = defn
            self._plan_steps += _steps(defn)
            while self._plan_steps > PLAN_CACHE_STEPS and len(self._plans) > 1:
                _key, dropped = self._plans.popitem(last=False)
                self._plan_steps -= _steps(dropped)
        return defn

    def _plan(self, name: str, revision: int, tx: Definitions | None) -> OrchestrationDefinition:
        with self._lock:
            hit = self._plans.get((name, revision))
            if hit is not None:
                self._plans.move_to_end((name, revision))
                return hit
        from baton.plans.service import build_definition, plan_navigated

        order_id = name[len(PLAN_PREFIX):]
        if tx is None:
            with self.store.read() as rtx:
                row = rtx.get_plan_txn(order_id, revision)
        else:
            row = tx.get_plan_txn(order_id, revision)  # type: ignore[attr-defined]
        if row is None:
            raise NotFound("plan", f"{order_id} r{revision}")
        return self.remember_plan(name, revision, build_definition(row["graph"]), tx,
                                  plan_navigated(row["graph"]))

    def catalog(self, name: str, tx: Definitions | None = None) -> tuple[Any, int]:
        """The active version of catalog ``name`` and its version number."""
        self.refresh(tx)
        v = self._active_version("catalog", name, tx)
        if v is None:
            known = sorted(n for k, n in self._active if k == "catalog")
            raise NotFound("catalog", name, f"deployed catalogs: {', '.join(known) or 'none'}")
        return self._parse("catalog", name, v), v

    def catalog_version(self, name: str, version: int, tx: Definitions | None = None) -> Any:
        """Catalog ``name`` at ``version`` (a plan is pinned to the one it came from)."""
        self.refresh(tx)
        return self._parse("catalog", name, version)

    def fulfillment(self, name: str, version: int, tx: Definitions | None = None) -> Any:
        """Fulfillment ``name`` at ``version``."""
        self.refresh(tx)
        return self._parse("fulfillment", name, version)

    def fulfillment_triggers(self, object_type: str, op: str,
                             tx: Definitions | None = None) -> list[tuple[Any, int]]:
        """Active fulfillments whose record trigger on ``op`` takes ``object_type`` records."""
        self.refresh(tx)
        out = []
        for (kind, name), v in list(self._active.items()):
            if kind != "fulfillment":
                continue
            d = self._parse(kind, name, v)
            if d.trigger.object == object_type and op in d.trigger.on:
                out.append((d, v))
        return sorted(out, key=lambda dv: str(dv[0].name))

    def record_triggers(self, object_type: str, op: str,
                        tx: Definitions | None = None) -> list[tuple[OrchestrationDefinition, int]]:
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


def _changed_objects(docs: Sequence[LoadedDefinition],
                     current: Mapping[str, ObjectTypeDefinition]
                     ) -> dict[str, ObjectTypeDefinition]:
    """The object types among ``docs`` that differ from ``current``'s (a new one does not:
    nothing reads it yet)."""
    changed: dict[str, ObjectTypeDefinition] = {}
    for d in docs:
        new = d.definition
        if isinstance(new, ObjectTypeDefinition) and current.get(d.name, new) != new:
            changed[d.name] = new
    return changed


def _readers_txn(tx: Definitions) -> tuple[list[DefinitionRow], dict[tuple[str, int], int]]:
    """Every stored version, and the runs in progress on each orchestration version."""
    every = tx.list_definitions_txn(None)
    # Runs in progress stay on their version, which is parsed (in a process that starts
    # later) against the object types of the day: those versions count too.
    in_use = tx.orchestration_versions_in_progress_txn(
        {r.name for r in every if r.kind == "orchestration"})
    return every, in_use


def _broken_by(docs: Sequence[LoadedDefinition], current: Mapping[str, ObjectTypeDefinition],
               every: Sequence[DefinitionRow], in_use: Mapping[tuple[str, int], int],
               leaving: Collection[tuple[str, str]] = (),
               fix: str = "deploy a version of it that fits, in the same set") -> list[Issue]:
    """:meth:`DefinitionRepo._broken_definitions` on the versions ``every`` read: each
    active definition not among ``docs`` (nor ``leaving``), and each version runs in
    progress use, checked with ``current`` and with the changed object types of ``docs``."""
    from baton.definitions.loader import check_texts

    changed = _changed_objects(docs, current)
    if not changed:
        return []
    deploying = {(d.kind, d.name) for d in docs} | set(leaving)
    after = {**current, **changed}
    issues: list[Issue] = []
    names = ", ".join(sorted(changed))
    for row in every:
        runs = in_use.get((row.name, row.version), 0) if row.kind == "orchestration" else 0
        if row.kind not in _READ_FIELDS or not (
                (row.active and (row.kind, row.name) not in deploying) or runs):
            continue
        text = {row.file: row.source}
        _, before = check_texts(text, deployed_objects=current)
        _, now = check_texts(text, deployed_objects=after)
        if row.active and (row.kind, row.name) not in deploying:
            what = (f"deployed and active, which the new version of {names} would break: "
                    f"{fix}")
        else:
            what = (f"which {runs:,} run(s) in progress still use: the new version of "
                    f"{names} would break them; let them finish (or cancel them) first")
        issues.extend(Issue(i.file, i.line, i.path,
                            f"{i.message} (in {row.kind} '{row.name}' v{row.version}, "
                            f"{what})")
                      for i in now if i.level == "error" and i not in before)
    return issues


def _sla_calendars(data: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(path, name)`` of each ``sla: {calendar: NAME}`` in ``data`` (a definition's, its
    text as loaded), wherever an SLA is (a step's; a fulfillment's templates, defaults)."""
    if isinstance(data, Mapping):
        sla = data.get("sla")
        if isinstance(sla, Mapping) and isinstance(sla.get("calendar"), str):
            yield join(join(path, "sla"), "calendar"), sla["calendar"]
        for key, value in data.items():
            if key != "sla" and isinstance(key, str):
                yield from _sla_calendars(value, join(path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _sla_calendars(value, item(path, i))


class _Router:
    """An orchestration (or a fulfillment: its step templates) whose steps' routing
    :meth:`DefinitionRepo.routing_issues_txn` judges: its kind, its text, its root's line
    in its file (None: a stored version's text, whose lines are its own) and whether it is
    a change (``new``). Its data is read with libyaml (no lines: most are judged fine); its
    lines only for a problem found."""

    def __init__(self, kind: str, name: str, version: int | None, file: str, source: str,
                 root: int | None, new: bool) -> None:
        self.kind, self.name, self.version, self.file = kind, name, version, file
        self.source, self.root, self.new = source, root, new

    def assignments(self) -> Iterator[tuple[str, str, str]]:
        """Its steps' ``(path, kind, name)`` routing by a rule or assigning to a queue by
        name (:func:`~baton.definitions.routing.assignments`; a fulfillment's templates:
        :func:`~baton.plans.routing.template_assignments`)."""
        if self.kind == "fulfillment":
            from baton.plans.routing import template_assignments

            return template_assignments(self.data)
        return assignments(self.data)

    @functools.cached_property
    def data(self) -> Any:
        try:
            return yaml.load(self.source, Loader=_fast_loader())
        except yaml.YAMLError:
            return None

    @functools.cached_property
    def doc(self) -> ParsedDocument | None:
        from baton.definitions.loader import parse_text

        parsed, _ = parse_text(self.source, self.file)
        return parsed[0] if parsed else None

    def line(self, path: str) -> int:
        if self.doc is None:
            return self.root or 1
        line = Checker(self.doc).line(path)
        return line if self.root is None else self.root + line - self.doc.line

    def where(self, path: str) -> str:
        """Where ``path`` is: ``file:line``, or for a stored version ``file, line N of vV``
        (its text's lines, as ``baton definitions show`` prints it)."""
        if self.version is None:
            return f"{self.file}:{self.line(path)}"
        return f"{self.file}, line {self.line(path)} of v{self.version}"

    def who(self, path: str) -> str:
        step = step_at(self.data, path)
        return (f"{self.kind} '{self.name}'" + (f" v{self.version}" if self.version else "")
                + (f" step '{step}'" if step else "")
                + (" (its rollback)" if ".rollback." in path else ""))

    def issue(self, path: str, message: str) -> Issue:
        return Issue(self.file, self.line(path), path, message)


@functools.cache
def _fast_loader() -> Any:
    """The definitions' YAML loader (:class:`baton.definitions.loader._Loader`: YAML
    1.2-like booleans, no timestamps) on libyaml when it is there: a stored text passed
    the loader's bounds when it was deployed, and only its data is wanted."""
    from baton.definitions.loader import _Loader

    base = getattr(yaml, "CSafeLoader", None)
    if base is None:
        return _Loader

    class _Fast(base):  # type: ignore[misc,valid-type]
        pass

    _Fast.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers
    return _Fast


def _affected(new_rules: Mapping[str, RoutingDefinition],
              new_objects: Mapping[str, ObjectTypeDefinition],
              rules: Mapping[str, RoutingDefinition],
              rules_after: Mapping[str, RoutingDefinition],
              objects: Mapping[str, ObjectTypeDefinition], gone: Collection[str]
              ) -> list[tuple[str, str]]:
    """What the text of an orchestration outside a change holds when the change may break
    how its steps are routed, as ``(key, name)`` (none: it breaks none): ``routing: NAME``
    of a rule it deactivates, or that reads a field it did not (or is new); ``queue: NAME``
    of a queue whose rule is new, newly bound to it, or reads a field it did not;
    ``object: NAME`` of an object type that drops a field some rule reads."""
    def reads(rule: RoutingDefinition | None) -> set[str]:
        return set() if rule is None else {f for _, f in rule_record_reads(rule)}

    names, queues, types = set(gone), set(), set()
    for name, new in new_rules.items():
        old = rules.get(name)
        more = not reads(new) <= reads(old)
        if more or old is None:
            names.add(name)
        if new.for_queue and (more or old is None or not old.for_queue or old.pool != new.pool):
            queues.add(new.pool)
    read = set().union(*(reads(r) for r in rules_after.values()))
    for name, defn in new_objects.items():
        kept = {f.name for f in defn.fields}
        if name in objects and ({f.name for f in objects[name].fields} - kept) & read:
            types.add(name)
    return [(key, v) for key, values in (("routing", names), ("queue", queues), ("object", types))
            for v in sorted(values)]


def _key_pattern(pairs: Collection[tuple[str, str]]) -> re.Pattern[str]:
    """What a definition's text holds, written plainly, when it gives one of ``pairs``
    (``(key, name)``) as a mapping's entry: ``key: name``, quoted or not, block or flow
    style (one that spells it otherwise: :func:`~baton.definitions.routing.may_hold`)."""
    return re.compile("|".join(
        rf"""\b{re.escape(key)}['"]?\s*:\s*['"]?{re.escape(name)}(?![\w-])"""
        for key, name in sorted(pairs)))


def _names_any(pattern: re.Pattern[str], pairs: Collection[tuple[str, str]],
               source: str) -> bool:
    """Whether a definition's text gives one of ``pairs`` (``(key, name)``: ``connection:
    bank``) as a mapping's entry: ``pattern`` (:func:`_key_pattern`) finds it written
    plainly; a text that may spell it otherwise (an alias ``connection: *bank``, an anchor,
    a tag, an escape: :func:`~baton.definitions.routing.may_hold`) is read, and its data
    says (one that cannot be read is taken as naming it: its checks say what it is)."""
    if pattern.search(source):
        return True
    names = {name for _, name in pairs}
    if not may_hold(pattern, names, source):
        return False
    try:
        data = yaml.load(source, Loader=_fast_loader())
    except yaml.YAMLError:
        return True
    return names_in(data, {key for key, _ in pairs}, names)


def _bound(rules: Mapping[str, RoutingDefinition]) -> dict[str, RoutingDefinition]:
    """Each queue's routing rule (``for_queue``), by the queue's name: the first by name
    should two claim one (as :meth:`DefinitionRepo._queue_routings` picks it)."""
    out: dict[str, RoutingDefinition] = {}
    for name in sorted(rules):
        if rules[name].for_queue:
            out.setdefault(rules[name].pool, rules[name])
    return out


def _record_object(data: Any) -> str | None:
    """The object type an orchestration's runs have a record of, as written (None: none)."""
    trigger = data.get("trigger") if isinstance(data, dict) else None
    name = trigger.get("object") if isinstance(trigger, dict) else None
    return name if isinstance(name, str) else None


def _fields(objects: Mapping[str, ObjectTypeDefinition], name: str | None
            ) -> frozenset[str] | None:
    """The fields a record of object type ``name`` has (the reserved ones too); None: no
    record (``name`` None)."""
    if name is None:
        return None
    return frozenset(f.name for f in objects[name].fields) | frozenset(RESERVED_FIELDS)


def _target(defn: OrchestrationDefinition) -> ChildTarget:
    """An orchestration as a child-run step that starts it sees it."""
    t = defn.trigger
    return ChildTarget(t.type, t.object, frozenset(f.name for f in t.input),
                       frozenset(f.name for f in t.input if f.required and f.default is None))


def _narrower(old: ChildTarget, new: ChildTarget) -> bool:
    """Whether a child-run step that fits ``old`` may not fit ``new``: it no longer starts
    as a child run, runs on another object, takes an input less, or requires one more."""
    return ((new.trigger not in ("autolaunched", "record")
             and old.trigger in ("autolaunched", "record"))
            or new.object != old.object
            or (old.inputs is not None and (new.inputs is None or bool(old.inputs - new.inputs)))
            or bool(new.required - old.required))


def _dependent_issues(row: DefinitionRow, found: Sequence[Issue],
                      changes: Mapping[tuple[str, str], str], fix: str) -> list[Issue]:
    """``found`` (the problems a change makes in the active definition ``row``), each
    said as what breaks: ``orchestration 'order' v1 step 'charge' calls connection 'bank',
    which this would deactivate (unknown connection 'bank'): FIX``."""
    from baton.definitions.checks import step_at
    from baton.definitions.loader import parse_text

    parsed, _ = parse_text(row.source, row.file)
    data = parsed[0].data if parsed else None
    out = []
    for i in found:
        step = step_at(data, i.path)
        who = f"{row.kind} '{row.name}' v{row.version}" + (f" step '{step}'" if step else "")
        said = [k for k in changes if f"{k[0]} '{k[1]}'" in i.message] or [
            k for k in changes if k[1] in row.source]
        uses = "; ".join(f"{'calls' if kind == 'connection' else 'starts'} {kind} '{name}', "
                         f"which this would {changes[(kind, name)]}" for kind, name in said)
        out.append(replace(i, message=f"{who} {uses} ({i.message}): "
                                      f"{fix.format(name=row.name)}"))
    return out


def _key_line(source: str, first_line: int, key: str) -> int:
    """The line of a document's top-level ``key`` (its first line when not found)."""
    for i, text in enumerate(source.splitlines()):
        if text.startswith(f"{key}:"):
            return first_line + i
    return first_line


def _path_line(source: str, root_line: int | None, path: str) -> int:
    """The line of ``path`` (``fields.amount.type``; its parent's when it has none of its
    own) in a document whose root is on line ``root_line`` of its file (None: the line
    in ``source`` itself)."""
    from baton.definitions.checks import Checker
    from baton.definitions.loader import parse_text

    parsed, _ = parse_text(source, "")
    if not parsed:
        return root_line or 1
    line = Checker(parsed[0]).line(path)
    return line if root_line is None else root_line + line - parsed[0].line


def _linked(active: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """The active versions an orchestration's parse depends on (object types, calendars)."""
    return {k: v for k, v in active.items() if k[0] != "orchestration"}


def _steps(defn: OrchestrationDefinition) -> int:
    return sum(len(stage.steps) for stage in defn.stages)


class _InTransaction(DefinitionRepo):
    """The definitions as one transaction sees them (:meth:`DefinitionRepo.in_transaction`):
    every lookup reads the transaction's definitions generation (its writes raise it) and,
    when it moved, the rows again, from the transaction, whatever transaction it is given."""

    def __init__(self, repo: DefinitionRepo, tx: Definitions) -> None:
        super().__init__(repo.store, repo.clock, repo.ids)
        self._tx = tx

    def refresh(self, tx: Definitions | None = None, *, now: bool = False) -> None:
        gen = self._tx.definitions_generation_txn()
        if gen != self._generation:
            rows = self._tx.list_definitions_txn()
            with self._lock:
                self._keep(gen, rows)
