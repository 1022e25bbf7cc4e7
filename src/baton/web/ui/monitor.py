"""The Monitor: every run (filtered, paginated) and one run's stages, steps and decisions.

A run's page polls a fragment (``/runs/{id}/live``) every few seconds while the run is in
progress; the fragment stops the polling by leaving out its trigger once the run is done.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from baton.auth.directory import User
from baton.auth.roles import Permission
from baton.engine.state import Run, StepRun
from baton.engine.status import RunStatus, StageStatus, StepStatus
from baton.runtime.engine import Engine
from baton.web.security import Principal, engine_of
from baton.web.ui.base import PAGE_SIZE, Paging, cursor_param, page_need, render
from baton.web.ui.events import describe_event

router = APIRouter()
Reader = Annotated[Principal, Depends(page_need(Permission.RUNS_READ))]
POLL_SECONDS = 2


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


@router.get("/runs")
def runs_list(request: Request, principal: Reader, orchestration: str | None = None,
              version: str | None = None, status: str | None = None,
              current_stage: str | None = None, record: str | None = None,
              after: str | None = None) -> Response:
    eng = engine_of(request)
    version_n = int(version) if version and version.strip().isdigit() else None
    status = status if status in {s.value for s in RunStatus} else None
    filters: dict[str, Any] = {"orchestration": _clean(orchestration), "version": version_n,
                               "status": status, "current_stage": _clean(current_stage),
                               "record_id": _clean(record)}
    after = cursor_param(after)
    found = eng.page_runs(after=after, limit=PAGE_SIZE, **filters)
    pager = Paging(eng.count_runs_bounded(**filters), after, found.next)
    names = sorted({r.name for r in eng.definitions.list_versions("orchestration")})
    query = {"orchestration": filters["orchestration"] or "", "version": version_n or "",
             "status": status or "", "current_stage": filters["current_stage"] or "",
             "record": filters["record_id"] or ""}
    return render(request, "runs_list.html", principal, {
        "runs": found.rows, "paging": pager, "filters": query, "query": query, "names": names,
        "statuses": [s.value for s in RunStatus]})


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, principal: Reader) -> Response:
    eng = engine_of(request)
    return render(request, "run.html", principal, run_context(eng, principal.user, run_id))


@router.get("/runs/{run_id}/live")
def run_live(request: Request, run_id: str, principal: Reader) -> Response:
    eng = engine_of(request)
    return render(request, "_run_live.html", principal, run_context(eng, principal.user, run_id))


def run_context(eng: Engine, user: User, run_id: str) -> dict[str, Any]:
    run = eng.get_run(run_id)
    defn, _ = eng.definitions.orchestration(run.orchestration, run.version)
    stages = []
    for sd in defn.stages:
        sr = run.stages.get(sd.name)
        steps = [_step_view(run, step.name, step.type) for step in sd.steps]
        stages.append({"name": sd.name, "status": sr.status.value if sr else StageStatus.NOT_STARTED.value,
                       "iteration": sr.iteration if sr else 0, "started_at": sr.started_at if sr else None,
                       "completed_at": sr.completed_at if sr else None,
                       "current": run.current_stage == sd.name, "steps": steps})
    if run.record_id and user.can(Permission.RECORDS_READ):
        events, events_title = eng.timeline(run.record_id), "Record timeline"
    else:
        events, events_title = eng.run_events(run.id), "Run events"
    return {"run": run, "stages": stages, "decisions": run.decisions,
            "events": [{**e, "text": describe_event(e)} for e in events],
            "events_title": events_title, "live": run.status is RunStatus.IN_PROGRESS,
            "poll_seconds": POLL_SECONDS, "may_work": user.can(Permission.WORK_ALL),
            "may_records": user.can(Permission.RECORDS_READ)}


def _step_view(run: Run, name: str, type_: str) -> dict[str, Any]:
    sr: StepRun | None = run.steps.get(name)
    status = sr.status if sr else StepStatus.NOT_STARTED
    return {"name": name, "type": type_, "status": status.value,
            "css": status_class(status.value),
            "iteration": sr.iteration if sr else 0, "attempts": sr.attempts if sr else 0,
            "sla": (sr.sla or {}).get("status") if sr else None,
            "due_at": (sr.sla or {}).get("due_at") if sr else None,
            "error": (sr.error or {}).get("message") if sr and sr.error else None,
            "work_item_id": sr.work_item_id if sr else None,
            "started_at": sr.started_at if sr else None,
            "completed_at": sr.completed_at if sr else None}


def status_class(status: str) -> str:
    """One CSS class per status (``st-completed`` …); the text label is always shown too."""
    return "st-" + status.replace("_", "-")
