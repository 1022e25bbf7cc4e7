"""Runs: start, list with filters, show (stages, steps, SLA, decisions), events, cancel,
resume, signal."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from baton.auth.roles import Permission
from baton.clock import iso
from baton.engine.state import Run
from baton.engine.status import RunStatus, StageStatus, StepStatus
from baton.runtime import views, waiting
from baton.runtime.idempotency import IdempotencyClaim
from baton.runtime.views import event_view
from baton.web.api.common import (
    MAX_INT,
    After,
    KeysetOffset,
    Limit,
    Offset,
    Page,
    Reason,
    RequestBody,
    exact_post,
    keyset_page,
    one_of_after_or_offset,
    page_of,
    start_of,
    under,
)
from baton.web.api.records import Event
from baton.web.idempotency import (
    REPLAY_HEADERS,
    ActionIdempotencyKey,
    Answer,
    IdempotencyKey,
    idempotent,
    idempotent_action,
    replayable,
)
from baton.web.problems import ProblemError, problem_responses
from baton.web.security import Principal, engine_of, need

router = APIRouter(prefix="/runs", tags=["Runs"])

READ = Depends(need(Permission.RUNS_READ))
WRITE = Depends(need(Permission.RUNS_WRITE))
RunId = Annotated[str, Path(min_length=1, max_length=40)]
Text = Annotated[str | None, Query(min_length=1, max_length=200)]


class StartRun(RequestBody):
    orchestration: str = Field(min_length=1, max_length=200)
    input: dict[str, Any] = Field(default_factory=dict, description="typed by the trigger's input")
    record_id: str | None = Field(default=None, min_length=1, max_length=40,
                                  description="the record the run works on, if it takes one")


class Signal(RequestBody):
    name: str = Field(min_length=1, max_length=200)
    data: dict[str, Any] = Field(default_factory=dict,
                                 description="output of the pause steps waiting for it")


Attention = Literal["fallout", "sla_breached"]


class RunSummary(BaseModel):
    id: str
    orchestration: str
    version: int
    status: RunStatus
    record_id: str | None
    current_stage: str | None
    created_at: str
    completed_at: str | None
    attention: list[Attention] = Field(
        description="what needs an operator: `fallout` (a step waits in fallout), "
                    "`sla_breached` (an open step is past its SLA); empty: nothing")


class RunListItem(RunSummary):
    title: str | None = Field(description="the record's title (its object type's title "
                                          "field, else a name-like text field); null "
                                          "without a record")
    duration_seconds: float | None = Field(description="from start to finish, or until now "
                                                       "while the run is not finished")


class StageOut(BaseModel):
    name: str
    status: StageStatus
    iteration: int
    started_at: str | None
    completed_at: str | None


class SlaOut(BaseModel):
    status: str | None = Field(description="on_track, in_jeopardy or overdue")
    due_at: str | None
    jeopardy_at: str | None


class WaitingOut(BaseModel):
    reason: Literal["flow_not_in_worker"] = Field(
        description="`flow_not_in_worker`: the workers that claimed its job do not have its "
                    "flow (added since they started: restart them); it goes back to the queue "
                    "until one has it, or fails after `max_tries`")
    flow: str | None
    tries: int | None = Field(description="claims by a worker without the flow so far")
    max_tries: int | None = Field(description="claims after which the step fails")
    next_try_at: str | None = Field(description="when its job may be claimed again")
    last_try_at: str | None
    since: str | None = Field(description="the first such claim of this attempt")
    worker: str | None = Field(description="the worker that last lacked the flow")
    message: str | None = Field(description="why, as that worker told")


class StepOut(BaseModel):
    name: str
    type: str
    stage: str
    iteration: int
    status: StepStatus
    attempts: int
    started_at: str | None
    completed_at: str | None
    output: dict[str, Any] | None
    error: dict[str, Any] | None
    work_item_id: str | None
    sla: SlaOut | None
    children: list[dict[str, Any]] | None = Field(
        default=None, description="an orchestration step's child runs, one per element: "
                                  "index, status, run_id, record_id, input")
    waiting: WaitingOut | None = Field(
        default=None, description="a running step that waits for a worker that has its flow: "
                                  "why, how many tries, the next; null otherwise")


class ParentOut(BaseModel):
    run_id: str = Field(description="the parent run")
    step: str = Field(description="its step that started this run")
    iteration: int
    index: int = Field(description="the element of the step's for_each (0 for a single child)")
    depth: int = Field(description="1 for a child of a top-level run")


class ChildOut(BaseModel):
    id: str
    orchestration: str
    version: int
    status: RunStatus
    record_id: str | None
    current_stage: str | None
    created_at: str
    completed_at: str | None
    step: str | None = Field(description="the parent's step that started it")


class RunDetail(RunSummary):
    stages: list[StageOut] = Field(description="in the definition's order")
    steps: list[StepOut] = Field(description="each step's latest iteration, stage by stage")
    decisions: list[dict[str, Any]] = Field(description="which `next` rule moved the run on")
    vars: dict[str, Any]
    input: dict[str, Any]
    error: dict[str, Any] | None
    parent: ParentOut | None = Field(default=None, description="a child run: who started it")
    children: list[ChildOut] = Field(default_factory=list,
                                     description="the runs its steps started, oldest first")


def run_detail(request: Request, run: Run) -> dict[str, Any]:
    """The run as ``runtime/views.py`` shows it (the definition gives the steps' order),
    with what its running background steps wait for, if anything (``waiting``)."""
    eng = engine_of(request)
    return waiting.fill_waits(eng.run_detail(run), eng.store, run)


def _check_startable(request: Request, name: str) -> None:
    """A deactivated orchestration says so (the engine only knows 'no active version'), and
    so does one that starts from its record or schedule trigger: the request is well formed,
    the orchestration's definition is what refuses it (409, not 400)."""
    defs = engine_of(request).definitions
    rows = defs.list_versions("orchestration", name)
    if rows and not any(r.active for r in rows):
        raise ProblemError(
            409, "Orchestration deactivated",
            f"orchestration {name!r} is deactivated: no new runs start from it. Activate a "
            f"version first (POST /api/definitions/orchestration/{name}/activate).",
            slug="deactivated")
    if rows:
        trigger = defs.orchestration(name)[0].trigger
        if trigger.type != "autolaunched":
            how = ("create or update its records" if trigger.type == "record"
                   else "it runs on its schedule")
            raise ProblemError(
                409, "Not started by hand",
                f"orchestration {name!r} starts from its {trigger.type} trigger, not by hand: "
                f"{how}.", slug="not-autolaunched")


@exact_post(router, "", response_model=RunDetail, status_code=201,
             summary="Start a run of an autolaunched orchestration",
             description="Input is validated against the trigger's `input` fields (422 naming "
                         "each). Record-triggered orchestrations start by creating or updating "
                         "records instead (409), as do scheduled ones on their schedule; a "
                         "deactivated orchestration answers 409 too. "
                         "With an `Idempotency-Key`, a retry starts nothing and answers as "
                         "the first request was answered.",
             responses={201: {"description": "Started", "headers": REPLAY_HEADERS},
                        **problem_responses(400, 401, 403, 404, 409, 422)})
def start_run(request: Request, body: StartRun, idempotency_key: IdempotencyKey = None,
              principal: Principal = WRITE) -> JSONResponse:
    eng = engine_of(request)

    def create(claim: IdempotencyClaim | None) -> Answer:
        _check_startable(request, body.orchestration)
        with under("input", {"record": "record_id"}):
            run = eng.start(body.orchestration, body.input, record_id=body.record_id,
                            actor=principal.name, idempotency=claim)
        return _started(request, run)

    return idempotent(request, principal, idempotency_key, "run", body, RunDetail, 201,
                      create, lambda run_id: _started(request, eng.get_run(run_id)))


def _started(request: Request, run: Run) -> Answer:
    # (a run just started: no worker has claimed its steps' jobs yet, so none waits)
    return engine_of(request).run_detail(run), {"Location": f"/api/runs/{run.id}"}


@router.get("", response_model=Page[RunListItem], summary="List runs, newest first",
            description="Keyset pagination: follow `next` as `after`. `total` is exact up to "
                        "1000 runs, beyond that estimated (`total_estimated`). "
                        "`attention=true`: only the runs that need an operator (a step in "
                        "fallout, an open step past its SLA), read through their own index.",
            responses=problem_responses(401, 403, 422))
def list_runs(request: Request, orchestration: Text = None,
              version: Annotated[int | None, Query(ge=1, le=MAX_INT)] = None,
              status: RunStatus | None = None,
              stage: Annotated[str | None, Query(min_length=1, max_length=200,
                                                 description="current stage")] = None,
              record_id: Text = None,
              attention: Annotated[bool, Query(
                  description="true: only runs that need attention (a step in fallout or "
                              "past its SLA); false (the default): every run")] = False,
              limit: Limit = 50, offset: KeysetOffset = 0,
              after: After = None, _: Principal = READ) -> dict[str, Any]:
    filters = {"orchestration": orchestration, "version": version,
               "status": status.value if status else None, "current_stage": stage,
               "record_id": record_id, "attention": attention or None}
    eng = engine_of(request)
    with under("query"):
        one_of_after_or_offset(after, offset)
        found = eng.page_runs(after=after, offset=offset, limit=limit, **filters)
    now = iso(eng.clock.now())
    return keyset_page([views.run_summary_row(r, now) for r in found.rows], found.next,
                       eng.count_runs_bounded(**filters), limit, offset)


@router.get("/{run_id}", response_model=RunDetail,
            summary="A run: stages, steps with statuses and SLA, decisions, vars",
            responses=problem_responses(401, 403, 404, 422))
def get_run(request: Request, run_id: RunId, _: Principal = READ) -> dict[str, Any]:
    return run_detail(request, engine_of(request).get_run(run_id))


@router.get("/{run_id}/events", response_model=Page[Event], summary="A run's audit events",
            responses=problem_responses(401, 403, 404, 422))
def run_events(request: Request, run_id: RunId, limit: Limit = 50, offset: Offset = 0,
               after: After = None, _: Principal = READ) -> dict[str, Any]:
    tag = f"run_events:{run_id}"
    start = start_of(tag, after, offset)
    return page_of([event_view(e) for e in engine_of(request).run_events(run_id)], limit, start,
                   tag)


KEYED = (" With an `Idempotency-Key`, a retry does nothing more and answers as the first "
         "request was answered.")
ACTION_ERRORS = problem_responses(400, 401, 403, 404, 409, 422)


def run_action(request: Request, principal: Principal, key: str | None, run_id: str,
               body: BaseModel, act: Callable[[IdempotencyClaim | None], Run]) -> JSONResponse:
    """An action on a run (the key claimed in its transaction), answered with the run."""
    return idempotent_action(request, principal, key, "run", body, RunDetail,
                             lambda claim: run_detail(request, act(claim)),
                             lambda: run_detail(request, engine_of(request).get_run(run_id)))


@router.post("/{run_id}/cancel", response_model=RunDetail, summary="Cancel a run",
             description="Its open work items are canceled too. A finished run answers 409. "
                         "A fulfillment plan's run (orchestration `plan:ORDER_ID`) is "
                         "canceled as its plan is (POST /api/plans/{order_id}/cancel): 409 "
                         "once a point-of-no-return step has completed, naming it; else its "
                         "completed steps are rolled back by a compensation run (GET "
                         "/api/plans/{order_id} shows it). A plan's compensation run answers "
                         "409: it is not canceled (its rollbacks would never run)." + KEYED,
             responses={**replayable("the run, canceled"), **ACTION_ERRORS})
def cancel_run(request: Request, run_id: RunId, body: Reason,
               idempotency_key: ActionIdempotencyKey = None,
               principal: Principal = WRITE) -> JSONResponse:
    eng = engine_of(request)
    return run_action(request, principal, idempotency_key, run_id, body,
                      lambda key: eng.cancel_run(run_id, body.reason, actor=principal.name,
                                                 idempotency=key))


@router.post("/{run_id}/resume", response_model=RunDetail, summary="Resume a failed run",
             description="After its cause is fixed: its failed steps run again. "
                         "A run that has not failed answers 409." + KEYED,
             responses={**replayable("the run, in progress again"), **ACTION_ERRORS})
def resume_run(request: Request, run_id: RunId, body: Reason,
               idempotency_key: ActionIdempotencyKey = None,
               principal: Principal = WRITE) -> JSONResponse:
    eng = engine_of(request)
    return run_action(request, principal, idempotency_key, run_id, body,
                      lambda key: eng.resume_run(run_id, body.reason, actor=principal.name,
                                                 idempotency=key))


@router.post("/{run_id}/signal", response_model=RunDetail, summary="Send a named signal",
             description="Pause steps waiting for it complete with `data` as their output; "
                         "409 when no step waits for it." + KEYED,
             responses={**replayable("the run, its waiting steps completed"), **ACTION_ERRORS})
def signal_run(request: Request, run_id: RunId, body: Signal,
               idempotency_key: ActionIdempotencyKey = None,
               principal: Principal = WRITE) -> JSONResponse:
    eng = engine_of(request)
    return run_action(request, principal, idempotency_key, run_id, body,
                      lambda key: eng.signal(run_id, body.name, body.data,
                                             actor=principal.name, idempotency=key))
