"""Running it in production: ``/healthz`` (the process answers), ``/readyz`` (it can do its
job: the database answers, its schema is migrated, a worker is heartbeating) and
``/metrics`` (Prometheus, for a token with ``runs:read``).

A database that is down makes ``/readyz`` 503 at once; one that hangs makes it 503 after
:data:`READY_TIMEOUT_S`, and while that check still waits the probes that follow are
answered 503 at once, not queued (``OneRead``). ``/healthz`` does not touch the database.

Why the database cannot be read is the driver's first line, which may name the database's
host, port, user or file: the server's log has it (a warning, written once a minute while
it stays the same: :class:`baton.logs.Repeats`), and so does the answer to a caller whose
API token or session holds ``runs:read`` (as ``/metrics`` asks; while the database is away a
token is known if it scraped lately: :func:`~baton.web.security.known_caller`). Anyone else
is told the error's class only. A probe needs no credentials, and a wrong one changes
nothing but that: the answer is the same, never a 401."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from baton.auth.roles import Permission
from baton.clock import iso
from baton.errors import ConfigError
from baton.runtime.metrics import NoAnswer, OneRead, server_registry
from baton.store.migrations import LATEST
from baton.store.sql import metrics as q
from baton.web.problems import problem_responses
from baton.web.security import Principal, engine_of, known_caller, need

if TYPE_CHECKING:
    from baton.runtime.engine import Engine

# Probes and scrapes, not the API: left out of /openapi.json (a 503 from /readyz is its
# answer, not a server error; /metrics speaks Prometheus' format, not JSON).
router = APIRouter(tags=["operations"], include_in_schema=False)
WORKER_SILENCE_S = 30.0  # a worker silent this long does not count as heartbeating
READY_TIMEOUT_S = 5.0  # a database that has not answered the checks by then: not ready
log = logging.getLogger(__name__)


# GET and HEAD: load balancers probe with HEAD (the same status and headers, no body).
# async: answered on the event loop, never queued behind request threads a hung database
# holds (a liveness probe that timed out then would have the process restarted for it).
@router.api_route("/healthz", methods=["GET", "HEAD"], summary="Liveness: the process answers",
                  responses={200: {"description": "alive"}})
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.api_route("/readyz", methods=["GET", "HEAD"],
                  summary="Readiness: database reachable and migrated, a worker alive",
                  responses={200: {"description": "ready"},
                             503: {"description": "not ready: `checks` says which check failed"}})
def readyz(request: Request) -> JSONResponse:
    eng = engine_of(request)
    probe = getattr(request.app.state, "readyz", None)
    if probe is None:  # one check at a time, at most READY_TIMEOUT_S (see OneRead)
        probe = request.app.state.readyz = OneRead(READY_TIMEOUT_S)
    said: str | None = None  # why the database could not be read, in the driver's words
    try:
        checks, said = probe(lambda: _checks(eng))
    except NoAnswer as exc:
        checks = {"database": {"ok": False, "detail": str(exc)}}
    if said is not None:  # (the checks are shared by the probes that waited for them: copied)
        caller = known_caller(request)
        if caller is not None and caller.user.can(Permission.RUNS_READ):
            checks = {**checks, "database": {**checks["database"], "detail": said}}
    ready = all(c.get("ok") for c in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


def _checks(eng: Engine) -> tuple[dict[str, Any], str | None]:
    """The checks, and, when the database could not be read, what its driver said (logged
    here; the checks say the error's class only)."""
    checks: dict[str, Any] = {}
    said: str | None = None
    try:
        version = eng.store.schema_version()
        checks["database"] = {"ok": True}
        try:  # (every migration applied, not only the highest: branches numbered apart)
            missing = eng.store.pending_migrations()
            checks["schema"] = {"ok": not missing, "version": version, "expected": LATEST,
                                **({"missing": missing} if missing else {})}
        except ConfigError as exc:  # a newer Baton's schema
            checks["schema"] = {"ok": False, "version": version, "expected": LATEST,
                                "detail": str(exc)[:300]}
        with eng.store.read() as tx:
            alive = q.workers_alive(tx, iso(eng.clock.now() - timedelta(seconds=WORKER_SILENCE_S)))
        checks["workers"] = {"ok": alive > 0, "alive": alive,
                             **({} if alive else {"detail": f"no worker has sent a heartbeat "
                                                  f"in {WORKER_SILENCE_S:.0f} s"})}
    except Exception as exc:  # noqa: BLE001 - any failure to read is "not ready", said why
        # (the driver's first line: never SQLAlchemy's statement and parameters)
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[:1]
        said = f"{type(exc).__name__}: {''.join(first)}"[:300]
        log.warning("readiness: the database cannot be read: %s", said)
        checks["database"] = {"ok": False, "detail": f"{type(exc).__name__}: database "
                              "unavailable (see the server log)"}
    return checks, said


@router.get("/metrics", summary="Prometheus metrics (text exposition format)",
            response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}},
                       **problem_responses(401, 403)})
def metrics(request: Request,
            _: Annotated[Principal, Depends(need(Permission.RUNS_READ, outage=True))]
            ) -> Response:
    """The process's metrics and the database's counts (``baton_database_up 0`` when these
    cannot be read; the token is then taken if it scraped lately: ``need(..., outage=True)``)."""
    registry = getattr(request.app.state, "metrics", None)
    if registry is None:
        registry = request.app.state.metrics = server_registry(engine_of(request))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
