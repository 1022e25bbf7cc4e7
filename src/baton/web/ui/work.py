"""The Work Guide: my items and my groups'/queues' items, claim, the item's form, complete.

``/work/{item_id}`` is the link notification e-mails carry. An item outside the caller's
scope is answered exactly like an item that does not exist (404): nothing leaks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from baton.auth.directory import User
from baton.auth.roles import Permission
from baton.engine.status import WorkItemStatus
from baton.errors import NotFound, ValidationError
from baton.rows import WorkItem
from baton.runtime.engine import Engine
from baton.web.security import Principal, engine_of
from baton.web.ui.base import PAGE_SIZE, Paging, cursor_param, is_htmx, page_need, render
from baton.work.items import OPEN_STATUSES

router = APIRouter()
Worker = Annotated[Principal, Depends(page_need(Permission.WORK))]
ORDERS = ("due", "priority", "created")


async def form_data(request: Request) -> FormData:
    return await request.form()


Form = Annotated[FormData, Depends(form_data)]


def _scope(user: User, show: str) -> User | None:
    """Whose items to list: one's own scope, or everything for work:all with ``show=all``."""
    return None if show == "all" and user.can(Permission.WORK_ALL) else user


def _act_scope(user: User) -> User | None:
    return None if user.can(Permission.WORK_ALL) else user


def visible_item(eng: Engine, user: User, item_id: str) -> WorkItem:
    item = eng.get_work_item(item_id)
    if not user.may_see_item(item):
        raise NotFound("work item", item_id)
    return item


@router.get("/work")
def work_list(request: Request, principal: Worker, order: str = "due", show: str = "mine",
              after: str | None = None) -> Response:
    eng = engine_of(request)
    order = order if order in ORDERS else "due"
    show = "all" if show == "all" and principal.user.can(Permission.WORK_ALL) else "mine"
    scope = _scope(principal.user, show)
    after = cursor_param(after)
    found = eng.page_work(scope=scope, order=order, after=after, limit=PAGE_SIZE)
    pager = Paging(eng.count_work_bounded(scope=scope), after, found.next)
    return render(request, "work_list.html", principal, {
        "items": found.rows, "order": order, "show": show, "paging": pager,
        "query": {"order": order, "show": show}})


@router.post("/work/{item_id}/claim")
def claim(request: Request, item_id: str, principal: Worker) -> Response:
    eng = engine_of(request)
    visible_item(eng, principal.user, item_id)
    item = eng.claim(item_id, principal.name, scope=_act_scope(principal.user))
    item = eng.get_work_item(item_id)  # with its SLA
    if is_htmx(request):
        return render(request, "_work_row.html", principal, {"item": item, "claimed_now": True})
    return RedirectResponse(f"/work/{item_id}", status_code=303)


@router.get("/work/{item_id}")
def item_page(request: Request, item_id: str, principal: Worker) -> Response:
    eng = engine_of(request)
    item = visible_item(eng, principal.user, item_id)
    return render(request, "work_item.html", principal, _item_context(eng, principal.user, item))


@router.post("/work/{item_id}")
def complete(request: Request, item_id: str, principal: Worker, form: Form) -> Response:
    eng = engine_of(request)
    item = visible_item(eng, principal.user, item_id)
    data, errors = form_values(item["form"], form)
    if not errors:
        try:
            result = eng.complete(item_id, principal.name, data, scope=_act_scope(principal.user))
        except ValidationError as exc:
            errors = dict(exc.fields)
        else:
            return render(request, "work_done.html", principal,
                          _done_context(eng, principal.user, result))
    ctx = _item_context(eng, principal.user, item)
    ctx.update(errors=errors, values={k: v for k, v in form.items() if isinstance(v, str)})
    return render(request, "work_item.html", principal, ctx, status=422)


def form_values(fields: Sequence[Mapping[str, Any]], form: FormData) -> tuple[dict[str, Any], dict[str, str]]:
    """The form's values for ``engine.complete``, which validates them as the API does.

    Empty inputs are left out (so defaults apply and required fields are reported), a
    checkbox is true when sent, JSON fields are parsed here.
    """
    data: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        name, kind = f["name"], f["type"]
        raw = form.get(name)
        if kind == "bool":
            data[name] = raw is not None
            continue
        if not isinstance(raw, str) or (raw.strip() == "" and kind not in ("string", "text")):
            continue
        if kind == "json":
            try:
                data[name] = json.loads(raw)
            except json.JSONDecodeError as exc:
                errors[name] = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            continue
        data[name] = raw.replace("\r\n", "\n") if kind == "text" else raw
    return data, errors


def _item_context(eng: Engine, user: User, item: WorkItem) -> dict[str, Any]:
    record = eng.get_record(item["record_id"]) if item["record_id"] else None
    run = eng.get_run(item["run_id"]) if item["run_id"] else None
    values = {f["name"]: f.get("default") for f in item["form"] if f.get("default") is not None}
    if item["status"] == WorkItemStatus.COMPLETED:
        values = {k: v for k, v in (item.get("data") or {}).items()}
    record_fields = {k: v for k, v in (record or {}).items() if k not in ("id", "object_type")}
    return {"item": item, "record": record, "record_fields": record_fields, "run": run,
            "values": values, "errors": {},
            "may_monitor": user.can(Permission.RUNS_READ),
            "may_act": item["status"] in OPEN_STATUSES
            and (item["status"] == WorkItemStatus.OPEN or item["claimed_by"] == user.name)}


def _done_context(eng: Engine, user: User, result: dict[str, Any]) -> dict[str, Any]:
    """What happened next: the run's stage and status, its steps there, new work items."""
    run = result.pop("run")
    defn, _ = eng.definitions.orchestration(run.orchestration, run.version)
    stage = defn.stage(run.current_stage) if run.current_stage else None
    steps = [run.steps[s.name] for s in stage.steps if s.name in run.steps] if stage else []
    new_items = [i for i in eng.list_work(run_id=run.id) if i["id"] != result["id"]]
    mine = [i for i in new_items if user.may_see_item(i)]
    return {"item": result, "run": run, "steps": steps, "new_items": mine,
            "other_items": len(new_items) - len(mine),
            "decision": run.decisions[-1] if run.decisions else None,
            "may_monitor": user.can(Permission.RUNS_READ)}
