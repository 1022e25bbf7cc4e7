"""Fallout: steps that failed after their retries, and the operator's retry/complete/skip."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field

from baton.auth.roles import Permission
from baton.web.api.common import After, Limit, Offset, Page, Reason, page_of, start_of, under
from baton.web.api.runs import RunDetail, run_detail
from baton.web.problems import problem_responses
from baton.web.security import Principal, engine_of, need

router = APIRouter(prefix="/fallout", tags=["Fallout"])

FALLOUT = Depends(need(Permission.FALLOUT))
FalloutId = Annotated[str, Path(min_length=3, max_length=250, pattern=r"^[^:]+:.+$",
                                            description="RUN_ID:STEP")]
MAX_SCAN = 100_000


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
    return page_of(engine_of(request).list_fallout(limit=MAX_SCAN), limit, start, "fallout")


_ACTIONS = "; 409 when the step is not in fallout (any more)."


@router.post("/{fallout_id}/retry", response_model=RunDetail, summary="Retry the step",
             description="Its attempts start over" + _ACTIONS,
             responses=problem_responses(400, 401, 403, 404, 409, 422))
def retry(request: Request, fallout_id: FalloutId, body: Reason,
          principal: Principal = FALLOUT) -> dict[str, Any]:
    run = engine_of(request).resolve_fallout(fallout_id, "retry", reason=body.reason,
                                             actor=principal.name)
    return run_detail(request, run)


@router.post("/{fallout_id}/complete", response_model=RunDetail,
             summary="Mark the step complete, giving its output by hand",
             description="The run goes on as if the step had returned `data`" + _ACTIONS,
             responses=problem_responses(400, 401, 403, 404, 409, 422))
def complete(request: Request, fallout_id: FalloutId, body: CompleteByHand,
             principal: Principal = FALLOUT) -> dict[str, Any]:
    with under("data", {"reason": "reason"}):
        run = engine_of(request).resolve_fallout(fallout_id, "complete", reason=body.reason,
                                                 actor=principal.name, output=body.data)
    return run_detail(request, run)


@router.post("/{fallout_id}/skip", response_model=RunDetail, summary="Skip the step",
             description="Its dependents go on without its output" + _ACTIONS,
             responses=problem_responses(400, 401, 403, 404, 409, 422))
def skip(request: Request, fallout_id: FalloutId, body: Reason,
         principal: Principal = FALLOUT) -> dict[str, Any]:
    run = engine_of(request).resolve_fallout(fallout_id, "skip", reason=body.reason,
                                             actor=principal.name)
    return run_detail(request, run)
