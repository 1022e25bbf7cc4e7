"""My settings: the delegate who may act on my approvals while I am away (and when).

Any signed-in user changes their own; an admin changes anyone's with ``baton users
update`` or ``PATCH /api/users/{name}``. Only who may list users (``users`` or ``team``) is
told that a delegate is not a user; anyone else is answered alike for every name (it is
kept as given, and the page says the delegation acts only if that is a user's name).
A change is audited (``delegation_changed``, by the signed-in user), as the API's and the
CLI's are.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from baton.errors import ValidationError
from baton.web.security import Principal, engine_of
from baton.web.ui.base import page_principal, render
from baton.web.ui.work import Form

router = APIRouter()
Me = Annotated[Principal, Depends(page_principal)]


@router.get("/settings")
def settings_page(request: Request, principal: Me) -> Response:
    me = engine_of(request).directory.get_user(principal.name)
    return render(request, "settings.html", principal, _context(me))


@router.post("/settings")
def save_settings(request: Request, principal: Me, form: Form) -> Response:
    """Name a delegate (with optional dates), or end the delegation (an empty name)."""
    directory = engine_of(request).directory
    delegate = str(form.get("delegate") or "").strip()
    start = str(form.get("delegate_from") or "").strip()
    until = str(form.get("delegate_until") or "").strip()
    try:
        me = directory.update_user(principal.name, delegate=delegate,
                                   delegate_from=start if delegate else None,
                                   delegate_until=until if delegate else None,
                                   may_list_users=principal.user.may_list_users,
                                   actor=principal.name)
    except ValidationError as exc:
        ctx = _context(directory.get_user(principal.name))
        ctx.update(errors=dict(exc.fields), values={"delegate": delegate, "delegate_from": start,
                                                    "delegate_until": until})
        return render(request, "settings.html", principal, ctx, status=422)
    ctx = _context(me)
    ctx["saved"] = True
    return render(request, "settings.html", principal, ctx)


def _context(me: object) -> dict[str, object]:
    d = getattr(me, "delegation", None)
    return {"me": me, "errors": {}, "saved": False,
            "values": {"delegate": d.to if d else "", "delegate_from": (d.start or "") if d else "",
                       "delegate_until": (d.until or "") if d else ""}}
