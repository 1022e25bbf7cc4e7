"""What every page shares: the template environment, who is logged in, rendering, errors.

Pages are for people with a session cookie (``/login``); an API token works too, but the
UI never asks for one. A page request without credentials is sent to ``/login?next=…``;
an htmx request gets an ``HX-Redirect`` header instead, so a whole page is never swapped
into a fragment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from sqlalchemy.exc import DBAPIError

from baton.auth.directory import User
from baton.auth.roles import Permission, require
from baton.storable import scan
from baton.store.base import Total
from baton.web.api.common import scan_path_and_query
from baton.web.problems import ProblemError
from baton.web.security import (
    PAGE_CSP,
    SAFE_METHODS,
    SESSION_COOKIE,
    Principal,
    engine_of,
    optional_principal,
)
from baton.web.ui.times import ago_text, due_text

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
PAGE_SIZE = 25

# Every page: nothing from another origin, no framing (X-Frame-Options for the browsers
# that do not read the CSP's frame-ancestors).
SECURITY_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}

# The navigation: (label, path, permission), in this order; `/` goes to the first allowed.
NAV: tuple[tuple[str, str, Permission], ...] = (
    ("Work Guide", "/work", Permission.WORK),
    ("Monitor", "/runs", Permission.RUNS_READ),
    ("Records", "/records", Permission.RECORDS_READ),
    ("Definitions", "/definitions", Permission.DEFINITIONS_READ),
    ("Fallout", "/fallout", Permission.FALLOUT),
    ("Team", "/team", Permission.TEAM),
)

STATUS_LABELS = {
    "not_started": "not started", "waiting_for_person": "waiting for a person",
    "in_progress": "in progress", "on_track": "on track", "in_jeopardy": "in jeopardy",
}
PRIORITY_LABELS = {0: "low", 1: "normal", 2: "high", 3: "urgent"}


def form_json(text: str) -> tuple[Any, str | None]:
    """A JSON value typed into a page's form: (the value, None), or (None, why not) when it
    is not JSON or nests deeper than Python parses (said, not a 500)."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    except RecursionError:
        return None, "not taken: JSON nested too deeply"


def _label(value: Any) -> str:
    text = "" if value is None else str(value)
    return STATUS_LABELS.get(text, text.replace("_", " "))


def _when(value: Any) -> str:
    """An ISO timestamp, shortened for tables: ``2025-01-31 14:05:09Z``."""
    if not value:
        return ""
    text = str(value).replace("T", " ")
    if "." in text:
        head, _, tail = text.partition(".")
        text = head + ("Z" if tail.endswith("Z") or "+00:00" in tail else "")
    return text.replace("+00:00", "Z")


def _utc_input(value: Any) -> str:
    """A date-time as a ``datetime-local`` input's value, in UTC (``2026-06-01T12:00``):
    the page's script shows it in the viewer's time and sends it back in UTC. A value
    without a zone (typed without the script) is kept as it is; one that is not a
    date-time, as typed (the field's error says why)."""
    if value is None or value == "":
        return ""
    text = str(value)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return text
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S" if parsed.second else "%Y-%m-%dT%H:%M")


def _pretty(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2, sort_keys=True, default=str)
    return "" if value is None else str(value)


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(label=_label, when=_when, pretty=_pretty, utc_input=_utc_input, due=due_text, ago=ago_text,
                       priority=lambda p: PRIORITY_LABELS.get(p, str(p)))
    return env


templates = Jinja2Templates(env=_env())


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def clean_page_input(request: Request) -> None:
    """Refuse what no database stores (NUL characters, lone surrogates) in a page's path,
    query or form fields, as a 422 page naming the field: the API's input hygiene
    (:func:`baton.web.api.common.clean_input`) for the pages. Without it such a value
    reached a query (a user name typed at the login page, a Work Guide search) and
    PostgreSQL refused it: a 500."""
    out: list[dict[str, str]] = []
    scan_path_and_query(request, out)
    if request.method not in SAFE_METHODS and \
            request.headers.get("content-type", "").startswith(FORM_TYPES):
        form = await request.form()  # (cached: the page's own Form() parameters read it)
        for k, v in form.multi_items():
            scan(k, "form", out)
            if isinstance(v, str):
                scan(v, f"form.{k}", out)
    if out:
        raise ProblemError(422, "Invalid input",
                           "; ".join(f"{e['field']}: {e['message']}" for e in out),
                           slug="validation", errors=out)


class LoginRequired(Exception):
    """A page was asked for without a session: go to the login page."""


def is_htmx(request: Request) -> bool:
    return request.headers.get("HX-Request") == "true"


def safe_next(target: str | None, default: str = "/") -> str:
    """Only a local path: never another site (no scheme, no host, no ``//`` or ``/\\``)."""
    if not target or any(ord(c) < 32 for c in target):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    return target


def login_redirect(request: Request) -> Response:
    """To the login page, coming back here (or to the page an htmx/POST request came from)."""
    if request.method == "GET" and not is_htmx(request):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    else:
        came_from = request.headers.get("HX-Current-URL") or request.headers.get("referer") or "/"
        parts = urlsplit(came_from)  # its query too: the Work Guide's tab and filters
        here = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    location = "/login?next=" + quote(safe_next(here), safe="")
    if is_htmx(request):
        return Response(status_code=204, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


async def page_principal(
        principal: Annotated[Principal | None, Depends(optional_principal)]) -> Principal:
    """The logged-in caller of a page (CSRF already checked for unsafe methods)."""
    if principal is None:
        raise LoginRequired()
    return principal


def page_need(permission: Permission) -> Any:
    """A dependency: the page's caller, who must hold ``permission`` (a 403 page otherwise)."""

    async def dependency(principal: Annotated[Principal, Depends(page_principal)]) -> Principal:
        require(principal.user, permission)
        return principal

    return dependency


@dataclass(frozen=True)
class Paging:
    """A page of a long list read by cursor (keyset pagination): ``after`` is this page's
    cursor (None on the first page), ``next`` the following page's, ``total`` a count that
    is exact up to a thousand (else estimated: ``total.text()`` says "about" or "+")."""

    total: Total
    after: str | None
    next: str | None
    size: int = PAGE_SIZE


def cursor_param(after: str | None) -> str | None:
    """A page's ``after`` parameter: blank is the first page."""
    return (after or "").strip() or None


def nav_for(user: User | None) -> list[tuple[str, str]]:
    if user is None:
        return []
    return [(label, path) for label, path, perm in NAV if user.can(perm)]


def render(request: Request, template: str, principal: Principal | None,
           context: dict[str, Any] | None = None, status: int = 200,
           headers: dict[str, str] | None = None) -> HTMLResponse:
    user = principal.user if principal else None
    ctx = {"request": request, "user": user, "csrf": principal.csrf if principal else None,
           "nav": nav_for(user), "path": request.url.path, "P": Permission, **(context or {})}
    # A signed-in page is not kept by the browser: after logging out, Back must not show
    # it again (and a shared computer must not keep a case's data in its cache).
    private = {"Cache-Control": "no-store"} if user is not None else {}
    response = templates.TemplateResponse(
        request, template, ctx, status_code=status,
        headers={**SECURITY_HEADERS, **private, **(headers or {})})
    return response


def _session_principal(request: Request) -> Principal | None:
    """Who is logged in, for the navigation of an error page (no CSRF check: read only);
    None when the database cannot say (the page is then the signed-out one: an error page
    must not fail for want of a name, least of all the one saying the database is away)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        found = engine_of(request).directory.session(cookie)
    except DBAPIError:
        return None
    return Principal(found[0], "session", found[1]) if found else None


def render_html_error(request: Request, status: int, title: str, detail: str,
                      headers: dict[str, str] | None) -> Response:
    """Errors on pages: inside the layout (or as an alert fragment for htmx requests)."""
    if status == 401:
        return login_redirect(request)
    messages = {
        403: "You are not allowed to do this.",
        404: "There is nothing here, or you may not see it.",
        409: "Someone or something changed this first. Reload the page and try again.",
        422: "Some of what was sent is not valid.",
    }
    ctx = {"status": status, "title": title, "detail": detail,
           "explanation": messages.get(status, "Something went wrong.")}
    extra = {k: v for k, v in (headers or {}).items() if k.lower() != "www-authenticate"}
    if is_htmx(request):
        extra.update({"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"})
        return render(request, "_alert.html", None, ctx, status=status, headers=extra)
    return render(request, "error.html", _session_principal(request), ctx, status=status,
                  headers=extra)
