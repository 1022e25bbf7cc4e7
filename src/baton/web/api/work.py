"""Work items: list (an agent's scope, or all), show, claim, complete, reassign.

An agent (``work`` without ``work:all``) sees and acts only on items assigned to them, to
one of their groups or one of their queues (or claimed by them). An item outside that
scope answers 404 exactly like an item that does not exist, so nothing leaks; the engine
checks the scope again inside the claim/complete transaction (``scope=``), so an item
reassigned meanwhile is refused (403) with nothing changed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from baton.auth.directory import User
from baton.auth.roles import Permission
from baton.engine.status import WorkItemStatus
from baton.errors import NotFound
from baton.rows import WorkItem as WorkItemRow
from baton.runtime.idempotency import IdempotencyClaim
from baton.runtime.views import completed_view, work_item_view
from baton.web.api.common import (
    After,
    KeysetOffset,
    Limit,
    Page,
    RequestBody,
    exact_post,
    keyset_page,
    one_of_after_or_offset,
    under,
)
from baton.web.api.runs import RunSummary
from baton.web.idempotency import (
    REPLAY_HEADERS,
    ActionIdempotencyKey,
    Answer,
    TakingIdempotencyKey,
    idempotent_action,
    idempotent_take,
    replayable,
)
from baton.web.problems import problem_responses
from baton.web.security import Principal, current_principal, engine_of, need
from baton.work.service import WorkNarrowing, tab_query

router = APIRouter(prefix="/work", tags=["Work"])

WORK = Depends(need(Permission.WORK))
WORK_ALL = Depends(need(Permission.WORK_ALL))
ANYONE = Depends(current_principal)  # (the operation checks who may do it)
ItemId = Annotated[str, Path(min_length=1, max_length=40)]
Text = Annotated[str | None, Query(min_length=1, max_length=200)]


class Order(str, Enum):
    created = "created"
    due = "due"
    priority = "priority"


class Tab(str, Enum):
    mine = "mine"
    unclaimed = "unclaimed"
    all = "all"


class SlaState(str, Enum):
    on_track = "on_track"
    in_jeopardy = "in_jeopardy"
    overdue = "overdue"


class FormField(BaseModel):
    name: str
    type: str
    required: bool = False
    choices: list[Any] = Field(default_factory=list)
    default: Any = None
    label: str | None = None
    help: str | None = Field(default=None, description="the field's `description`: help text "
                                                       "for who fills it in")


class WorkItem(BaseModel):
    id: str
    status: WorkItemStatus
    title: str = Field(description="from the record (the step's `title`, the object type's "
                                    "`title_field`), computed when the item was created")
    summary: str | None = Field(description="a line about the record (the step's `summary`, "
                                            "the object type's `summary_field`)")
    instructions: str | None
    run_id: str
    record_id: str | None
    orchestration: str
    stage: str
    step: str
    iteration: int
    assignee_kind: str = Field(description="user, group or queue")
    assignee: str
    assigned_to: str = Field(description="KIND:NAME")
    claimed_by: str | None
    form: list[FormField]
    data: dict[str, Any] | None = Field(description="the submitted form, once completed")
    priority: int | None
    sla_status: str | None = Field(description="on_track, in_jeopardy or overdue")
    due_at: str | None
    created_at: str
    updated_at: str
    completed_at: str | None
    completed_by: str | None
    version: int
    input: dict[str, Any] | None = Field(
        default=None, description="the step's input: values evaluated when the step started")
    step_type: str | None = Field(default=None, description=(
        "interactive or approval (an approval's assignee's delegate may act on it)"))
    routing_status: str | None = Field(default=None, description=(
        "for an item a routing rule assigns: waiting (for routing, in its queue or group), "
        "offered (to its assignee, who accepts or declines it: offer mode) or routed"))
    claim_stale: bool = Field(default=False, description=(
        "claimed by someone whose claim no longer stands: a delegate who no longer acts for "
        "the assignee (the delegation ended or is out of its dates, they were deactivated or "
        "lost the `work` permission). The assignee (or her delegate now) may claim it back "
        "(the next item counts it as unclaimed) or complete it; the claimer may only release "
        "it"))


class Completed(WorkItem):
    run: RunSummary = Field(description="the run after the step completed")


class Submission(RequestBody):
    data: dict[str, Any] = Field(default_factory=dict, description="the form's fields",
                                 examples=[{"resolution": "close", "notes": "answered"}])


class Reassign(RequestBody):
    to: str = Field(pattern=r"^(user|group|queue):[A-Za-z0-9][A-Za-z0-9_.@-]{0,199}$",
                    max_length=206, description="user:NAME, group:NAME or queue:NAME",
                    examples=["queue:tier2"])


def _scope(principal: Principal) -> User | None:
    """Whose scope the caller acts in: None (everything) with work:all."""
    return None if principal.user.can(Permission.WORK_ALL) else principal.user


def _views(request: Request, items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The items as the API shows them, each saying whether its claim still stands (no
    read at all unless one is claimed by someone other than its user)."""
    stale = engine_of(request).work.stale_claims(items)
    return [{**work_item_view(i), "claim_stale": i["id"] in stale} for i in items]


def _view(request: Request, item: Mapping[str, Any]) -> dict[str, Any]:
    return _views(request, [item])[0]


def _visible_item(request: Request, item_id: str, principal: Principal) -> WorkItemRow:
    item = engine_of(request).get_work_item(item_id)
    if not principal.user.may_see_item(item):
        raise NotFound("work item", item_id)  # the same answer as for a missing item
    return item


@router.get("", response_model=Page[WorkItem], summary="List work items",
            description="An agent gets the items assigned to them, their groups or their "
                        "queues; `work:all` (operators, admins) gets every item, or its own "
                        "scope with `mine=true`. Default statuses: open and claimed. Keyset "
                        "pagination: follow `next` as `after` (same order). `total` is exact "
                        "up to 1000 items, beyond that estimated (`total_estimated`).",
            responses=problem_responses(401, 403, 422))
def list_work(request: Request, queue: Text = None, group: Text = None,
              status: Annotated[list[WorkItemStatus] | None, Query(max_length=4)] = None,
              record_id: Text = None, order: Order = Order.created,
              mine: Annotated[bool, Query(description="only my scope (work:all)")] = False,
              tab: Annotated[Tab | None, Query(description=(
                  "the Work Guide's tabs: `mine` (assigned to me or claimed by me), "
                  "`unclaimed` (open in my user, groups and queues), `all` (all I can "
                  "see); `status` keeps some of the tab's statuses"))] = None,
              orchestration: Text = None,
              q: Annotated[str | None, Query(min_length=1, max_length=200, description=(
                  "text in the title or summary (ignoring case)"))] = None,
              sla: Annotated[SlaState | None, Query(description="the SLA's state now")] = None,
              limit: Limit = 50, offset: KeysetOffset = 0, after: After = None,
              principal: Principal = WORK) -> dict[str, Any]:
    eng = engine_of(request)
    scope = principal.user if mine else _scope(principal)
    statuses = [s.value for s in status or (WorkItemStatus.OPEN, WorkItemStatus.CLAIMED)]
    user: str | None = None
    on_behalf: tuple[str, ...] = ()
    if tab is not None:  # whose items; `status` narrows the tab's statuses, `mine` its "all"
        chosen = tab_query(tab.value, principal.user,
                           principal.user.can(Permission.WORK_ALL) and not mine)
        statuses = [st for st in chosen.statuses if not status or st in statuses]
        scope, user, on_behalf = chosen.scope, chosen.user, chosen.on_behalf
    narrow = WorkNarrowing(orchestration=orchestration, search=q,
                           sla=sla.value if sla else None)
    with under("query"):
        one_of_after_or_offset(after, offset)
        found = eng.page_work(queue=queue, group=group, statuses=statuses, record_id=record_id,
                              order=order.value, scope=scope, after=after, offset=offset,
                              limit=limit, user=user, narrow=narrow, on_behalf=on_behalf)
    total = eng.count_work_bounded(statuses=statuses, scope=scope, queue=queue, group=group,
                                   record_id=record_id, user=user, narrow=narrow,
                                   on_behalf=on_behalf)
    return keyset_page(_views(request, found.rows), found.next, total, limit, offset)


@router.post("/next", response_model=WorkItem, summary="Claim the next item",
             description="Claims the most urgent open item the caller may take (assigned to "
                         "them, one of their groups or queues): highest priority, then "
                         "earliest due, then oldest; optionally only of one queue, orchestration "
                         "or SLA state. Two people asking at once get different items. 204 when "
                         "there is nothing to take. With an `Idempotency-Key`, a retry (the "
                         "answer was lost) takes nothing more and answers the item the first "
                         "request took; a 204 does not use the key up.",
             responses={200: {"description": "the item, now claimed by the caller",
                              "headers": REPLAY_HEADERS},
                        204: {"description": "no open item the caller may take"},
                        **problem_responses(401, 403, 422)})
def claim_next(request: Request, orchestration: Text = None, queue: Text = None,
               sla: Annotated[SlaState | None, Query(description="the SLA's state now")] = None,
               idempotency_key: TakingIdempotencyKey = None,
               principal: Principal = WORK) -> Response:
    eng = engine_of(request)
    narrow = WorkNarrowing(orchestration=orchestration, sla=sla.value if sla else None)

    def take(claim: IdempotencyClaim | None) -> Answer | None:
        # (the item's claim and the key's commit together: WorkService.claim_next)
        item = eng.claim_next(principal.user, narrow=narrow, queue=queue, idempotency=claim)
        return None if item is None else (_view(request, item), {})

    asked = {"orchestration": orchestration, "queue": queue, "sla": sla.value if sla else None}
    return idempotent_take(request, principal, idempotency_key, "work_item", asked, WorkItem,
                           200, take, lambda item_id: (_view(request, eng.get_work_item(
                               item_id)), {}))


@router.get("/{item_id}", response_model=WorkItem, summary="A work item with its form",
            description="404 when it does not exist or is outside the caller's scope.",
            responses=problem_responses(401, 403, 404, 422))
def get_item(request: Request, item_id: ItemId, principal: Principal = WORK) -> dict[str, Any]:
    return _view(request, _visible_item(request, item_id, principal))


_KEYED = (" With an `Idempotency-Key`, a retry does nothing more and answers as the first "
          "request was answered.")
_ERRORS = problem_responses(400, 401, 403, 404, 409, 422)


def _item_action(request: Request, principal: Principal, key: str | None, item_id: str,
                 body: BaseModel | None, act: Callable[[IdempotencyClaim | None], WorkItemRow]
                 ) -> JSONResponse:
    """An action on a work item the caller may see (the key claimed in its transaction).
    A replay answers what the caller got, even once the item left their scope (the
    offeree's decline passes it on); an answer rebuilt from the item as it is now (the
    first was lost to a crash) only while they may see it."""
    def acted(claim: IdempotencyClaim | None) -> dict[str, Any]:
        _visible_item(request, item_id, principal)
        return _view(request, act(claim))

    return idempotent_action(
        request, principal, key, "work_item", body, WorkItem, acted,
        lambda: _view(request, _visible_item(request, item_id, principal)))


def _completed_again(request: Request, item_id: str, principal: Principal | None
                     ) -> dict[str, Any]:
    """A completion's (or recall's) answer rebuilt from the item and its run as they are
    (``principal``: only if they may see the item)."""
    eng = engine_of(request)
    item = (eng.get_work_item(item_id) if principal is None
            else _visible_item(request, item_id, principal))
    return completed_view({**item, "run": eng.get_run(item["run_id"])})


@router.post("/{item_id}/claim", response_model=WorkItem, summary="Claim an open item",
             description="Exactly one claim wins; the others get 409 (someone else has it: "
                         "pick another item)." + _KEYED,
             responses={**replayable("the item, now claimed by the caller"), **_ERRORS})
def claim(request: Request, item_id: ItemId, idempotency_key: ActionIdempotencyKey = None,
          principal: Principal = WORK) -> JSONResponse:
    eng = engine_of(request)
    return _item_action(request, principal, idempotency_key, item_id, None,
                        lambda key: eng.claim(item_id, principal.name, scope=_scope(principal),
                                              idempotency=key))


@router.post("/{item_id}/release", response_model=WorkItem, summary="Release a claimed item",
             description="Unclaim: the item is open again for its assignee (audited as "
                         "`work_item_released`). The claimer may release it; with `work:all` "
                         "(operators, admins) anyone's claim. 409 when it is not claimed."
                         + _KEYED,
             responses={**replayable("the item, open again"), **_ERRORS})
def release(request: Request, item_id: ItemId, idempotency_key: ActionIdempotencyKey = None,
            principal: Principal = WORK) -> JSONResponse:
    eng = engine_of(request)
    return _item_action(request, principal, idempotency_key, item_id, None,
                        lambda key: eng.release(item_id, principal.name,
                                                scope=_scope(principal), idempotency=key))


@router.post("/{item_id}/accept", response_model=WorkItem, summary="Accept an offered item",
             description="A routing rule in offer mode (`offer: {timeout: 2m}`) offered the "
                         "item to the caller: it becomes theirs (`routing_status: routed`; "
                         "audited as `offer_accepted`). Only the offeree may: 403 for anyone "
                         "else; 409 when the item is not on offer (accepted, declined, or "
                         "its offer expired)." + _KEYED,
             responses={**replayable("the item, now the caller's"), **_ERRORS})
def accept(request: Request, item_id: ItemId, idempotency_key: ActionIdempotencyKey = None,
           principal: Principal = WORK) -> JSONResponse:
    eng = engine_of(request)
    return _item_action(request, principal, idempotency_key, item_id, None,
                        lambda key: eng.accept(item_id, principal.name,
                                               scope=_scope(principal), idempotency=key))


@router.post("/{item_id}/decline", response_model=WorkItem, summary="Decline an offered item",
             description="The offeree turns the offer down (audited as `offer_declined`): "
                         "the item is offered to the next candidate of its routing rule, never "
                         "again to them, or waits for routing when nobody is left. Only the "
                         "offeree may: 403 for anyone else; 409 when it is not on offer."
                         + _KEYED,
             responses={**replayable("the item, offered to the next candidate or waiting"),
                        **_ERRORS})
def decline(request: Request, item_id: ItemId, idempotency_key: ActionIdempotencyKey = None,
            principal: Principal = WORK) -> JSONResponse:
    eng = engine_of(request)
    return _item_action(request, principal, idempotency_key, item_id, None,
                        lambda key: eng.decline(item_id, principal.name,
                                                scope=_scope(principal), idempotency=key))


@exact_post(router, "/{item_id}/complete", response_model=Completed, summary="Submit the form",
             description="The form is validated like the step defines it (422 naming each "
                         "field as `data.FIELD`); the step completes and the run moves on."
                         + _KEYED + " (A retry whose first answer was lost to a crash is "
                         "answered with the item and its run as they are now.)",
             responses={**replayable("the item, completed, and its run"), **_ERRORS})
def complete(request: Request, item_id: ItemId, body: Submission,
             idempotency_key: ActionIdempotencyKey = None,
             principal: Principal = WORK) -> JSONResponse:
    eng = engine_of(request)

    def act(key: IdempotencyClaim | None) -> dict[str, Any]:
        _visible_item(request, item_id, principal)
        with under("data"):
            return completed_view(eng.complete(item_id, principal.name, body.data,
                                               scope=_scope(principal), idempotency=key))

    return idempotent_action(request, principal, idempotency_key, "work_item", body,
                             Completed, act,
                             lambda: _completed_again(request, item_id, principal))


@router.post("/{item_id}/recall", response_model=Completed, summary="Recall an approval",
             description="Take back a pending approval: only who submitted it (who started its "
                         "run, or wrote the record that started it) or an operator (runs:write). "
                         "The item is canceled and the step completes with "
                         "`decision: recalled`; the record is unlocked." + _KEYED,
             responses={**replayable("the item, canceled, and its run"), **_ERRORS})
def recall(request: Request, item_id: ItemId, idempotency_key: ActionIdempotencyKey = None,
           principal: Principal = ANYONE) -> JSONResponse:
    work = engine_of(request).work
    return idempotent_action(
        request, principal, idempotency_key, "work_item", None, Completed,
        lambda key: completed_view(work.recall(item_id, principal.name, principal.user,
                                               idempotency=key)),
        lambda: _completed_again(request, item_id, None))  # (the submitter may not see it)


@router.post("/{item_id}/reassign", response_model=WorkItem, summary="Reassign an item",
             description="To `user:NAME`, `group:NAME` or `queue:NAME`; a claim is released. "
                         "Audited with who did it." + _KEYED,
             responses={**replayable("the item, reassigned"), **_ERRORS})
def reassign(request: Request, item_id: ItemId, body: Reassign,
             idempotency_key: ActionIdempotencyKey = None,
             principal: Principal = WORK_ALL) -> JSONResponse:
    # (WorkService checks the target: a user or group the directory and the definitions know)
    eng = engine_of(request)
    return idempotent_action(
        request, principal, idempotency_key, "work_item", body, WorkItem,
        lambda key: _view(request, eng.reassign(item_id, body.to, actor=principal.name,
                                                idempotency=key)),
        lambda: _view(request, eng.get_work_item(item_id)))
