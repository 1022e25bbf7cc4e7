"""The ASGI application: the REST API under ``/api`` and the web UI, over one Engine."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from baton import __version__
from baton.runtime.engine import Engine
from baton.web import lookups, openapi, problems
from baton.web.committer import GroupCommitter
from baton.web.limits import BodyLimit
from baton.web.security import SecurityHeaders

HERE = Path(__file__).parent
SWAGGER = "/static/vendor/swagger-ui"
DOCS_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
            "object-src 'none'")
"""/docs loads only what Baton serves (Swagger UI is vendored, its start-up a file)."""
DOCS_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Baton API</title>
<link rel="stylesheet" href="{SWAGGER}/swagger-ui.css">
<link rel="icon" href="{SWAGGER}/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{SWAGGER}/swagger-ui-bundle.js"></script>
<script src="{SWAGGER}/baton-docs.js"></script>
</body>
</html>
"""


def create_app(engine: Engine, *, base_url: str | None = None) -> FastAPI:
    """The app for one Engine. ``base_url`` is how browsers reach it (links in e-mails);
    None: the engine's setting (``BATON_BASE_URL``), as ``baton serve`` completes it."""
    committer = GroupCommitter(engine.store)  # writes of concurrent requests share commits

    open_lifespans = [0]  # several test clients (each its own loop thread) may share an app
    counting = threading.Lock()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        with counting:
            open_lifespans[0] += 1
        lookups.open_loop(_app.state, loop)  # the token and session lookups' connections
        try:
            yield
        finally:
            with counting:
                open_lifespans[0] -= 1
                last = not open_lifespans[0]
            await lookups.close_loop(_app.state, loop, last=last)
            if last:  # not before: another lifespan's requests may still be answering
                committer.close()  # what is queued commits (and is answered) first

    app = FastAPI(
        lifespan=lifespan,
        title="Baton",
        version=__version__,
        description="Durable business process orchestration: definitions, records, runs, "
                    "work items and fallout. Authenticate with an API token "
                    "(`Authorization: Bearer …`, from `baton tokens create USER`). "
                    "Errors are RFC 9457 problem documents (`application/problem+json`).",
        openapi_url="/openapi.json",
        docs_url=None,  # served below from vendored assets: FastAPI's loads them from a CDN
        redoc_url=None,
    )
    app.add_middleware(BodyLimit, limit=engine.settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)  # outermost: a 413 gets them too
    app.state.engine = engine
    app.state.committer = committer
    app.state.base_url = base_url if base_url is not None else engine.settings.smtp.base_url
    problems.install(app)

    from baton.web import api, ui
    from baton.web.health import router as health_router
    from baton.web.ui import router as ui_router

    api.include(app)
    app.include_router(health_router)
    app.include_router(ui_router)
    ui.install(app)  # errors on pages as HTML; no session -> /login
    openapi.install(app)  # links between operations (baton.web.openapi.LINKS)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(DOCS_PAGE, headers={
            "Content-Security-Policy": DOCS_CSP, "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"})

    return app
