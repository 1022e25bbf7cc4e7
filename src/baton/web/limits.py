"""A bound on request bodies, enforced before the application reads them.

A 50 MB text field used to be read, parsed and stored (201); every later list of records
then carried it. Requests that announce a larger ``Content-Length`` are answered ``413`` at
once; a chunked body is counted as it arrives and cut off at the bound.
"""

from __future__ import annotations

from typing import Any

import orjson

from baton.web.problems import PROBLEM_JSON, TYPE_BASE

Scope = dict[str, Any]
Message = dict[str, Any]


class BodyLimit:
    """ASGI middleware: at most ``limit`` bytes of request body per request."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.limit:
            await self._refuse(scope, send, f"the body is {declared:,} bytes")
            return
        seen = 0
        refused = False

        async def counted_receive() -> Message:
            # Past the bound, answer 413 here and tell the application the client has
            # gone: frameworks turn an exception raised from receive into their own 400.
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message: Message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    refused = True
                    await self._refuse(scope, send, f"the body passed {self.limit:,} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # after a 413, whatever the application says is dropped
                await send(message)

        await self.app(scope, counted_receive, guarded_send)

    async def _refuse(self, scope: Scope, send: Any, what: str) -> None:
        body = orjson.dumps({
            "type": TYPE_BASE + "too-large", "title": "Request body too large", "status": 413,
            "detail": f"{what}; at most {self.limit:,} bytes are accepted "
                      "(BATON_MAX_BODY_BYTES)",
            "instance": scope.get("path", ""),
        })
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
