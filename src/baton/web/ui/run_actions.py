"""The operator's actions on the run page: cancel a run, resume a failed one, and retry,
skip or complete a step in fallout. Each needs a reason (audited with who); CSRF and role
checks as on every form; an action the run no longer allows is said on the page (409).
A fulfillment plan's run is canceled as its plan (:func:`plan_actions`): the form says so
and shows its point of no return, or, past it, says the order can no longer be canceled."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from baton.auth.roles import Permission
from baton.engine.state import Run
from baton.engine.status import RunStatus
from baton.errors import NotFound, TransitionConflict, ValidationError
from baton.runtime.engine import PLAN, Engine
from baton.web.security import Principal, engine_of
from baton.web.ui.base import form_json, page_need, render
from baton.web.ui.monitor import STEP_ACTIONS, run_context

router = APIRouter()
RunWriter = Annotated[Principal, Depends(page_need(Permission.RUNS_WRITE))]
Operator = Annotated[Principal, Depends(page_need(Permission.FALLOUT))]


def plan_actions(eng: Engine, run: Run) -> dict[str, Any] | None:
    """A fulfillment plan's run on its page (None for any other run): its order, revision
    and compensation, its point of no return, and what takes the place of the plain
    "Cancel run" (``forms``, for ``monitor.action_forms``): ``cancel`` (the order's plan,
    before its point of no return: the form cancels the plan, its rollbacks run), ``ponr``
    (the note saying which step made it final) or ``compensation`` (the note saying a
    compensation run is not canceled). Read for plan runs only: one read of the plan's
    revisions and its graph (a revision is never changed)."""
    plan = eng.run_plan(run)
    if plan is None:
        return None
    forms = []
    if plan.kind == PLAN and plan.current:
        if plan.ponr_passed is not None:
            forms.append("ponr")
        elif run.status in (RunStatus.IN_PROGRESS, RunStatus.COMPLETED):
            forms.append("cancel")  # (a completed plan too: its completed steps roll back)
    elif plan.kind != PLAN and run.status in (RunStatus.IN_PROGRESS, RunStatus.FAILED):
        forms.append("compensation")
    return {"order_id": plan.order_id, "kind": plan.kind, "revision": plan.revision,
            "current": plan.current, "plan_run_id": plan.plan_run_id,
            "compensation_run_id": plan.compensation_run_id, "ponr": list(plan.ponr),
            "ponr_passed": plan.ponr_passed, "ponr_passed_at": plan.ponr_passed_at,
            "forms": forms}


def _done(run_id: str, what: str) -> Response:
    return RedirectResponse(f"/runs/{run_id}?done={what}", status_code=303)


def _refused(request: Request, principal: Principal, run_id: str, message: str,
             status: int, kept: dict[str, str] | None = None) -> Response:
    """The run page again, saying why; ``kept``: what was typed into the form sent (its
    ``form``, as in ``monitor.action_forms``, and its fields), shown in it again with the
    reason next to it (above the actions when that form no longer applies)."""
    ctx = run_context(engine_of(request), principal.user, run_id)
    return render(request, "run.html", principal,
                  {**ctx, "action_error": message, "kept": kept or {}}, status=status)


@router.post("/runs/{run_id}/cancel")
def cancel(request: Request, run_id: str, principal: RunWriter,
           reason: Annotated[str, Form()] = "") -> Response:
    kept = {"form": "cancel", "reason": reason}
    if not reason.strip():
        return _refused(request, principal, run_id, "Cancel: a reason is required (it is audited).",
                        422, kept)
    try:
        engine_of(request).cancel_run(run_id, reason.strip(), actor=principal.name)
    except TransitionConflict as exc:
        return _refused(request, principal, run_id, f"Cancel: {exc}", 409, kept)
    return _done(run_id, "run canceled")


@router.post("/runs/{run_id}/resume")
def resume(request: Request, run_id: str, principal: RunWriter,
           reason: Annotated[str, Form()] = "") -> Response:
    kept = {"form": "resume", "reason": reason}
    if not reason.strip():
        return _refused(request, principal, run_id, "Resume: a reason is required (it is audited).",
                        422, kept)
    try:
        engine_of(request).resume_run(run_id, reason.strip(), actor=principal.name)
    except TransitionConflict as exc:
        return _refused(request, principal, run_id, f"Resume: {exc}", 409, kept)
    return _done(run_id, "run resumed")


@router.post("/runs/{run_id}/steps/{step}/resolve")
def resolve_step(request: Request, run_id: str, step: str, principal: Operator,
                 action: Annotated[str, Form()] = "", reason: Annotated[str, Form()] = "",
                 output: Annotated[str, Form()] = "") -> Response:
    problems = []
    if action not in STEP_ACTIONS:
        problems.append(f"choose one of {', '.join(STEP_ACTIONS)}")
    if not reason.strip():
        problems.append("a reason is required (it is audited)")
    parsed: dict[str, Any] | None = None
    if action == "complete" and output.strip():
        value, why = form_json(output)
        if why is not None:
            problems.append(f"output is {why}")
        else:
            if isinstance(value, dict):
                parsed = value
            else:
                problems.append('output must be a JSON object, like {"field": "value"}')
    kept = {"form": f"resolve:{step}", "step": step, "action": action, "reason": reason,
            "output": output}
    if problems:
        return _refused(request, principal, run_id, f"{step}: " + "; ".join(problems), 422,
                        kept)
    try:
        engine_of(request).resolve_fallout(f"{run_id}:{step}", action, reason=reason.strip(),
                                           actor=principal.name, output=parsed)
    except ValidationError as exc:
        detail = "; ".join(f"{k}: {v}" for k, v in exc.fields.items())
        return _refused(request, principal, run_id, f"{step}: {detail}", 422, kept)
    except (TransitionConflict, NotFound) as exc:
        return _refused(request, principal, run_id, f"{step}: {exc}", 409, kept)
    return _done(run_id, f"{action} {step}")
