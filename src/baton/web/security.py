"""Who is asking: API tokens (``Authorization: Bearer baton_…``) or the UI's session cookie.

A request authenticated by the session cookie that changes something (POST, PUT, PATCH,
DELETE) must carry the session's CSRF token, as the ``X-CSRF-Token`` header (htmx sends it
on every request) or a ``csrf_token`` form field. Token-authenticated requests need no CSRF
token: browsers never attach them on their own.

An unknown API token counts as a failed attempt against the client address (see
:mod:`baton.auth.throttle`); while the address is locked out, every token it sends is
answered 429 with ``Retry-After`` before it is looked up.

Every token and session cookie is looked up in the database, never holding the event loop
(a database that hangs or a file another process locks holds the requests that wait for it,
not ``/healthz`` or the others), and in the common case without a request thread's hop (it
cost a quarter of a record create's CPU): where and how is :mod:`baton.web.lookups`'s.
``/metrics`` alone (``need(..., outage=True)``) also remembers the tokens the database
verified (:class:`VerifiedTokens`: the secret's SHA-256 and its user, for
:data:`VERIFIED_TOKEN_TTL_S`), and asks that memory only when the database cannot be read
(away, busy, or not answering within :data:`LOOKUP_TIMEOUT_S`: a scrape still gets the
process's own metrics, with ``baton_database_up 0``). So a token revoked, or a user deactivated, while the database is
away is still taken for a scrape for up to that long after it was last verified; while the
database answers, the lookup decides (and a token it no longer knows is forgotten at once).
``/readyz`` tells such a caller more the same way (:func:`known_caller`).

:class:`SecurityHeaders` gives every answer the headers no answer should be without
(``nosniff``, no framing; a CSP on HTML; ``no-store`` on what a signed-in caller was told).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool

from baton.auth.directory import User
from baton.auth.roles import Permission, require
from baton.auth.throttle import Locked
from baton.runtime.engine import Engine
from baton.web import lookups, proxies
from baton.web.committer import CommitterClosed, committer_of
from baton.web.problems import RETRY_AFTER_S, ProblemError

SESSION_COOKIE = "baton_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PAGE_CSP = ("default-src 'self'; frame-ancestors 'none'; form-action 'self'; "
            "base-uri 'none'")
"""The pages' Content-Security-Policy: nothing from another origin, no inline script or
style, no framing; forms post only here."""

bearer = HTTPBearer(auto_error=False, description="An API token: `baton tokens create USER`")

VERIFIED_TOKEN_TTL_S = 60.0
"""How long a token the database verified for ``/metrics`` is taken without it while the
database cannot be read: a revocation or deactivation made meanwhile waits this long."""
LOOKUP_TIMEOUT_S = 5.0
"""How long ``/metrics`` waits for its token lookup before taking the database as away (as
long as its own reads wait: :data:`baton.runtime.metrics.READ_TIMEOUT_S`)."""
VERIFIED_TOKENS_KEPT = 256  # tokens remembered at most (the least recently verified go first)


@dataclass(frozen=True)
class Principal:
    user: User
    via: str  # "token" | "session"
    csrf: str | None = None

    @property
    def name(self) -> str:
        return self.user.name


def engine_of(request: Request) -> Engine:
    return request.app.state.engine  # type: ignore[no-any-return]


def client_address(request: Request) -> str:
    """The client's address, through the configured trusted proxies."""
    return proxies.client_address(request, engine_of(request).settings.trusted_proxies)


def secure_cookies(request: Request) -> bool:
    """Should the cookies set in answer to this request be ``Secure`` (``BATON_COOKIE_SECURE``)?"""
    settings = engine_of(request).settings
    return proxies.cookie_secure(request, settings.cookie_secure, settings.trusted_proxies)


def too_many(request: Request, lock: Locked) -> ProblemError:
    now = engine_of(request).clock.now()
    return ProblemError(429, "Too many failed attempts", lock.explain(now), slug="locked-out",
                        headers={"Retry-After": str(lock.retry_after(now))})


def unauthorized(detail: str) -> ProblemError:
    return ProblemError(401, "Not authenticated", detail, slug="unauthenticated",
                        headers={"WWW-Authenticate": 'Bearer realm="baton"'})


async def _check_csrf(request: Request, expected: str) -> None:
    if request.method in SAFE_METHODS:
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            form = await request.form()  # Starlette caches it: Form() parameters still work
            value = form.get(CSRF_FIELD)
            sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, expected):
        raise ProblemError(403, "CSRF token missing or wrong",
                           f"send the session's CSRF token as the {CSRF_HEADER} header or the "
                           f"{CSRF_FIELD} form field; reload the page to get a fresh one",
                           slug="csrf")


class VerifiedTokens:
    """The API tokens the database verified lately, by their secret's SHA-256 (never the
    secret), each with its user as read then: asked only when the database cannot be read,
    and only for :data:`VERIFIED_TOKEN_TTL_S` after the token was last verified. At most
    ``kept`` are remembered."""

    def __init__(self, ttl_s: float = VERIFIED_TOKEN_TTL_S,
                 kept: int = VERIFIED_TOKENS_KEPT) -> None:
        self.ttl = timedelta(seconds=ttl_s)
        self.kept = kept
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, tuple[User, datetime]] = OrderedDict()

    @staticmethod
    def _key(secret: str) -> str:
        return hashlib.sha256(secret.encode()).hexdigest()

    def remember(self, secret: str, user: User, now: datetime) -> None:
        key = self._key(secret)
        with self._lock:
            self._seen[key] = (user, now)
            self._seen.move_to_end(key)
            while len(self._seen) > self.kept:
                self._seen.popitem(last=False)

    def forget(self, secret: str) -> None:
        with self._lock:
            self._seen.pop(self._key(secret), None)

    def recall(self, secret: str, now: datetime) -> User | None:
        """The user the token was verified for, if that was less than the TTL ago."""
        key = self._key(secret)
        with self._lock:
            found = self._seen.get(key)
            if found is None:
                return None
            user, verified = found
            if not verified <= now < verified + self.ttl:
                del self._seen[key]
                return None
            return user


def verified_tokens(request: Request) -> VerifiedTokens:
    """The app's :class:`VerifiedTokens` (made on first use)."""
    state = request.app.state
    tokens = getattr(state, "verified_tokens", None)
    if tokens is None:
        tokens = state.verified_tokens = VerifiedTokens()
    return tokens


UNKNOWN_TOKEN = "the API token is unknown, revoked, or its user is deactivated"


def _decided(request: Request, secret: str, who: User | Locked | None,
             remembered: VerifiedTokens | None) -> Principal | None:
    """A token lookup's answer as the caller: 429 when locked out, None when the token is
    unknown (the caller counts the failed attempt and answers 401). ``remembered``: the
    tokens the database verifies are remembered, and one it no longer knows forgotten."""
    if isinstance(who, Locked):
        raise too_many(request, who)
    if who is None:
        if remembered is not None:
            remembered.forget(secret)
        return None
    if remembered is not None:
        remembered.remember(secret, who, engine_of(request).clock.now())
    return Principal(who, "token")


def _recalled(request: Request, secret: str, exc: DBAPIError,
              remembered: VerifiedTokens | None) -> Principal:
    """When the database cannot be read (away or busy: ``exc``) and ``remembered`` is
    given: the token's user if it was verified within :data:`VERIFIED_TOKEN_TTL_S`; else
    ``exc`` is raised."""
    eng = engine_of(request)
    if remembered is None or not eng.store.is_transient(exc):
        raise exc
    user = remembered.recall(secret, eng.clock.now())
    if user is None:
        raise exc
    return Principal(user, "token")


async def _token_principal(request: Request, secret: str, *, recall: bool) -> Principal:
    """The caller of an API token (401 unknown, 429 locked out). ``recall``: remember the
    tokens the database verifies, and when the database cannot be read (away or busy),
    take one verified within :data:`VERIFIED_TOKEN_TTL_S` rather than fail."""
    eng = engine_of(request)
    address = client_address(request)
    remembered = verified_tokens(request) if recall else None
    try:
        who = await lookups.token_login(request.app.state, eng.directory, secret, address,
                                        committer_of(request).defer)
    except DBAPIError as exc:
        return _recalled(request, secret, exc, remembered)
    principal = _decided(request, secret, who, remembered)
    if principal is None:  # counted (a write: in a request thread, never on the loop)
        await run_in_threadpool(eng.directory.throttle.failed, address=address)
        raise unauthorized(UNKNOWN_TOKEN)
    return principal


def _token_principal_blocking(request: Request, secret: str) -> Principal:
    """:func:`_token_principal` with ``recall``, for a request thread (it blocks)."""
    eng = engine_of(request)
    address = client_address(request)
    remembered = verified_tokens(request)
    try:
        who = eng.directory.token_login(secret, address, later=committer_of(request).defer)
    except DBAPIError as exc:
        return _recalled(request, secret, exc, remembered)
    principal = _decided(request, secret, who, remembered)
    if principal is None:
        eng.directory.throttle.failed(address=address)
        raise unauthorized(UNKNOWN_TOKEN)
    return principal


async def _principal(request: Request, credentials: HTTPAuthorizationCredentials | None,
                     *, recall: bool) -> Principal | None:
    # Never holding the event loop, mostly without a thread's hop: baton.web.lookups.
    if credentials is not None:
        if recall:
            return await _recalling_token_principal(request, credentials.credentials)
        return await _token_principal(request, credentials.credentials, recall=False)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        found = await lookups.session(request.app.state, engine_of(request).directory, cookie)
        if found is None:
            return None
        user, csrf = found
        await _check_csrf(request, csrf)
        return Principal(user, "session", csrf)
    return None


async def _recalling_token_principal(request: Request, secret: str) -> Principal:
    """:func:`_token_principal` with ``recall`` (``/metrics``), waited for at most
    :data:`LOOKUP_TIMEOUT_S`: a database that hangs is taken as away (a token verified lately
    is taken, else 503), and while a lookup is still stuck past its deadline the next
    scrapes go to that memory at once instead of each holding a connection (or a thread) of
    its own."""
    state = request.app.state
    stuck: asyncio.Future[Principal] | None = getattr(state, "token_lookup_stuck", None)
    if stuck is None or stuck.done():
        lookup = asyncio.ensure_future(_token_principal(request, secret, recall=True))
        try:
            return await asyncio.wait_for(asyncio.shield(lookup), LOOKUP_TIMEOUT_S)
        except TimeoutError:
            state.token_lookup_stuck = lookup
            lookup.add_done_callback(_consumed)
    eng = engine_of(request)
    user = verified_tokens(request).recall(secret, eng.clock.now())
    if user is None:
        raise ProblemError(503, "Service unavailable",
                           f"the database did not answer within {LOOKUP_TIMEOUT_S:g} s, and "
                           "this token was not verified lately; try again later",
                           slug="unavailable", headers={"Retry-After": str(RETRY_AFTER_S)})
    return Principal(user, "token")


def _consumed(future: asyncio.Future[Principal]) -> None:
    """A stuck lookup's end: its answer or error goes nowhere (said, not left unread)."""
    if not future.cancelled():
        future.exception()


async def optional_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal | None:
    """The caller, or None when the request carries no credentials at all."""
    return await _principal(request, credentials, recall=False)


async def recalling_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal | None:
    """:func:`optional_principal`, and a token the database verified lately is taken
    while the database cannot be read (:class:`VerifiedTokens`)."""
    return await _principal(request, credentials, recall=True)


def known_caller(request: Request) -> Principal | None:
    """For an answer that tells a known caller more (``/readyz``): the caller of the
    request's API token or session cookie, else None, never an error (a credential that is
    unknown, locked out or cannot be checked gets the answer anyone gets). A token is
    looked up as for ``/metrics``: while the database cannot be read, one that scraped
    within :data:`VERIFIED_TOKEN_TTL_S` is known. Blocking: call it from a request thread."""
    scheme, secret = get_authorization_scheme_param(request.headers.get("authorization"))
    try:
        if scheme.lower() == "bearer" and secret:
            return _token_principal_blocking(request, secret)
        cookie = request.cookies.get(SESSION_COOKIE)
        found = engine_of(request).directory.session(cookie) if cookie else None
    except (ProblemError, DBAPIError, CommitterClosed):
        return None
    return Principal(found[0], "session", found[1]) if found is not None else None


def _known(principal: Principal | None) -> Principal:
    if principal is None:
        raise unauthorized("send an API token as `Authorization: Bearer …` "
                           "(create one with `baton tokens create USER`) or log in at /login")
    return principal


async def current_principal(
    principal: Annotated[Principal | None, Depends(optional_principal)],
) -> Principal:
    return _known(principal)


class Need:
    """A dependency: the caller, who must hold ``permission`` (403 otherwise).

    A class rather than a closure so the permission an operation needs can be read back
    from its route (the schemathesis test derives what an agent may never do from it). It
    depends on :func:`optional_principal` directly, not through :func:`current_principal`:
    every level of dependencies costs FastAPI a resolution on every request, and every API
    operation has this one."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(self, principal: Annotated[Principal | None, Depends(optional_principal)]
                       ) -> Principal:
        known = _known(principal)
        require(known.user, self.permission)  # PermissionDenied -> 403 problem
        return known

    def __repr__(self) -> str:
        return f"Need({self.permission.value!r})"


class NeedThroughOutage(Need):
    """:class:`Need`, where a token the database verified lately is taken while the
    database cannot be read (:class:`VerifiedTokens`): for ``/metrics``, whose answer is
    mostly the process's own."""

    async def __call__(self, principal: Annotated[Principal | None, Depends(recalling_principal)]
                       ) -> Principal:
        return await super().__call__(principal)

    def __repr__(self) -> str:
        return f"Need({self.permission.value!r}, outage=True)"


def need(permission: Permission, *, outage: bool = False) -> Need:
    """A dependency: the caller, who must hold ``permission`` (403 otherwise). ``outage``:
    a token verified lately is taken while the database cannot be read (``/metrics`` only:
    see :class:`VerifiedTokens`)."""
    return NeedThroughOutage(permission) if outage else Need(permission)


_SESSION_COOKIE_B = SESSION_COOKIE.encode() + b"="


class SecurityHeaders:
    """ASGI middleware: the headers every answer carries unless it set its own.

    ``X-Content-Type-Options: nosniff`` and ``X-Frame-Options: DENY`` on everything (a
    problem document or a JSON answer echoing input is never sniffed into HTML, nor framed);
    the pages' CSP (:data:`PAGE_CSP`) on any HTML answer that has none; and ``Cache-Control:
    no-store`` on the answers to a request that carried credentials (an API token, the
    session cookie), so a browser or proxy keeps no copy of someone's cases or tokens
    (``/static`` aside: its files are the same for everyone)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        private = not scope.get("path", "").startswith("/static/") and any(
            name == b"authorization" or (name == b"cookie" and _SESSION_COOKIE_B in value)
            for name, value in scope.get("headers", ()))

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                names = {name.lower() for name, _ in headers}
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                if b"x-frame-options" not in names:
                    headers.append((b"x-frame-options", b"DENY"))
                if b"content-security-policy" not in names and any(
                        name.lower() == b"content-type" and value.startswith(b"text/html")
                        for name, value in headers):
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                if private and b"cache-control" not in names:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
