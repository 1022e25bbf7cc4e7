"""What a worker process lends step types for calls to other systems (``StepServices``):
deployed connections, the process's HTTP client (one event loop thread, shared by every
worker thread) and callback addresses."""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from baton.connections.calls import HttpCaller
from baton.connections.secrets import Secrets
from baton.definitions.model import ConnectionDefinition, SecretRef
from baton.runtime.definitions import DefinitionRepo

if TYPE_CHECKING:  # (httpx2, asyncio and ssl load with the first call: not for a CLI read)
    from baton.connections.http import HttpConnections
    from baton.runtime.callbacks import Callbacks

DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
# An absolute URL in a text (an error's message): its scheme, then up to a blank or a quote.
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")


def url_for_log(url: str) -> str:
    """``scheme://host[:port]/path`` of ``url``, as a log line shows it: never its query or
    fragment (query strings carry tokens and personal data: ``?email=…``, ``?api_key=…``)
    nor its user info (``user:password@``)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # (an unclosed IPv6 bracket)
        return url.partition("://")[0] + "://(a URL that does not parse)"
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def urls_for_log(text: str) -> str:
    """``text`` (an error's message: a callout's names the URL it called) with each URL in
    it as :func:`url_for_log` shows it (the punctuation after one, ``…/path?q=1: …``, kept)."""
    return _URL.sub(_shown, text) if "://" in text else text


def _shown(m: re.Match[str]) -> str:
    url = m.group(0)
    bare = url.rstrip(".,:;)")
    return url_for_log(bare) + url[len(bare):]


class ConnectionServices:
    """One per Engine (so one per process); the HTTP client starts on first use."""

    def __init__(self, definitions: DefinitionRepo, secrets: Secrets, callbacks: Callbacks,
                 project_dir: str | None) -> None:
        self.definitions = definitions
        self.secrets = secrets
        self.callbacks = callbacks
        self.project_dir = project_dir
        self._http: HttpConnections | None = None
        self._lock = threading.Lock()

    @property
    def http(self) -> HttpCaller:
        return self.client

    @property
    def client(self) -> HttpConnections:
        with self._lock:
            if self._http is None:
                from baton.connections.http import HttpConnections

                self._http = HttpConnections(self.secrets, self.project_dir)
            return self._http

    def connection(self, name: str) -> ConnectionDefinition:
        return self.definitions.connection(name)

    def secret(self, ref: SecretRef) -> str:
        return self.secrets.resolve(ref)

    def callback(self, run_id: str, step: str, iteration: int) -> tuple[str, str]:
        return self.callbacks.make(run_id, step, iteration)

    def close(self) -> None:
        with self._lock:
            http, self._http = self._http, None
        if http is not None:
            http.close()
