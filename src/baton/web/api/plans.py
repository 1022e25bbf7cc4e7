"""Fulfillment plans of orders (DESIGN §2.4): read one as a graph by lane, cancel it before
its point of no return (compensation), amend it to the order's lines as they are now
(``dry_run``: the difference only, nothing applied) — what ``baton plans`` does."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from baton.auth.roles import Permission
from baton.runtime.idempotency import IdempotencyClaim
from baton.web.api.common import Reason, RequestBody
from baton.web.idempotency import (
    ActionIdempotencyKey,
    idempotent_action,
    idempotent_action_apart,
    replayable,
)
from baton.web.problems import problem_responses
from baton.web.security import Principal, engine_of, need

router = APIRouter(prefix="/plans", tags=["Plans"])

READ = Depends(need(Permission.RUNS_READ))
WRITE = Depends(need(Permission.RUNS_WRITE))
OrderId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$",
                              description="the order record's id")]


class PlanStep(BaseModel):
    name: str = Field(description="the step instance: `template[instance]`, or the template "
                                  "for a plan-scoped step")
    template: str = Field(description="the fulfillment's step it was made from")
    type: str
    lane: str = Field(description="its swimlane (`(no lane)` when the step names none)")
    scope: str = Field(description="plan, line_item, bundle or group")
    instance: str = Field(description="the line key, bundle key or group value; empty for "
                                      "the plan")
    lines: list[str] = Field(description="the fulfillment lines it was made for")
    status: str = Field(description="the step's status in the plan's run; `pending` before "
                                    "it is reached")
    after: list[str] = Field(description="the step instances it waits for (across lanes too)")
    sla: dict[str, Any] | None = Field(description=(
        "status, due_at, jeopardy_at; null without an SLA. status: an open step's as it "
        "stands (on_track, in_jeopardy, overdue); an ended step has no live state: a "
        "completed step's is met, or missed (completed after due_at), a skipped, canceled "
        "or failed step's null"))
    ponr: bool = Field(default=False, description="a point of no return: once completed, "
                                                  "the order can no longer be canceled or "
                                                  "amended")
    has_rollback: bool = Field(description="cancel or amend runs its rollback if it completed")
    wait: bool = Field(default=False, description="the wait of a `not_before` date")
    compensates: str | None = Field(default=None, description="in a compensation: the step "
                                                              "it rolls back")


class Ponr(BaseModel):
    steps: list[str] = Field(description="the plan's point-of-no-return steps")
    passed: str | None = Field(description="the one that completed (cancel and amend are "
                                           "refused), else null")


class Compensation(BaseModel):
    revision: int
    run_id: str
    status: str
    steps: list[PlanStep] = Field(description="the rollbacks, in reverse dependency order")


class Plan(BaseModel):
    order_id: str
    revision: int = Field(description="the plan revision (each amendment is a new one)")
    run_id: str = Field(description="the plan's run (GET /api/runs/{run_id})")
    status: str = Field(description="the plan run's status")
    fulfillment: str
    fulfillment_version: int
    catalog: str
    catalog_version: int
    lanes: list[str] = Field(description="swimlanes, in the fulfillment's order")
    ponr: Ponr
    steps: list[PlanStep] = Field(description="the step graph: each step's lane, scope "
                                              "instance, status, SLA and dependencies")
    lines: list[dict[str, Any]] = Field(description="the fulfillment lines the order was "
                                                    "decomposed into")
    compensation: Compensation | None = Field(description="the rollback run after a cancel")


class Canceled(BaseModel):
    order_id: str
    run_id: str = Field(description="the plan's run, now canceled")
    compensation_run_id: str = Field(description="the run of the rollbacks")
    rollbacks: list[str] = Field(description="the rollback steps it runs, in order")


class Amend(RequestBody):
    dry_run: bool = Field(default=False, description="true: answer the difference only, "
                                                     "change nothing")


class Amended(BaseModel):
    order_id: str
    applied: bool = Field(description="false for a dry run, and when nothing differs (no new "
                                      "revision is made)")
    revision: int = Field(description="the plan revision it was compared with; once "
                                      "applied, the new revision")
    run_id: str
    added: list[str]
    removed: list[str] = Field(description="left the plan (open ones canceled)")
    changed: list[str] = Field(description="removed and added again")
    rewired: list[str] = Field(description="only their dependencies changed: they keep their "
                                           "state")
    unchanged: list[str]
    compensate: list[str] = Field(description="the completed removed or changed steps whose "
                                              "rollback runs")
    status: dict[str, str] = Field(description="removed and changed steps: their status now")
    rollbacks: list[str] = Field(default_factory=list, description=(
        "the rollback steps that join the plan for them, in reverse dependency order: a "
        "changed step runs again only once its own rollback has completed"))
    cancels_order: bool = Field(default=False, description=(
        "true: every line of the order is canceled, and the amendment cancels the order, "
        "as POST /api/plans/{order_id}/cancel does (refused the same way past its point of "
        "no return): every plan step is removed, the plan's run canceled, and `rollbacks` "
        "run in the compensation run"))
    compensation_run_id: str | None = Field(description=(
        "null: an amendment's rollbacks run in the plan itself (kept for clients of "
        "earlier releases, where they ran in a run of their own); but the compensation "
        "run of an amendment that cancels the order (`cancels_order`)"))


KEYED = (" With an `Idempotency-Key`, a retry does nothing more and answers as the first "
         "request was answered.")


@router.get("/{order_id}", response_model=Plan, summary="An order's fulfillment plan",
            description="The latest plan revision as a graph: lanes, each step with its "
                        "scope instance, status, SLA and dependencies, the point of no "
                        "return, the fulfillment lines, and the compensation after a cancel. "
                        "404 when the order has no plan (it gets one when it is submitted).",
            responses=problem_responses(401, 403, 404, 422))
def get_plan(request: Request, order_id: OrderId, _: Principal = READ) -> dict[str, Any]:
    return engine_of(request).plans.show(order_id)


@router.post("/{order_id}/cancel", response_model=Canceled,
             summary="Cancel an order's plan, rolling back what it did",
             description="Running steps stop and each completed step's rollback runs, in "
                         "reverse dependency order, in a compensation run (durable, retried, "
                         "in fallout like any step). 409 once a point-of-no-return step has "
                         "completed (naming it), or when the plan is already canceled." + KEYED,
             responses={**replayable("the plan, canceled, and its compensation run"),
                        **problem_responses(400, 401, 403, 404, 409, 422)})
def cancel_plan(request: Request, order_id: OrderId, body: Reason,
                idempotency_key: ActionIdempotencyKey = None,
                principal: Principal = WRITE) -> JSONResponse:
    plans = engine_of(request).plans

    def act(claim: IdempotencyClaim | None) -> dict[str, Any]:
        return plans.cancel(order_id, body.reason, principal.name, idempotency=claim)

    return idempotent_action(request, principal, idempotency_key, "plan", body, Canceled, act,
                             lambda: _canceled(plans.show(order_id)))


def _canceled(plan: dict[str, Any]) -> dict[str, Any]:
    """A cancel's answer rebuilt from the plan as it is (its first answer lost to a crash)."""
    comp = plan["compensation"] or {}
    return {"order_id": plan["order_id"], "run_id": plan["run_id"],
            "compensation_run_id": comp.get("run_id", ""),
            "rollbacks": [s["name"] for s in comp.get("steps", ())]}


@router.post("/{order_id}/amend", response_model=Amended,
             summary="Amend an order's plan to its lines as they are now",
             description="Only the difference is planned: steps of unchanged lines keep their "
                         "state, removed (and changed) steps leave the plan and the completed "
                         "ones are rolled back by rollback steps that join the plan (a "
                         "changed step runs again, as its next iteration, once its rollback "
                         "has completed), added (and changed) steps join it. Change the "
                         "lines first (a new line, or a line's `action` set to `cancel`); "
                         "`dry_run: true` answers the difference without applying it (and is refused as the "
                         "amendment would be). Every line canceled (`cancels_order`): the "
                         "amendment cancels the order, as the plan's cancel does, its "
                         "rollbacks in a compensation run. 409 "
                         "once a point-of-no-return step has completed, or when the plan is "
                         "not in progress." + KEYED,
             responses={**replayable("what the amendment did (or, dry, would do)"),
                        **problem_responses(400, 401, 403, 404, 409, 422)})
def amend_plan(request: Request, order_id: OrderId, body: Amend | None = None,
               idempotency_key: ActionIdempotencyKey = None,
               principal: Principal = WRITE) -> JSONResponse:
    plans = engine_of(request).plans
    asked = body or Amend()  # (no body asks what `{}` asks: the same request)

    if asked.dry_run:  # (a read: a key, if any, is claimed apart)
        return idempotent_action_apart(
            request, principal, idempotency_key, "plan", asked, Amended,
            lambda: {**plans.diff(order_id, refuse=True), "applied": False,
                     "compensation_run_id": None})

    def act(claim: IdempotencyClaim | None) -> dict[str, Any]:
        return plans.amend(order_id, principal.name, idempotency=claim)

    return idempotent_action(request, principal, idempotency_key, "plan", asked, Amended, act,
                             lambda: _amended(plans, order_id))


def _amended(plans: Any, order_id: str) -> dict[str, Any]:
    """An amendment's answer rebuilt from the plan as it is (its first answer lost to a
    crash); one that canceled the order names its compensation run."""
    out = {**plans.diff(order_id), "applied": True, "compensation_run_id": None}
    if out.get("cancels_order"):
        comp = plans.show(order_id)["compensation"] or {}
        out["compensation_run_id"] = comp.get("run_id")
        out["rollbacks"] = [s["name"] for s in comp.get("steps", ())]
    return out
