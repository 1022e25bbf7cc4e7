"""The Monitor: every run (filtered, paginated) and one run's stages, steps and decisions.

A run's page polls a fragment (``/runs/{id}/live``) every few seconds while the run is in
progress; the fragment stops the polling by leaving out its trigger once the run is done.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markupsafe import Markup

from baton.auth.directory import User
from baton.auth.roles import Permission
from baton.clock import iso
from baton.definitions.model import OrchestrationDefinition
from baton.engine.state import Run, StepRun
from baton.engine.status import STEP_OPEN, RunStatus, StageStatus, StepStatus
from baton.runtime.engine import Engine
from baton.runtime.views import (
    call_views,
    duration_seconds,
    human_duration,
    run_summary_row,
    starts_children,
)
from baton.runtime.waiting import waiting_text, waits_from_events
from baton.web.api.common import MAX_INT
from baton.web.diagram import orchestration_svg
from baton.web.security import Principal, engine_of
from baton.web.ui.base import PAGE_SIZE, Paging, cursor_param, page_need, render
from baton.web.ui.events import describe_event

router = APIRouter()
Reader = Annotated[Principal, Depends(page_need(Permission.RUNS_READ))]
POLL_SECONDS = 2
STEP_ACTIONS = ("retry", "skip", "complete")  # an operator's actions on a step in fallout
RUN_DONE = ("run canceled", "run resumed")


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


@router.get("/runs")
def runs_list(request: Request, principal: Reader, orchestration: str | None = None,
              version: str | None = None, status: str | None = None,
              current_stage: str | None = None, record: str | None = None,
              attention: str | None = None, after: str | None = None) -> Response:
    eng = engine_of(request)
    # (past what a column holds no run has it: the database would refuse the number)
    version_n = int(version) if version and version.strip().isdigit() and \
        int(version) <= MAX_INT else None
    status = status if status in {s.value for s in RunStatus} else None
    needs = (attention or "").strip().lower() in ("true", "1", "on", "yes")
    filters: dict[str, Any] = {"orchestration": _clean(orchestration), "version": version_n,
                               "status": status, "current_stage": _clean(current_stage),
                               "record_id": _clean(record), "attention": needs or None}
    after = cursor_param(after)
    found = eng.page_runs(after=after, limit=PAGE_SIZE, **filters)
    pager = Paging(eng.count_runs_bounded(**filters), after, found.next)
    names = sorted({r.name for r in eng.definitions.list_versions("orchestration")})
    query = {"orchestration": filters["orchestration"] or "", "version": version_n or "",
             "status": status or "", "current_stage": filters["current_stage"] or "",
             "record": filters["record_id"] or ""}
    now = iso(eng.clock.now())
    chip = {k: v for k, v in query.items() if v}  # the chip keeps the other filters
    if not needs:
        chip["attention"] = "true"
    if needs:
        query["attention"] = "true"
    return render(request, "runs_list.html", principal, {
        "runs": [_list_row(r, now) for r in found.rows], "paging": pager, "filters": query,
        "query": query, "names": names, "statuses": [s.value for s in RunStatus],
        "attention": needs, "chip_query": chip})


def _list_row(row: dict[str, Any], now: str) -> dict[str, Any]:
    """A runs list row as the page shows it: the read model's, with the duration in words
    and the markers of what needs attention (an icon and words, never colour alone)."""
    out = run_summary_row(row, now)
    out["duration"] = human_duration(out["duration_seconds"])
    out["markers"] = [MARKERS[k] for k in out["attention"]]
    return out


MARKERS = {"fallout": {"kind": "fallout", "icon": "⚠", "text": "Step in fallout"},
           "sla_breached": {"kind": "sla", "icon": "⏰", "text": "SLA breached"}}


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, principal: Reader, done: str | None = None) -> Response:
    eng = engine_of(request)
    ctx = run_context(eng, principal.user, run_id)
    return render(request, "run.html", principal, {**ctx, "done": done_note(done, ctx)})


def done_note(done: str | None, ctx: dict[str, Any]) -> str | None:
    """What the page says was done (``?done=``, where an action's form sent the browser):
    only what an action says, never any text a link puts there ("Done: your session
    expired, call …" on a page of this site)."""
    if done in RUN_DONE:
        return done
    action, _, step = (done or "").partition(" ")
    steps = {s["name"] for stage in ctx["stages"] for s in stage["steps"]}
    return done if action in STEP_ACTIONS and step in steps else None


@router.get("/runs/{run_id}/live")
def run_live(request: Request, run_id: str, principal: Reader,
             actions: str | None = None) -> Response:
    """The run's live part; ``actions``: the operator actions the page around it shows (its
    ``actions_key``). When they no longer apply, the answer also carries the actions that
    do (an out-of-band swap of ``#run-actions``) and a note, kept instead of the redrawn
    actions while the operator is using one of the shown forms (keep-state.js)."""
    eng = engine_of(request)
    ctx = run_context(eng, principal.user, run_id)
    if actions is not None:
        ctx.update(actions_changed=actions != ctx["actions_key"])
    return render(request, "_run_live.html", principal, ctx)


def run_context(eng: Engine, user: User, run_id: str) -> dict[str, Any]:
    run = eng.get_run(run_id)
    defn, _ = eng.definitions.orchestration(run.orchestration, run.version)
    run_events = eng.run_events(run.id)
    earlier = _earlier_iterations(run_events, run)
    waits = waits_from_events(run, run_events)  # (a step whose flow its workers lack)
    stages = []
    for sd in defn.stages:
        sr = run.stages.get(sd.name)
        steps = [_step_view(run, step.name, step.type, waits.get(step.name))
                 for step in sd.steps]
        stages.append({"name": sd.name, "status": sr.status.value if sr else StageStatus.NOT_STARTED.value,
                       "iteration": sr.iteration if sr else 0, "started_at": sr.started_at if sr else None,
                       "completed_at": sr.completed_at if sr else None,
                       "current": run.current_stage == sd.name, "steps": steps,
                       "earlier": earlier.get(sd.name, [])})
    if run.record_id and user.can(Permission.RECORDS_READ):
        events, events_title = eng.timeline(run.record_id), "Record timeline"
    else:
        events, events_title = run_events, "Run events"
    fallout = [sr for sr in run.steps.values() if sr.status is StepStatus.FALLOUT]
    overdue = [sr for sr in run.steps.values() if (sr.sla or {}).get("status") == "overdue"
               and sr.status not in (StepStatus.COMPLETED, StepStatus.SKIPPED, StepStatus.CANCELED)]
    attention = []
    if fallout:
        attention.append(f"{len(fallout)} step{'s' if len(fallout) > 1 else ''} in fallout")
    if overdue:
        attention.append(f"{len(overdue)} step{'s' if len(overdue) > 1 else ''} past its SLA")
    calls = call_views(run_events)
    may_act, may_fallout = user.can(Permission.RUNS_WRITE), user.can(Permission.FALLOUT)
    from baton.web.ui.run_actions import plan_actions  # (it imports this module)

    plan = plan_actions(eng, run)
    forms = action_forms(run, [sr.name for sr in fallout], may_act, may_fallout, plan)
    return {"run": run, "stages": stages, "decisions": run.decisions, "calls": calls,
            "attention": attention, "fallout_steps": [sr.name for sr in fallout],
            "action_forms": forms, "actions_key": ",".join(sorted(forms)),
            "may_act": may_act, "may_fallout": may_fallout, "plan": plan,
            "diagram": _diagram(eng, defn, run),
            "events": [{**e, "text": describe_event(e)} for e in events],
            "events_title": events_title, "live": run.status is RunStatus.IN_PROGRESS,
            "poll_seconds": POLL_SECONDS, "may_work": user.can(Permission.WORK_ALL),
            "may_records": user.can(Permission.RECORDS_READ),
            "children": eng.child_runs(run.id) if starts_children(defn) else []}


def action_forms(run: Run, fallout: list[str], may_act: bool, may_fallout: bool,
                 plan: dict[str, Any] | None = None) -> list[str]:
    """The operator's forms the run page shows, in its order: ``resolve:STEP`` for each
    step in fallout, ``cancel`` (in progress), ``resume`` (failed): those the run allows
    now and the viewer may use. A fulfillment plan's run (``plan``:
    :func:`~baton.web.ui.run_actions.plan_actions`) is canceled as its plan: its
    ``forms`` instead of ``cancel`` (the plan's cancel, or the note saying why not)."""
    forms = [f"resolve:{name}" for name in fallout] if may_fallout else []
    if plan is not None:
        forms += plan["forms"] if may_act else []
    elif may_act and run.status is RunStatus.IN_PROGRESS:
        forms.append("cancel")
    if may_act and run.status is RunStatus.FAILED:
        forms.append("resume")
    return forms


def _diagram(eng: Engine, defn: OrchestrationDefinition, run: Run) -> Markup:
    """A plan's swimlanes (its revision's graph), else the orchestration's stages."""
    from baton.plans.service import order_of

    order = order_of(run.orchestration)
    if order is None:
        return orchestration_svg(defn, run)
    from baton.web.plan_diagram import plan_svg

    return plan_svg(eng.plans.revision(order, run.version)["graph"], run)


def _step_view(run: Run, name: str, type_: str,
               wait: dict[str, Any] | None = None) -> dict[str, Any]:
    sr: StepRun | None = run.steps.get(name)
    status = sr.status if sr else StepStatus.NOT_STARTED
    # an ended step has no live SLA state: its last one ("on track", due ...) is not shown
    # as if it held (a canceled step is not "on track"), as the diagram and the API do
    sla = (sr.sla or {}) if sr is not None and sr.status in STEP_OPEN else {}
    return {"name": name, "type": type_, "status": status.value,
            "css": status_class(status.value),
            "iteration": sr.iteration if sr else 0, "attempts": sr.attempts if sr else 0,
            "sla": sla.get("status"), "due_at": sla.get("due_at"),
            "error": (sr.error or {}).get("message") if sr and sr.error else None,
            "work_item_id": sr.work_item_id if sr else None,
            "waiting": waiting_text(wait) if wait else None,
            "started_at": sr.started_at if sr else None,
            "completed_at": sr.completed_at if sr else None,
            "duration": _duration(sr.started_at, sr.completed_at) if sr else None,
            "output": sr.output if sr and sr.output else None}


def _duration(start: str | None, end: str | None) -> str | None:
    """"4 min 10 s" between two ISO times (None while either is missing)."""
    return human_duration(duration_seconds(start, end))


def _earlier_iterations(events: list[Any], run: Run) -> dict[str, list[dict[str, Any]]]:
    """Stage -> its iterations before the current one, each with its steps' outcomes, from
    the run's audit events (the run's state keeps the latest iteration only)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for e in events:
        data = e.get("data") or {}
        stage, iteration = data.get("stage"), data.get("iteration")
        if e["type"] not in ("step_completed", "step_failed", "step_skipped", "step_fallout") \
                or stage is None or iteration is None:
            continue
        current = run.stages.get(stage)
        if current is None or iteration >= current.iteration:
            continue
        it = out.setdefault(stage, {}).setdefault(iteration, {"iteration": iteration, "steps": []})
        it["steps"].append({"step": data.get("step"), "event": e["type"].replace("_", " "),
                            "at": e["at"], "output": data.get("output"),
                            "error": (data.get("error") or {}).get("message")})
    return {stage: [its[k] for k in sorted(its)] for stage, its in out.items()}


def status_class(status: str) -> str:
    """One CSS class per status (``st-completed`` …); the text label is always shown too."""
    return "st-" + status.replace("_", "-")
