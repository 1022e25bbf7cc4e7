"""A GET for every POST-only page URL, sending the browser to the page its form is on.

A refused form (a mistake, a conflict) is answered with its page drawn again in the POST's
response, so the fields keep what was typed and the errors stand next to them; the address
bar then shows the POST's URL (``/runs/R/steps/S/resolve``). Opening it again later (the
address bar, history, a bookmark) asks for it with GET: rather than a bare 405, the GET twin
of such a route answers 303 to the page the form lives on, the nearest enclosing path that is
a page (``/runs/{run_id}/steps/{step}/resolve`` -> ``/runs/{run_id}``, ``/work/next`` ->
``/work``, ``/logout`` -> ``/``). It does nothing else (never what the POST does), and
without a session it goes to the login page, as every page does.

:func:`get_twins` makes them from the page routers (:func:`twin_targets` says which and
where to), so a new form's route has its twin without anyone listing it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute

from baton.errors import ConfigError
from baton.web.security import Principal
from baton.web.ui.base import SECURITY_HEADERS, page_principal

_PARAM = re.compile(r"{(\w+)(?::\w+)?}")


def page_routes(routers: Iterable[APIRouter]) -> list[APIRoute]:
    """The routes of ``routers`` (their own, in order)."""
    return [r for router in routers for r in router.routes if isinstance(r, APIRoute)]


def page_of(path: str, pages: set[str]) -> str:
    """The page a POST-only ``path`` belongs to: its nearest enclosing path in ``pages``
    (path templates, ``/runs/{run_id}``); ``/`` (the start page) when none is."""
    parts = path.rstrip("/").split("/")
    while len(parts) > 1:
        parts.pop()
        candidate = "/".join(parts) or "/"
        if candidate in pages:
            return candidate
    return "/"


def _to_page(template: str) -> Callable[..., Response]:
    def endpoint(request: Request,
                 principal: Annotated[Principal, Depends(page_principal)]) -> Response:
        target = _PARAM.sub(lambda m: quote(str(request.path_params[m[1]]), safe=""), template)
        return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)

    return endpoint


def twin_targets(routers: Iterable[APIRouter]) -> dict[str, str]:
    """Each POST route of ``routers`` without a GET at the same path -> the page its GET
    twin goes to (path templates). A twin that would take a page's own URL (a twin
    ``/x/{id}`` beside a page ``/x/new``) is refused, when the app is made."""
    routes = page_routes(routers)
    pages = {r.path: r.path_regex for r in routes if "GET" in (r.methods or ())}
    targets: dict[str, str] = {}
    for route in routes:
        if "POST" not in (route.methods or ()) or route.path in targets or any(
                regex.match(route.path) and route.path_regex.match(path)
                for path, regex in pages.items()):
            continue  # (a page answers GET at the same URLs)
        shadowed = [p for p in pages if route.path_regex.match(p)]
        if shadowed:
            raise ConfigError(f"the GET twin of POST {route.path} would answer for the page "
                              f"{shadowed[0]}: give the form's route another path")
        targets[route.path] = page_of(route.path, set(pages))
    return targets


def get_twins(routers: Iterable[APIRouter]) -> APIRouter:
    """A router of the GET twins of ``routers``' POST-only routes (:func:`twin_targets`).
    Include it before them: ``/work/next``'s twin must answer rather than the page
    ``/work/{item_id}``."""
    twins = APIRouter(include_in_schema=False)
    for path, target in twin_targets(list(routers)).items():
        twins.add_api_route(path, _to_page(target), methods=["GET"], include_in_schema=False,
                            name=f"GET {path}", summary=f"to {target}")
    return twins
