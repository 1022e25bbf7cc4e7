"""Team: the supervisor's page (the ``team`` permission: the operator role). Per queue the
items waiting, the oldest wait, items routed in the last hour and the median time to
assignment; then the people, in four lists:

- *agents*: active, with the ``work`` permission, in a queue or group — who routing may
  give work to: availability, load against capacity, skills and calendar, editable in
  place (availability, capacity, skills). A change routes what waits at once;
- *not in a queue or group*: the same, editable, but routing gives them nothing until an
  administrator adds them to one;
- *cannot take work*: active, but no role of theirs has the ``work`` permission (a
  designer): routing never gives them an item; shown, not edited;
- *inactive*: deactivated users (they cannot log in; routing skips them), with what their
  profile keeps, not edited: reactivating is an administrator's (``baton users update NAME
  --active``, or the API), and their profile is edited here again then."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from baton.auth.roles import Permission
from baton.errors import NotFound, ValidationError
from baton.web.security import Principal, engine_of
from baton.web.ui.base import page_need, render
from baton.work.routing import AVAILABILITIES
from baton.work.team import UNSET, Profile, ProfileChange, profile_change

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
    (``brand:ford=3, lang:pt``: the whole list). Only for whom the page has a form (active,
    may work items): anyone else is refused (409), saying why."""
    eng = engine_of(request)
    try:
        parsed = profile_change(skills=[s for s in (x.strip() for x in skills.split(",")) if s],
                                remove=[], capacity=[capacity.strip() or "none"],
                                availability=availability or None, calendar=None)
        change = ProfileChange(availability=parsed.availability, capacity=parsed.capacity,
                               skills=dict(parsed.add_skills or {}), calendar=UNSET)
        refused = _not_edited_here(eng.team.get(name))
        if refused is not None:  # (no form for them: a request made by hand, or a stale page)
            return _page(request, principal, failed={"name": name, "errors": {
                "name": refused}}, status=409)
        eng.team.update(name, change, principal.name)
    except ValidationError as exc:  # (the row shows what was sent, to correct it)
        return _page(request, principal, failed={
            "name": name, "errors": exc.fields, "availability": availability,
            "capacity": capacity, "skills": skills}, status=422)
    except NotFound as exc:
        return _page(request, principal, failed={"name": name, "errors": {"name": str(exc)}},
                     status=404)
    return RedirectResponse(f"/team?done={name}", status_code=303)


def _not_edited_here(person: Profile) -> str | None:
    """Why ``person``'s profile is not changed on this page (the page shows them without a
    form), or None: it is for active people whose roles let them work items."""
    if not person.active:
        return (f"{person.name} is inactive: an administrator reactivates them first "
                f"(baton users update {person.name} --active)")
    if not person.may_work:
        roles = ", ".join(person.roles) or "no role"
        return (f"{person.name} cannot take work ({roles}): routing never gives them an item; "
                "their roles are an administrator's to change")
    return None


def _page(request: Request, principal: Principal, *, done: str | None = None,
          failed: dict[str, Any] | None = None, status: int = 200) -> Response:
    team = engine_of(request).team
    people = team.everyone()
    agents = [p for p in people if p.active and p.may_work and (p.queues or p.groups)]
    unpooled = [p for p in people if p.active and p.may_work and not (p.queues or p.groups)]
    no_work = [p for p in people if p.active and not p.may_work]
    inactive = [p for p in people if not p.active]
    editable = {p.name for p in agents + unpooled}
    return render(request, "team.html", principal, {
        "agents": agents, "unpooled": unpooled, "no_work": no_work, "inactive": inactive,
        "queues": team.figures(), "availabilities": AVAILABILITIES,
        "done": done if done in {p.name for p in people} else None, "failed": failed,
        # a refused change to someone without a row to show it in (not edited here)
        "failed_elsewhere": failed if failed and failed["name"] not in editable else None},
        status=status)
