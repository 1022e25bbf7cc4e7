"""Running it in production: ``/healthz`` (the process answers), ``/readyz`` (it can do its
job: the database answers, its schema is migrated, a worker is heartbeating) and
``/metrics`` (Prometheus, for a token with ``runs:read``).

A database that is down makes ``/readyz`` 503 at once (its driver's first line); one that
hangs makes it 503 after :data:`READY_TIMEOUT_S`, and while that check still waits the
probes that follow are answered 503 at once, not queued (``OneRead``). ``/healthz`` does
not touch the database."""

from __future__ import annotations

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
from baton.web.security import Principal, engine_of, need

if TYPE_CHECKING:
    from baton.runtime.engine import Engine

# Probes and scrapes, not the API: left out of /openapi.json (a 503 from /readyz is its
# answer, not a server error; /metrics speaks Prometheus' format, not JSON).
router = APIRouter(tags=["operations"], include_in_schema=False)
WORKER_SILENCE_S = 30.0  # a worker silent this long does not count as heartbeating
READY_TIMEOUT_S = 5.0  # a database that has not answered the checks by then: not ready


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
    try:
        checks: dict[str, Any] = probe(lambda: _checks(eng))
    except NoAnswer as exc:
        checks = {"database": {"ok": False, "detail": str(exc)}}
    ready = all(c.get("ok") for c in checks.values())
    return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks},
                        status_code=200 if ready else 503)


def _checks(eng: Engine) -> dict[str, Any]:
    checks: dict[str, Any] = {}
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
        said = str(getattr(exc, "orig", None) or exc).strip().splitlines()[:1]
        checks["database"] = {"ok": False,
                              "detail": f"{type(exc).__name__}: {''.join(said)}"[:300]}
    return checks


@router.get("/metrics", summary="Prometheus metrics (text exposition format)",
            response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}},
                       **problem_responses(401, 403)})
def metrics(request: Request,
            _: Annotated[Principal, Depends(need(Permission.RUNS_READ))]) -> Response:
    registry = getattr(request.app.state, "metrics", None)
    if registry is None:
        registry = request.app.state.metrics = server_registry(engine_of(request))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
