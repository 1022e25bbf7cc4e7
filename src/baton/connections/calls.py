"""What a call to an external system is, as step types see it: plain frozen data, no I/O.

A step type (``steps/callout.py``) builds an :class:`HttpRequest`, hands it to the
:class:`HttpCaller` the worker gives it (``baton.connections.http``), and gets an
:class:`HttpResponse` back — or a :class:`CallFailed` for a call that got no response. Both
carry a :class:`CallSummary`: what an operator sees of the call (audit, run page, fallout),
with credentials redacted and bodies cut to their first KB.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson

from baton.definitions.connection import size_bytes
from baton.definitions.model import ConnectionDefinition
from baton.errors import StepFailure

EXCERPT_BYTES = 1024
"""How much of a request or response body a summary keeps."""
REDACTED = "***"
# Query parameters that carry credentials whatever the connection says.
CREDENTIAL_PARAMS = frozenset({
    "access_token", "api_key", "apikey", "api-key", "key", "token", "password", "secret",
    "client_secret", "signature", "sig", "auth", "code",
})
REDACTED_URLS = 1024  # redacted URLs kept (a process calls a few distinct URLs, many times)
_redacted: dict[str, str] = {}  # URL -> redacted; only URLs that carry no credentials


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP call: ``path`` is joined to the connection's base URL."""

    method: str
    path: str
    idempotency_key: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None  # JSON-able (sent as JSON), a str (sent as text), or None (no body)
    hide: tuple[str, ...] = ()  # values sent but never shown (a callback token): *** in summaries


@dataclass(frozen=True)
class CallSummary:
    """What an operator may see of one call (every secret redacted)."""

    connection: str
    method: str
    url: str
    idempotency_key: str
    status: int | None = None
    duration_ms: int = 0
    request_bytes: int = 0
    response_bytes: int = 0
    request_body: str | None = None
    response_body: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        # (every field is a str, an int or None: a shallow copy is the JSON; asdict's deep
        # copy was a measurable part of each callout step)
        return dict(self.__dict__)


@dataclass(frozen=True)
class BodyCut:
    """An error answer's body (a status outside 2xx) that was over the connection's
    ``max_response``: it was not read further, and only its first ``kept`` bytes were kept
    (for the record: its status decides what the call's step does). ``size``: the bytes its
    ``Content-Length`` announced, or read (or decoded) when reading stopped; ``limit``: the
    cap; ``reason``: that said in words."""

    size: int
    limit: int
    kept: int
    reason: str


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # lower-case names
    body: Any  # parsed JSON, else the text (None when empty)
    summary: CallSummary
    cut: BodyCut | None = None  # the body is only the first bytes of a larger one


class CallFailed(StepFailure):
    """A call that got no usable response (connection refused, timeout, TLS, auth token
    endpoint down…): retryable unless said otherwise. Its message names no secret."""

    def __init__(self, message: str, summary: CallSummary, *, retryable: bool = True,
                 retry_after: float | None = None) -> None:
        super().__init__(message, retryable=retryable, retry_after=retry_after)
        self.summary = summary
        # Set by the step type: audit events to append, and what the step's error carries.
        self.audit: tuple[Mapping[str, Any], ...] = ()
        self.details: dict[str, Any] = {"call": summary.to_json()}


class ResponseTooLarge(CallFailed):
    """The response was larger than the connection's ``max_response``: it was not read
    further, and the call is not retried (the other system would answer the same).
    ``size``: the bytes read so far (or announced by ``Content-Length``); ``limit``: the cap.
    Raised by the client for a 2xx answer, by a step for an answer it accepts whose body
    was cut (:class:`BodyCut`). (``baton.connections.mcp`` has its namesake for tool
    results.)"""

    def __init__(self, message: str, summary: CallSummary, size: int, limit: int) -> None:
        super().__init__(message, summary, retryable=False)
        self.size = size
        self.limit = limit


def too_large_message(summary: CallSummary, status: int | None, reason: str) -> str:
    """What :class:`ResponseTooLarge` says: the call, its status and why its body was not
    taken (``reason``, e.g. "its Content-Length announces ...")."""
    answered = "" if status is None else f" {status}"
    return (f"{summary.method} {summary.url} answered{answered}, but {reason} (not retried; "
            "the connection's max_response raises the cap)")


class OutputTooLarge(StepFailure):
    """What a callout or mcp step would write into the run's data (its output, as JSON) is
    larger than its ``max_output`` (by default its connection's ``max_response``): nothing
    of it is kept, and the attempt is not retried (the same answer maps to the same
    output). ``size`` and ``limit`` are in bytes; the step's error carries them as
    ``output_bytes`` and ``max_output``."""

    def __init__(self, message: str, size: int, limit: int) -> None:
        super().__init__(message, retryable=False)
        self.size = size
        self.limit = limit
        self.details: dict[str, Any] = {"output_bytes": size, "max_output": limit}


def json_size(value: Any) -> int:
    """Bytes of ``value`` as JSON (compact, UTF-8: about what the run's state stores)."""
    try:
        return len(orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS))
    except (TypeError, ValueError):  # an int beyond 64 bits, nesting too deep...
        return len(json.dumps(value, default=str, ensure_ascii=False).encode())


def output_limit(opts: Mapping[str, Any], max_response: Any) -> tuple[int, str] | None:
    """The most a callout or mcp step's output may take as JSON, and where that comes from:
    the step's ``max_output``, else its connection's ``max_response`` (None: neither is
    known)."""
    if "max_output" in opts:
        size = size_bytes(opts["max_output"])
        assert size is not None  # validated
        return size, "set on the step"
    if isinstance(max_response, int) and max_response > 0:
        return max_response, "its connection's max_response"
    return None


def check_output(output: Any, limit: int, source: str) -> None:
    """Raise :class:`OutputTooLarge` when ``output`` is over ``limit`` bytes as JSON
    (``source``: where the limit comes from, for the message)."""
    size = json_size(output)
    if size > limit:
        raise OutputTooLarge(
            f"the step's output is {size:,} bytes as JSON, over its max_output of "
            f"{limit:,} bytes ({source}): not kept, not retried (map less of the answer in "
            "output:, or raise the step's max_output)", size, limit)


class HttpCaller(Protocol):
    """Makes calls over a connection (the worker's; one per process, shared by threads)."""

    def submit(self, connection: ConnectionDefinition,
               request: HttpRequest) -> Future[HttpResponse]:
        """Start the call and return at once; the future holds the response or a
        :class:`CallFailed`. Calls beyond the connection's ``max_in_flight`` wait their turn
        without holding a thread."""


# --- redaction --------------------------------------------------------------------------------


def redact_url(url: str, secret_params: Collection[str] = ()) -> str:
    """``url`` with credential query parameters (and any user:password@) shown as ***.

    A URL without a query string or user info (no secret to hide: ``secret_params`` does not
    matter) is redacted once and remembered; one that has either is redacted each time, so
    that no credential is kept in memory."""
    cacheable = "?" not in url and "@" not in url
    if cacheable:
        done = _redacted.get(url)
        if done is not None:
            return done
    parts = urlsplit(url)
    hidden = {p.lower() for p in secret_params} | CREDENTIAL_PARAMS
    query = urlencode([(k, REDACTED if k.lower() in hidden else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)],
                      safe="*")
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    shown = urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    if cacheable:
        if len(_redacted) >= REDACTED_URLS:
            _redacted.clear()
        _redacted[url] = shown
    return shown


def redact_fields(value: Any, fields: Collection[str]) -> Any:
    """A copy of JSON ``value`` with the values of keys in ``fields`` (anywhere) as ***."""
    if not fields:
        return value
    if isinstance(value, dict):
        return {k: REDACTED if k in fields else redact_fields(v, fields) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_fields(v, fields) for v in value]
    return value


def excerpt(raw: bytes, parsed: Any, fields: Collection[str],
            secrets: Collection[str] = (), cut: BodyCut | None = None) -> str | None:
    """The first KB of a body: JSON pretty-printed (redacted fields as ***), else its text.
    Any secret value that still shows is replaced too. ``cut``: ``raw`` is the first bytes
    of a larger body (said at the end)."""
    if not raw:
        return None
    if parsed is not None and not isinstance(parsed, str):
        text = pretty_json(redact_fields(parsed, fields))
    else:
        text = raw.decode("utf-8", "replace")
    text = scrub(text, secrets)
    data = text.encode()
    if cut is not None:
        head = data[:EXCERPT_BYTES].decode("utf-8", "ignore")
        text = f"{head}\n… (cut: {cut.reason}; its first {cut.kept:,} bytes were kept)"
    elif len(data) > EXCERPT_BYTES:
        head = data[:EXCERPT_BYTES].decode("utf-8", "ignore")
        text = f"{head}\n… ({len(raw):,} bytes in all)"
    return text


def pretty_json(value: Any) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=False, default=str)``, made by orjson (in
    C; json's indented encoder is pure Python) when its text is the same: for plain JSON
    data (dicts with str keys, lists, tuples, str, int, bool, None) whose floats are finite
    and written without a negative exponent (where the two differ: 1e-05 vs 0.00001)."""
    if _plain(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
        except orjson.JSONEncodeError:  # an int beyond 64 bits, nesting too deep...
            pass
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _plain(value: Any) -> bool:
    """Whether orjson writes ``value`` exactly as json.dumps does (see pretty_json)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value) and (value == 0.0 or abs(value) >= 1e-4)
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if kind is list or kind is tuple:
        return all(_plain(v) for v in value)
    return False


def scrub(text: str, secrets: Collection[str]) -> str:
    """``text`` with every secret value in it replaced by ***."""
    for s in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(s, REDACTED)
    return text
