"""The ``Idempotency-Key`` header on every POST that creates something: records, runs,
intake, users, API tokens, definition deploys; on ``POST /api/work/next``, which takes
an item (a retry takes no second one); and on every POST that acts on something that
exists: a work item's claim, release, accept, decline, complete, recall and reassign; a
run's cancel, resume and signal; fallout's retry, complete and skip; an incident's retry
and dismiss; a plan's cancel and amend; a definition's activate and deactivate; the
unlocks of a login or an address. A bundle's import (``POST /api/bundle/import``) reads
it as a deploy does.

A client that lost the answer (a timeout, a server killed mid-request) sends the request
again with the same key: within 24 hours the retry does nothing and gets the first
answer (same status and body, with ``Idempotent-Replayed: true``) — not the 409 a
completed item's second completion would get. The same key with another body or path
is a 422; a retry while the first request is still at work is a 409. Keys are per user.
The rules live in :mod:`baton.runtime.idempotency`; this module is the HTTP side.

Two ways to claim a key. :func:`idempotent` (and :func:`idempotent_action`): the service
claims it in the transaction that does the work (records, runs, intake, the next work
item; the work items' actions, the runs', fallout's, incidents' and plans'), so the key
commits with what was done or not at all. :func:`idempotent_apart` (and
:func:`idempotent_action_apart`): the service writes in a transaction of its own (users,
tokens, deploys; definitions' activation, unlocks; a plan's amend dry run), so the key is
claimed just before, and
released (its row deleted) if the request fails. An API token's answer holds its
secret, which is never kept: a retry of a token's create is refused (409 naming the
token made), never answered with a second token.

``POST /api/definitions/validate`` changes nothing (a retry answers the same) and
``POST /api/callbacks/{token}`` has no user (its token, single use, is its key): neither
reads the header.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from baton.clock import iso
from baton.errors import IdempotencyKeyTaken
from baton.runtime.idempotency import IdempotencyClaim, KeptRequest, fingerprint
from baton.store.sql.tx import SqlTx
from baton.web.committer import committer_of
from baton.web.problems import ProblemError
from baton.web.security import Principal, engine_of

REPLAYED = "Idempotent-Replayed"
# Printable ASCII, 1 to 255 characters, no space at either end (HTTP would strip it).
KEY_PATTERN = r"^[!-~]([ -~]{0,253}[!-~])?$"

log = logging.getLogger(__name__)

HONOURED = ("Honoured by every POST that creates something (records, runs, intake, users, "
            "API tokens, definition deploys, bundle imports), by POST /api/work/next, which "
            "takes an item, "
            "and by every POST that acts on something that exists (a work item's claim, "
            "release, accept, decline, complete, recall, reassign; a run's cancel, resume, "
            "signal; fallout's retry, complete, skip; an incident's retry, dismiss; a "
            "plan's cancel, amend; a definition's activate, deactivate; the unlocks). "
            "POST /api/definitions/validate (it changes nothing) and the callbacks (no "
            "user) do not read it. Keys are per user and kept 24 hours.")
_SAME_KEY = ("The same key with another body (or path) answers 422; a retry while the first "
             "request is still at work, or one whose first request was cut off before it "
             "was answered, answers 409 (nothing is done twice: check what exists, then use "
             "a new key). A request that failed (4xx, 5xx) did not use its key up.")


def _key_header(description: str) -> Any:
    return Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=KEY_PATTERN,
                  description=description)


IdempotencyKey = Annotated[str | None, _key_header(
    "Any unique string (a UUID): a retry with the same key within 24 hours creates nothing "
    "and answers what the first request got, with the header `Idempotent-Replayed: true`. "
    f"{_SAME_KEY} {HONOURED}")]

RefusingIdempotencyKey = Annotated[str | None, _key_header(
    "Any unique string (a UUID): a retry with the same key within 24 hours creates nothing. "
    "The answer holds a secret that is never stored, so it cannot be replayed: the retry "
    "is refused with 409 naming what the first request created (if its answer was lost, "
    f"revoke that and create another with a new key). {_SAME_KEY} {HONOURED}")]

TakingIdempotencyKey = Annotated[str | None, _key_header(
    "Any unique string (a UUID): a retry with the same key within 24 hours takes no other "
    "item and answers what the first request got (the same item), with the header "
    "`Idempotent-Replayed: true`. An answer of 204 (nothing to take) does not use the key "
    f"up: a retry with it may take an item that came since. {_SAME_KEY} {HONOURED}")]

ActionIdempotencyKey = Annotated[str | None, _key_header(
    "Any unique string (a UUID): a retry with the same key within 24 hours does nothing "
    "more (a completed item is not completed twice, nor answered 409 for it) and answers "
    "what the first request got, with the header `Idempotent-Replayed: true`. "
    f"{_SAME_KEY} {HONOURED}")]

REPLAY_HEADERS = {REPLAYED: {"description": "`true` when this is the answer to an earlier "
                                            "request with the same Idempotency-Key",
                             "schema": {"type": "string", "enum": ["true"]}}}

# What an endpoint answers: (body, headers); the body is the endpoint's response model.
Answer = tuple[dict[str, Any], dict[str, str]]


def replayable(description: str, status: int = 200) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI answer of an operation that honours the key: ``description``, and the
    ``Idempotent-Replayed`` header a replay carries."""
    return {status: {"description": description, "headers": REPLAY_HEADERS}}


def idempotent(request: Request, principal: Principal, key: str | None, resource: str,
               body: BaseModel, model: type[BaseModel], status: int,
               create: Callable[[IdempotencyClaim | None], Answer],
               rebuild: Callable[[str], Answer]) -> JSONResponse:
    """Answer a create: ``create(claim)`` does it (claiming the key in its transaction);
    a retry is answered from the kept answer, or ``rebuild(id)`` from what was created
    when the answer was never kept (the server died between commit and keeping it)."""
    answered = _answered(request, principal, key, resource, _asked(body), model, status,
                         create, rebuild)
    assert answered is not None  # (create always answers)
    return answered


def _asked(body: BaseModel | None) -> Any:
    """What a request's body asks, as its fingerprint takes it."""
    return None if body is None else body.model_dump(mode="json")


def idempotent_action(request: Request, principal: Principal, key: str | None, resource: str,
                      body: BaseModel | None, model: type[BaseModel],
                      act: Callable[[IdempotencyClaim | None], dict[str, Any]],
                      rebuild: Callable[[], dict[str, Any]]) -> JSONResponse:
    """:func:`idempotent` for an action on something that exists (a work item's claim, a
    run's cancel): ``act(claim)`` does it, the service claiming the key first thing in
    its transaction and binding it to what it acts on; the answer is a 200. A retry is
    answered from the kept answer, or, when that was never kept (the server died between
    the commit and keeping it), by ``rebuild()``: what it acted on as it is now.
    ``body``: the request's body (None: it takes none)."""
    answered = _answered(request, principal, key, resource, _asked(body), model, 200,
                         lambda claim: (act(claim), {}), lambda _id: (rebuild(), {}))
    assert answered is not None  # (act always answers)
    return answered


def idempotent_take(request: Request, principal: Principal, key: str | None, resource: str,
                    asked: dict[str, Any], model: type[BaseModel], status: int,
                    take: Callable[[IdempotencyClaim | None], Answer | None],
                    rebuild: Callable[[str], Answer]) -> Response:
    """:func:`idempotent` for a request that takes something that may not be there (the
    next work item): ``take(claim)`` claims the key in its transaction only once it took
    something; None (nothing to take) is answered 204, with the key still free.
    ``asked``: what the request asks (its query parameters): the same key with other
    parameters is a 422."""
    answered = _answered(request, principal, key, resource, asked, model, status, take,
                         rebuild)
    return Response(status_code=204) if answered is None else answered


def _answered(request: Request, principal: Principal, key: str | None, resource: str,
              asked: Any, model: type[BaseModel], status: int,
              create: Callable[[IdempotencyClaim | None], Answer | None],
              rebuild: Callable[[str], Answer]) -> JSONResponse | None:
    """The answer of :func:`idempotent` (None: ``create`` did nothing, nor kept the key)."""
    if key is None:
        done = create(None)
        return None if done is None else _respond(model, status, *done)
    keys = engine_of(request).idempotency
    claim = _claim_of(request, principal, key, resource, asked)
    kept = keys.lookup(principal.name, key)
    if kept is None:
        try:
            done = create(claim)
        except IdempotencyKeyTaken:  # a concurrent request with this key committed first
            kept = keys.lookup(principal.name, key)
            if kept is None:  # pragma: no cover - it committed, so it is there
                raise
        else:
            if done is None:  # nothing done, so nothing claimed: the key is still free
                return None
            out, headers = done
            body_json = _json(model, out)
            kept_answer = {"status": status, "headers": headers, "body": body_json}
            committer_of(request).submit(
                lambda tx: keys.keep_response_txn(tx, principal.name, key, kept_answer))
            return JSONResponse(body_json, status_code=status, headers=headers)
    return _replay(request, claim, kept, model, status, rebuild)


def _replay(request: Request, claim: IdempotencyClaim, kept: KeptRequest,
            model: type[BaseModel], status: int,
            rebuild: Callable[[str], Answer]) -> JSONResponse:
    _same_request(claim, kept)
    saved = kept.response
    if saved is None:
        if kept.resource_id is None:  # pragma: no cover - bound in the claiming transaction
            raise _in_progress(claim)
        out, headers = rebuild(kept.resource_id)
        saved = {"status": status, "headers": headers, "body": _json(model, out)}
        keys = engine_of(request).idempotency
        committer_of(request).submit(
            lambda tx: keys.keep_response_txn(tx, claim.principal, claim.key, saved))
    return JSONResponse(saved["body"], status_code=int(saved["status"]),
                        headers={**saved["headers"], REPLAYED: "true"})


def _claim_of(request: Request, principal: Principal, key: str, resource: str,
              body: Any) -> IdempotencyClaim:
    return IdempotencyClaim(principal.name, key, request.method, request.url.path,
                            fingerprint(request.method, request.url.path, body), resource)


def _same_request(claim: IdempotencyClaim, kept: KeptRequest) -> None:
    """A key used for another request (method, path, body) in the last 24 hours: a 422."""
    if kept.fingerprint != claim.fingerprint:
        raise ProblemError(
            422, "Idempotency key reused",
            f"Idempotency-Key {claim.key!r} was used in the last 24 hours for another request "
            f"({kept.method} {kept.path} with another body): use a new key for a new request",
            slug="idempotency-key-reused",
            errors=[{"field": "header.Idempotency-Key",
                     "message": "used for another request"}])


def _in_progress(claim: IdempotencyClaim) -> ProblemError:
    return ProblemError(
        409, "Conflict",
        f"a request with Idempotency-Key {claim.key!r} is in progress, or was cut off before "
        "it was answered: try again shortly; if this lasts, check whether what it asked for "
        "was done, and send a new request with a new key", slug="idempotency-key-in-progress")


# ---- creates whose service writes in its own transaction ---------------------------------

Created = tuple[Answer, str | None]
"""What a create done apart answers, and the id of what it made (None: nothing to name)."""


def idempotent_apart(request: Request, principal: Principal, key: str | None, resource: str,
                     body: BaseModel | None, model: type[BaseModel], status: int,
                     create: Callable[[], Created], *, secrets: tuple[str, ...] = (),
                     refuse: Callable[[str], ProblemError] | None = None) -> JSONResponse:
    """Answer a create whose service commits in a transaction of its own (users, tokens,
    deploys), so the key cannot be claimed in it: it is claimed first, in a write of its
    own; then ``create()`` runs; then what it made and its answer are kept in one write.
    A create that fails releases the key (its retry does it again, as for records). A
    server killed between the claim and the keeping leaves the key in progress: its
    retries are 409 until it expires, nothing is done twice.

    ``secrets``: body fields that are part of the request but must not be kept, not even
    as a plain hash (a new user's password): the fingerprint takes a slow hash of each,
    salted with the user and the key. ``refuse``: the answer holds a secret that is never
    kept (an API token's), so a retry is answered ``refuse(id of what was made)``, a 409,
    instead of a replay."""
    if key is None:
        (out, headers), _ = create()
        return _respond(model, status, out, headers)
    eng = engine_of(request)
    keys, committer = eng.idempotency, committer_of(request)
    claim = _claim_of(request, principal, key, resource,
                      _masked(_asked(body), secrets, principal.name, key))
    kept = keys.lookup(principal.name, key)
    claimed_at = eng.clock.now()
    if kept is None:
        try:
            committer.submit(lambda tx: claim.claim_txn(tx, claimed_at))
        except IdempotencyKeyTaken:  # a concurrent request with this key claimed it first
            kept = keys.lookup(principal.name, key)
            if kept is None:  # ... and failed, releasing it, since: let the client retry
                raise _in_progress(claim) from None
    if kept is not None:
        _same_request(claim, kept)
        if kept.response is not None:
            saved = kept.response
            return JSONResponse(saved["body"], status_code=int(saved["status"]),
                                headers={**saved["headers"], REPLAYED: "true"})
        if refuse is not None and kept.resource_id is not None:
            raise refuse(kept.resource_id)
        raise _in_progress(claim)
    try:
        (out, headers), made = create()
    except BaseException:
        _release(request, claim, iso(claimed_at))
        raise
    body_json = _json(model, out)
    answer = None if refuse is not None else {"status": status, "headers": headers,
                                              "body": body_json}

    def keep_txn(tx: SqlTx) -> None:
        if made is not None:
            claim.bind_txn(tx, made)
        if answer is not None:
            keys.keep_response_txn(tx, principal.name, key, answer)

    try:
        committer.submit(keep_txn)
    except Exception as exc:  # noqa: BLE001 - it was made: answer it (the key stays in
        # progress, so a retry is refused rather than done twice)
        log.warning("%s %s: the answer of Idempotency-Key %r could not be kept: %s",
                    request.method, request.url.path, key, exc)
    return JSONResponse(body_json, status_code=status, headers=headers)


def idempotent_action_apart(request: Request, principal: Principal, key: str | None,
                            resource: str, body: BaseModel | None, model: type[BaseModel],
                            act: Callable[[], dict[str, Any]]) -> JSONResponse:
    """:func:`idempotent_apart` for an action on something that exists whose service
    writes in a transaction of its own (an incident's retry, a plan's cancel, a
    definition's activation, an unlock): ``act()`` answers 200. The key is claimed just
    before, released if the action fails; a server killed between the action and keeping
    its answer leaves the key in progress (409 until it expires: nothing is done twice).
    ``body``: the request's body (None: it takes none)."""
    return idempotent_apart(request, principal, key, resource, body, model, 200,
                            lambda: ((act(), {}), None))


def _masked(body: Any, secrets: tuple[str, ...], principal: str, key: str) -> Any:
    """``body`` with each of its ``secrets`` fields replaced by a slow hash salted with
    the user and the key (what the fingerprint, kept 24 hours, is computed over)."""
    if not secrets or not isinstance(body, dict):
        return body
    salt = hashlib.sha256(f"{principal}\n{key}".encode()).digest()
    return {k: (hashlib.scrypt(v.encode(), salt=salt, n=2**14, r=8, p=1).hex()
                if k in secrets and isinstance(v, str) else v) for k, v in body.items()}


def _release(request: Request, claim: IdempotencyClaim, claimed_at: str) -> None:
    """Free the key of a create that failed: its row is deleted if it is still this
    request's claim (claimed at ``claimed_at``, nothing bound, no answer kept)."""
    try:
        committer_of(request).submit(lambda tx: tx.release_idempotency_key_txn(
            claim.principal, claim.key, fingerprint=claim.fingerprint, claimed_at=claimed_at))
    except Exception as exc:  # noqa: BLE001 - the create's own error is the answer
        log.warning("%s %s: Idempotency-Key %r of a failed request could not be released "
                    "(its retries answer 409 until it expires): %s", request.method,
                    request.url.path, claim.key, exc)


def _json(model: type[BaseModel], out: dict[str, Any]) -> Any:
    """The body as the response model serialises it (the first answer and a replay are
    the same bytes' worth of JSON)."""
    return model.model_validate(out).model_dump(mode="json")


def _respond(model: type[BaseModel], status: int, out: dict[str, Any],
             headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(_json(model, out), status_code=status, headers=headers)

