"""Fallout: steps that failed after their retries, and the operator's retry/complete/skip."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from baton.auth.roles import Permission
from baton.web.api.common import After, Limit, Offset, Page, Reason, page, start_of, under
from baton.web.api.runs import ACTION_ERRORS, KEYED, RunDetail, run_action
from baton.web.idempotency import ActionIdempotencyKey, replayable
from baton.web.problems import problem_responses
from baton.web.security import Principal, engine_of, need

router = APIRouter(prefix="/fallout", tags=["Fallout"])

FALLOUT = Depends(need(Permission.FALLOUT))
FalloutId = Annotated[str, Path(min_length=3, max_length=250, pattern=r"^[^:]+:.+$",
                                            description="RUN_ID:STEP")]


class FalloutItem(BaseModel):
    id: str = Field(description="RUN_ID:STEP, as the actions take it")
    run_id: str
    orchestration: str
    record_id: str | None
    step: str
    stage: str
    iteration: int
    attempts: int
    error: dict[str, Any] | None
    since: str | None


class CompleteByHand(Reason):
    data: dict[str, Any] = Field(default_factory=dict,
                                 description="the step's output (checked against its `output:` "
                                             "fields when it declares them)")


@router.get("", response_model=Page[FalloutItem], summary="Steps in fallout, oldest run first",
            responses=problem_responses(401, 403, 422))
def list_fallout(request: Request, limit: Limit = 50, offset: Offset = 0, after: After = None,
                 _: Principal = FALLOUT) -> dict[str, Any]:
    start = start_of("fallout", after, offset)
    total, items = engine_of(request).page_fallout(limit=limit, offset=start)
    return page(items, total, limit, start, "fallout")


_ACTIONS = ("; 409 when the step is not in fallout (any more)." + KEYED)


def _resolve(request: Request, principal: Principal, key: str | None, fallout_id: str,
             body: Reason, action: str, output: dict[str, Any] | None = None) -> JSONResponse:
    """The operator's action, the key claimed in its transaction; answered with the run."""
    eng = engine_of(request)
    run_id = fallout_id.partition(":")[0]
    return run_action(request, principal, key, run_id, body,
                      lambda claim: eng.resolve_fallout(fallout_id, action, reason=body.reason,
                                                        actor=principal.name, output=output,
                                                        idempotency=claim))


@router.post("/{fallout_id}/retry", response_model=RunDetail, summary="Retry the step",
             description="Its attempts start over" + _ACTIONS,
             responses={**replayable("the run, its step retried"), **ACTION_ERRORS})
def retry(request: Request, fallout_id: FalloutId, body: Reason,
          idempotency_key: ActionIdempotencyKey = None,
          principal: Principal = FALLOUT) -> JSONResponse:
    return _resolve(request, principal, idempotency_key, fallout_id, body, "retry")


@router.post("/{fallout_id}/complete", response_model=RunDetail,
             summary="Mark the step complete, giving its output by hand",
             description="The run goes on as if the step had returned `data`" + _ACTIONS,
             responses={**replayable("the run, its step completed"), **ACTION_ERRORS})
def complete(request: Request, fallout_id: FalloutId, body: CompleteByHand,
             idempotency_key: ActionIdempotencyKey = None,
             principal: Principal = FALLOUT) -> JSONResponse:
    with under("data", {"reason": "reason"}):
        return _resolve(request, principal, idempotency_key, fallout_id, body, "complete",
                        body.data)


@router.post("/{fallout_id}/skip", response_model=RunDetail, summary="Skip the step",
             description="Its dependents go on without its output" + _ACTIONS,
             responses={**replayable("the run, its step skipped"), **ACTION_ERRORS})
def skip(request: Request, fallout_id: FalloutId, body: Reason,
         idempotency_key: ActionIdempotencyKey = None,
         principal: Principal = FALLOUT) -> JSONResponse:
    return _resolve(request, principal, idempotency_key, fallout_id, body, "skip")
