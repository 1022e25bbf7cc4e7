"""Errors as ``application/problem+json`` (RFC 9457), from one root: BatonError.

Every API error body has ``type``, ``title``, ``status`` and ``detail``; validation errors
add ``errors``: one ``{"field", "message"}`` per offending field (``field`` is a dotted
path such as ``data.subject`` or ``query.limit``), and definition errors add ``issues``
(file, line, path, message). Pages of the web UI get the same errors as HTML instead
(the UI sets ``app.state.render_html_error``).

Errors nobody raised on purpose are problem documents too, showing nothing of the error
itself (no SQL, no values): a database that is away or locked (worth another try: the
store's ``is_transient``) is ``503`` with ``Retry-After``; anything else is ``500``, its
traceback in the server's log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from baton.errors import (
    BatonError,
    ConfigError,
    DefinitionError,
    ExpressionError,
    NotFound,
    PermissionDenied,
    TransitionConflict,
    ValidationError,
)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://baton.dev/problems/"
RETRY_AFTER_S = 5  # what a 503 for a database that is away or busy asks clients to wait
log = logging.getLogger(__name__)


class FieldProblem(BaseModel):
    field: str
    message: str


class DefinitionIssue(BaseModel):
    file: str
    line: int
    path: str
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    instance: str | None = None
    errors: list[FieldProblem] | None = None
    issues: list[DefinitionIssue] | None = None


class ProblemError(Exception):
    """Raise to answer with a problem document (status, title, detail, extra members)."""

    def __init__(self, status: int, title: str, detail: str = "", *, slug: str | None = None,
                 errors: list[dict[str, str]] | None = None, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail or title)
        self.status, self.title, self.detail = status, title, detail
        self.slug, self.errors, self.headers, self.extra = slug, errors, headers, extra


# Responses every protected operation may give, for the OpenAPI document.
def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    titles = {400: "Bad request", 401: "Not authenticated", 403: "Forbidden", 404: "Not found",
              409: "Conflict", 422: "Invalid input", 500: "Internal server error",
              503: "Service unavailable"}
    return {c: {"model": Problem, "description": titles.get(c, "Error"),
                "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
            for c in codes}


def _body(request: Request, status: int, title: str, detail: str, slug: str | None,
          **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": TYPE_BASE + slug if slug else "about:blank", "title": title,
                            "status": status, "detail": detail, "instance": request.url.path}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


MACHINE_PATHS = ("/api/", "/metrics", "/healthz", "/readyz")
"""Paths programs call: their errors are problem documents, never pages or a login redirect."""


def problem_response(request: Request, status: int, title: str, detail: str = "", *,
                     slug: str | None = None, headers: dict[str, str] | None = None,
                     **extra: Any) -> Response:
    render = getattr(request.app.state, "render_html_error", None)
    if render is not None and not request.url.path.startswith(MACHINE_PATHS):
        return render(request, status, title, detail, headers)  # type: ignore[no-any-return]
    return JSONResponse(_body(request, status, title, detail, slug, **extra), status_code=status,
                        media_type=PROBLEM_JSON, headers=headers)


def _from_baton(request: Request, exc: BatonError) -> Response:
    if isinstance(exc, ValidationError):
        errors, _ = _capped([{"field": f, "message": m} for f, m in exc.fields.items()])
        detail = str(exc)
        if len(exc.fields) > MAX_FIELD_ERRORS:
            detail = f"invalid {exc.what}: {len(exc.fields):,} fields have problems"
        return problem_response(request, 422, "Invalid input", detail, slug="validation",
                                errors=errors)
    if isinstance(exc, DefinitionError):
        # (an issue of a deployed definition, one the deploy breaks, names its stored file:
        # shown as the definitions' endpoints show it, never a deploying machine's path)
        from baton.web.api.common import project_folders, shown_file

        projects = project_folders(request)
        issues = [{"file": shown_file(i.file, projects), "line": i.line, "path": i.path,
                   "message": i.message} for i in exc.issues]
        return problem_response(request, 422, "Invalid definition", str(exc).splitlines()[0],
                                slug="definition", issues=issues)
    if isinstance(exc, ExpressionError):
        return problem_response(request, 422, "Invalid expression", str(exc), slug="expression")
    if isinstance(exc, NotFound):
        return problem_response(request, 404, "Not found", str(exc), slug="not-found")
    if isinstance(exc, TransitionConflict):
        return problem_response(request, 409, "Conflict", str(exc), slug="conflict")
    if isinstance(exc, PermissionDenied):
        return problem_response(request, 403, "Forbidden", str(exc), slug="forbidden")
    if isinstance(exc, ConfigError):
        return problem_response(request, 500, "Server misconfigured", str(exc), slug="config")
    return problem_response(request, 400, "Bad request", str(exc), slug="bad-request")


def _unavailable(request: Request, exc: BaseException) -> bool:
    """A database that is away, or busy past its lock timeout (a retry may succeed), or a
    server that is shutting down."""
    from baton.web.committer import CommitterClosed

    if isinstance(exc, CommitterClosed):
        return True
    engine = getattr(request.app.state, "engine", None)
    return isinstance(exc, DBAPIError) and engine is not None and engine.store.is_transient(exc)


def _first_line(exc: BaseException) -> str:
    """What the driver said (its first line: never SQLAlchemy's statement and parameters)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _unexpected(request: Request, exc: Exception, *, logged: bool) -> Response:
    """An error nobody raised on purpose, as a problem document that shows nothing of it.

    ``logged``: the caller logs its traceback (Starlette's ``ServerErrorMiddleware``
    raises it again to the server, which does)."""
    where = f"{request.method} {request.url.path}"
    if _unavailable(request, exc):
        what = ("the database is unavailable or busy" if isinstance(exc, DBAPIError)
                else "the server is shutting down")
        log.warning("%s: %s: %s", where, what, _first_line(exc))
        return problem_response(request, 503, "Service unavailable",
                                f"{what}; try again in {RETRY_AFTER_S} s", slug="unavailable",
                                headers={"Retry-After": str(RETRY_AFTER_S)})
    if not logged:
        log.error("%s: %s", where, _first_line(exc), exc_info=exc)
    what = "a database error" if isinstance(exc, DBAPIError) else "an unexpected error"
    return problem_response(request, 500, "Internal server error",
                            f"the request could not be completed because of {what}; "
                            "the server's log has the details", slug="internal")


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:] or ["body"]
    return ".".join(parts)


def _field_error(request: Request, error: Mapping[str, Any]) -> dict[str, str]:
    """One of FastAPI's validation errors as a problem's ``{field, message}``. A body that is
    not JSON is the field ``body`` (FastAPI puts the character offset where a field name
    goes), and a body sent as another content type says so."""
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        why = (error.get("ctx") or {}).get("error") or "invalid"
        return {"field": "body", "message": f"not valid JSON{where}: {why}"}
    field = _field_path(loc)
    if "input" in error and error["input"] is None and error.get("type") != "missing" \
            and len(loc) > 1 and loc[0] == "body":
        return {"field": field, "message": "may not be null (leave it out to keep its value)"}
    if field == "body":
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind and kind != "application/json" and not kind.endswith("+json"):
            return {"field": "body", "message": f"expected JSON (Content-Type: application/json), "
                                               f"got Content-Type {kind}"}
    return {"field": field, "message": error.get("msg", "invalid")}


UNPARSED = "There was an error parsing the body"  # FastAPI's, for any error but a JSON one's
MAX_FIELD_ERRORS = 100  # a 422 lists this many fields' problems, then says how many more


async def _unparsed(request: Request) -> str:
    """Why FastAPI could not parse a body it reports only as "an error": it is read again
    (the ASGI body is kept by Starlette) and parsed as the route would."""
    try:
        raw = await request.body()
        json.loads(raw)
    except RecursionError:
        return "not valid JSON: nested too deeply (arrays and objects within each other)"
    except Exception as exc:  # noqa: BLE001 - a body that cannot be read again (the client
        # went away, a limit cut it off: that answer was given) or is not JSON: said as such
        return f"could not be read as JSON ({type(exc).__name__})"
    return "could not be read as JSON"


def _capped(errors: list[dict[str, str]]) -> tuple[list[dict[str, str]], str]:
    """At most MAX_FIELD_ERRORS of a 422's field problems (90,000 unknown keys would make a
    response of megabytes), and the detail line over them."""
    shown = errors[:MAX_FIELD_ERRORS]
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in shown)
    if len(errors) > len(shown):
        more = len(errors) - len(shown)
        detail += f"; and {more:,} more"
        shown = [*shown, {"field": "(more)", "message": f"{more:,} more problems not listed"}]
    return shown, detail


async def _off_loop(request: Request, answer: Callable[[], Response]) -> Response:
    """The handlers' answer. A page (the UI's error page) names who is signed in, which
    reads the database: it is made in a request thread, never on the event loop (a database
    that hangs would hold every request behind it). A problem document is made here."""
    if getattr(request.app.state, "render_html_error", None) is not None \
            and not request.url.path.startswith(MACHINE_PATHS):
        return await run_in_threadpool(answer)
    return answer()


def install(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> Response:
        return await _off_loop(request, lambda: problem_response(
            request, exc.status, exc.title, exc.detail, slug=exc.slug, headers=exc.headers,
            errors=exc.errors, **exc.extra))

    @app.exception_handler(BatonError)
    async def _baton(request: Request, exc: BatonError) -> Response:
        return await _off_loop(request, lambda: _from_baton(request, exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors, detail = _capped([_field_error(request, e) for e in exc.errors()])
        return await _off_loop(request, lambda: problem_response(
            request, 422, "Invalid input", detail, slug="validation", errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and exc.detail == UNPARSED:
            said = await _unparsed(request)
            return await _off_loop(request, lambda: problem_response(
                request, 422, "Invalid input", f"body: {said}", slug="validation",
                errors=[{"field": "body", "message": said}]))
        titles = {400: "Bad request", 401: "Not authenticated", 403: "Forbidden",
                  404: "Not found", 405: "Method not allowed"}
        headers = getattr(exc, "headers", None)
        detail, slug = str(exc.detail or ""), None
        if exc.status_code == 405:  # (Starlette's: routes matched the path, not the method)
            allow = (headers or {}).get("Allow", "")
            detail = f"{request.method} is not allowed on this path; it takes {allow}"
            slug = "method-not-allowed"
        elif exc.status_code == 404 and detail == "Not Found":  # no route matched
            detail = f"no operation at {request.url.path[:200]}"
            if request.url.path.startswith("/api/"):
                detail += " (the API's operations are listed in /openapi.json)"
            slug = "not-found"
        return await _off_loop(request, lambda: problem_response(
            request, exc.status_code, titles.get(exc.status_code, "Error"), detail, slug=slug,
            headers=headers))

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> Response:
        return await _off_loop(request, lambda: _unexpected(request, exc, logged=False))

    # Anything else (and errors raised outside the routes: middleware): answered by
    # Starlette's ServerErrorMiddleware, which then raises it again for the server to log.
    @app.exception_handler(Exception)
    async def _other(request: Request, exc: Exception) -> Response:
        return await _off_loop(request, lambda: _unexpected(request, exc, logged=True))
