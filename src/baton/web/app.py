"""The ASGI application: the REST API under ``/api`` and the web UI, over one Engine."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from baton import __version__
from baton.runtime.engine import Engine
from baton.web import problems

HERE = Path(__file__).parent


def create_app(engine: Engine, *, base_url: str | None = None) -> FastAPI:
    """The app for one Engine. ``base_url`` is how browsers reach it (links in e-mails);
    None: the engine's setting (``BATON_BASE_URL``), as ``baton serve`` completes it."""
    app = FastAPI(
        title="Baton",
        version=__version__,
        description="Durable business process orchestration: definitions, records, runs, "
                    "work items and fallout. Authenticate with an API token "
                    "(`Authorization: Bearer …`, from `baton tokens create USER`). "
                    "Errors are RFC 9457 problem documents (`application/problem+json`).",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.engine = engine
    app.state.base_url = base_url if base_url is not None else engine.settings.smtp.base_url
    problems.install(app)

    from baton.web import ui
    from baton.web.api import router as api_router
    from baton.web.ui import router as ui_router

    app.include_router(api_router, prefix="/api")
    app.include_router(ui_router)
    ui.install(app)  # errors on pages as HTML; no session -> /login
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return app
