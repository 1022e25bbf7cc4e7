"""Child runs: what :class:`~baton.engine.events.StartChildRuns` does, in the transaction
of the decision that asked for it (the one that starts the parent's step).

Per child: check everything first (the child orchestration's active version and trigger,
its typed input, the record it runs on or the fields of the one to create), then write
(the record, with the record triggers of other orchestrations; the run, pinned to that
version and linked to its parent). A child that cannot be started writes nothing and is
reported to the parent as a failed child, through the same job a child run that ended
sends (``baton.runtime.jobs.CHILD``), so the parent's step decides about it like any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from baton.clock import iso
from baton.definitions.model import OrchestrationDefinition
from baton.engine.events import ChildStart, StartChildRuns
from baton.engine.state import ParentLink, Run
from baton.errors import BatonError, NotFound, ValidationError
from baton.ids import IdGenerator
from baton.records.fields import coerce_fields
from baton.records.service import check_refs_txn
from baton.rows import AuditEvent, audit_event
from baton.runtime import jobs
from baton.runtime.definitions import DefinitionRepo
from baton.store.ports import Transaction

if TYPE_CHECKING:
    from baton.records.service import RecordService
    from baton.runtime.runs import RunDriver

MAX_DEPTH = 10
"""How deep child runs may nest (a child of a child…): an orchestration that starts itself
over data that never shrinks stops here, with its step failing, instead of forever."""


class ChildRuns:
    """Starts the child runs of a step; the Applier calls it (``runtime/apply.py``)."""

    def __init__(self, definitions: DefinitionRepo, runs: RunDriver, records: RecordService,
                 ids: IdGenerator) -> None:
        self.definitions = definitions
        self.runs = runs
        self.records = records
        self.ids = ids

    def start_txn(self, tx: Transaction, parent: Run, cmd: StartChildRuns, now_dt: Any
                  ) -> list[AuditEvent]:
        """Start every child of ``cmd``; their run and record ids go into the parent step's
        ``children`` (``parent`` is the decision's run, written after its commands)."""
        now = iso(now_dt)
        entries = parent.steps[cmd.step].children or []
        parent.steps[cmd.step].touch()  # (run and record ids go into its entries, in place)
        depth = parent.parent.depth + 1 if parent.parent is not None else 1
        defn: OrchestrationDefinition | None = None
        version = 0
        refusal: str | None = None
        if depth > MAX_DEPTH:
            refusal = f"child runs nest at most {MAX_DEPTH} deep (this would be {depth})"
        else:
            try:
                defn, version = self.definitions.orchestration(cmd.orchestration, tx=tx)
            except NotFound:
                refusal = f"orchestration {cmd.orchestration!r} has no active version"
        started: list[dict[str, Any]] = []
        events: list[AuditEvent] = []
        for child in cmd.children:
            entry = entries[child.index]
            try:
                if defn is None:
                    raise BatonError(refusal or "no orchestration")
                link = ParentLink(parent.id, cmd.step, cmd.iteration, child.index, depth)
                run = self._start_one_txn(tx, defn, version, parent, child, link, now_dt)
            except BatonError as exc:
                error = {"type": type(exc).__name__, "message": str(exc)}
                events.append(audit_event("child_run_not_started", "system", now,
                                          parent.record_id, parent.id,
                                          {"step": cmd.step, "iteration": cmd.iteration,
                                           "index": child.index, "error": error}))
                payload = jobs.ChildPayload(step=cmd.step, iteration=cmd.iteration,
                                            index=child.index, run_id=None, status="failed",
                                            output=None, error=error)
                tx.enqueue_job_txn(jobs.CHILD, parent.id, dict(payload), now, now)
                continue
            entry["run_id"], entry["record_id"] = run.id, run.record_id
            entry.pop("create", None)  # its record exists now: a retry runs on it again
            entry.pop("fields", None)
            started.append({"index": child.index, "run_id": run.id, "record_id": run.record_id})
        if started:
            events.append(audit_event("child_runs_started", "system", now, parent.record_id,
                                      parent.id, {"step": cmd.step, "iteration": cmd.iteration,
                                                  "orchestration": cmd.orchestration,
                                                  "version": version, "children": started}))
        return events

    def _start_one_txn(self, tx: Transaction, defn: OrchestrationDefinition, version: int,
                       parent: Run, child: ChildStart, link: ParentLink, now_dt: Any) -> Run:
        what = f"child #{child.index} of step {link.step}"
        t = defn.trigger
        if t.type not in ("autolaunched", "record"):
            raise ValidationError(what, {"orchestration": (
                f"{defn.name} starts from its {t.type} trigger; a child run needs an "
                "autolaunched or record trigger")})
        values = coerce_fields(t.input, child.input, f"input of {what} ({defn.name})")
        row: Mapping[str, Any] | None
        if child.create is not None:
            if t.object and t.object != child.create:
                raise ValidationError(what, {"record": (
                    f"creates a {child.create} record, {defn.name} runs on a {t.object}")})
            row = self._create_record_txn(tx, child, parent, defn.name, link, now_dt)
        elif child.record_id is not None:
            row = tx.get_record_txn(child.record_id, for_update=True)
            if row is None:
                raise NotFound("record", child.record_id)
            if t.object and row["object_type"] != t.object:
                raise ValidationError(what, {"record": (
                    f"the parent's record is a {row['object_type']}, {defn.name} runs on a "
                    f"{t.object}")})
        else:
            row = None
            if t.object:
                raise ValidationError(what, {"record": (
                    f"{defn.name} runs on a {t.object} record and the parent run has none: "
                    "create one with record: {create: ..., fields: ...}")})
        return self.runs.start_txn(tx, defn, version, row, values, "system", now_dt, parent=link)

    def _create_record_txn(self, tx: Transaction, child: ChildStart, parent: Run, child_name: str,
                           link: ParentLink, now_dt: Any) -> dict[str, Any]:
        """The child's own record, checked before anything is written. Its create triggers
        fire as for any record, except the child orchestration's own: the step starts that."""
        assert child.create is not None
        otype = self.definitions.object_type(child.create, tx)
        what = f"{child.create} record of child #{child.index} of step {link.step}"
        values = coerce_fields(otype.fields, child.fields or {}, what)
        check_refs_txn(tx, otype, values, what)
        now = iso(now_dt)
        record_id = self.ids.new("rec")
        row = {"id": record_id, "object_type": child.create, "data": values,
               "version": 1, "created_at": now, "updated_at": now}
        tx.insert_record_txn(row)
        tx.append_events_txn([audit_event(  # type: ignore[list-item]
            "record_created", "system", now, record_id, None,
            {"object_type": child.create, "fields": values, "parent_run_id": parent.id,
             "parent_record_id": parent.record_id, "step": link.step, "index": link.index})])
        self.records.fire_triggers_txn(tx, row, None, "create", now_dt, "system",
                                       skip=child_name)
        return row
