"""A small ERP as an MCP server (the official ``mcp`` SDK's ``MCPServer``).

Baton's demo starts it over stdio (``kind: connection``, ``transport: stdio``); a test also
serves it over streamable HTTP (``python server.py --http --port 0``). Its data is a fixed
table of accounts, so the demo runs offline and gives the same answers every time.

Tools:
- ``find_account(domain)``: the account whose e-mail domain is ``domain`` (a structured
  result); an unknown domain is a tool error (``isError``), as a real ERP's "not found" is.
- ``credit_limit(account_id)``: the account's credit limit, as text.
- ``month_end_report(seconds)``: a slow report, ready after ``seconds`` (at most 120).
- ``whoami()``: this server process's id (lets a test kill the process it is talking to).
"""

from __future__ import annotations

import argparse
import os
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel

ACCOUNTS = {
    "acme.example": {"account_id": "ACC-1001", "name": "Acme Corp", "tier": "gold",
                     "credit_limit": 50_000},
    "globex.example": {"account_id": "ACC-1002", "name": "Globex", "tier": "silver",
                       "credit_limit": 20_000},
    "initech.example": {"account_id": "ACC-1003", "name": "Initech", "tier": "bronze",
                        "credit_limit": 5_000},
}

server = MCPServer("erp", log_level="WARNING", instructions="A small ERP: accounts and their credit limits.")


class Account(BaseModel):
    account_id: str
    name: str
    tier: str


@server.tool()
def find_account(domain: str) -> Account:
    """Find the customer account whose e-mail domain is ``domain``."""
    found = ACCOUNTS.get(domain.strip().lower())
    if found is None:
        raise ToolError(f"no account for domain {domain!r}")
    return Account(account_id=found["account_id"], name=found["name"], tier=found["tier"])


@server.tool(structured_output=False)
def credit_limit(account_id: str) -> str:
    """The credit limit of an account, as text."""
    for acc in ACCOUNTS.values():
        if acc["account_id"] == account_id:
            return f"{acc['credit_limit']} EUR"
    raise ToolError(f"no account {account_id!r}")


@server.tool()
async def month_end_report(seconds: float) -> dict[str, str]:
    """A report that takes ``seconds`` to prepare (a slow ERP, for timeouts)."""
    import asyncio

    await asyncio.sleep(max(0.0, min(seconds, 120.0)))
    return {"report": f"ready after {seconds:g} s"}


@server.tool()
def whoami() -> dict[str, int]:
    """This server process's id."""
    return {"pid": os.getpid()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP, not stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--token", default=os.environ.get("ERP_TOKEN"),
                        help="over HTTP, require 'Authorization: Bearer TOKEN'")
    args = parser.parse_args(argv)
    if not args.http:
        server.run()  # stdio
        return
    serve_http(args.host, args.port, args.token)


def serve_http(host: str, port: int, token: str | None) -> None:
    """Streamable HTTP at ``/mcp``; with ``token``, a request without the bearer token is
    answered 401. Prints ``listening on http://HOST:PORT/mcp`` once it accepts requests."""
    import socket

    import uvicorn
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.types import ASGIApp, Receive, Scope, Send

    app: ASGIApp = server.streamable_http_app()

    def guarded(inner: ASGIApp) -> ASGIApp:
        async def guard(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http" and token is not None:
                got = Request(scope).headers.get("authorization", "")
                if got != f"Bearer {token}":
                    response: Response = JSONResponse({"error": "unauthorized"}, status_code=401)
                    await response(scope, receive, send)
                    return
            await inner(scope, receive, send)
        return guard

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(guarded(app), log_level="warning", lifespan="on")
    srv = uvicorn.Server(config)

    async def serve() -> None:
        import asyncio

        task = asyncio.create_task(srv.serve(sockets=[sock]))
        while not srv.started and not task.done():
            await asyncio.sleep(0.01)
        bound = sock.getsockname()
        print(f"listening on http://{bound[0]}:{bound[1]}/mcp", flush=True)
        await task

    import asyncio

    asyncio.run(serve())


if __name__ == "__main__":
    sys.exit(main())
