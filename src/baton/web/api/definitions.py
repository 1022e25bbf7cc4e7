"""Definitions: validate and deploy YAML, list versions, show one, diff two, (de)activate.

A version's ``file`` is shown relative to the project folder (``definitions/case.yaml``),
or as the file's name alone when it was deployed from elsewhere: the deploying machine's
absolute paths (a home folder, a user name) are not for every reader of the API.
"""

from __future__ import annotations

from enum import Enum
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from baton.auth.roles import Permission
from baton.errors import Issue, NotFound, PermissionDenied
from baton.store.base import DefinitionRow
from baton.web.api.common import (
    MAX_INT,
    After,
    Limit,
    Offset,
    Page,
    RequestBody,
    page_of,
    project_folders,
    shown_file,
    start_of,
)
from baton.web.idempotency import (
    REPLAY_HEADERS,
    ActionIdempotencyKey,
    Created,
    IdempotencyKey,
    idempotent_action_apart,
    idempotent_apart,
    replayable,
)
from baton.web.problems import DefinitionIssue, problem_responses
from baton.web.security import Principal, engine_of, need

router = APIRouter(prefix="/definitions", tags=["Definitions"])

MAX_FILES = 200
MAX_FILE_CHARS = 1_000_000
MAX_TOTAL_CHARS = 1_000_000  # parsing costs ~6 µs a character: bound one request's CPU


class Kind(str, Enum):
    object = "object"
    orchestration = "orchestration"
    calendar = "calendar"
    connection = "connection"
    routing = "routing"
    mailbox = "mailbox"
    catalog = "catalog"
    fulfillment = "fulfillment"
    intake_form = "intake_form"


class DefinitionFiles(RequestBody):
    """YAML texts by file name; file names appear in problems (``file:line path: message``)."""

    files: dict[Annotated[str, Field(min_length=1, max_length=300)],
                Annotated[str, Field(max_length=MAX_FILE_CHARS)]] = Field(
        min_length=1, max_length=MAX_FILES,
        examples=[{"case.yaml": "kind: object\nname: Case\nfields:\n  subject: {type: string}\n"}])

    @field_validator("files")
    @classmethod
    def _bounded(cls, files: dict[str, str]) -> dict[str, str]:
        total = sum(len(text) for text in files.values())
        if total > MAX_TOTAL_CHARS:
            raise ValueError(f"the files hold {total:,} characters in all; at most "
                             f"{MAX_TOTAL_CHARS:,} are accepted in one request")
        return files


class ValidationResult(BaseModel):
    valid: bool
    issues: list[DefinitionIssue]
    warnings: list[DefinitionIssue] = Field(
        default_factory=list, description="Definitions that deploy but probably do not do what "
                                          "was meant (valid stays true)")


class Deployed(BaseModel):
    kind: str
    name: str
    version: int
    changed: bool = Field(description="false when the text equals the latest version's")


class DeployResult(BaseModel):
    deployed: list[Deployed]


class DefinitionSummary(BaseModel):
    kind: str
    name: str
    active_version: int | None = Field(description="null when deactivated")
    latest_version: int
    versions: int


class DefinitionVersion(BaseModel):
    kind: str
    name: str
    version: int
    active: bool
    checksum: str
    file: str = Field(description="the file it was deployed from: relative to the project "
                                  "folder, or its name alone when it was elsewhere")
    deployed_at: str
    deployed_by: str


class DefinitionSource(DefinitionVersion):
    source: str = Field(description="the YAML text as deployed")


class Schedule(BaseModel):
    cron: str
    timezone: str
    version: int = Field(description="the version whose trigger it follows")
    next_at: str | None = Field(description="the next tick; null when deactivated")
    last_at: str | None = Field(description="the last tick that started a run")
    last_run_id: str | None


class DefinitionDetail(DefinitionSummary):
    history: list[DefinitionVersion]
    schedule: Schedule | None = Field(
        default=None, description="an orchestration started by a `schedule` trigger: its ticks")


class DefinitionDiff(BaseModel):
    kind: str
    name: str
    from_version: int
    to_version: int
    diff: str = Field(description="unified diff of the two versions' YAML (empty if equal)")


class Activate(RequestBody):
    version: int = Field(ge=1, le=MAX_INT)


def version_json(row: DefinitionRow, projects: tuple[PurePosixPath, ...]) -> dict[str, Any]:
    return {"kind": row.kind, "name": row.name, "version": row.version, "active": row.active,
            "checksum": row.checksum, "file": shown_file(row.file, projects),
            "deployed_at": row.deployed_at, "deployed_by": row.deployed_by}


def _summaries(rows: list[DefinitionRow]) -> list[dict[str, Any]]:
    grouped: dict[tuple[str, str], list[DefinitionRow]] = {}
    for r in rows:
        grouped.setdefault((r.kind, r.name), []).append(r)
    out = []
    for (kind, name), versions in sorted(grouped.items()):
        active = next((v.version for v in versions if v.active), None)
        out.append({"kind": kind, "name": name, "active_version": active,
                    "latest_version": max(v.version for v in versions),
                    "versions": len(versions)})
    return out


def _versions(request: Request, kind: Kind, name: str) -> list[DefinitionRow]:
    rows = engine_of(request).definitions.list_versions(kind.value, name)
    if not rows:
        raise NotFound(kind.value, name, "see GET /api/definitions")
    return rows


KindPath = Annotated[Kind, Path(description="object, orchestration, calendar, connection, "
                                            "routing, mailbox, catalog or fulfillment")]
NamePath = Annotated[str, Path(min_length=1, max_length=200)]
VersionNo = Annotated[int, Path(ge=1, le=MAX_INT)]
READ = Depends(need(Permission.DEFINITIONS_READ))
WRITE = Depends(need(Permission.DEFINITIONS_WRITE))


@router.get("", response_model=Page[DefinitionSummary], summary="List deployed definitions",
            description="By kind, then name.",
            responses=problem_responses(401, 403, 422))
def list_definitions(request: Request, kind: Kind | None = None, limit: Limit = 50,
                     offset: Offset = 0, after: After = None,
                     _: Principal = READ) -> dict[str, Any]:
    start = start_of("definitions", after, offset)
    rows = engine_of(request).definitions.list_versions(kind.value if kind else None)
    return page_of(_summaries(rows), limit, start, "definitions")


@router.post("/validate", response_model=ValidationResult, summary="Validate YAML definitions",
             description="Every problem at once, each with file, line and path. Nothing is "
                         "deployed; an invalid set answers 200 with `valid: false`.",
             responses=problem_responses(400, 401, 403, 422))
def validate(request: Request, body: DefinitionFiles, _: Principal = WRITE) -> dict[str, Any]:
    warnings: list[Issue] = []
    issues = engine_of(request).validate_texts(body.files, warnings=warnings)
    projects = project_folders(request)  # (a deployed definition's issue names its file)

    def located(found: list[Issue]) -> list[dict[str, Any]]:
        return [{"file": shown_file(i.file, projects), "line": i.line, "path": i.path,
                 "message": i.message} for i in found]

    return {"valid": not issues, "issues": located(issues), "warnings": located(warnings)}


@router.post("/deploy", response_model=DeployResult, summary="Deploy YAML definitions",
             description="All or nothing: an invalid set answers 422 with `issues` (file, line, "
                         "path, message) and deploys nothing. A changed text becomes a new "
                         "version, which is made active; runs stay on their version. An MCP "
                         "connection over stdio (a process on the workers' hosts), new or "
                         "with its command, args or env changed, is refused (403): `baton "
                         "deploy` on the server deploys it. With an `Idempotency-Key`, a "
                         "retry deploys nothing and answers as the first request was "
                         "answered.",
             responses={200: {"description": "Deployed", "headers": REPLAY_HEADERS},
                        **problem_responses(400, 401, 403, 409, 422)})
def deploy(request: Request, body: DefinitionFiles, idempotency_key: IdempotencyKey = None,
           principal: Principal = WRITE) -> JSONResponse:
    _refuse_host_commands(request, body.files)

    def create() -> Created:
        results = engine_of(request).deploy(texts=body.files, actor=principal.name)
        return ({"deployed": [{"kind": r.kind, "name": r.name, "version": r.version,
                               "changed": r.changed} for r in results]}, {}), None

    return idempotent_apart(request, principal, idempotency_key, "deployment", body,
                            DeployResult, 200, create)


def _refuse_host_commands(request: Request, files: dict[str, str]) -> None:
    """An MCP connection over stdio starts a process on the workers' hosts (its ``command``
    with its ``args`` and ``env``): what runs there is the host's operator's to choose, not
    a definition designer's over HTTP. A new one, or one whose command, args or env differ
    from the active version's, is refused here (403): ``baton deploy`` on the server
    deploys it. (Problems of the texts themselves are left to the deploy to report.)"""
    from baton.definitions.loader import check_texts
    from baton.definitions.model import ConnectionDefinition

    eng = engine_of(request)
    docs, _ = check_texts(files, deployed_objects=eng.definitions.object_types(),
                          deployed_connections=eng.definitions.connection_types())
    for doc in docs:
        new = doc.definition
        if not isinstance(new, ConnectionDefinition) or new.transport != "stdio":
            continue
        try:
            old: ConnectionDefinition | None = eng.definitions.connection(new.name)
        except NotFound:
            old = None
        if old is not None and (old.transport, old.command, old.args, dict(old.env)) == (
                new.transport, new.command, new.args, dict(new.env)):
            continue
        raise PermissionDenied(
            f"{doc.file}: connection {new.name!r} starts a process on the workers' hosts (an "
            "MCP server over stdio): one that is new, or whose command, args or env change, "
            "is deployed with `baton deploy` on the server, not through the API (an MCP "
            "server reached over transport: http may be deployed here)")


@router.get("/{kind}/{name}", response_model=DefinitionDetail, summary="One definition's versions",
            responses=problem_responses(401, 403, 404, 422))
def get_definition(request: Request, kind: KindPath, name: NamePath,
                   _: Principal = READ) -> dict[str, Any]:
    rows = _versions(request, kind, name)
    sch = engine_of(request).definitions.schedules().get(name) if kind == "orchestration" else None
    schedule = {k: sch[k] for k in Schedule.model_fields} if sch else None
    projects = project_folders(request)
    return {**_summaries(rows)[0], "history": [version_json(r, projects) for r in rows],
            "schedule": schedule}


@router.get("/{kind}/{name}/versions/{version}", response_model=DefinitionSource,
            summary="One version with its YAML source",
            responses=problem_responses(401, 403, 404, 422))
def get_version(request: Request, kind: KindPath, name: NamePath, version: VersionNo,
                _: Principal = READ) -> dict[str, Any]:
    row = engine_of(request).definitions.get_version(kind.value, name, version)
    return {**version_json(row, project_folders(request)), "source": row.source}


@router.get("/{kind}/{name}/diff", response_model=DefinitionDiff, summary="Diff two versions",
            responses=problem_responses(401, 403, 404, 422))
def diff(request: Request, kind: KindPath, name: NamePath,
         from_: Annotated[int, Query(alias="from", ge=1, le=MAX_INT)],
         to: Annotated[int, Query(ge=1, le=MAX_INT)], _: Principal = READ) -> dict[str, Any]:
    text = engine_of(request).definitions.diff(kind.value, name, from_, to)
    return {"kind": kind.value, "name": name, "from_version": from_, "to_version": to,
            "diff": text}


# (the definitions repository writes in a transaction of its own: the key is claimed apart)
_KEYED = (" With an `Idempotency-Key`, a retry does nothing more and answers as the first "
          "request was answered.")


@router.post("/{kind}/{name}/activate", response_model=DefinitionVersion,
             summary="Make a version the active one",
             description="New runs and record triggers use the active version; "
                         "runs in progress stay on theirs." + _KEYED,
             responses={**replayable("the version, now active"),
                        **problem_responses(400, 401, 403, 404, 409, 422)})
def activate(request: Request, kind: KindPath, name: NamePath, body: Annotated[Activate, Body()],
             idempotency_key: ActionIdempotencyKey = None,
             principal: Principal = WRITE) -> JSONResponse:
    def act() -> dict[str, Any]:
        row = engine_of(request).definitions.set_active(kind.value, name, body.version,
                                                        principal.name)
        assert row is not None
        return version_json(row, project_folders(request))

    return idempotent_action_apart(request, principal, idempotency_key, "definition", body,
                                   DefinitionVersion, act)


@router.post("/{kind}/{name}/deactivate", response_model=DefinitionSummary,
             summary="Deactivate a definition",
             description="No new runs start from it (nor from its record triggers); runs in "
                         "progress go on. Object types cannot be deactivated (409)." + _KEYED,
             responses={**replayable("the definition, deactivated"),
                        **problem_responses(400, 401, 403, 404, 409, 422)})
def deactivate(request: Request, kind: KindPath, name: NamePath,
               idempotency_key: ActionIdempotencyKey = None,
               principal: Principal = WRITE) -> JSONResponse:
    def act() -> dict[str, Any]:
        _versions(request, kind, name)
        engine_of(request).definitions.set_active(kind.value, name, None, principal.name)
        return _summaries(_versions(request, kind, name))[0]

    return idempotent_action_apart(request, principal, idempotency_key, "definition", None,
                                   DefinitionSummary, act)
