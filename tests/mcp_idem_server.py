"""An MCP server (the official SDK's ``MCPServer``) that makes refunds once per idempotency
key, for tests: ``python tests/mcp_idem_server.py STATE_FILE [--http --port N]``.

``refund(order, request_id=None)`` refunds an order. The key of a call is the one in its
request's ``_meta`` (``io.baton/idempotency-key``), else its ``request_id`` argument; a key
seen before gets the first answer again (``replayed: true``) and refunds nothing. Every
call is logged with the keys it came with (``_meta``, argument, HTTP ``Idempotency-Key`` and
``X-Request-Key`` headers). The state is a JSON file shared by the server's processes (a
stdio server is started again after it died): ``{"refunds": {key: answer}, "calls": [...],
"faults": {...}}``, where the test sets faults:

- ``die_after_acting``: that many times, the server refunds, then dies before answering
  (the answer is lost: the client's session breaks);
- ``hang_after_acting``: that many times, the server refunds, then answers only after
  ``hang_seconds`` (the client has given up: its answer is lost).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer

META_KEY = "io.baton/idempotency-key"

server = MCPServer("refunds", log_level="WARNING")
STATE = Path(os.environ.get("IDEM_STATE", "idem-state.json"))


@contextmanager
def state() -> Iterator[dict[str, Any]]:
    """The state, read and written under an exclusive lock (processes share the file)."""
    with open(STATE.with_suffix(".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(STATE.read_text()) if STATE.exists() else {}
        data.setdefault("refunds", {})
        data.setdefault("calls", [])
        data.setdefault("faults", {})
        yield data
        tmp = STATE.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(STATE)


@server.tool()
async def refund(order: str, ctx: Context, request_id: str | None = None) -> dict[str, Any]:
    """Refund ``order`` once per idempotency key."""
    meta = ctx.request_context.meta or {}
    headers = {k.lower(): v for k, v in (ctx.headers or {}).items()}
    meta_key = meta.get(META_KEY) if isinstance(meta, dict) else None
    key = meta_key or request_id
    fault = None
    with state() as data:
        data["calls"].append({"order": order, "meta_key": meta_key, "request_id": request_id,
                              "header_key": headers.get("idempotency-key"),
                              "x_request_key": headers.get("x-request-key"),
                              "pid": os.getpid()})
        if key and key in data["refunds"]:
            return {**data["refunds"][key], "replayed": True}
        answer = {"refund_id": f"rf-{len(data['refunds']) + 1}", "order": order}
        data["refunds"][key or f"no-key-{len(data['calls'])}"] = answer
        for name in ("die_after_acting", "hang_after_acting"):
            if data["faults"].get(name, 0) > 0:
                data["faults"][name] -= 1
                fault = name
                break
        hang = float(data["faults"].get("hang_seconds", 30))
    if fault == "die_after_acting":
        os._exit(3)  # refunded; the answer is never sent
    if fault == "hang_after_acting":
        await asyncio.sleep(hang)
    return answer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("state")
    parser.add_argument("--http", action="store_true")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    global STATE
    STATE = Path(args.state)
    if not args.http:
        server.run()
        return
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    srv = uvicorn.Server(uvicorn.Config(server.streamable_http_app(), log_level="warning",
                                        lifespan="on"))

    async def serve() -> None:
        task = asyncio.create_task(srv.serve(sockets=[sock]))
        while not srv.started and not task.done():
            await asyncio.sleep(0.01)
        host, port = sock.getsockname()
        print(f"listening on http://{host}:{port}/mcp", flush=True)
        await task

    asyncio.run(serve())


if __name__ == "__main__":
    sys.exit(main())
