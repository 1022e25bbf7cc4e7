"""Fallout: steps that failed after their retries, and the operator's actions on them
(retry, skip, complete with an output), each with a required reason (audited); beside them
the open incidents (a trigger's `when` or an evaluation flow that raised: retry, dismiss)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from baton.auth.roles import Permission
from baton.errors import NotFound, TransitionConflict, ValidationError
from baton.web.security import Principal, engine_of
from baton.web.ui.base import form_json, page_need, render

router = APIRouter()
Operator = Annotated[Principal, Depends(page_need(Permission.FALLOUT))]
ACTIONS = ("retry", "skip", "complete")
INCIDENT_ACTIONS = ("retry", "dismiss")


@router.get("/fallout")
def fallout_list(request: Request, principal: Operator, done: str | None = None) -> Response:
    return _page(request, principal, done=done)


@router.post("/fallout")
def resolve(request: Request, principal: Operator, id: Annotated[str, Form()],
            action: Annotated[str, Form()], reason: Annotated[str, Form()] = "",
            output: Annotated[str, Form()] = "") -> Response:
    eng = engine_of(request)
    errors: dict[str, str] = {}
    parsed: dict[str, Any] | None = None
    if action not in ACTIONS:
        errors["action"] = f"choose one of {', '.join(ACTIONS)}"
    if not reason.strip():
        errors["reason"] = "is required: say why (it is audited)"
    if action == "complete" and output.strip():
        value, why = form_json(output)
        if why is not None:
            errors["output"] = why
        else:
            if isinstance(value, dict):
                parsed = value
            else:
                errors["output"] = 'must be a JSON object, like {"field": "value"}'
    status = 422
    if not errors:
        try:
            eng.resolve_fallout(id, action, reason=reason.strip(), actor=principal.name,
                                output=parsed)
        except ValidationError as exc:
            errors = dict(exc.fields)
        except (TransitionConflict, NotFound) as exc:
            errors, status = {"(step)": str(exc)}, 409
        else:
            return RedirectResponse(f"/fallout?done={action}", status_code=303)
    return _page(request, principal, failed={"id": id, "action": action, "reason": reason,
                                             "output": output, "errors": errors}, status=status)


@router.post("/fallout/incidents")
def act_on_incident(request: Request, principal: Operator, id: Annotated[str, Form()],
                    action: Annotated[str, Form()], reason: Annotated[str, Form()] = "") -> Response:
    eng = engine_of(request)
    errors: dict[str, str] = {}
    if action not in INCIDENT_ACTIONS:
        errors["action"] = f"choose one of {', '.join(INCIDENT_ACTIONS)}"
    if not reason.strip():
        errors["reason"] = "is required: say why (it is audited)"
    status = 422
    if not errors:
        act = eng.retry_incident if action == "retry" else eng.dismiss_incident
        try:
            inc = act(id, reason=reason.strip(), actor=principal.name)
        except ValidationError as exc:
            errors = dict(exc.fields)
        except (TransitionConflict, NotFound) as exc:
            errors, status = {"(incident)": str(exc)}, 409
        else:
            done = f"incident {action}" if inc["status"] != "open" else "incident still failing"
            return RedirectResponse(f"/fallout?done={done}", status_code=303)
    return _page(request, principal, failed_incident={
        "id": id, "action": action, "reason": reason, "errors": errors}, status=status)


@router.post("/fallout/group")
def retry_group(request: Request, principal: Operator, key: Annotated[str, Form()],
                reason: Annotated[str, Form()] = "") -> Response:
    """Retry every step of one group (same orchestration, step and error) at once."""
    eng = engine_of(request)
    if not reason.strip():
        return _page(request, principal, group_error={"key": key, "message":
                     "Reason is required: say why (it is audited)"}, status=422)
    ids = [e["id"] for e in eng.list_fallout(limit=GROUP_LIMIT) if _group_key(e) == key]
    if not ids:
        return _page(request, principal, group_error={"key": key, "message":
                     "Nothing left in that group: its steps were resolved meanwhile"}, status=409)
    moved = 0
    for fallout_id in ids:
        try:
            eng.resolve_fallout(fallout_id, "retry", reason=reason.strip(), actor=principal.name)
        except (TransitionConflict, NotFound):
            moved += 1  # resolved by someone else meanwhile: nothing to do for it
    done = f"retried {len(ids) - moved} step{'s' if len(ids) - moved != 1 else ''}"
    return RedirectResponse(f"/fallout?done={done}", status_code=303)


GROUP_LIMIT = 10_000  # steps a "retry all" acts on at most


def _group_key(entry: dict[str, Any]) -> str:
    message = (entry.get("error") or {}).get("message") or str(entry.get("error"))
    return f"{entry['orchestration']}\x1f{entry['step']}\x1f{message}"


def _groups(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Entries grouped by orchestration, step and error message, largest group first."""
    groups: dict[str, dict[str, Any]] = {}
    for e in entries:
        key = _group_key(e)
        g = groups.setdefault(key, {"key": key, "orchestration": e["orchestration"],
                                    "step": e["step"], "error": key.split("\x1f", 2)[2],
                                    "entries": []})
        g["entries"].append(e)
    return sorted(groups.values(), key=lambda g: (-len(g["entries"]), g["orchestration"], g["step"]))


DONE = (*ACTIONS, *(f"incident {a}" for a in INCIDENT_ACTIONS), "incident still failing")
RETRIED = re.compile(r"retried [0-9]{1,6} steps?")  # what retry_group says; no other text


def _page(request: Request, principal: Principal, *, done: str | None = None,
          failed: dict[str, Any] | None = None, failed_incident: dict[str, Any] | None = None,
          group_error: dict[str, str] | None = None, status: int = 200) -> Response:
    eng = engine_of(request)
    entries = eng.list_fallout(limit=200)
    shown_done = done if done in DONE or RETRIED.fullmatch(done or "") else None
    return render(request, "fallout.html", principal, {
        "entries": entries, "groups": _groups(entries), "group_error": group_error,
        "incidents": eng.list_incidents(limit=200),
        "done": shown_done, "failed": failed,
        "failed_incident": failed_incident, "actions": ACTIONS,
        "incident_actions": INCIDENT_ACTIONS}, status=status)
