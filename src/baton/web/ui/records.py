"""Records: a paginated list (filtered by object type), one record with its timeline, and
the forms that create and edit a record.

**Create** (``/records/new/{type}``, for who may write records): a form made from the
object type's fields, drawn by ``_form.html`` as a work item's form is; a field's
problems stand next to it with what was typed kept (422). The write is the one the API
and the CLI make (the type's field checks, its create triggers, its audit event), in one
transaction with the runs it starts. Each showing of the form carries a submission token,
the write's idempotency key (``ui-TOKEN`` of the user): the same form sent twice (a double
click, Back and Send) creates one record and goes to it.

**Edit** (``/records/{id}/edit``): the same form, filled in, carrying the version it was
drawn from and the values it showed. Only the fields changed from those are sent, with
that version (compare and set): when someone changed the record since, nothing is written
and the form comes back (409) saying who changed what, with the current values and, over
them, what was typed, to be sent again on purpose.

After either (Post/Redirect/Get: 303) the record's page says what was saved and links the
runs the write started (those of the record created in its transaction).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from baton.auth.roles import Permission
from baton.definitions.model import FieldDefinition, ObjectTypeDefinition
from baton.errors import IdempotencyKeyTaken, NotFound, TransitionConflict, ValidationError
from baton.records.fields import coerce_fields
from baton.runtime.engine import Engine
from baton.runtime.idempotency import IdempotencyClaim, fingerprint
from baton.web.security import Principal, engine_of
from baton.web.ui.base import (
    PAGE_SIZE,
    Paging,
    _utc_input,
    cursor_param,
    form_json,
    page_need,
    render,
)
from baton.web.ui.events import describe_event
from baton.web.ui.work import form_data, form_values

router = APIRouter()
Reader = Annotated[Principal, Depends(page_need(Permission.RECORDS_READ))]
Writer = Annotated[Principal, Depends(page_need(Permission.RECORDS_WRITE))]
Form = Annotated[FormData, Depends(form_data)]
SYSTEM_FIELDS = ("id", "object_type", "created_at", "updated_at", "version")
# The form's own inputs (hyphenated: no object type's field is named so)
VERSION_FIELD, SHOWN_FIELD, SUBMISSION_FIELD = "record-version", "record-shown", "submission-token"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}\Z")
_RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,40}\Z")


@router.get("/records")
def records_list(request: Request, principal: Reader, type: str | None = None,
                 after: str | None = None) -> Response:
    eng = engine_of(request)
    types = sorted(eng.definitions.object_types())
    object_type = type if type in types else None
    after = cursor_param(after)
    found = eng.page_records(object_type, after=after, limit=PAGE_SIZE)
    pager = Paging(eng.count_records_bounded(object_type), after, found.next)
    rows = found.rows
    for row in rows:
        row["summary"] = {k: v for k, v in row.items() if k not in SYSTEM_FIELDS and v is not None}
    creatable = ([object_type] if object_type else types) \
        if principal.user.can(Permission.RECORDS_WRITE) else []
    return render(request, "records_list.html", principal, {
        "records": rows, "types": types, "type": object_type or "", "paging": pager,
        "query": {"type": object_type or ""}, "creatable": creatable})


@router.get("/records/{record_id}")
def record_page(request: Request, record_id: str, principal: Reader, done: str | None = None,
                v: str | None = None, runs: str | None = None) -> Response:
    """The record, its runs and its timeline. After a create or an edit on its form (where
    the form's POST goes: 303), ``done`` says which, ``v`` the version saved and ``runs``
    the runs the write started (only runs of this record are named)."""
    eng = engine_of(request)
    record = eng.get_record(record_id)
    fields = {k: v for k, v in record.items() if k not in SYSTEM_FIELDS}
    may_runs = principal.user.can(Permission.RUNS_READ)
    run_list = eng.list_runs(record_id=record_id, limit=50) if may_runs else []
    events = [{**e, "text": describe_event(e)} for e in eng.timeline(record_id)]
    # the approval history: who decided which approval, when, how (and for whom)
    approvals = [e for e in events if e["type"] == "approval_decided"]
    return render(request, "record.html", principal, {
        "record": record, "fields": fields, "runs": run_list, "events": events,
        "approvals": approvals, "messages": eng.intake.messages(record_id),
        "may_edit": principal.user.can(Permission.RECORDS_WRITE), "may_runs": may_runs,
        "saved": _saved(eng, record_id, done, v, runs)})


def _saved(eng: Engine, record_id: str, done: str | None, version: str | None,
           runs: str | None) -> dict[str, Any] | None:
    """What the page says after its form's write: which write, the version, the runs it
    started (read again: those of this record only, with their orchestration)."""
    if done not in ("created", "updated", "unchanged"):
        return None
    wanted = [r for r in (runs or "").split(",")[:20] if _RUN_ID.fullmatch(r)]
    started = []
    if wanted:
        mine = {r.id: r for r in eng.list_runs(record_id=record_id, limit=50)}
        started = [mine[r] for r in wanted if r in mine]
    return {"done": done, "version": version if (version or "").isdigit() else None,
            "runs": started}


# ---- the form ---------------------------------------------------------------------------

@dataclass(frozen=True)
class FormField:
    """One field of the record's form, as ``_form.html`` draws it."""

    name: str
    type: str
    required: bool
    choices: tuple[str, ...]
    scale: int | None
    label: str
    help: str | None


def _form_fields(otype: ObjectTypeDefinition) -> list[FormField]:
    out = []
    for f in otype.fields:
        hint = f.description
        if f.type == "ref" and not hint:
            hint = f"The id of the {f.object} record it names (rec_…)."
        out.append(FormField(f.name, f.type, f.required, f.choices, f.scale,
                             f.label or f.name.replace("_", " ").capitalize(), hint))
    return out


def _object_type(eng: Engine, name: str) -> ObjectTypeDefinition:
    otype = eng.definitions.object_types().get(name)
    if otype is None:
        raise NotFound("object type", name)
    return otype


def _shown(otype: ObjectTypeDefinition, record: Mapping[str, Any]) -> dict[str, Any]:
    """A record's field values as its form shows them: a ``json`` field as its JSON text."""
    out: dict[str, Any] = {}
    for f in otype.fields:
        value = record.get(f.name)
        if f.type == "json" and value is not None:
            value = json.dumps(value, indent=2, ensure_ascii=False)
        out[f.name] = value
    return out


def _typed(form: FormData) -> dict[str, str]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _page(request: Request, principal: Principal, otype: ObjectTypeDefinition, *,
          record: Mapping[str, Any] | None, values: Mapping[str, Any],
          errors: Mapping[str, str] | None = None, status: int = 200,
          version: int | None = None, shown: Mapping[str, Any] | None = None,
          submission: str | None = None, error: str | None = None,
          conflict: dict[str, Any] | None = None) -> Response:
    fields = _form_fields(otype)
    names = {f.name for f in fields}
    errors = dict(errors or {})
    stray = {k: v for k, v in errors.items() if k not in names}
    return render(request, "record_form.html", principal, {
        "otype": otype, "tname": otype.label or otype.name, "record": record, "fields": fields, "values": values,
        "errors": errors, "stray": stray, "error": error, "conflict": conflict,
        "version": version, "version_field": VERSION_FIELD, "shown_field": SHOWN_FIELD,
        "shown": json.dumps(shown if shown is not None else {}, ensure_ascii=False,
                            default=str),
        "submission_field": SUBMISSION_FIELD,
        "submission": submission or secrets.token_urlsafe(18)}, status=status)


def _runs_started(eng: Engine, record_id: str, at: str,
                  had: Collection[str] = ()) -> list[str]:
    """The runs a write of the record at ``at`` started, oldest first: those of the
    record created then (in its transaction) that were not there before it (``had``)."""
    runs = eng.list_runs(record_id=record_id, limit=50)
    return [r.id for r in reversed(runs) if r.created_at == at and r.id not in had]


def _after_write(record_id: str, done: str, version: int, runs: Sequence[str]) -> Response:
    query = {"done": done, "v": str(version), **({"runs": ",".join(runs)} if runs else {})}
    return RedirectResponse(f"/records/{record_id}?" + urlencode(query), status_code=303)


# ---- create -----------------------------------------------------------------------------

@router.get("/records/new/{object_type}")
def new_record(request: Request, object_type: str, principal: Writer) -> Response:
    otype = _object_type(engine_of(request), object_type)
    defaults = {f.name: f.default for f in otype.fields if f.default is not None}
    return _page(request, principal, otype, record=None, values=_shown(otype, defaults))


def _create_data(otype: ObjectTypeDefinition, form: FormData
                 ) -> tuple[dict[str, Any], dict[str, str]]:
    """What the form asks to create: as a work item's form is read (a checkbox is true when
    sent, JSON parsed), an empty input left out (its default applies, or it is required)."""
    fields = [{"name": f.name, "type": f.type} for f in otype.fields]
    data, errors = form_values(fields, form)
    return {k: v for k, v in data.items() if v != "" or k in errors}, errors


@router.post("/records/new/{object_type}")
def create(request: Request, object_type: str, principal: Writer, form: Form) -> Response:
    eng = engine_of(request)
    otype = _object_type(eng, object_type)
    typed = _typed(form)
    given = form.get(SUBMISSION_FIELD)
    token = given if isinstance(given, str) and _TOKEN.fullmatch(given) else None
    data, errors = _create_data(otype, form)
    if errors:  # (JSON that does not parse): the other fields' problems are said too
        try:
            coerce_fields([f for f in otype.fields if f.name not in errors],
                          {k: v for k, v in data.items() if k not in errors}, "record")
        except ValidationError as exc:
            errors = {**exc.fields, **errors}
        return _page(request, principal, otype, record=None, values=typed, errors=errors,
                     status=422, submission=token)
    path = request.url.path
    claim = IdempotencyClaim(principal.name, f"ui-{token}", "POST", path,
                             fingerprint("POST", path, {k: v for k, v in typed.items()
                                                        if k != "csrf_token"}),
                             "record") if token else None
    try:
        created = eng.create_record(otype.name, data, actor=principal.name, idempotency=claim)
    except ValidationError as exc:
        return _page(request, principal, otype, record=None, values=typed,
                     errors=dict(exc.fields), status=422, submission=token)
    except IdempotencyKeyTaken:  # this showing of the form was sent before
        assert claim is not None
        kept = eng.idempotency.lookup(claim.principal, claim.key)
        if kept is not None and kept.resource_id is not None:
            if kept.fingerprint == claim.fingerprint:  # the same: to what it created
                first = eng.get_record(kept.resource_id)
                return _after_write(kept.resource_id, "created", 1, _runs_started(
                    eng, kept.resource_id, str(first["created_at"])))
            return _page(request, principal, otype, record=None, values=typed, status=409,
                         error=f"This form was sent already: it created {otype.name} "
                               f"{kept.resource_id}. To create another {otype.name} with what "
                               "is below, press Create again.")
        return _page(request, principal, otype, record=None, values=typed, status=409,
                     submission=token, error="This form is being sent already: wait a "
                                             "moment, then look at the records list before "
                                             "you send it again.")
    record_id = str(created["id"])
    return _after_write(record_id, "created", int(created["version"]),
                        _runs_started(eng, record_id, str(created["created_at"])))


# ---- edit -------------------------------------------------------------------------------

def _record_and_type(eng: Engine, record_id: str
                     ) -> tuple[dict[str, Any], ObjectTypeDefinition]:
    record = eng.get_record(record_id)
    return record, _object_type(eng, record["object_type"])


@router.get("/records/{record_id}/edit")
def edit_record(request: Request, record_id: str, principal: Writer) -> Response:
    record, otype = _record_and_type(engine_of(request), record_id)
    values = _shown(otype, record)
    return _page(request, principal, otype, record=record, values=values,
                 version=int(record["version"]), shown=_field_values(otype, record))


def _field_values(otype: ObjectTypeDefinition, record: Mapping[str, Any]) -> dict[str, Any]:
    return {f.name: record.get(f.name) for f in otype.fields}


def _edit_data(otype: ObjectTypeDefinition, form: FormData, before: Mapping[str, Any]
               ) -> tuple[dict[str, Any], dict[str, str]]:
    """Every field the form sent, as the write takes it: an emptied input clears its field
    (None), an unchecked checkbox is false (unless it was empty and stays so), JSON is
    parsed. Inputs not sent (a radio group left unchosen) are not there."""
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in otype.fields:
        raw = form.get(f.name)
        if f.type == "bool":
            if raw is not None or before.get(f.name) is not None:
                data[f.name] = raw is not None
            continue
        if not isinstance(raw, str):
            continue
        if raw.strip() == "" and (f.type not in ("string", "text") or raw == ""):
            data[f.name] = None
        elif f.type == "json":
            value, why = form_json(raw)
            if why is not None:
                errors[f.name] = why
            else:
                data[f.name] = value
        else:
            data[f.name] = raw.replace("\r\n", "\n") if f.type == "text" else raw
    return data, errors


def _normal(f: FieldDefinition, value: Any) -> Any:
    """A value as stored, to compare two: empty is None, a date-time to the second the
    form shows, anything else as the field's check makes it (as it is, if it fails)."""
    if value is None or value == "":
        return None
    if f.type == "datetime":
        return _utc_input(value)
    try:
        return coerce_fields([f], {f.name: value}, "record", partial=True).get(f.name)
    except ValidationError:
        return value


def _changed(otype: ObjectTypeDefinition, data: Mapping[str, Any],
             before: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``data`` whose value is not the one ``before`` had."""
    out = {}
    for f in otype.fields:
        if f.name in data and _normal(f, data[f.name]) != _normal(f, before.get(f.name)):
            out[f.name] = data[f.name]
    return out


def _before(form: FormData, record: Mapping[str, Any], otype: ObjectTypeDefinition,
            version: int | None) -> dict[str, Any]:
    """The values the form showed (what the user's changes are measured from); the
    record's now when the form does not say them and was drawn from this version."""
    sent = form.get(SHOWN_FIELD)
    if isinstance(sent, str):
        value, why = form_json(sent)
        if why is None and isinstance(value, dict):
            return value
    return _field_values(otype, record) if version == record["version"] else {}


@router.post("/records/{record_id}/edit")
def update(request: Request, record_id: str, principal: Writer, form: Form) -> Response:
    eng = engine_of(request)
    record, otype = _record_and_type(eng, record_id)
    typed = _typed(form)
    given = str(form.get(VERSION_FIELD) or "")
    version = int(given) if given.isdigit() and 0 < int(given) < 2**31 else None
    before = _before(form, record, otype, version)
    data, errors = _edit_data(otype, form, before)
    try:  # the form's checks, the API's: every field's problem at once
        coerce_fields(otype.fields, {k: v for k, v in data.items() if k not in errors},
                      "record", partial=True)
    except ValidationError as exc:
        errors = {**exc.fields, **errors}
    if errors:
        return _page(request, principal, otype, record=record, values=typed, errors=errors,
                     status=422, version=version, shown=before)
    changes = _changed(otype, data, before)
    if version is None:  # (a form without its version: never written without the check)
        return _conflict(request, principal, eng, otype, record_id, typed, changes, before,
                         None, "")
    if not changes:
        return _after_write(record_id, "unchanged", int(record["version"]), [])
    had = {r.id for r in eng.list_runs(record_id=record_id, limit=50)}
    try:
        view = eng.update_record(record_id, changes, expected_version=version,
                                 actor=principal.name)
    except ValidationError as exc:  # what only the write checks (a ref's record)
        return _page(request, principal, otype, record=record, values=typed,
                     errors=dict(exc.fields), status=422, version=version, shown=before)
    except TransitionConflict as exc:
        return _conflict(request, principal, eng, otype, record_id, typed, changes, before,
                         version, str(exc))
    if view["version"] == version:  # (what was sent is what the record holds already)
        return _after_write(record_id, "unchanged", int(view["version"]), [])
    return _after_write(record_id, "updated", int(view["version"]),
                        _runs_started(eng, record_id, str(view["updated_at"]), had))


def _conflict(request: Request, principal: Principal, eng: Engine, otype: ObjectTypeDefinition,
              record_id: str, typed: Mapping[str, str], changes: Mapping[str, Any],
              before: Mapping[str, Any], version: int | None, why: str) -> Response:
    """Not written (409). Someone changed the record since the form was drawn: the form
    again, at the record's version now, with its current values and, over them, the fields
    this user changed as typed; what the others changed is listed (both changed: marked).
    Or the record may not be edited now (an approval of it is pending): the form as sent."""
    record = eng.get_record(record_id)
    now = _field_values(otype, record)
    if version is not None and record["version"] == version:
        return _page(request, principal, otype, record=record, values=typed, status=409,
                     version=version, shown=before, error=f"Not saved: {why.rstrip('. ')}.")
    theirs = [{"name": f.name, "was": before.get(f.name), "now": now.get(f.name),
               "both": f.name in changes}
              for f in otype.fields
              if _normal(f, before.get(f.name)) != _normal(f, now.get(f.name))]
    values = {**_shown(otype, record), **{k: typed[k] for k in changes if k in typed}}
    for f in otype.fields:  # (a checkbox is sent only when checked)
        if f.type == "bool" and f.name in changes:
            values[f.name] = bool(changes[f.name])
    by = [e for e in eng.timeline(record_id) if e["type"] == "record_updated"]
    return _page(request, principal, otype, record=record, values=values, status=409,
                 version=int(record["version"]), shown=now, conflict={
                     "was": version, "now": record["version"], "theirs": theirs,
                     "by": by[-1]["actor"] if by else None,
                     "at": record["updated_at"], "mine": sorted(changes)})
