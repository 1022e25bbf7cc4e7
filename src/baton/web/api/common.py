"""What every API module shares: pagination, input hygiene, small response pieces.

Input hygiene (the rules: :mod:`baton.storable`): JSON parsed by Python accepts things no
database column or JSON response can hold (NUL characters, lone UTF-16 surrogates, NaN).
:func:`clean_input` refuses them up front, on every route of the API, as a 422 naming the
field, instead of letting a driver error surface as a 500 deep inside a transaction.
Authentication comes first, as it does for FastAPI's own checks of the parameters: on an
operation that needs a caller, a request without a valid one gets its 401 (or 429) before
any 406, 415 or 422 of these checks, which would tell an anonymous caller what the
operation takes.
"""

from __future__ import annotations

import base64
import binascii
import decimal
import json
import os
import posixpath
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path as FsPath
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Any, Generic, TypeVar

from fastapi import APIRouter, Query, Request, Response
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect

from baton.errors import ValidationError
from baton.storable import scan
from baton.store.base import Total
from baton.store.sql.keyset import encode_cursor
from baton.web.problems import ProblemError
from baton.web.security import Need, bearer, current_principal, engine_of, optional_principal

T = TypeVar("T")

MAX_LIMIT = 500
MAX_INT = 2**31 - 1  # what an INTEGER column holds on every backend

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size (1..500)")]
Offset = Annotated[int, Query(ge=0, le=MAX_INT, description="Items to skip")]
# The long lists (runs, work items, records) page by cursor; their offset stays for the
# first pages only (an offset is a scan of what it skips).
MAX_OFFSET = 1000
KeysetOffset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description=(
    f"Items to skip (at most {MAX_OFFSET}: further on, follow `next` with `after`)"))]
After = Annotated[str | None, Query(min_length=1, max_length=600, description=(
    "The `next` cursor of the previous page: the page after it (keyset pagination; "
    "filters and order as on that page)"))]
# Names and ids in paths and filters: bounded, so a fuzzer's megabyte string is a 422, not a
# full scan with a megabyte parameter.
Name = Annotated[str, Field(min_length=1, max_length=200)]


NOT_NULL = "may not be null (leave it out to keep its value)"


def not_null(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of a patch's field that may be left out but not sent as null:
    its schema without the null branch (the validator :func:`refuse_null` refuses one)."""
    branches = schema.pop("anyOf", None)
    if isinstance(branches, list):
        kept = [b for b in branches if b != {"type": "null"}]
        if len(kept) == 1:
            schema.update(kept[0])
        else:
            schema["anyOf"] = kept
    schema.pop("default", None)


def refuse_null(value: Any) -> Any:
    """A patch's field sent as null, where null clears nothing: a 422 naming the field."""
    if value is None:
        raise ValueError(NOT_NULL)
    return value


class RequestBody(BaseModel):
    """A request body: a field the operation does not know is a 422 naming it (a typo such
    as ``{"dat": ...}`` is refused, not silently dropped)."""

    model_config = ConfigDict(extra="forbid")


class Page(BaseModel, Generic[T]):
    """One page of a list. ``next_offset`` and ``next`` are null on the last page (a long
    list's ``next_offset`` is also null past its offset bound or after a short page:
    ``next`` goes on)."""

    items: list[T]
    total: int
    limit: int
    offset: int
    next_offset: int | None
    next: str | None = Field(default=None, description=(
        "Cursor of the next page: pass it as `after` (null on the last page). A page may "
        "hold fewer than `limit` items and still have a `next`: follow it."))
    total_estimated: bool = Field(default=False, description=(
        "True when counting exactly would scan: `total` is then PostgreSQL's estimate, or "
        "on SQLite a lower bound (at least that many; 1000 means more than a thousand)"))


def page(items: list[T], total: int, limit: int, offset: int, tag: str | None = None
         ) -> dict[str, Any]:
    """A page of a short list, read by offset. ``tag`` names the list in its ``next``
    cursor (see :func:`start_of`): every list answers a ``next`` to follow as ``after``,
    whether it pages by key or by position."""
    nxt = offset + len(items)
    more = nxt < total and bool(items)
    return {"items": items, "total": total, "limit": limit, "offset": offset,
            "next_offset": nxt if more else None,
            "next": encode_cursor(tag, [nxt]) if more and tag is not None else None}


def start_of(tag: str, after: str | None, offset: int) -> int:
    """Where a page of a list read by position starts: ``offset``, or the position its
    ``after`` cursor (a ``next`` of the same list, ``tag``) carries. A cursor of another
    list, or no cursor at all, is a 422 naming ``query.after``, as on the long lists."""
    if after is None:
        return offset
    if offset:
        raise ValidationError("page", {"query.offset": "give `after` or `offset`, not both"})

    def bad(why: str) -> ValidationError:
        return ValidationError("page", {"query.after": (
            f"not a cursor of this list ({why}): pass the `next` value of the previous page "
            "unchanged, with the same filters")})
    try:
        data = json.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad("not base64url JSON") from None
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise bad("malformed")
    if data[0] != tag:
        raise bad(f"it pages {data[0]!r}, this is {tag!r}")
    if len(data) != 2 or type(data[1]) is not int or not 0 < data[1] <= MAX_INT:
        raise bad("wrong keys")
    return data[1]


def keyset_page(items: list[T], found_next: str | None, total: Total, limit: int,
                offset: int) -> dict[str, Any]:
    """A page read by cursor (``found_next``: the cursor after its last item)."""
    # next_offset only after a full page within the offset bound: a short page (a filter
    # without an index, within its scan budget) goes on by `next` alone
    full = found_next is not None and len(items) == limit
    return {"items": items, "total": total.value, "limit": limit, "offset": offset,
            "next_offset": offset + limit if full and offset + limit <= MAX_OFFSET else None,
            "next": found_next, "total_estimated": total.estimated}


def one_of_after_or_offset(after: str | None, offset: int) -> None:
    if after is not None and offset:
        raise ValidationError("page", {"offset": "give `after` or `offset`, not both"})


def page_of(all_items: list[T], limit: int, offset: int, tag: str | None = None
            ) -> dict[str, Any]:
    """Paginate a list that was read whole (small lists: versions, timelines, fallout)."""
    return page(all_items[offset:offset + limit], len(all_items), limit, offset, tag)


class Reason(RequestBody):
    """Why (audited with the actor's name)."""

    # Not blank: at least one character that no regex dialect here counts as blank. \s is
    # not one class everywhere: Python's str.strip() (the engine's check) strips U+001C..
    # U+001F and U+0085 (NEL), Rust's \s (pydantic) holds U+0085, ECMA's \s (JSON Schema: a
    # client's validator, schemathesis) holds neither, but holds U+FEFF, which they do not. Excluding all of them names the same strings in JSON Schema, pydantic and Python
    # (schemathesis sent "\u0085": schema-valid, refused by pydantic).
    reason: str = Field(min_length=1, max_length=2000, pattern=r"[^\s\x1c-\x1f\x85\ufeff]",
                        description="Why (audited); not blank")


# ---- definition files ---------------------------------------------------------------------


def project_folders(request: Request) -> tuple[PurePosixPath, ...]:
    """The server's project folder as a deployed path may spell it: as configured (or the
    current folder) and with its links resolved."""
    given = FsPath(engine_of(request).settings.project_dir or os.getcwd()).absolute()
    return tuple(dict.fromkeys(PurePosixPath(p.as_posix()) for p in (given, given.resolve())))


def shown_file(file: str, projects: tuple[PurePosixPath, ...]) -> str:
    """``file`` as the API shows it: relative to one of ``projects``, or its name alone
    when it is elsewhere; never an absolute path (POSIX or Windows) nor one that climbs
    out with ``..``."""
    if not file:
        return file
    if PureWindowsPath(file).drive or file.startswith("\\"):  # C:\…, \\server\…, \…
        return PureWindowsPath(file).name
    path = PurePosixPath(posixpath.normpath(file))
    if path.is_absolute():
        for project in projects:
            if path.is_relative_to(project) and path != project:
                return path.relative_to(project).as_posix()
        return path.name
    first = path.parts[0] if path.parts else ""
    if first == ".." or first.startswith("~"):  # (~: a home folder)
        return path.name
    return file


# ---- input hygiene ------------------------------------------------------------------------


_EMPTY_BODIES = (b"", b"{}", b"null")


async def _no_body_unless_taken(request: Request) -> None:
    """An operation that takes no body refuses one (an empty object or null aside, which
    some clients always send): ``POST /api/work/next`` with ``{"queue": …}`` in the body
    would otherwise take an item of any queue, its filters being query parameters."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or route.body_field is not None or \
            "requestBody" in (route.openapi_extra or {}):  # (one that reads its body itself)
        return
    try:
        body = await request.body()  # (cached; small: the body limit holds)
    except ClientDisconnect:  # gone, or cut off at the body limit (413 sent)
        return
    if b"".join(body.split()) in _EMPTY_BODIES:
        return
    takes = sorted(p.alias for p in route.dependant.query_params)
    hint = f"; its options are query parameters: {', '.join(takes)}" if takes else ""
    raise ProblemError(422, "Invalid input", f"body: this operation takes no body{hint}",
                       slug="validation",
                       errors=[{"field": "body", "message": f"this operation takes no body{hint}"}])


def scan_path_and_query(request: Request, out: list[dict[str, str]]) -> None:
    """What no database stores in a request's path parameters and query, into ``out``."""
    for k, v in request.path_params.items():
        scan(v, f"path.{k}", out)
    for k, v in request.query_params.multi_items():
        scan(k, "query", out)
        scan(v, f"query.{k}", out)


@dataclass(frozen=True)
class _Takes:
    """What one route takes, beyond its path: its query parameters' names, whether it
    parses a JSON body itself (415 for another content type), and whether it answers JSON
    (406 for a client that accepts none)."""

    query: frozenset[str]
    open_query: bool  # (a callback URL an external system calls: it may add its own)
    json_body: bool
    json_answer: bool
    authenticated: bool  # it needs a caller (a token or a session)


_TAKES: dict[int, _Takes] = {}


def _needs_caller(dependant: Dependant) -> bool:
    """Whether an operation, or one of its dependencies, needs a caller."""
    call = dependant.call
    return (isinstance(call, Need) or call is current_principal
            or any(_needs_caller(sub) for sub in dependant.dependencies))


def _query_names(dependant: Dependant) -> Iterator[str]:
    """The query parameters of an operation and of every dependency it has."""
    for param in dependant.query_params:
        yield param.alias
    for sub in dependant.dependencies:
        yield from _query_names(sub)


def _takes(route: APIRoute) -> _Takes:
    found = _TAKES.get(id(route))
    if found is None:
        answer = route.response_class
        if isinstance(answer, DefaultPlaceholder):
            answer = answer.value
        found = _TAKES[id(route)] = _Takes(
            query=frozenset(_query_names(route.dependant)),
            open_query=(route.openapi_extra or {}).get("security") == [],
            json_body=route.body_field is not None,
            json_answer=isinstance(answer, type) and issubclass(answer, JSONResponse),
            authenticated=_needs_caller(route.dependant))
    return found


def _unknown_query(request: Request, takes: _Takes) -> None:
    """A query parameter the operation does not take is a 422 naming it (a typo such as
    ``?stauts=open`` would otherwise list everything, unfiltered)."""
    unknown = sorted({k for k in request.query_params if k not in takes.query})
    if not unknown:
        return
    options = (f"its query parameters are: {', '.join(sorted(takes.query))}" if takes.query
               else "it takes no query parameters")
    errors = [{"field": f"query.{k}"[:250], "message": f"unknown query parameter; {options}"}
              for k in unknown[:MAX_UNKNOWN]]
    raise ProblemError(422, "Invalid input",
                       "; ".join(f"{e['field']}: {e['message']}" for e in errors),
                       slug="validation", errors=errors)


MAX_UNKNOWN = 20  # unknown query parameters named in one 422
JSON_TYPES = ("application/json", "application/problem+json")


def _accepts_json(accept: str) -> bool:
    """Whether an Accept header admits a JSON answer (RFC 9110 media ranges, q=0 refusing)."""
    for part in accept.split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        kind = kind.lower()
        if not kind:
            continue
        refused = any(p.replace(" ", "").lower() in ("q=0", "q=0.0", "q=0.00", "q=0.000")
                      for p in params)
        if not refused and (kind in ("*/*", "application/*", *JSON_TYPES)
                            or kind.endswith("+json")):
            return True
    return False


async def _media_checks(request: Request, takes: _Takes) -> None:
    """406 when the client accepts no JSON answer; 415 for a body that is not said to be
    JSON (another Content-Type, or none: FastAPI would not parse it, and answer that the
    body "should be a valid dictionary")."""
    accept = request.headers.get("accept")
    if takes.json_answer and accept is not None and accept.strip() \
            and not _accepts_json(accept):
        raise ProblemError(406, "Not acceptable",
                           f"this operation answers application/json (errors: "
                           f"application/problem+json); the Accept header allows neither: "
                           f"{accept[:100]!r}", slug="not-acceptable")
    if not takes.json_body or request.method in ("GET", "HEAD", "OPTIONS", "DELETE"):
        return
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        return
    if not ctype:
        try:
            body = await request.body()  # (cached; small: the body limit holds)
        except ClientDisconnect:
            return
        if not body.strip():
            return  # no body: FastAPI says whether the operation needs one
    got = f"got Content-Type {ctype[:100]}" if ctype else "no Content-Type was sent"
    raise ProblemError(415, "Unsupported media type",
                       f"the body must be JSON (Content-Type: application/json); {got}",
                       slug="unsupported-media-type",
                       headers={"Accept-Patch" if request.method == "PATCH"
                                else "Accept-Post": "application/json"})


async def clean_input(request: Request) -> None:
    """Refuse what the operation does not take: a query parameter it does not know (422),
    a body that is not JSON (415), an Accept header without JSON (406); and text no
    database can store and numbers JSON cannot carry (422, per field). On an operation
    that needs a caller, a request without one is refused as such first (401)."""
    try:
        await _clean_input(request)
    except ProblemError:
        route = request.scope.get("route")
        if isinstance(route, APIRoute) and _takes(route).authenticated:
            # Who asks, as the operation's own dependency would (401, 429, or 403 for a
            # session without its CSRF token); a known caller gets the refusal itself.
            # Only on this refusal's path: a valid request is authenticated once.
            await current_principal(await optional_principal(request, await bearer(request)))
        raise


async def _clean_input(request: Request) -> None:
    route = request.scope.get("route")
    if isinstance(route, APIRoute):
        takes = _takes(route)
        if request.url.query and not takes.open_query:
            _unknown_query(request, takes)
        await _media_checks(request, takes)
    out: list[dict[str, str]] = []
    scan_path_and_query(request, out)
    if request.method not in ("GET", "HEAD", "OPTIONS", "DELETE"):
        await _no_body_unless_taken(request)
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("application/json"):
            body = await request.body()  # cached: FastAPI parses the same bytes
            if body:
                try:
                    data = json.loads(body)
                except (ValueError, RecursionError):
                    data = None  # FastAPI reports the syntax error itself
                scan(data, "", out)
    if out:
        detail = "; ".join(f"{e['field'] or 'body'}: {e['message']}" for e in out)
        raise ProblemError(422, "Invalid input", detail, slug="validation",
                           errors=[{"field": e["field"] or "body", "message": e["message"]}
                                   for e in out])



class ExactNumbers(APIRoute):
    """A route whose JSON body keeps numbers exact: ``19.90`` or ``1234567890123456.78``
    arrive as :class:`decimal.Decimal`, not as a float that has already rounded them.

    For the operations whose ``data`` is checked against field definitions (records, a
    run's input, a work item's form): a ``decimal`` field stores the number exactly; the
    other types accept a Decimal as they accept a float (a ``json`` field keeps a float).
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact(request: Request) -> Response:
            if request.headers.get("content-type", "").startswith("application/json"):
                try:
                    body = await request.body()
                except ClientDisconnect:  # gone, or cut off at the body limit (413 sent):
                    return await handler(request)  # FastAPI's own read reports it as before
                if body:
                    try:
                        # Starlette's request.json() returns this; FastAPI validates it.
                        request._json = json.loads(body, parse_float=decimal.Decimal)
                    except (ValueError, RecursionError):
                        pass  # FastAPI parses it again and reports the syntax error itself
            return await handler(request)

        return exact


F = TypeVar("F", bound=Callable[..., Any])


def exact_post(router: APIRouter, path: str, **kw: Any) -> Callable[[F], F]:
    """``@router.post(path, ...)`` for one operation whose body keeps numbers exact
    (:class:`ExactNumbers`), on a router whose other operations parse JSON as usual."""
    def register(fn: F) -> F:
        router.add_api_route(path, fn, methods=["POST"], route_class_override=ExactNumbers,
                             **kw)
        return fn
    return register


@contextmanager
def under(prefix: str, rename: dict[str, str] | None = None) -> Iterator[None]:
    """Re-raise the engine's ValidationError with each field named as the request does.

    ``with under("data"):`` turns field ``subject`` into ``data.subject``; ``rename`` maps
    engine names that are not under the prefix (``record`` -> ``record_id``).
    """
    names = rename or {}
    try:
        yield
    except ValidationError as exc:
        def name(f: str) -> str:
            if f in names:
                return names[f]
            return prefix if f == "(data)" else f"{prefix}.{f}"

        raise ValidationError(exc.what, {name(f): m for f, m in exc.fields.items()}) from exc
