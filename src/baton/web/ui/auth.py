"""Logging in and out, and the start page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from baton.auth.directory import SESSION_TTL
from baton.errors import PermissionDenied
from baton.web.security import SESSION_COOKIE, Principal, engine_of, optional_principal
from baton.web.ui.base import SECURITY_HEADERS, nav_for, page_principal, render, safe_next

router = APIRouter()


@router.get("/")
def home(principal: Annotated[Principal, Depends(page_principal)]) -> Response:
    """The first page the user may see."""
    pages = nav_for(principal.user)
    if not pages:
        raise PermissionDenied(f"user {principal.name!r} has no role that can use a page; "
                               "ask an admin for one")
    return RedirectResponse(pages[0][1], status_code=303)


@router.get("/login")
def login_form(request: Request, principal: Annotated[Principal | None, Depends(optional_principal)],
               next: str = "/", logged_out: bool = False) -> Response:
    if principal is not None and principal.via == "session":
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", None, {"next": safe_next(next), "username": "",
                                                "logged_out": logged_out})


@router.post("/login")
def login(request: Request, username: Annotated[str, Form()] = "",
          password: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/") -> Response:
    eng = engine_of(request)
    user = eng.directory.authenticate(username.strip(), password) if username and password else None
    if user is None:
        return render(request, "login.html", None, {
            "next": safe_next(next), "username": username,
            "error": "Wrong user name or password (or the account is deactivated)."},
            status=401, headers={"WWW-Authenticate": 'FormBased realm="baton"'})
    cookie, _csrf = eng.directory.create_session(user.name)
    response = RedirectResponse(safe_next(next), status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(SESSION_TTL.total_seconds()),
                        path="/", httponly=True, samesite="lax",
                        secure=request.url.scheme == "https")
    return response


@router.post("/logout")
def logout(request: Request, principal: Annotated[Principal, Depends(page_principal)]) -> Response:
    """Ends the session (the CSRF token was checked by the dependency)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and principal.via == "session":
        engine_of(request).directory.delete_session(cookie)
    response = RedirectResponse("/login?logged_out=1", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response
