"""``POST /api/callbacks/{token}``: an external system answers a callout step that waits.

No session or role: the caller is authenticated by the token, which only this server can
make and which names one step iteration (and, when the step's connection has
``callback:``, by an HMAC signature of the timestamp and body). A repeat of the callback
taken (a sender retrying a delivery whose answer it lost) is answered what it was, with
``Idempotent-Replayed: true``, as a retry with an Idempotency-Key is. See
:mod:`baton.runtime.callbacks`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from baton.runtime.callbacks import CallbackRefused
from baton.web.idempotency import REPLAYED
from baton.web.problems import ProblemError, problem_responses
from baton.web.security import engine_of

router = APIRouter(prefix="/callbacks", tags=["Callbacks"])

TITLES = {400: "Bad request", 401: "Not authenticated", 404: "Not found", 409: "Conflict",
          410: "Gone", 413: "Content too large", 503: "Service unavailable"}


class CallbackAccepted(BaseModel):
    status: str = Field(description="delivered: the step took it and completed; early: it "
                                    "came before the step's request was recorded, and is "
                                    "delivered when it is")
    step: str
    iteration: int


REPLAY = {REPLAYED: {"description": "`true` when this answers a repeat of the callback "
                                    "received first (the same JSON body): nothing more "
                                    "was done",
                     "schema": {"type": "string", "enum": ["true"]}}}


@router.post(
    "/{token}", response_model=CallbackAccepted, status_code=200,
    summary="Call a waiting callout step back",
    description="For the external system a callout step with `wait: callback` called: its "
                "request carried this URL (`=callback.url`). The JSON body becomes "
                "`callback.body` in the step's output. Authenticated by the token (single "
                "use; no session or role) and, when the step's connection has `callback:`, "
                "by an HMAC-SHA256 signature of `<timestamp>.<body>` (hex) in its signature "
                "header with the unix timestamp in its timestamp header, within the replay "
                "window. 200: delivered; 202: received before the step's request was "
                "recorded, delivered when it is. A repeat (the sender retrying a delivery "
                "whose answer it lost) with the same JSON body as the callback received "
                "first (key order and spacing aside) changes nothing and is answered what "
                "that one was (200 or 202, the same body) with `Idempotent-Replayed: true`; "
                "its signature, if required, is checked first like any callback's. 409: "
                "another callback, with a different body, was received first (a token is "
                "used once); 410: the step no longer waits (completed, timed out, canceled).",
    responses={**problem_responses(400, 401, 404, 409, 422),
               200: {"description": "Delivered (or a repeat of a delivered callback)",
                     "headers": REPLAY},
               202: {"model": CallbackAccepted, "headers": REPLAY,
                     "description": "Received early (or a repeat of one received early)"},
               **{c: problem_responses(c)[c] | {"description": TITLES[c]}
                  for c in (410, 413, 503)}},
    openapi_extra={"security": [],
                   "requestBody": {"required": False, "content": {"application/json": {
                       "schema": {"type": "object", "additionalProperties": True}}}}})
async def receive_callback(request: Request, response: Response,
                           token: Annotated[str, Path(min_length=1, max_length=1000)]
                           ) -> dict[str, Any]:
    body = await request.body()
    callbacks = engine_of(request).callbacks
    try:
        got = await _in_thread(callbacks.receive, token, body, dict(request.headers))
    except CallbackRefused as exc:
        raise ProblemError(exc.status, TITLES.get(exc.status, "Refused"), str(exc),
                           slug="callback") from None
    if got.status == "early":
        response.status_code = 202
    if got.replayed:
        response.headers[REPLAYED] = "true"
    return {"status": got.status, "step": got.target.step, "iteration": got.target.iteration}


async def _in_thread(fn: Any, *args: Any) -> Any:
    return await run_in_threadpool(fn, *args)
