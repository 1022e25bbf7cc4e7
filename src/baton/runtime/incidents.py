"""Incidents: a definition's bug met at run time, made visible to operators.

A record trigger whose ``when`` raises does not fail the record write that fired it: the
record is saved, the run is not started, and an incident (``trigger_failed``) is opened in
the same transaction. An evaluation flow that raises gives its condition no answer (false
for a stage exit or a step's entry; a routing rule waits) and opens a
``condition_flow_failed`` incident for the run and that condition's site. A job whose
result the database refused every time (a constraint, a value out of range: see
``Worker._refused``), when no step of its can take the failure, is dropped with a
``job_failed`` incident. Operators list them beside fallout and
**retry** (evaluate again, now) or **dismiss** (with a reason) them; both are audited on the
record's timeline (``incident_retried``, ``incident_dismissed``).

A trigger's incident stands for one write whose evaluation failed. When a later write of
the record has evaluated the same trigger since, and did not fail (it started the run, or
its ``when`` did not hold), that evaluation took the failed one's place: a retry then
resolves the incident as ``superseded``, naming that write (and its run), and starts
nothing (a second run of the orchestration on the record is what it would start).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from baton.clock import Clock, iso
from baton.engine.status import IncidentStatus, RunStatus, check_transition
from baton.errors import ExpressionError, NotFound, TransitionConflict, ValidationError
from baton.expressions import evaluate_condition
from baton.records.fields import typed_values
from baton.records.model import record_view
from baton.records.related import with_related_txn
from baton.rows import audit_event
from baton.runtime import jobs
from baton.runtime.views import incident_view
from baton.store.ports import Transaction

if TYPE_CHECKING:
    from baton.definitions.model import ObjectTypeDefinition, OrchestrationDefinition
    from baton.runtime.definitions import DefinitionRepo
    from baton.runtime.idempotency import IdempotencyClaim
    from baton.runtime.runs import RunDriver
    from baton.store.sql import SqlStore

TRIGGER_FAILED = "trigger_failed"
CONDITION_FLOW_FAILED = "condition_flow_failed"
JOB_FAILED = "job_failed"
KINDS = (TRIGGER_FAILED, CONDITION_FLOW_FAILED, JOB_FAILED)

SUPERSEDED = "superseded"
"""A retry's outcome when a later write of the record evaluated the trigger instead."""
_WROTE, _STARTED = "record_updated", "run_started"  # (the record timeline's event types)
_EVENTS_PAGE = 10_000

def incident_row(incident_id: str, kind: str, *, orchestration: str, version: int,
                 record_id: str | None, run_id: str | None, expression: str, error: str,
                 now: str, detail: dict[str, Any] | None = None) -> dict[str, Any]:
    """A new open incident, as the store inserts it."""
    return {"id": incident_id, "kind": kind, "status": IncidentStatus.OPEN.value,
            "orchestration": orchestration, "version": version, "record_id": record_id,
            "run_id": run_id, "expression": expression, "error": error,
            "detail": detail or {}, "attempts": 1, "created_at": now, "updated_at": now,
            "resolved_at": None, "resolved_by": None, "reason": None}


_SAME = ("kind", "orchestration", "version", "record_id", "run_id", "expression")


def open_incident_txn(tx: Transaction, row: dict[str, Any]) -> str:
    """Open ``row`` (from :func:`incident_row`), or, when the same failure (kind,
    orchestration, version, record, run, expression) is already open, count it there with
    the newest error: a broken condition met on every record change is one incident.
    Returns the incident's id."""
    same = tx.find_open_incident_txn({k: row[k] for k in _SAME})
    if same is None:
        tx.insert_incident_txn(row)
        return str(row["id"])
    values = {"error": row["error"], "detail": row["detail"], "attempts": same["attempts"] + 1,
              "updated_at": row["updated_at"]}
    if not tx.update_incident_txn(same["id"], IncidentStatus.OPEN.value, values):
        raise TransitionConflict(f"incident {same['id']} changed concurrently")
    return str(same["id"])


def condition_expression(flow: str, site: str | None) -> str:
    """What a ``condition_flow_failed`` incident shows as its expression: the flow and the
    condition it was asked for (one incident per site, since each site asks separately)."""
    return f"{flow} at {site}" if site else flow


def job_expression(kind: str, step: str | None) -> str:
    """What a ``job_failed`` incident shows as its expression: the job's kind (and step)."""
    return f"{kind} job of step {step}" if step else f"{kind} job"


def trigger_scope(record: Mapping[str, Any], old: Mapping[str, Any], now: str) -> dict[str, Any]:
    """What a trigger's ``when`` sees: the record (flat view), as it was (``old``), now."""
    return {"record": dict(record), "old": dict(old), "now": now}


class IncidentService:
    """List, retry and dismiss incidents on one store (operator actions, audited)."""

    def __init__(self, store: SqlStore, definitions: DefinitionRepo, runs: RunDriver,
                 clock: Clock, wake: Callable[[], None]) -> None:
        self.store = store
        self.definitions = definitions
        self.runs = runs
        self.clock = clock
        self.wake = wake

    def list_incidents(self, statuses: list[str] | None, limit: int, offset: int,
             record_id: str | None = None) -> list[dict[str, Any]]:
        _check_statuses(statuses)
        with self.store.read() as tx:
            rows = tx.list_incidents_txn(statuses, limit, offset, record_id)
        return [incident_view(r) for r in rows]

    def count_incidents(self, statuses: list[str] | None, record_id: str | None = None) -> int:
        _check_statuses(statuses)
        with self.store.read() as tx:
            return tx.count_incidents_txn(statuses, record_id)

    def get(self, incident_id: str) -> dict[str, Any]:
        with self.store.read() as tx:
            row = tx.get_incident_txn(incident_id)
        if row is None:
            raise NotFound("incident", incident_id)
        return incident_view(row)

    def retry(self, incident_id: str, *, reason: str, actor: str,
              idempotency: IdempotencyClaim | None = None) -> dict[str, Any]:
        """Evaluate again, now, what failed. A trigger's ``when`` is evaluated on the record
        as it is now with the definition version that failed: true starts the run (in this
        transaction) and resolves the incident, false resolves it without a run, a raise
        keeps it open with the new error. A trigger a later write of the record evaluated
        since without failing is not evaluated again: the incident is resolved as
        ``superseded`` (``note`` in the answer says by which write, and which run it
        started). A condition flow's job is queued again (the incident is resolved; a
        flow that raises again opens a new one)."""
        _need_reason("retry", reason)
        now_dt = self.clock.now()
        now = iso(now_dt)
        with self.store.write() as tx:
            if idempotency is not None:  # (an API request's key, with what it did)
                idempotency.claim_txn(tx, now_dt, incident_id)
            # A trigger's record first, as a write of it does (the record, then the incident
            # its failure is counted in): a write racing the retry either committed before
            # (and is seen below) or waits for it; neither waits for the other in a cycle.
            seen = tx.get_incident_txn(incident_id)
            if seen is not None and seen["kind"] == TRIGGER_FAILED and seen["record_id"]:
                tx.get_record_txn(seen["record_id"], for_update=True)
            row = self._open_txn(tx, incident_id, IncidentStatus.RESOLVED)
            if row["kind"] == TRIGGER_FAILED:
                outcome, values = self._retry_trigger_txn(tx, row, actor, now_dt)
            elif row["kind"] == JOB_FAILED:
                outcome, values = self._retry_job_txn(tx, row, now)
            else:
                outcome, values = self._retry_condition_txn(tx, row, now)
            if values.get("status") == IncidentStatus.RESOLVED.value:
                values |= {"resolved_at": now, "resolved_by": actor, "reason": reason}
            values["updated_at"] = now
            if not tx.update_incident_txn(incident_id, IncidentStatus.OPEN.value, values):
                raise TransitionConflict(f"incident {incident_id} changed concurrently")
            data = {"incident": incident_id, "kind": row["kind"], "reason": reason,
                    "outcome": outcome, "orchestration": row["orchestration"],
                    "version": row["version"]}
            if "error" in values and outcome == "failed":
                data["error"] = values["error"]
            superseded = (values.get("detail") or {}).get("superseded_by")
            if outcome == SUPERSEDED:
                data["superseded_by"] = superseded
            tx.append_events_txn([audit_event(  # type: ignore[list-item]
                "incident_retried", actor, now, row["record_id"],
                values.get("run_id", row["run_id"]), data)])
            out = incident_view({**row, **values})
        if outcome == SUPERSEDED and superseded is not None:
            out["note"] = superseded["note"]
        if outcome in ("started", "queued"):
            self.wake()
        return out

    def dismiss(self, incident_id: str, *, reason: str, actor: str,
                idempotency: IdempotencyClaim | None = None) -> dict[str, Any]:
        """Close an open incident without evaluating it again (the reason is audited)."""
        _need_reason("dismiss", reason)
        now_dt = self.clock.now()
        now = iso(now_dt)
        with self.store.write() as tx:
            if idempotency is not None:  # (an API request's key, with what it did)
                idempotency.claim_txn(tx, now_dt, incident_id)
            row = self._open_txn(tx, incident_id, IncidentStatus.DISMISSED)
            values = {"status": IncidentStatus.DISMISSED.value, "resolved_at": now,
                      "resolved_by": actor, "reason": reason, "updated_at": now}
            if not tx.update_incident_txn(incident_id, IncidentStatus.OPEN.value, values):
                raise TransitionConflict(f"incident {incident_id} changed concurrently")
            tx.append_events_txn([audit_event(  # type: ignore[list-item]
                "incident_dismissed", actor, now, row["record_id"], row["run_id"],
                {"incident": incident_id, "kind": row["kind"], "reason": reason,
                 "orchestration": row["orchestration"], "version": row["version"]})])
        return incident_view({**row, **values})

    # ---- inside the transaction ---------------------------------------------------------
    def _open_txn(self, tx: Transaction, incident_id: str, to: IncidentStatus) -> dict[str, Any]:
        row = tx.get_incident_txn(incident_id, for_update=True)
        if row is None:
            raise NotFound("incident", incident_id)
        check_transition(f"incident {incident_id}", IncidentStatus(row["status"]), to)
        return row

    def _retry_trigger_txn(self, tx: Transaction, row: Mapping[str, Any], actor: str,
                           now_dt: Any) -> tuple[str, dict[str, Any]]:
        record = tx.get_record_txn(row["record_id"], for_update=True)
        if record is None:
            raise TransitionConflict(f"record {row['record_id']} was deleted: dismiss the "
                                     f"incident instead")
        defn, version = self.definitions.orchestration(row["orchestration"], row["version"], tx=tx)
        superseded = self._superseded_txn(tx, row, defn)
        if superseded is not None:
            return SUPERSEDED, {"status": IncidentStatus.RESOLVED.value,
                                "run_id": superseded["run_id"],
                                "detail": {**(row["detail"] or {}), "superseded_by": superseded}}
        when = defn.trigger.when
        otype = self.definitions.object_type(record["object_type"], tx)
        old = typed_values(otype.fields, row["detail"].get("old") or {})

        def types(name: str) -> ObjectTypeDefinition:
            return self.definitions.object_type(name, tx)

        view = with_related_txn(tx, defn, record_view(record, otype), otype.name, types)
        source = (when.expression if when is not None else None) or "=true"
        now = iso(now_dt)
        try:
            ok = when is None or evaluate_condition(source, trigger_scope(view or {}, old, now))
        except ExpressionError as exc:
            return "failed", {"error": str(exc), "attempts": row["attempts"] + 1}
        if ok and defn.trigger.changed_to_meet and row["detail"].get("op") == "update":
            # As the write would have: only if the write made it hold (not held before it).
            was = with_related_txn(tx, defn, old, otype.name, types) or {}
            ok = not _held(source, trigger_scope(was, old, now))
        if not ok:
            return "false", {"status": IncidentStatus.RESOLVED.value}
        run = self.runs.start_txn(tx, defn, version, record, {}, actor, now_dt)
        return "started", {"status": IncidentStatus.RESOLVED.value, "run_id": run.id}

    def _superseded_txn(self, tx: Transaction, row: Mapping[str, Any],
                        defn: OrchestrationDefinition) -> dict[str, Any] | None:
        """What took the failed evaluation's place, read from the record's timeline after
        the incident's last ``trigger_failed`` event (the last write that failed it): a run
        of the orchestration started on the record since (by a later write, or otherwise),
        or, when the failed version is still the active one and its trigger fires on
        ``update``, the record's last update since, which evaluated it without failing
        (its ``when`` did not hold). ``None``: nothing did, the retry evaluates it.

        (A version active now was taken as active at that update too; a deactivation and
        reactivation of it in between is not seen. Under the record's lock: a write of the
        record cannot come between this look and the retry's commit.)"""
        events = _record_events_txn(tx, row["record_id"], (TRIGGER_FAILED, _WROTE, _STARTED))
        last_failed = [i for i, e in enumerate(events) if e["type"] == TRIGGER_FAILED
                       and (e["data"] or {}).get("incident") == row["id"]]
        if not last_failed:  # (its failure is not on the timeline: evaluated as before)
            return None
        later = events[last_failed[-1] + 1:]
        name = row["orchestration"]
        write: dict[str, Any] | None = None
        for e in later:
            if e["type"] == _WROTE:
                if "by" not in (e["data"] or {}):  # (a deploy's fill fires no trigger)
                    write = e
            elif e["type"] == _STARTED and (e["data"] or {}).get("orchestration") == name:
                by_write = (write is not None and (write["at"], write["actor"]) ==
                            (e["at"], e["actor"]))
                note = (f"superseded by the record's later write at {write['at']} (by "
                        f"{write['actor']}), which started run {e['run_id']}"
                        if by_write and write is not None else
                        f"superseded: run {e['run_id']} of {name} was started on the record "
                        f"at {e['at']} (by {e['actor']}), after the evaluation that failed")
                return {"at": e["at"], "event": e["id"], "run_id": e["run_id"],
                        "write": write["id"] if by_write and write is not None else None,
                        "note": note}
        if write is None or "update" not in defn.trigger.on:
            return None
        if any(e["type"] == TRIGGER_FAILED and (e["data"] or {}).get("orchestration") == name
               and e["id"] > write["id"] for e in later):
            return None  # (the last write failed too, as another incident: nothing to defer to)
        try:
            _, active = self.definitions.orchestration(name, tx=tx)
        except NotFound:
            return None
        if active != row["version"]:
            return None
        held_before = " (or held before it already)" if defn.trigger.changed_to_meet else ""
        return {"at": write["at"], "event": write["id"], "run_id": None, "write": write["id"],
                "note": f"superseded by the record's later write at {write['at']} (by "
                        f"{write['actor']}), which evaluated the trigger and started no run: "
                        f"its `when` did not hold{held_before}"}

    def _retry_condition_txn(self, tx: Transaction, row: Mapping[str, Any],
                             now: str) -> tuple[str, dict[str, Any]]:
        run = tx.get_run_txn(row["run_id"], for_update=True)
        if run is None or run["status"] != RunStatus.IN_PROGRESS.value:
            status = run["status"] if run else "deleted"
            raise TransitionConflict(f"run {row['run_id']} is {status}: nothing waits for its "
                                     "condition any more; dismiss the incident instead")
        # The job as it failed (the flow, its site and input); an incident opened before
        # sites were kept has the flow's name alone.
        payload = dict((row.get("detail") or {}).get("job") or {"flow": row["expression"]})
        if "error" in payload:  # its input failed: the run evaluates it again, and asks
            tx.enqueue_job_txn(jobs.EVALUATE, row["run_id"],
                               dict(jobs.EvaluatePayload(reason="incident_retried")), now, now)
        else:
            tx.enqueue_job_txn(jobs.CONDITION, row["run_id"], payload, now, now)
        return "queued", {"status": IncidentStatus.RESOLVED.value}


    def _retry_job_txn(self, tx: Transaction, row: Mapping[str, Any],
                       now: str) -> tuple[str, dict[str, Any]]:
        """A job the database refused every time is queued again as it was (its run must
        still be in progress; a job of no run is queued as it is)."""
        if row["run_id"]:
            run = tx.get_run_txn(row["run_id"], for_update=True)
            if run is None or run["status"] != RunStatus.IN_PROGRESS.value:
                status = run["status"] if run else "deleted"
                raise TransitionConflict(f"run {row['run_id']} is {status}: nothing waits for "
                                         "its job any more; dismiss the incident instead")
        job = (row.get("detail") or {}).get("job") or {}
        tx.enqueue_job_txn(job["kind"], row["run_id"], dict(job.get("payload") or {}), now, now)
        return "queued", {"status": IncidentStatus.RESOLVED.value}


def _record_events_txn(tx: Transaction, record_id: str,
                       types: tuple[str, ...]) -> list[dict[str, Any]]:
    """The record's events of ``types``, oldest first (every one: page after page)."""
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        page = tx.events_txn(record_id=record_id, types=types, after_id=after,
                             limit=_EVENTS_PAGE)
        out += page
        if len(page) < _EVENTS_PAGE:
            return out
        after = page[-1]["id"]


def _held(source: str, scope: Mapping[str, Any]) -> bool:
    """Did a ``changed_to_meet`` trigger's condition hold before the write? One that cannot
    be evaluated on the earlier values did not (as a write judges it)."""
    try:
        return evaluate_condition(source, scope)
    except ExpressionError:
        return False


def _need_reason(action: str, reason: str) -> None:
    if not reason or not reason.strip():
        raise ValidationError(f"incident {action}", {"reason": "say why (it is audited)"})


def _check_statuses(statuses: list[str] | None) -> None:
    known = {s.value for s in IncidentStatus}
    bad = [s for s in statuses or () if s not in known]
    if bad:
        raise ValidationError("incident filter", {
            "status": f"unknown status {bad[0]!r}; expected one of {', '.join(sorted(known))}"})
