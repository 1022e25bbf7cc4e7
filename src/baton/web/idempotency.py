"""The ``Idempotency-Key`` header on the POSTs that create something (records, runs).

A client that lost the answer to a create (a timeout, a server killed mid-request) sends
it again with the same key: within 24 hours the retry creates nothing and gets the first
answer (same status and body, with ``Idempotent-Replayed: true``). The same key with
another body or path is a 422. Keys are per user. The rules live in
:mod:`baton.runtime.idempotency`; this module is the HTTP side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from baton.errors import IdempotencyKeyTaken
from baton.runtime.idempotency import IdempotencyClaim, KeptRequest, fingerprint
from baton.web.committer import committer_of
from baton.web.problems import ProblemError
from baton.web.security import Principal, engine_of

REPLAYED = "Idempotent-Replayed"
# Printable ASCII, 1 to 255 characters, no space at either end (HTTP would strip it).
KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=KEY_PATTERN,
    description="Any unique string (a UUID): a retry with the same key within 24 hours "
                "creates nothing and answers what the first request got, with the header "
                "`Idempotent-Replayed: true`. The same key with another body answers 422.")]

REPLAY_HEADERS = {REPLAYED: {"description": "`true` when this is the answer to an earlier "
                                            "request with the same Idempotency-Key",
                             "schema": {"type": "string", "enum": ["true"]}}}

# What an endpoint answers: (body, headers); the body is the endpoint's response model.
Answer = tuple[dict[str, Any], dict[str, str]]


def idempotent(request: Request, principal: Principal, key: str | None, resource: str,
               body: BaseModel, model: type[BaseModel], status: int,
               create: Callable[[IdempotencyClaim | None], Answer],
               rebuild: Callable[[str], Answer]) -> JSONResponse:
    """Answer a create: ``create(claim)`` does it (claiming the key in its transaction);
    a retry is answered from the kept answer, or ``rebuild(id)`` from what was created
    when the answer was never kept (the server died between commit and keeping it)."""
    if key is None:
        return _respond(model, status, *create(None))
    keys = engine_of(request).idempotency
    claim = IdempotencyClaim(principal.name, key, request.method, request.url.path,
                             fingerprint(request.method, request.url.path,
                                         body.model_dump(mode="json")), resource)
    kept = keys.lookup(principal.name, key)
    if kept is None:
        try:
            out, headers = create(claim)
        except IdempotencyKeyTaken:  # a concurrent request with this key committed first
            kept = keys.lookup(principal.name, key)
            if kept is None:  # pragma: no cover - it committed, so it is there
                raise
        else:
            body_json = _json(model, out)
            kept_answer = {"status": status, "headers": headers, "body": body_json}
            committer_of(request).submit(
                lambda tx: keys.keep_response_txn(tx, principal.name, key, kept_answer))
            return JSONResponse(body_json, status_code=status, headers=headers)
    return _replay(request, claim, kept, model, status, rebuild)


def _replay(request: Request, claim: IdempotencyClaim, kept: KeptRequest,
            model: type[BaseModel], status: int,
            rebuild: Callable[[str], Answer]) -> JSONResponse:
    if kept.fingerprint != claim.fingerprint:
        raise ProblemError(
            422, "Idempotency key reused",
            f"Idempotency-Key {claim.key!r} was used in the last 24 hours for another request "
            f"({kept.method} {kept.path} with another body): use a new key for a new request",
            slug="idempotency-key-reused",
            errors=[{"field": "header.Idempotency-Key",
                     "message": "used for another request"}])
    saved = kept.response
    if saved is None:
        if kept.resource_id is None:  # pragma: no cover - bound in the claiming transaction
            raise ProblemError(409, "Conflict", "a request with this key is in progress",
                               slug="idempotency-key-in-progress")
        out, headers = rebuild(kept.resource_id)
        saved = {"status": status, "headers": headers, "body": _json(model, out)}
        keys = engine_of(request).idempotency
        committer_of(request).submit(
            lambda tx: keys.keep_response_txn(tx, claim.principal, claim.key, saved))
    return JSONResponse(saved["body"], status_code=int(saved["status"]),
                        headers={**saved["headers"], REPLAYED: "true"})


def _json(model: type[BaseModel], out: dict[str, Any]) -> Any:
    """The body as the response model serialises it (the first answer and a replay are
    the same bytes' worth of JSON)."""
    return model.model_validate(out).model_dump(mode="json")


def _respond(model: type[BaseModel], status: int, out: dict[str, Any],
             headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(_json(model, out), status_code=status, headers=headers)
