"""Records: create, list, read, update (optimistic concurrency), delete, timeline."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from baton.auth.roles import Permission
from baton.runtime.idempotency import IdempotencyClaim
from baton.runtime.views import event_view, record_json
from baton.store.sql.tx import SqlTx
from baton.web.api.common import (
    MAX_INT,
    After,
    ExactNumbers,
    KeysetOffset,
    Limit,
    Offset,
    Page,
    RequestBody,
    keyset_page,
    one_of_after_or_offset,
    page_of,
    start_of,
    under,
)
from baton.web.committer import committer_of
from baton.web.idempotency import REPLAY_HEADERS, Answer, IdempotencyKey, idempotent
from baton.web.problems import ProblemError, problem_responses
from baton.web.security import Principal, engine_of, need

router = APIRouter(tags=["Records"], route_class=ExactNumbers)

READ = Depends(need(Permission.RECORDS_READ))
WRITE = Depends(need(Permission.RECORDS_WRITE))
RecordId = Annotated[str, Path(min_length=1, max_length=40)]
TypeName = Annotated[str, Path(min_length=1, max_length=200, description="object type, e.g. Case")]


DECIMAL_IN = ("A `decimal` field takes a JSON number or a numeric string (`19.9`, "
              "`\"19.90\"`), kept exactly however many digits it has, within the field's "
              "precision and scale (beyond them: 422 naming the field and the limit).")
DECIMAL_OUT = ("A `decimal` field is answered as a JSON string with exactly the field's scale "
               "(`\"19.90\"`, `\"1234567890123456.78\"`), never as a number a client would "
               "read into a float.")


class RecordData(RequestBody):
    data: dict[str, Any] = Field(default_factory=dict,
                                 description=f"field values by name. {DECIMAL_IN}",
                                 examples=[{"subject": "Invoice 42 is wrong", "origin": "Web"}])


class RecordPatch(RequestBody):
    data: dict[str, Any] = Field(description="the fields to change; the others keep their "
                                             f"values. {DECIMAL_IN}")
    version: int | None = Field(default=None, ge=1, le=MAX_INT,
                                description="the version you read; a stale one gives 409 "
                                            "(the If-Match header does the same)")


class RecordOut(BaseModel):
    id: str
    object_type: str
    version: int
    created_at: str
    updated_at: str
    data: dict[str, Any] = Field(description=f"field values by name. {DECIMAL_OUT}")


class Event(BaseModel):
    id: int
    at: str
    type: str
    actor: str
    record_id: str | None
    run_id: str | None
    data: dict[str, Any]


_ETAG = re.compile(r'^\s*(?:W/)?"?(\d{1,10})"?\s*$')


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    m = _ETAG.match(value)
    if not m or not 1 <= int(m.group(1)) <= MAX_INT:
        raise ProblemError(422, "Invalid input", f"If-Match must be a record version such as "
                           f'"3" (from the ETag header or the version field), got {value[:50]!r}',
                           slug="validation", errors=[{"field": "header.If-Match",
                                                       "message": "expected a record version"}])
    return int(m.group(1))


def _etag(response: Response, record: dict[str, Any]) -> None:
    response.headers["ETag"] = f'"{record["version"]}"'


IF_MATCH_PATTERN = r'^(?:W/)?"?[1-9][0-9]{0,8}"?$'
"""A record version as If-Match takes it, declared in the schema and checked by FastAPI
before the handler, so what the schema calls valid the server reads (``_if_match``)."""
IfMatch = Annotated[str | None, Header(alias="If-Match", max_length=100, pattern=IF_MATCH_PATTERN,
                                       description='expected version, e.g. "3"')]


@router.post("/objects/{object_type}/records", response_model=RecordOut, status_code=201,
             summary="Create a record",
             description="Runs its create triggers start in the same transaction. "
                         "Field errors answer 422 naming each field (`data.FIELD`). "
                         "With an `Idempotency-Key`, a retry creates nothing and answers "
                         "as the first request was answered.",
             responses={201: {"description": "Created", "headers": REPLAY_HEADERS},
                        **problem_responses(400, 401, 403, 404, 422)})
def create_record(request: Request, object_type: TypeName, body: RecordData,
                  idempotency_key: IdempotencyKey = None,
                  principal: Principal = WRITE) -> JSONResponse:
    eng = engine_of(request)

    def create(claim: IdempotencyClaim | None) -> Answer:
        # Group commit: concurrent creates share one transaction, each under its own
        # savepoint; this answers once the group (so this record) is durable.
        def create_txn(tx: SqlTx) -> dict[str, Any]:
            return eng.records.create_txn(tx, object_type, [body.data], principal.name, claim,
                                          eng.clock.now())[0]

        with under("data"):
            view = committer_of(request).submit(create_txn)
        return _created(record_json(view, object_type))

    return idempotent(request, principal, idempotency_key, "record", body, RecordOut, 201,
                      create, lambda rid: _created(record_json(eng.get_record(rid))))


def _created(out: dict[str, Any]) -> Answer:
    return out, {"Location": f"/api/records/{out['id']}", "ETag": f'"{out["version"]}"'}


@router.get("/records", response_model=Page[RecordOut], summary="List records, newest first",
            description="Keyset pagination: follow `next` as `after`. `total` is exact up to "
                        "1000 records, beyond that estimated (`total_estimated`).",
            responses=problem_responses(401, 403, 422))
def list_records(request: Request,
                 object_type: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
                 limit: Limit = 50, offset: KeysetOffset = 0, after: After = None,
                 _: Principal = READ) -> dict[str, Any]:
    eng = engine_of(request)
    with under("query"):
        one_of_after_or_offset(after, offset)
        found = eng.page_records(object_type, after=after, offset=offset, limit=limit)
    return keyset_page([record_json(r) for r in found.rows], found.next,
                       eng.count_records_bounded(object_type), limit, offset)


@router.get("/records/{record_id}", response_model=RecordOut, summary="Read a record",
            description="The ETag header is the record's version, for If-Match on PATCH.",
            responses=problem_responses(401, 403, 404, 422))
def get_record(request: Request, response: Response, record_id: RecordId,
               _: Principal = READ) -> dict[str, Any]:
    out = record_json(engine_of(request).get_record(record_id))
    _etag(response, out)
    return out


@router.patch("/records/{record_id}", response_model=RecordOut, summary="Update a record",
              description="Optimistic concurrency: send the version you read as `If-Match` or "
                          "as `version`; if someone changed the record since, the answer is 409 "
                          "and nothing is written: read it again and retry.",
              responses=problem_responses(400, 401, 403, 404, 409, 422))
def update_record(request: Request, response: Response, record_id: RecordId, body: RecordPatch,
                  if_match: IfMatch = None, principal: Principal = WRITE) -> dict[str, Any]:
    header = _if_match(if_match)
    if header is not None and body.version is not None and header != body.version:
        # Both say "the version I read": at most one is the record's version, so the write's
        # precondition cannot hold — the same answer as a stale version (schema-valid input).
        raise ProblemError(409, "Conflict",
                           f"If-Match says version {header} and the body says version "
                           f"{body.version}: at most one of them is the record's version. "
                           "Read the record again and send the version once.",
                           slug="conflict")
    eng = engine_of(request)
    with under("data"):
        view = eng.update_record(record_id, body.data, actor=principal.name,
                                 expected_version=header if header is not None else body.version)
    out = record_json({**view, "object_type": eng.get_record(record_id)["object_type"]})
    _etag(response, out)
    return out


@router.delete("/records/{record_id}", status_code=204, response_class=Response,
               summary="Delete a record",
               description="Refused (409) while a run is working on it. Its timeline is kept.",
               responses=problem_responses(401, 403, 404, 409, 422))
def delete_record(request: Request, record_id: RecordId, if_match: IfMatch = None,
                  principal: Principal = WRITE) -> Response:
    engine_of(request).delete_record(record_id, expected_version=_if_match(if_match),
                                     actor=principal.name)
    return Response(status_code=204)


@router.get("/records/{record_id}/timeline", response_model=Page[Event],
            summary="Every event that touched the record, oldest first",
            responses=problem_responses(401, 403, 404, 422))
def timeline(request: Request, record_id: RecordId, limit: Limit = 50, offset: Offset = 0,
             after: After = None, _: Principal = READ) -> dict[str, Any]:
    tag = f"timeline:{record_id}"
    start = start_of(tag, after, offset)
    events = [event_view(e) for e in engine_of(request).timeline(record_id)]
    return page_of(events, limit, start, tag)
