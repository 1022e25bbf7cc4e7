"""Team: the supervisor's page (the ``team`` permission: the operator role). Every person's
availability, load against capacity, skills and calendar, editable in place (availability,
capacity, skills); per queue the items waiting, the oldest wait, items routed in the last
hour and the median time to assignment. A change routes what waits at once."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from baton.auth.roles import Permission
from baton.errors import NotFound, ValidationError
from baton.web.security import Principal, engine_of
from baton.web.ui.base import page_need, render
from baton.work.routing import AVAILABILITIES
from baton.work.team import UNSET, ProfileChange, profile_change

router = APIRouter()
Supervisor = Annotated[Principal, Depends(page_need(Permission.TEAM))]


@router.get("/team")
def team_page(request: Request, principal: Supervisor, done: str | None = None) -> Response:
    return _page(request, principal, done=done)


@router.post("/team")
def update_person(request: Request, principal: Supervisor, name: Annotated[str, Form()],
                  availability: Annotated[str, Form()] = "",
                  capacity: Annotated[str, Form()] = "",
                  skills: Annotated[str, Form()] = "") -> Response:
    """One person's availability, capacity (a number, or empty for no limit) and skills
    (``brand:ford=3, lang:pt``: the whole list)."""
    eng = engine_of(request)
    try:
        parsed = profile_change(skills=[s for s in (x.strip() for x in skills.split(",")) if s],
                                remove=[], capacity=[capacity.strip() or "none"],
                                availability=availability or None, calendar=None)
        change = ProfileChange(availability=parsed.availability, capacity=parsed.capacity,
                               skills=dict(parsed.add_skills or {}), calendar=UNSET)
        eng.team.update(name, change, principal.name)
    except ValidationError as exc:  # (the row shows what was sent, to correct it)
        return _page(request, principal, failed={
            "name": name, "errors": exc.fields, "availability": availability,
            "capacity": capacity, "skills": skills}, status=422)
    except NotFound as exc:
        return _page(request, principal, failed={"name": name, "errors": {"name": str(exc)}},
                     status=404)
    return RedirectResponse(f"/team?done={name}", status_code=303)


def _page(request: Request, principal: Principal, *, done: str | None = None,
          failed: dict[str, Any] | None = None, status: int = 200) -> Response:
    team = engine_of(request).team
    people = team.everyone()
    known = {p.name for p in people}
    return render(request, "team.html", principal, {
        "people": people, "queues": team.figures(), "availabilities": AVAILABILITIES,
        "done": done if done in known else None, "failed": failed}, status=status)
