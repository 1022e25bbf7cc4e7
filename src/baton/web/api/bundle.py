"""Bundles: what ``baton export`` and ``baton import`` do, over HTTP.

``GET /api/bundle`` answers the ``.tar.gz`` ``baton export`` writes (the same members, made
by the same code: :func:`baton.runtime.bundle.export_bundle`); ``POST /api/bundle/import``
takes one (the bytes, ``Content-Type: application/gzip``) and answers the report ``baton
import --json`` prints, a dry run included. Import is a change of definitions: it needs
``definitions:write``, as a deploy does. What a deploy over the API refuses, an import over
the API refuses too: an MCP connection over stdio (a process on the workers' hosts) that is
new or changes its command (``baton import`` on the server imports it). A bundle that
carries people (users with their roles: an admin among them) needs ``users`` as well, to
import and to export, dry run included (its report says who exists and with what roles).
"""

from __future__ import annotations

import hashlib
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from baton.auth.roles import Permission, require
from baton.errors import PermissionDenied, ValidationError
from baton.runtime.bundle import (
    MAX_BUNDLE_BYTES,
    BundleError,
    apply_import,
    export_bundle,
    plan_import,
    read_bundle,
)
from baton.runtime.definitions import checksum
from baton.web.api.definitions import _refuse_host_commands
from baton.web.api.intake import content_disposition
from baton.web.idempotency import REPLAY_HEADERS, Created, IdempotencyKey, idempotent_apart
from baton.web.problems import ProblemError, problem_responses
from baton.web.security import Principal, engine_of, need

router = APIRouter(prefix="/bundle", tags=["Definitions"])

GZIP = "application/gzip"
TAKEN = (GZIP, "application/x-gzip", "application/octet-stream")
MAX_BODY = MAX_BUNDLE_BYTES + 64 * 1024
"""The most a bundle's bytes may be (as ``baton import`` reads a file): gzip makes nothing
larger than what it unpacks to, 16 MiB at most, but for a few bytes of headers. The
server's body limit (``BATON_MAX_BODY_BYTES``) refuses a larger body before this does."""

READ = Depends(need(Permission.DEFINITIONS_READ))
WRITE = Depends(need(Permission.DEFINITIONS_WRITE))


class BundleInclude(str, Enum):
    people = "people"


class BundleChange(BaseModel):
    kind: str = Field(description="object, orchestration, calendar, connection, routing, "
                                  "mailbox, catalog, fulfillment, intake_form; or user")
    name: str
    change: str = Field(description="what the import does to it: `new version 3`, "
                                    "`unchanged (v2)`, `activate v3`, `deactivate`; a user: "
                                    "`add (...)`, `update: roles, queues`, `unchanged`")
    writes: bool = Field(description="false when it changes nothing")


class ImportReport(BaseModel):
    """What ``baton import --json`` prints."""

    dry_run: bool
    changes: list[BundleChange]


class _Asked(BaseModel):
    """What an import asks, as its Idempotency-Key's fingerprint takes it."""

    sha256: str
    dry_run: bool


EXPORT_DOC = (
    "The bundle `baton export` writes (a `.tar.gz`: `manifest.json`, `definitions.json`, and "
    "with `include=people` `people.json`), for `POST /api/bundle/import` or `baton import` "
    "elsewhere: the active version of each definition (the latest of one that is "
    "deactivated), or every version with `all_versions=true`. People are users with their "
    "roles, groups and queues, never a password or a token; exporting them needs the `users` "
    "permission. Run history, records and work are never part of a bundle.")
IMPORT_DOC = (
    "A bundle from `GET /api/bundle` or `baton export`, sent as its bytes (`Content-Type: "
    "application/gzip`; at most 16 MiB unpacked). Everything is validated first: every YAML "
    "text as a deploy checks it, and what the import makes active as an activation does "
    "(the object types and the records stored under them, the definitions outside the "
    "bundle that depend on what it changes), judged on the state the import leaves; then it "
    "is written in one transaction, or nothing is. Versions are matched by content (a text "
    "already here is not deployed again). `dry_run=true` answers what would change and "
    "changes nothing. The answer is what `baton import --json` prints. A problem of a "
    "definition answers 422 with `issues`, each located in its bundle entry "
    "(`definitions/KIND/NAME/vN.yaml`); a file that is not a bundle answers 422 naming "
    "`body`; a user of `people.json` that is refused names `body.people.N`. A bundle with "
    "people needs the `users` permission as well (403 without it). An MCP connection over "
    "stdio that is new, or whose command, args or env change, is refused (403) as a deploy "
    "over the API refuses it: `baton import` on the server imports it. An import planned "
    "while another deploy, activation or import committed, or a bundled user was changed, "
    "is refused whole (409): send it again. With an `Idempotency-Key`, a retry imports "
    "nothing more and answers as the first request was answered.")

BUNDLE_BODY = {"requestBody": {"required": True, "content": {GZIP: {
    "schema": {"type": "string", "format": "binary",
               "description": "a bundle's bytes, as GET /api/bundle answers them"},
    "example": "(the bytes of bundle.tar.gz, from GET /api/bundle or baton export)"}}}}


@router.get("", operation_id="exportBundle", summary="Export the definitions as a bundle",
            description=EXPORT_DOC, response_class=Response,
            responses={200: {"description": "The bundle, as a download",
                             "content": {GZIP: {"schema": {"type": "string",
                                                           "format": "binary"}}},
                             "headers": {"Content-Disposition": {
                                 "description": "attachment; its file name",
                                 "schema": {"type": "string"}}}},
                       **problem_responses(401, 403, 422)})
def export(request: Request,
           all_versions: Annotated[bool, Query(description=(
               "every version of each definition, not only the active one"))] = False,
           include: Annotated[list[BundleInclude] | None, Query(description=(
               "also export `people` (needs the `users` permission)"))] = None,
           principal: Principal = READ) -> Response:
    people = BundleInclude.people in (include or [])
    if people:
        require(principal.user, Permission.USERS)
    eng = engine_of(request)
    data = export_bundle(eng, include_people=people, all_versions=all_versions)
    name = f"baton-bundle-{eng.clock.now().strftime('%Y%m%d-%H%M%S')}.tar.gz"
    return Response(data, media_type=GZIP,
                    headers={"Content-Disposition": content_disposition(name)})


@router.post("/import", operation_id="importBundle", response_model=ImportReport,
             summary="Import a bundle", description=IMPORT_DOC, openapi_extra=BUNDLE_BODY,
             responses={200: {"description": "Imported (or, dry run, what would change)",
                              "headers": REPLAY_HEADERS},
                        **problem_responses(400, 401, 403, 409, 413, 415, 422)})
async def import_bundle(request: Request,
                        dry_run: Annotated[bool, Query(description=(
                            "validate and answer what would change; change nothing"))] = False,
                        idempotency_key: IdempotencyKey = None,
                        principal: Principal = WRITE) -> JSONResponse:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in TAKEN:
        raise ProblemError(415, "Unsupported media type",
                           f"send the bundle's bytes as {GZIP}; got "
                           f"{'Content-Type ' + kind[:100] if kind else 'no Content-Type'}",
                           slug="unsupported-media-type", headers={"Accept-Post": GZIP})
    data = await _read(request)
    # (The work is synchronous, as a deploy is: this endpoint is async only to read the
    # body with a size cap, so the blocking part goes to a thread.)
    return await run_in_threadpool(_import, request, data, dry_run, idempotency_key, principal)


async def _read(request: Request) -> bytes:
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ProblemError(413, "Content too large",
                               f"a bundle may have at most {MAX_BODY:,} bytes",
                               slug="too-large")
        chunks.append(chunk)
    if not size:
        raise ProblemError(422, "Invalid input", "body: empty: send the bundle's bytes",
                           slug="validation", errors=[{"field": "body", "message": "empty"}])
    return b"".join(chunks)


def _import(request: Request, data: bytes, dry_run: bool, key: str | None,
            principal: Principal) -> JSONResponse:
    eng = engine_of(request)
    try:
        members = read_bundle(data)
    except BundleError as exc:
        raise ProblemError(422, "Not a bundle", f"body: {exc}", slug="validation",
                           errors=[{"field": "body", "message": str(exc)}]) from None
    people = members.get("people.json") or []
    if people:  # (users with roles, an admin among them: the users' administrators')
        require(principal.user, Permission.USERS)

    def create() -> Created:
        _refuse_host_commands_of(request, members["definitions.json"])
        try:
            plan = plan_import(eng, members)
        except ValidationError as exc:
            raise _located(exc, people) from exc
        if not dry_run:
            apply_import(eng, plan, actor=principal.name)
        return (plan.report(dry_run=dry_run), {}), None

    asked = _Asked(sha256=hashlib.sha256(data).hexdigest(), dry_run=dry_run)
    return idempotent_apart(request, principal, key, "bundle", asked, ImportReport, 200,
                            create)


def _refuse_host_commands_of(request: Request, defs: list[dict[str, Any]]) -> None:
    """Each connection of the bundle whose text is not here already, checked as a deploy
    over the API checks it (an MCP connection over stdio: what the workers' hosts run is
    their operator's to choose, not to be changed through the API, active or stored for a
    later activation)."""
    repo = engine_of(request).definitions
    for d in defs:
        if d["kind"] != "connection":
            continue
        if checksum(d["source"]) in {r.checksum for r in
                                     repo.list_versions("connection", d["name"])}:
            continue
        where = f"definitions/{d['kind']}/{d['name']}/v{d['version']}.yaml"
        try:
            _refuse_host_commands(request, {where: d["source"]})
        except PermissionDenied as exc:
            raise PermissionDenied(f"{exc}; a bundle holding it is imported with `baton "
                                   "import` on the server") from None


def _located(exc: ValidationError, people: list[dict[str, Any]]) -> ValidationError:
    """A user of ``people.json`` refused, each field named where the request has it:
    ``body.people.N.FIELD``."""
    at = next((i for i, p in enumerate(people)
               if exc.what == f"people.json: user {p['name']!r}"), None)
    prefix = "body.people" if at is None else f"body.people.{at}"
    return ValidationError(exc.what, {f"{prefix}.{f}": m for f, m in exc.fields.items()})
