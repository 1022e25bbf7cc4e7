"""Log output for ``baton serve`` and ``baton worker``: plain text lines, or one JSON object
a line (``--log-format json`` / ``BATON_LOG_FORMAT=json``) for a log pipeline.

Both go through the standard library's ``logging`` (Baton's own loggers, uvicorn's, its
access log); structlog renders them. In JSON each line carries the ids the worker binds
while it runs a job (``run_id``, ``step``, ``job_id``, ``job_kind``), so every line about a
run can be found by its id; a line written while ``baton serve`` answers a request carries
its ``request_id`` (:class:`RequestIds`: the caller's ``X-Request-ID``, or a new one, sent
back in the answer's ``X-Request-ID``). The access log is one line a request with
``method``, ``path``, ``status``, ``client`` and ``duration_ms`` (to the answer's headers).

What never reaches a log line, whatever the level:

* the wire traffic of the libraries Baton speaks through (aiosmtpd's SMTP session: senders,
  recipients, at DEBUG the message itself and AUTH; imapclient's IMAP exchange: fetched
  messages; the MCP client's messages: tool arguments and results; the HTTP client's
  requests): their loggers keep to warnings (:data:`QUIET`);
* a callback URL's token, and the values of query parameters other than a few harmless
  ones (search text, user names), in the access log (:func:`redact_target`);
* the bound parameters SQLAlchemy appends to a statement's error (``[parameters: ...]``:
  record values) in a message or a traceback.

A warning (or worse) repeated word for word within :data:`REPEAT_WINDOW_S` is written once:
the next one after the window says how many were left out (``repeated``), so a database
outage is a line a minute per kind of failure, not one a second per thread.

structlog is imported only when JSON logs are asked for: text logs (the default, and what
``baton worker`` prints in a terminal) need only ``logging``, and importing structlog costs
every worker command ~10 ms of CPU it would not use.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_context = False  # bind ids for log lines (JSON logs only: text lines do not show them)

QUIET: dict[str, int] = {
    "mail.log": logging.WARNING,  # aiosmtpd: every SMTP line (the message itself at DEBUG)
    "imapclient": logging.WARNING,  # every IMAP command and answer at DEBUG (the messages)
    "mcp": logging.WARNING,  # the MCP client's messages at DEBUG, its session ids at INFO
    "httpx": logging.WARNING, "httpcore": logging.WARNING,  # request URLs, headers
    "httpx2": logging.WARNING, "httpcore2": logging.WARNING,
    "python_multipart": logging.WARNING, "multipart": logging.WARNING,
    "asyncio": logging.INFO,  # "Using selector" for every event loop a batch of calls opens
}
"""Loggers kept at this level or above whatever the root's: what they say below it is wire
traffic (personal data, credentials), and Baton reports the same events itself, redacted."""

REPEAT_WINDOW_S = 60.0
REPEAT_KEYS = 1024  # distinct warnings remembered (the least recently seen are forgotten)

# The access log's query parameters whose values are shown (filters, pages); any other's
# value is *** (a search text, a user name, a return URL).
SHOWN_PARAMS = frozenset({
    "status", "limit", "after", "before", "kind", "version", "attention", "sla", "stage",
    "orchestration", "object", "object_type", "queue", "group", "wide", "sort", "order",
    "page", "format", "logged_out", "include", "all_versions"})
_CALLBACK = re.compile(r"(/api/callbacks/)[^/?#]*")
_SQL_PARAMETERS = re.compile(r"\[parameters: [^\n]*")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

# (request id, perf_counter at its start) of the request being answered
_request: ContextVar[tuple[str, float] | None] = ContextVar("baton_request", default=None)


def configure(fmt: str = "text", level: int = logging.INFO) -> None:
    """Send every log record to stderr in ``fmt`` (``text`` or ``json``)."""
    global _context
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        import structlog
        from structlog.contextvars import merge_contextvars

        handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="at"),
                _record_fields,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _scrub_event,
                structlog.processors.JSONRenderer(serializer=_dumps),
            ],
        ))
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
    handler.addFilter(AccessLog())
    handler.addFilter(Repeats())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)  # through the root handler, in the same format
        lg.handlers[:] = []
        lg.propagate = True
    for name, floor in QUIET.items():
        logging.getLogger(name).setLevel(max(level, floor))
    _context = fmt == "json"


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def scrub(text: str) -> str:
    """``text`` without the bound parameters of a SQLAlchemy error (record values)."""
    return _SQL_PARAMETERS.sub("[parameters hidden]", text) if "[parameters: " in text else text


class TextFormatter(logging.Formatter):
    """The text line: scrubbed (:func:`scrub`), with how many were left out as repeats."""

    def format(self, record: logging.LogRecord) -> str:
        line = scrub(super().format(record))
        repeated = getattr(record, "repeated", 0)
        return f"{line} [{repeated} more like this left out]" if repeated else line


def _record_fields(logger: Any, name: str, event_dict: MutableMapping[str, Any]
                   ) -> MutableMapping[str, Any]:
    """A JSON line's fields from the log record: the access log's, the request id, the
    count of repeats left out."""
    record = event_dict.get("_record")
    http = getattr(record, "baton_http", None)
    if http is not None:
        event_dict.update(http)
    now = _request.get()
    if now is not None:
        event_dict.setdefault("request_id", now[0])
    repeated = getattr(record, "repeated", 0)
    if repeated:
        event_dict["repeated"] = repeated
    return event_dict


def _scrub_event(logger: Any, name: str, event_dict: MutableMapping[str, Any]
                 ) -> MutableMapping[str, Any]:
    for key in ("event", "exception"):
        value = event_dict.get(key)
        if isinstance(value, str):
            event_dict[key] = scrub(value)
    return event_dict


def redact_target(target: str) -> str:
    """A request's path and query as the access log shows it: a callback's token as ***,
    and the value of every query parameter but the few in :data:`SHOWN_PARAMS`."""
    path, sep, query = target.partition("?")
    path = _CALLBACK.sub(r"\1***", path)
    if not sep:
        return path
    pairs = [(k, v if k in SHOWN_PARAMS else "***")
             for k, v in parse_qsl(query, keep_blank_values=True)]
    return f"{path}?{urlencode(pairs, safe='*:,')}" if pairs else path


class AccessLog(logging.Filter):
    """uvicorn's access line (``CLIENT - "METHOD TARGET HTTP/V" STATUS``) redacted
    (:func:`redact_target`), with its parts as fields for the JSON line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "uvicorn.access" or not isinstance(record.args, tuple) \
                or len(record.args) != 5:
            return True
        client, method, target, version, status = record.args
        shown = redact_target(str(target))
        record.args = (client, method, shown, version, status)
        fields: dict[str, Any] = {"method": method, "path": shown, "status": status,
                                  "client": client, "http_version": version}
        now = _request.get()
        if now is not None:
            fields["duration_ms"] = round((time.perf_counter() - now[1]) * 1000, 2)
        setattr(record, "baton_http", fields)  # noqa: B010 - (LogRecord: no such field)
        return True


class Repeats(logging.Filter):
    """A warning (or worse) written once per ``window`` seconds word for word; the next
    one after the window carries ``repeated``: how many were left out meanwhile."""

    def __init__(self, window: float = REPEAT_WINDOW_S, keys: int = REPEAT_KEYS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window, self.keys, self.clock = window, keys, clock
        self._lock = threading.Lock()
        self._seen: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        try:
            key = (record.name, record.levelno, record.getMessage())
        except Exception:  # noqa: BLE001 - a bad format: logging reports it when it writes
            return True
        now = self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen[0] < self.window:
                seen[1] += 1
                return False
            self._seen[key] = [now, 0.0]
            self._seen.move_to_end(key)
            while len(self._seen) > self.keys:
                self._seen.popitem(last=False)
        if seen is not None and seen[1]:
            setattr(record, "repeated", int(seen[1]))  # noqa: B010
        return True


def binds_context() -> bool:
    """Does :func:`job_context` bind anything (JSON logs)? A hot path may skip it if not."""
    return _context


@contextmanager
def job_context(**ids: Any) -> Iterator[None]:
    """Ids every log line written inside carries (JSON logs); free otherwise."""
    if not _context:
        yield
        return
    from structlog.contextvars import bound_contextvars  # JSON logs: configure imported it

    with bound_contextvars(**{k: v for k, v in ids.items() if v is not None}):
        yield


ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]


class RequestIds:
    """ASGI middleware: each HTTP request's id — the caller's ``X-Request-ID`` when it is a
    plain token of at most 64 characters, else a new one — on every log line written while
    it is answered (the access line too) and in the answer's ``X-Request-ID``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers") or () if k == b"x-request-id"), b"")
        text = given.decode("latin-1")
        rid = text if _REQUEST_ID.fullmatch(text) else secrets.token_hex(8)
        token = _request.set((rid, time.perf_counter()))

        async def send_with_id(message: Any) -> None:
            if message.get("type") == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers") or ()
                           if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _request.reset(token)


def request_id() -> str | None:
    """The id of the request being answered (None outside a request)."""
    now = _request.get()
    return now[0] if now is not None else None
