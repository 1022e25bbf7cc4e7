"""Incidents: a record trigger's `when` or an evaluation flow that raised, beside fallout,
and the operator's retry/dismiss."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from baton.auth.roles import Permission
from baton.runtime.idempotency import IdempotencyClaim
from baton.web.api.common import After, Limit, Offset, Page, Reason, page, start_of
from baton.web.idempotency import ActionIdempotencyKey, idempotent_action, replayable
from baton.web.problems import problem_responses
from baton.web.security import Principal, engine_of, need

router = APIRouter(prefix="/incidents", tags=["Incidents"])

FALLOUT = Depends(need(Permission.FALLOUT))
IncidentId = Annotated[str, Path(min_length=1, max_length=40, pattern=r"^[A-Za-z0-9_-]+$")]
Status = Literal["open", "resolved", "dismissed"]


class Incident(BaseModel):
    id: str
    kind: Literal["trigger_failed", "condition_flow_failed", "job_failed"]
    status: Status
    orchestration: str
    version: int = Field(description="the definition version that failed (a retry uses it)")
    record_id: str | None
    run_id: str | None = Field(description="the run whose condition failed, or the run a "
                                           "retried trigger started")
    expression: str = Field(description="the trigger's `when`, or the evaluation flow's name")
    error: str
    attempts: int = Field(description="evaluations that raised")
    created_at: str
    updated_at: str
    resolved_at: str | None
    resolved_by: str | None
    reason: str | None
    note: str | None = Field(None, description="why a retry resolved it without evaluating "
                                               "it: superseded by the record's later write "
                                               "(which evaluated the trigger, and the run it "
                                               "started, if any)")


@router.get("", response_model=Page[Incident], summary="Incidents, oldest first",
            description="The open ones unless `status` says otherwise (repeat it for several).",
            responses=problem_responses(401, 403, 422))
def list_incidents(request: Request,
                   status: Annotated[list[Status] | None, Query(max_length=3)] = None,
                   record_id: Annotated[str | None, Query(min_length=1, max_length=40)] = None,
                   limit: Limit = 50, offset: Offset = 0, after: After = None,
                   _: Principal = FALLOUT) -> dict[str, Any]:
    eng = engine_of(request)
    start = start_of("incidents", after, offset)
    statuses = list(status) if status else ["open"]
    items = eng.list_incidents(statuses=statuses, limit=limit, offset=start, record_id=record_id)
    return page(items, eng.count_incidents(statuses=statuses, record_id=record_id), limit, start,
                "incidents")


@router.get("/{incident_id}", response_model=Incident, summary="Read an incident",
            responses=problem_responses(401, 403, 404, 422))
def get_incident(request: Request, incident_id: IncidentId,
                 _: Principal = FALLOUT) -> dict[str, Any]:
    return engine_of(request).get_incident(incident_id)


KEYED = (" With an `Idempotency-Key`, a retry does nothing more and answers as the first "
         "request was answered.")


@router.post("/{incident_id}/retry", response_model=Incident,
             summary="Evaluate again, now",
             description="A trigger's `when` is evaluated on the record as it is now, with the "
                         "definition version that failed: true starts the run and resolves the "
                         "incident, false resolves it without a run, an error keeps it open "
                         "with the new error. When a later write of the record evaluated the "
                         "trigger since without failing, nothing is evaluated: the incident is "
                         "resolved as superseded (`note` names the write; `run_id` is the run "
                         "it started, if any). An evaluation flow is queued again (resolved). "
                         "409 when the incident is not open (any more)." + KEYED,
             responses={**replayable("the incident after its evaluation"),
                        **problem_responses(400, 401, 403, 404, 409, 422)})
def retry(request: Request, incident_id: IncidentId, body: Reason,
          idempotency_key: ActionIdempotencyKey = None,
          principal: Principal = FALLOUT) -> JSONResponse:
    eng = engine_of(request)

    def act(claim: IdempotencyClaim | None) -> dict[str, Any]:
        return eng.retry_incident(incident_id, reason=body.reason, actor=principal.name,
                                  idempotency=claim)

    return idempotent_action(request, principal, idempotency_key, "incident", body, Incident,
                             act, lambda: eng.get_incident(incident_id))


@router.post("/{incident_id}/dismiss", response_model=Incident,
             summary="Close the incident without evaluating it again",
             description="409 when the incident is not open (any more)." + KEYED,
             responses={**replayable("the incident, dismissed"),
                        **problem_responses(400, 401, 403, 404, 409, 422)})
def dismiss(request: Request, incident_id: IncidentId, body: Reason,
            idempotency_key: ActionIdempotencyKey = None,
            principal: Principal = FALLOUT) -> JSONResponse:
    eng = engine_of(request)

    def act(claim: IdempotencyClaim | None) -> dict[str, Any]:
        return eng.dismiss_incident(incident_id, reason=body.reason, actor=principal.name,
                                    idempotency=claim)

    return idempotent_action(request, principal, idempotency_key, "incident", body, Incident,
                             act, lambda: eng.get_incident(incident_id))
