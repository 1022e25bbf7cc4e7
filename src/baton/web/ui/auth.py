"""Logging in and out, and the start page.

The login form is protected against cross-site posting too (login CSRF: a page elsewhere
logging the victim in as the attacker): showing it sets a pre-session cookie holding a
random token, repeated in the form; a POST whose ``csrf_token`` field does not match the
cookie is refused (double submit). Attempts go through the login throttle first
(:mod:`baton.auth.throttle`): a locked account, address, or account from this address is
refused, 429, before the password is looked at (a locked account still lets in an address
its user logged in from lately).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from baton.auth.directory import SESSION_TTL
from baton.errors import PermissionDenied
from baton.web.security import (
    CSRF_FIELD,
    SESSION_COOKIE,
    Principal,
    client_address,
    engine_of,
    optional_principal,
    secure_cookies,
)
from baton.web.ui.base import SECURITY_HEADERS, nav_for, page_principal, render, safe_next

router = APIRouter()

LOGIN_CSRF_COOKIE = "baton_login_csrf"
LOGIN_CSRF_TTL = 2 * 60 * 60  # seconds a login form stays usable


def _login_page(request: Request, context: Mapping[str, object], *, status: int = 200,
                headers: dict[str, str] | None = None) -> Response:
    """The login form, with the pre-session CSRF token (the cookie's, or a new one)."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(request, "login.html", None, {"login_csrf": token, **context},
                      status=status, headers=headers)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=LOGIN_CSRF_TTL, path="/login",
                        httponly=True, samesite="strict", secure=secure_cookies(request))
    return response


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
    return _login_page(request, {"next": safe_next(next), "username": "",
                                 "logged_out": logged_out})


@router.post("/login")
def login(request: Request, username: Annotated[str, Form()] = "",
          password: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/",
          csrf_token: Annotated[str, Form(alias=CSRF_FIELD)] = "") -> Response:
    eng = engine_of(request)
    name = username.strip()
    again = {"next": safe_next(next), "username": username}
    expected = request.cookies.get(LOGIN_CSRF_COOKIE) or ""
    if not expected or not csrf_token or not hmac.compare_digest(csrf_token, expected):
        return _login_page(request, again | {
            "error": "The login form had expired or did not come from this site: "
                     "log in again."}, status=403)
    throttle, address = eng.directory.throttle, client_address(request)
    lock = throttle.locked(account=name or None, address=address)
    if lock is not None:  # refused before the password is looked at
        now = eng.clock.now()
        return _login_page(request, again | {"error": lock.explain(now)}, status=429,
                           headers={"Retry-After": str(lock.retry_after(now))})
    user = eng.directory.authenticate(name, password) if name and password else None
    if user is None:
        if name and password:
            lock = throttle.failed(account=name, address=address)
        error = (lock.explain(eng.clock.now()) if lock is not None
                 else "Wrong user name or password (or the account is deactivated).")
        return _login_page(request, again | {"error": error}, status=401,
                           headers={"WWW-Authenticate": 'FormBased realm="baton"'})
    throttle.succeeded(name, address)
    # A new session every time (never one a cookie planted before the login names), and the
    # one this browser had, if any, ends: logging in as someone else on a shared computer
    # leaves no live session of the first person behind.
    cookie, _csrf = eng.directory.create_session(
        user.name, replacing=request.cookies.get(SESSION_COOKIE))
    response = RedirectResponse(safe_next(next), status_code=303, headers=SECURITY_HEADERS)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=int(SESSION_TTL.total_seconds()),
                        path="/", httponly=True, samesite="lax", secure=secure_cookies(request))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login", httponly=True, samesite="strict",
                           secure=secure_cookies(request))
    return response


@router.post("/logout")
def logout(request: Request, principal: Annotated[Principal, Depends(page_principal)]) -> Response:
    """Ends the session (the CSRF token was checked by the dependency)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie and principal.via == "session":
        engine_of(request).directory.delete_session(cookie)
    response = RedirectResponse("/login?logged_out=1", status_code=303, headers=SECURITY_HEADERS)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                           secure=secure_cookies(request))
    return response
