"""The Work Guide: my items and my groups'/queues' items, claim, the item's form, complete.

``/work/{item_id}`` is the link notification e-mails carry. An item outside the caller's
scope is answered exactly like an item that does not exist (404): nothing leaks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from baton.auth.directory import User
from baton.auth.roles import Permission
from baton.clock import iso
from baton.engine.sla import SLA_STATES
from baton.engine.status import WorkItemStatus
from baton.errors import NotFound, PermissionDenied, TransitionConflict, ValidationError
from baton.records.fields import coerce_fields
from baton.rows import WorkItem
from baton.runtime.engine import Engine
from baton.web.security import Principal, engine_of
from baton.web.ui.base import PAGE_SIZE, Paging, cursor_param, form_json, is_htmx, page_need, render
from baton.web.ui.events import describe_event
from baton.work.items import OPEN_STATUSES
from baton.work.service import TABS, WorkNarrowing, form_fields, tab_query

router = APIRouter()
Worker = Annotated[Principal, Depends(page_need(Permission.WORK))]
ORDERS = ("due", "priority", "created")
TAB_LABELS = (("mine", "Mine"), ("unclaimed", "Unclaimed in my queues"),
              ("all", "All I can see"))


async def form_data(request: Request) -> FormData:
    return await request.form()


Form = Annotated[FormData, Depends(form_data)]


def _act_scope(user: User) -> User | None:
    return None if user.can(Permission.WORK_ALL) else user


def visible_item(eng: Engine, user: User, item_id: str) -> WorkItem:
    item = eng.get_work_item(item_id)
    if not user.may_see_item(item):
        raise NotFound("work item", item_id)
    return item


@dataclass(frozen=True)
class ListState:
    """What a Work Guide list shows: a tab, the filters, the order, the page. It rides in
    the page's URL, so the self-refreshing list, the pager and the tabs keep it."""

    tab: str = "all"
    order: str = "due"
    q: str = ""
    queue: str = ""
    orchestration: str = ""
    sla: str = ""
    after: str | None = None

    @classmethod
    def of(cls, tab: str, order: str, q: str, queue: str, orchestration: str, sla: str,
           after: str | None) -> ListState:
        return cls(tab=tab if tab in TABS else "all", order=order if order in ORDERS else "due",
                   q=q.strip()[:200], queue=queue.strip()[:200],
                   orchestration=orchestration.strip()[:200],
                   sla=sla if sla in SLA_STATES else "", after=cursor_param(after))

    def query(self, **changes: str | None) -> dict[str, str]:
        """The URL query of this state (without the page, unless ``after`` is changed)."""
        values = {"tab": self.tab, "order": self.order, "q": self.q, "queue": self.queue,
                  "orchestration": self.orchestration, "sla": self.sla, **changes}
        return {k: v for k, v in values.items() if v}

    @property
    def narrowed(self) -> bool:
        return bool(self.q or self.queue or self.orchestration or self.sla)


def _state(tab: str = "all", order: str = "due", q: str = "", queue: str = "",
           orchestration: str = "", sla: str = "", after: str | None = None) -> ListState:
    return ListState.of(tab, order, q, queue, orchestration, sla, after)


State = Annotated[ListState, Depends(_state)]


def _list_context(eng: Engine, user: User, st: ListState) -> dict[str, Any]:
    chosen = tab_query(st.tab, user, user.can(Permission.WORK_ALL))
    narrow = WorkNarrowing(orchestration=st.orchestration or None, search=st.q or None,
                           sla=st.sla or None)
    found = eng.page_work(scope=chosen.scope, user=chosen.user, statuses=chosen.statuses,
                          queue=st.queue or None, order=st.order, after=st.after,
                          limit=PAGE_SIZE, narrow=narrow, on_behalf=chosen.on_behalf)
    total = eng.count_work_bounded(scope=chosen.scope, user=chosen.user,
                                   statuses=chosen.statuses, queue=st.queue or None,
                                   narrow=narrow, on_behalf=chosen.on_behalf)
    return {"items": found.rows, "st": st, "now": eng.clock.now(),
            "paging": Paging(total, st.after, found.next),
            "live_url": "/work/live?" + urlencode(st.query(after=st.after)),
            "may_release_all": user.can(Permission.WORK_ALL),
            "stale": eng.work.stale_claims(found.rows)}


@router.get("/work")
def work_list(request: Request, principal: Worker, st: State, none: str = "") -> Response:
    eng = engine_of(request)
    ctx = _list_context(eng, principal.user, st)
    orchestrations = sorted({r.name for r in eng.definitions.list_versions("orchestration")})
    ctx.update(tabs=TAB_LABELS, orchestrations=orchestrations, sla_states=SLA_STATES,
               queues=sorted(principal.user.queues), nothing_next=bool(none))
    return render(request, "work_list.html", principal, ctx)


@router.get("/work/live")
def work_live(request: Request, principal: Worker, st: State) -> Response:
    """The list alone, for the page's own refresh every few seconds (htmx): the same tab,
    filters, order and page; the page around it (and its scroll position) stays."""
    ctx = _list_context(engine_of(request), principal.user, st)
    return render(request, "_work_items.html", principal, ctx)


@router.post("/work/next")
def next_item(request: Request, principal: Worker, form: Form) -> Response:
    """Claim the most urgent item I may take and open it; back to the list when there is
    none (saying so). The list's queue, orchestration and SLA filters apply."""
    eng = engine_of(request)
    orchestration, sla = str(form.get("orchestration") or ""), str(form.get("sla") or "")
    queue = str(form.get("queue") or "")[:200]
    item = eng.claim_next(principal.user, queue=queue or None, narrow=WorkNarrowing(
        orchestration=orchestration or None, sla=sla if sla in SLA_STATES else None))
    if item is None:
        back = ListState.of(str(form.get("tab") or "all"), str(form.get("order") or "due"),
                            "", queue, orchestration, sla, None)
        return RedirectResponse("/work?" + urlencode({**back.query(), "none": "1"}),
                                status_code=303)
    return RedirectResponse(f"/work/{item['id']}", status_code=303)


@router.post("/work/{item_id}/claim")
def claim(request: Request, item_id: str, principal: Worker) -> Response:
    eng = engine_of(request)
    visible_item(eng, principal.user, item_id)
    eng.claim(item_id, principal.name, scope=_act_scope(principal.user))
    item = eng.get_work_item(item_id)  # with its SLA
    if is_htmx(request):
        return _row(request, principal, eng, item, "claimed")
    return RedirectResponse(f"/work/{item_id}?done=claimed", status_code=303)


@router.post("/work/{item_id}/release")
def release(request: Request, item_id: str, principal: Worker) -> Response:
    """Unclaim: the item is open again for its assignee (audited)."""
    eng = engine_of(request)
    visible_item(eng, principal.user, item_id)
    eng.release(item_id, principal.name, scope=_act_scope(principal.user))
    item = eng.get_work_item(item_id)
    if is_htmx(request):
        return _row(request, principal, eng, item, "released")
    return RedirectResponse(f"/work/{item_id}?done=released", status_code=303)


@router.post("/work/{item_id}/accept")
def accept(request: Request, item_id: str, principal: Worker) -> Response:
    """Accept the offer of an item (routing's offer mode): it is mine."""
    eng = engine_of(request)
    visible_item(eng, principal.user, item_id)
    eng.accept(item_id, principal.name, scope=_act_scope(principal.user))
    return RedirectResponse(f"/work/{item_id}", status_code=303)


@router.post("/work/{item_id}/decline")
def decline(request: Request, item_id: str, principal: Worker) -> Response:
    """Decline the offer: it goes to the next person; back to my list."""
    eng = engine_of(request)
    visible_item(eng, principal.user, item_id)
    eng.decline(item_id, principal.name, scope=_act_scope(principal.user))
    return RedirectResponse("/work", status_code=303)


def _row(request: Request, principal: Principal, eng: Engine, item: WorkItem,
         done: str) -> Response:
    return render(request, "_work_row.html", principal, {
        "item": item, "done_now": done, "now": eng.clock.now(),
        "may_release_all": principal.user.can(Permission.WORK_ALL),
        "stale": eng.work.stale_claims([item])})


@router.get("/work/{item_id}")
def item_page(request: Request, item_id: str, principal: Worker,
              reassigned: str | None = None, done: str | None = None) -> Response:
    """The item, its form and its history. After a claim or a release on this page (a full
    reload: ``?done=claimed`` or ``?done=released``, said only while it is still true), the
    page says what happened and keep-state.js moves the focus to what comes next: the
    form's first field after a claim, the Claim button after a release. After completing
    it (``?done=completed``, where the form's POST goes: 303), what happened next, to who
    completed it; anyone else who may see the item gets its page."""
    eng = engine_of(request)
    item = visible_item(eng, principal.user, item_id)
    if done == "completed" and item["status"] == WorkItemStatus.COMPLETED \
            and item["completed_by"] == principal.name and item["run_id"]:
        return render(request, "work_done.html", principal,
                      _done_context(eng, principal.user, item))
    ctx = _item_context(eng, principal.user, item)
    name = item["title"] or item["step"]
    if reassigned and reassigned == f"{item['assignee_kind']}:{item['assignee']}":
        ctx["done"] = f"Reassigned to {reassigned}."
    elif done == "claimed" and item["status"] == WorkItemStatus.CLAIMED \
            and item["claimed_by"] == principal.name:
        ctx.update(done=f"You claimed {name}.", done_now="claimed")
    elif done == "released" and item["status"] == WorkItemStatus.OPEN:
        ctx.update(done=f"You released {name}: it is open again.", done_now="released")
    return render(request, "work_item.html", principal, ctx)


@router.post("/work/{item_id}/reassign")
def reassign(request: Request, item_id: str, principal: Worker, form: Form) -> Response:
    """An operator gives an open or claimed item to ``user:NAME``, ``group:NAME`` or
    ``queue:NAME`` (a claim is released; audited; a queue's routing rule routes it): what
    ``POST /api/work/{id}/reassign`` and ``baton work reassign`` do."""
    eng = engine_of(request)
    item = visible_item(eng, principal.user, item_id)
    if not principal.user.can(Permission.WORK_ALL):
        raise PermissionDenied("only an operator or an admin may reassign a work item")
    to = str(form.get("to") or "").strip()[:206]
    error: str | None = None
    try:  # (WorkService checks the target, as for the API and the CLI)
        eng.reassign(item_id, to, actor=principal.name)
    except ValidationError as exc:
        error = "; ".join(exc.fields.values()) or str(exc)
    if error is not None:
        ctx = _item_context(eng, principal.user, item)
        ctx.update(reassign_to=to, reassign_error=error)
        return render(request, "work_item.html", principal, ctx, status=422)
    return RedirectResponse(f"/work/{item_id}?" + urlencode({"reassigned": to}), status_code=303)


@router.post("/work/{item_id}")
def complete(request: Request, item_id: str, principal: Worker, form: Form) -> Response:
    eng = engine_of(request)
    item = visible_item(eng, principal.user, item_id)
    data, errors = form_values(item["form"], form)
    if errors:  # (JSON that does not parse): the other fields' problems are said too
        others = [f for f in form_fields(item["form"]) if f.name not in errors]
        try:
            coerce_fields(others, data, "form")
        except ValidationError as exc:
            errors = {**exc.fields, **errors}
    else:
        try:
            result = eng.complete(item_id, principal.name, data, scope=_act_scope(principal.user))
        except ValidationError as exc:
            errors = dict(exc.fields)
        except TransitionConflict as exc:
            return _not_taken(request, principal, eng, item_id, form, str(exc))
        else:  # Post/Redirect/Get: a reload of what happened next posts nothing again
            return RedirectResponse(f"/work/{result['id']}?done=completed", status_code=303)
    ctx = _item_context(eng, principal.user, item)
    ctx.update(errors=errors, values={k: v for k, v in form.items() if isinstance(v, str)})
    return render(request, "work_item.html", principal, ctx, status=422)


def _not_taken(request: Request, principal: Principal, eng: Engine, item_id: str,
               form: FormData, why: str) -> Response:
    """A completion the item no longer allows: sent again (Back and "resend", a second
    tab), or someone else completed, claimed or canceled it first. The item's page as it
    is now, saying so (a 409), rather than an error page whose "reload" posts it again:
    who completed it and when, and what was sent, kept on the page (in the form, when it
    still applies; else shown as not taken, to be copied)."""
    item = visible_item(eng, principal.user, item_id)
    ctx = _item_context(eng, principal.user, item)
    names = {f["name"] for f in item["form"]}
    sent = {k: v for k, v in form.items() if isinstance(v, str) and k in names}
    mine = item["status"] == WorkItemStatus.COMPLETED and item["completed_by"] == principal.name
    if ctx["may_act"]:
        ctx["values"] = sent
    ctx.update(not_taken={"why": why.rstrip(". "), "mine": mine,
                          "sent": {} if ctx["may_act"] else sent})
    return render(request, "work_item.html", principal, ctx, status=409)


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
            value, why = form_json(raw)
            if why is not None:
                errors[name] = why
            else:
                data[name] = value
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
    holds = item["status"] == WorkItemStatus.CLAIMED and item["claimed_by"] == user.name
    # A claim by someone who no longer acts for the item's user (a delegate whose
    # delegation ended...): its user, or their delegate now, takes it back.
    gone = eng.work.stale_claims([item]).get(item["id"])
    takes_back = gone is not None and not holds \
        and (item["assignee"] == user.name or user.delegated(item))
    # The record's timeline (its run's, without a record): for the person who holds the
    # item, and for those who may read records or runs anyway.
    events: list[dict[str, Any]] | None = None
    if holds or user.can(Permission.RECORDS_READ) or user.can(Permission.RUNS_READ):
        found = (eng.timeline(item["record_id"]) if item["record_id"]
                 else eng.run_events(item["run_id"]))
        events = [{**e, "text": describe_event(e)} for e in found]
    return {"item": item, "record": record, "record_fields": record_fields, "run": run,
            "values": values, "errors": {}, "events": events, "now": eng.clock.now(),
            "may_monitor": user.can(Permission.RUNS_READ),
            "may_release": item["status"] == WorkItemStatus.CLAIMED
            and (holds or user.can(Permission.WORK_ALL)),
            "may_act": item["status"] in OPEN_STATUSES
            and item.get("routing_status") != "offered"
            and (item["status"] == WorkItemStatus.OPEN or (holds and gone is None)
                 or takes_back),
            "claim_gone": gone, "takes_back": takes_back,
            "offer_expires_at": _offer_expires_at(item),
            "may_reassign": item["status"] in OPEN_STATUSES and user.can(Permission.WORK_ALL),
            "reassign_to": "", "reassign_error": None, "done": None, "done_now": None}


def _offer_expires_at(item: WorkItem) -> str | None:
    """When the offer of ``item`` expires: offered at, plus its rule's offer timeout."""
    offer = (item.get("routing") or {}).get("offer")
    if item.get("routing_status") != "offered" or not offer or not item.get("routed_at"):
        return None
    at = datetime.fromisoformat(str(item["routed_at"]))
    return iso(at + timedelta(milliseconds=int(offer["timeout_ms"])))


def _done_context(eng: Engine, user: User, item: WorkItem) -> dict[str, Any]:
    """What happened next, as it is now: the decision taken when the item's stage ended,
    the run's status and stage, the steps there (or, once the run has ended, of the stage
    the decision went to), its open work items (those ``user`` may see named, the others
    counted)."""
    run = eng.get_run(item["run_id"])
    defn, _ = eng.definitions.orchestration(run.orchestration, run.version)
    decision = _decision_of(run.decisions, item)
    shown = run.current_stage or (decision["goto"] if decision else None)
    stage = defn.stage(shown) if shown else None
    steps = [run.steps[s.name] for s in stage.steps if s.name in run.steps] if stage else []
    new_items = [i for i in eng.list_work(run_id=run.id) if i["id"] != item["id"]]
    mine = [i for i in new_items if user.may_see_item(i)]
    return {"item": item, "run": run, "steps": steps, "steps_stage": shown if steps else None,
            "new_items": mine, "other_items": len(new_items) - len(mine),
            "decision": decision, "may_monitor": user.can(Permission.RUNS_READ)}


def _decision_of(decisions: Sequence[Mapping[str, Any]], item: WorkItem
                 ) -> Mapping[str, Any] | None:
    """The decision taken when the item's stage (its iteration) ended, if it has: the
    same on every reload, however far the run went since."""
    ours = [d for d in decisions if d.get("stage") == item["stage"]]
    same = [d for d in ours if d.get("iteration") == item.get("iteration")]
    found = same or ours
    return found[-1] if found else None
