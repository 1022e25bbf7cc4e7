"""Instructions the client side of one callout executes, counted by valgrind (callgrind's
``Ir``): a figure that does not move with the host's load, for comparing two versions of
``baton.connections.http`` on a shared machine.

A loopback server runs natively in its own process (asyncio, keep-alive, answers at once
with a small JSON body). The client runs under callgrind twice: ``--calls`` callouts and
``--warmup`` callouts, each through one :class:`HttpConnections` (what a worker process
holds): ``--batch`` submits at a time from the calling thread, then waits for them, as
worker threads do. Both runs do the same start-up work (imports, the loop thread, the first
connection), so the difference of their totals over the difference of their call counts is
the cost of one call: the submitting thread's part and the loop thread's (request, HTTP
exchange, response, call log).

    python bench/callout_ir.py --calls 2000 --json
    PYTHONPATH=/tmp/before/src python bench/callout_ir.py  # older code
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import subprocess
import sys
import tempfile
from typing import Any

BODY = b'{"ok": true, "id": "r-1", "items": [1, 2, 3]}'


def _serve(port: int, ready: Any) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        srv = await asyncio.start_server(handle, "127.0.0.1", port)
        ready.set()
        async with srv:
            await srv.serve_forever()

    asyncio.run(main())


def _client(port: int, calls: int, batch: int) -> None:
    """In the process valgrind runs: ``calls`` callouts, ``batch`` in flight at a time."""
    from baton.connections.calls import HttpRequest
    from baton.connections.http import HttpConnections
    from baton.connections.secrets import Secrets
    from baton.definitions.model import ConnectionDefinition

    conn = ConnectionDefinition(name="remote", type="http",
                                base_url=f"http://127.0.0.1:{port}", max_in_flight=batch)
    http = HttpConnections(Secrets({}))
    done = 0
    while done < calls:
        n = min(batch, calls - done)
        futures = [http.submit(conn, HttpRequest("POST", "/ping", f"key-{done + i}",
                                                 body={"n": done + i, "name": "Ping"}))
                   for i in range(n)]
        for f in futures:
            r = f.result()
            assert r.status == 200 and r.body["ok"] is True, r
        done += n
    http.close()


def _valgrind(port: int, calls: int, batch: int) -> int:
    with tempfile.TemporaryDirectory(prefix="callout-ir-") as folder:
        out = f"{folder}/cg.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
               sys.executable, __file__, "--client", str(port), "--calls", str(calls),
               "--batch", str(batch)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"client failed:\n{proc.stderr[-3000:]}")
        found = re.search(r"Collected : (\d+)", proc.stderr)
        if found is None:
            raise SystemExit(f"no callgrind total:\n{proc.stderr[-3000:]}")
        return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--batch", type=int, default=1, help="submits in flight at a time")
    ap.add_argument("--client", type=int, help=argparse.SUPPRESS)  # the port (internal)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.client is not None:
        _client(args.client, args.calls, args.batch)
        return
    from tests.net import free_port

    port = free_port()
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(port, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise SystemExit("the server did not start")
        # once natively first: byte-compiled modules are cached before either count
        subprocess.run([sys.executable, __file__, "--client", str(port), "--calls", "10"],
                       check=True)
        base = _valgrind(port, args.warmup, args.batch)
        total = _valgrind(port, args.calls, args.batch)
    finally:
        server.terminate()
        server.join(10)
    per_call = (total - base) / (args.calls - args.warmup)
    result = {"calls": args.calls, "warmup": args.warmup, "batch": args.batch,
              "ir_warmup": base, "ir_total": total, "ir_per_call": round(per_call)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{per_call:,.0f} Ir per call (client side; {args.calls} - {args.warmup} calls, "
              f"batch {args.batch}; totals {total:,} / {base:,})")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
