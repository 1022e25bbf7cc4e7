"""A small JSON-over-HTTP service on loopback, the base of the demo's stand-ins for other
systems (the bank, the parcel carrier): a threading HTTP server on an ephemeral port of
127.0.0.1 whose POSTs a subclass answers in :meth:`LoopbackJsonService.receive`."""

from __future__ import annotations

import json
import threading
from abc import ABC, abstractmethod
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackJsonService(ABC):
    """Start with :meth:`start` (``url`` is then the base URL), stop with :meth:`stop`.
    Subclasses implement :meth:`receive`; ``name`` names the serving thread."""

    name = "loopback-service"

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self.url = ""

    @abstractmethod
    def receive(self, path: str, headers: dict[str, str], body: bytes
                ) -> tuple[int, Any, dict[str, str]]:
        """Answer one POST: status, a JSON-able answer, and extra response headers."""

    def start(self) -> Any:
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, answer, extra = service.receive(self.path, dict(self.headers.items()),
                                                        body)
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for header, value in extra.items():
                    self.send_header(header, value)
                self.end_headers()
                self.wfile.write(raw)

        # A burst of calls from the workers must queue, not be refused or reset.
        server_class = type("LoopbackServer", (ThreadingHTTPServer,), {"request_queue_size": 256})
        self._server = server_class(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True, name=self.name).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
