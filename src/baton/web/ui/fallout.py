"""Fallout: steps that failed after their retries, and the operator's actions on them
(retry, skip, complete with an output), each with a required reason (audited); beside them
the open incidents (a trigger's `when` or an evaluation flow that raised: retry, dismiss).

Below them, for who may read records (operators), the mail intake refused lately: how many
are kept and the newest few (the full list: ``baton intake refused``, ``GET
/api/intake/refused``), each saying how to get the message in once its cause is mended.

The page says how many there are in all and pages through them: the steps by cursor (the
last one shown, ``RUN_ID:STEP``; they are listed by run id and step, so a cursor whose
step was resolved meanwhile still says where the next page starts), the incidents by
position. The "By error" table counts every step in fallout, and a group's "Retry all N"
sends the N it showed: if the group holds another number by then, nothing is retried and
the page says how many it holds now.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response

from baton.auth.roles import Permission
from baton.errors import NotFound, TransitionConflict, ValidationError
from baton.runtime.views import fallout_view
from baton.store.base import FalloutGroup, Total
from baton.web.security import Principal, engine_of
from baton.web.ui.base import Paging, cursor_param, form_json, page_need, render

router = APIRouter()
Operator = Annotated[Principal, Depends(page_need(Permission.FALLOUT))]
ACTIONS = ("retry", "skip", "complete")
INCIDENT_ACTIONS = ("retry", "dismiss")
PAGE = 50  # steps in fallout on a page (each with its form)
INCIDENT_PAGE = 50
REFUSALS_SHOWN = 10  # the newest refused messages shown (the rest: the CLI, the API)
GROUPS_SHOWN = 50  # rows of the "By error" table (the largest groups)
GROUP_LIMIT = 10_000  # steps one "Retry all" acts on at most (the first, in page order)
MAX_INCIDENT_OFFSET = 1_000_000

# Where the page was (its cursors), carried by its forms so that an answer shows it again.
After = Annotated[str, Form()]
Incidents = Annotated[int, Form(ge=0, le=MAX_INCIDENT_OFFSET)]


@router.get("/fallout")
def fallout_list(request: Request, principal: Operator, done: str | None = None,
                 after: str | None = None,
                 incidents: Annotated[int, Query(ge=0, le=MAX_INCIDENT_OFFSET)] = 0
                 ) -> Response:
    return _page(request, principal, after, incidents, done=done)


def _back(done: str, after: str, incidents: int) -> Response:
    query = {"done": done, "after": cursor_param(after) or "", "incidents": incidents or ""}
    return RedirectResponse("/fallout?" + urlencode({k: v for k, v in query.items() if v},
                                                    quote_via=quote), status_code=303)


@router.post("/fallout")
def resolve(request: Request, principal: Operator, id: Annotated[str, Form()],
            action: Annotated[str, Form()], reason: Annotated[str, Form()] = "",
            output: Annotated[str, Form()] = "", after: After = "",
            incidents: Incidents = 0) -> Response:
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
            return _back(action, after, incidents)
    return _page(request, principal, after, incidents, failed={
        "id": id, "action": action, "reason": reason, "output": output, "errors": errors},
        status=status)


@router.post("/fallout/incidents")
def act_on_incident(request: Request, principal: Operator, id: Annotated[str, Form()],
                    action: Annotated[str, Form()], reason: Annotated[str, Form()] = "",
                    after: After = "", incidents: Incidents = 0) -> Response:
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
            return _back(done, after, incidents)
    return _page(request, principal, after, incidents, failed_incident={
        "id": id, "action": action, "reason": reason, "errors": errors}, status=status)


@router.post("/fallout/group")
def retry_group(request: Request, principal: Operator, key: Annotated[str, Form()],
                reason: Annotated[str, Form()] = "", count: Annotated[str, Form()] = "",
                after: After = "", incidents: Incidents = 0) -> Response:
    """Retry the steps of one group (same orchestration, step and error) at once: as many
    as its button said (``count``), or none, saying how many it holds now."""
    eng = engine_of(request)

    def refused(message: str, status: int) -> Response:
        return _page(request, principal, after, incidents, status=status,
                     group_error={"key": key, "message": message})
    if not reason.strip():
        return refused("Reason is required: say why (it is audited)", 422)
    if not count.isdigit() or len(count) > 7:
        return refused("Say how many steps to retry: the number its button shows", 422)
    parts = key.split("\x1f", 2)
    held, ids = (eng.fallout_group(*parts, limit=GROUP_LIMIT) if len(parts) == 3
                 else (0, []))
    if not held:
        return refused("Nothing left in that group: its steps were resolved meanwhile", 409)
    if held != int(count):
        return refused(f"That group changed: it holds {held} step"
                       f"{'s' if held != 1 else ''} now, not {int(count)}; nothing was "
                       "retried. Check it, then retry again", 409)
    moved = 0
    for fallout_id in ids:
        try:
            eng.resolve_fallout(fallout_id, "retry", reason=reason.strip(), actor=principal.name)
        except (TransitionConflict, NotFound):
            moved += 1  # resolved by someone else meanwhile: nothing to do for it
    retried = len(ids) - moved
    return _back(f"retried {retried} step{'s' if retried != 1 else ''}", after, incidents)


def _groups(found: list[FalloutGroup]) -> list[dict[str, Any]]:
    """Every step in fallout grouped by orchestration, step and error message (counted by
    the store), largest group first (then by orchestration, step, and the group whose
    first step comes first in the page's order), each with its true size (``count``) and
    what its button acts on (``acts_on``)."""
    ordered = sorted(found, key=lambda g: (-g.count, g.orchestration, g.step, g.first))
    return [{"key": f"{g.orchestration}\x1f{g.step}\x1f{g.message}",
             "orchestration": g.orchestration, "step": g.step, "error": g.message,
             "count": g.count, "acts_on": min(g.count, GROUP_LIMIT)} for g in ordered]


def _anchor(after: str | None) -> tuple[str, str] | None:
    """The cursor ``after`` (``RUN_ID:STEP``, the previous page's last) as a key."""
    if after is None:
        return None
    run_id, colon, step = after.partition(":")
    if not colon or not run_id or not step:
        raise ValidationError("fallout page", {"query.after": (
            "not a cursor of this list: follow the page's Next page link, or leave "
            "it out for the first page")})
    return run_id, step


DONE = (*ACTIONS, *(f"incident {a}" for a in INCIDENT_ACTIONS), "incident still failing")
RETRIED = re.compile(r"retried [0-9]{1,6} steps?")  # what retry_group says; no other text


def _page(request: Request, principal: Principal, after: str | None, incidents: int, *,
          done: str | None = None, failed: dict[str, Any] | None = None,
          failed_incident: dict[str, Any] | None = None,
          group_error: dict[str, str] | None = None, status: int = 200) -> Response:
    eng = engine_of(request)
    after = cursor_param(after)
    found = eng.fallout_by_step(after=_anchor(after), limit=PAGE, groups=True)
    entries = [fallout_view(run, sr) for run, sr in found.steps]
    next_cursor = entries[-1]["id"] if found.more and entries else None
    groups = _groups(found.groups)
    total = found.total
    incident_total = eng.count_incidents()
    shown_incidents = eng.list_incidents(limit=INCIDENT_PAGE, offset=incidents)
    shown_done = done if done in DONE or RETRIED.fullmatch(done or "") else None
    here = {"after": after or "", "incidents": incidents}
    refusals, refusal_total = (eng.intake.refusals(limit=REFUSALS_SHOWN)
                               if Permission.RECORDS_READ in principal.user.permissions
                               else ([], None))
    return render(request, "fallout.html", principal, {
        "refusals": refusals, "refusal_total": refusal_total,
        "entries": entries, "total": total, "groups": groups[:GROUPS_SHOWN],
        "more_groups": groups[GROUPS_SHOWN:], "group_limit": GROUP_LIMIT,
        "paging": Paging(Total(total), after, next_cursor, PAGE),
        "pager_query": {"incidents": incidents} if incidents else {},
        "here": here, "group_error": group_error,
        "incidents": shown_incidents, "incident_total": incident_total,
        "incident_from": incidents, "incident_page": INCIDENT_PAGE,
        "incident_query": {"after": after} if after else {},
        "done": shown_done, "failed": failed,
        "failed_incident": failed_incident, "actions": ACTIONS,
        "incident_actions": INCIDENT_ACTIONS}, status=status)
