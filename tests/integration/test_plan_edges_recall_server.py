"""An MCP server (the official SDK's ``MCPServer``) that recalls bookings, for
tests/integration/test_plan_edges_undo.py: ``python THIS_FILE STATE_FILE`` (stdio). No
tests here.

``recall(booking)`` recalls a booking the carrier has found (one listed in the state's
``found``): ``{"status": "recalled", "booking": ...}``. One it has not found (yet) is
answered by the state's ``marker``: ``error`` — a tool error (``isError``) whose text is
``not_found: no booking KEY``; ``structured`` — ``{"status": "not_found"}``. Every call is
logged in ``calls``. The state is a JSON file the test writes and reads (under a lock):
``{"found": [...], "marker": ..., "calls": [...]}``.
"""

from __future__ import annotations

import fcntl
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATE: list[Path] = []


@contextmanager
def state(path: Path) -> Iterator[dict[str, Any]]:
    """The state file's data, written back on exit, under an exclusive lock."""
    with open(path.with_suffix(".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(path.read_text()) if path.exists() else {}
        data.setdefault("found", [])
        data.setdefault("calls", [])
        data.setdefault("marker", "error")
        yield data
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(path)


def main() -> None:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    path = Path(sys.argv[1])
    server = MCPServer("recalls", log_level="WARNING")

    @server.tool()
    async def recall(booking: str) -> dict[str, Any]:
        """Recall the booking made under the key ``booking``."""
        with state(path) as data:
            data["calls"].append(booking)
            found = booking in data["found"]
            marker = data["marker"]
        if found:
            return {"status": "recalled", "booking": booking}
        if marker == "error":
            raise ToolError(f"not_found: no booking {booking}")
        return {"status": "not_found"}

    server.run()


if __name__ == "__main__":
    main()
