"""The web UI: server-rendered pages (Jinja2) with htmx, one module per page area.

``install(app)`` makes errors on pages render as HTML inside the layout and sends
requests without a session to the login page. Every POST-only page URL answers GET too,
with a redirect to its form's page (:mod:`baton.web.ui.get_twins`): a refused form leaves
that URL in the address bar. Every page route refuses text no database stores in its path,
query or form (:func:`~baton.web.ui.base.clean_page_input`: a 422 page, not a 500).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from baton.web.ui import (
    auth,
    definitions,
    fallout,
    forms,
    monitor,
    records,
    run_actions,
    settings,
    team,
    work,
)
from baton.web.ui.base import (
    LoginRequired,
    clean_page_input,
    login_redirect,
    render_html_error,
)
from baton.web.ui.get_twins import get_twins

PAGE_ROUTERS = tuple(m.router for m in (auth, work, monitor, run_actions, records, definitions,
                                         fallout, settings, team, forms))
CLEAN = [Depends(clean_page_input)]
router = APIRouter(include_in_schema=False)
# first: GET /work/next is not an item's page
router.include_router(get_twins(PAGE_ROUTERS), dependencies=CLEAN)
for _router in PAGE_ROUTERS:
    router.include_router(_router, dependencies=CLEAN)


def install(app: FastAPI) -> None:
    app.state.render_html_error = render_html_error

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        return login_redirect(request)
