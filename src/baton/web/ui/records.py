"""Records: a paginated list (filtered by object type) and one record with its timeline."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from baton.auth.roles import Permission
from baton.web.security import Principal, engine_of
from baton.web.ui.base import PAGE_SIZE, Paging, cursor_param, page_need, render
from baton.web.ui.events import describe_event

router = APIRouter()
Reader = Annotated[Principal, Depends(page_need(Permission.RECORDS_READ))]
SYSTEM_FIELDS = ("id", "object_type", "created_at", "updated_at", "version")


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
    return render(request, "records_list.html", principal, {
        "records": rows, "types": types, "type": object_type or "", "paging": pager,
        "query": {"type": object_type or ""}})


@router.get("/records/{record_id}")
def record_page(request: Request, record_id: str, principal: Reader) -> Response:
    eng = engine_of(request)
    record = eng.get_record(record_id)
    fields = {k: v for k, v in record.items() if k not in SYSTEM_FIELDS}
    runs = eng.list_runs(record_id=record_id, limit=50) if principal.user.can(
        Permission.RUNS_READ) else []
    events = [{**e, "text": describe_event(e)} for e in eng.timeline(record_id)]
    # the approval history: who decided which approval, when, how (and for whom)
    approvals = [e for e in events if e["type"] == "approval_decided"]
    return render(request, "record.html", principal, {
        "record": record, "fields": fields, "runs": runs, "events": events,
        "approvals": approvals, "messages": eng.intake.messages(record_id)})
