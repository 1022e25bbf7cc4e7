"""``kind: connection`` (DESIGN §2.6): validation with located issues, and the frozen model.

A connection names an external system: for ``type: http`` a base URL, default headers,
``auth``, timeouts, TLS, a rate limit, a bound on requests in flight, the idempotency
header and how callbacks are signed; for ``type: mcp`` a transport (``stdio``: command,
args, env; ``http``: url, headers, auth, timeout, tls). Either type bounds the answers it
takes (``max_response``, :func:`max_response_bytes`).

Secrets are *references* (``env:NAME``, ``file:NAME``) and nothing else: a literal where a
secret belongs is refused, and the message never repeats what was typed there, since it
may be the secret itself (``POST /api/definitions/validate`` answers with these messages).
``headers`` and ``args`` are sent as written and ``env`` may hold literals, so a credential
written there is refused too (:func:`literal_credential`: by the name it is written under,
or by the form of the value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from baton.definitions.checks import (
    Checker,
    check_duration,
    check_keys,
    check_texts,
    describe,
    duration_ms,
    expect_bool,
    expect_identifier,
    expect_int,
    expect_list,
    expect_mapping,
    expect_str,
    item,
    join,
    unknown,
)
from baton.definitions.credentials import SMALL_NUMBER, literal_credential
from baton.definitions.model import (
    OWN_SETTINGS_PREFIX,
    CallbackAuth,
    ConnectionAuth,
    ConnectionDefinition,
    SecretRef,
    parse_secret_ref,
)

TYPES = ("http", "mcp")
TRANSPORTS = ("stdio", "http")
COMMON_KEYS = ("kind", "name", "label", "description", "type", "timeout", "rate_limit",
               "max_in_flight", "max_response")
HTTP_KEYS = COMMON_KEYS + ("base_url", "headers", "auth", "tls", "idempotency_header",
                           "callback", "redact")
MCP_KEYS = COMMON_KEYS + ("transport", "command", "args", "env", "url", "headers", "auth", "tls",
                          "idempotency_header")
AUTH_TYPES = ("bearer", "basic", "api_key", "oauth2_client_credentials")
AUTH_KEYS = {
    "bearer": ("type", "secret"),
    "basic": ("type", "username", "password_secret"),
    "api_key": ("type", "secret", "in", "name"),
    "oauth2_client_credentials": ("type", "token_url", "client_id", "client_secret", "scope",
                                  "audience", "client_auth"),
}
AUTH_REQUIRED = {
    "bearer": ("secret",),
    "basic": ("username", "password_secret"),
    "api_key": ("secret",),
    "oauth2_client_credentials": ("token_url", "client_id", "client_secret"),
}
API_KEY_PLACEMENTS = ("header", "query")
CLIENT_AUTH = ("basic", "body")
TIMEOUT_KEYS = ("connect", "read")
TLS_KEYS = ("verify", "ca_file")
CALLBACK_KEYS = ("hmac_secret", "header", "timestamp_header", "replay_window")
RATE = re.compile(r"(\d+(?:\.\d+)?)/(s|m|h)\Z")
_PER_SECOND = {"s": 1.0, "m": 60.0, "h": 3600.0}
SIZE = re.compile(r"(\d{1,12})\s*(KB|MB)?\Z", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "kb": 1024, "mb": 1024 * 1024}
MAX_RESPONSE_DEFAULT = 5 * 1024 * 1024
"""The largest response body (HTTP, decoded) or tool result (MCP) a connection takes by
default: above what JSON APIs answer to one call (kilobytes to a few hundred), below
Salesforce's 6 MB synchronous callout limit, in the range of Temporal's 2 MB payloads. A
step's output is kept in the run's state and in its ``step_completed`` event; a callout or
mcp step's output may take at most its ``max_output`` as JSON, by default this cap, so one
call adds about twice this to the database at most."""
MAX_RESPONSE_LIMIT = 100 * 1024 * 1024  # what max_response may say at most
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # RFC 9110 token
# Headers that carry credentials: written literally in a definition they would be a secret
# in the clear, so they are refused in ``headers`` (``auth:`` is the place).
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
SECRET_HINT = ("a secret is a reference, env:NAME (an environment variable of the worker) or "
               "file:NAME (a key of the secrets file named in baton.toml); secret values are "
               "never written in a definition")


def check_connection(ck: Checker, data: dict[str, Any]) -> None:
    """Report every problem of a ``kind: connection`` document on ``ck``."""
    ctype = data.get("type")
    if "type" not in data:
        check_keys(ck, "", data, HTTP_KEYS + MCP_KEYS, ("name", "type"))
        return
    if ctype not in TYPES:
        ck.add("type", unknown("connection type", ctype, TYPES))
        return
    if ctype == "http":
        check_keys(ck, "", data, HTTP_KEYS, ("name", "base_url"))
    else:
        check_keys(ck, "", data, MCP_KEYS, ("name", "transport"))
    if "name" in data:
        expect_identifier(ck, "name", data["name"], "connection name")
    check_texts(ck, "", data, ("label", "description"))
    if "idempotency_header" in data:
        _check_header_name(ck, "idempotency_header", data["idempotency_header"])
    if ctype == "http":
        if "base_url" in data:
            _check_url(ck, "base_url", data["base_url"])
        if "callback" in data:
            _check_callback(ck, data["callback"])
        if "redact" in data:
            for i, name in enumerate(expect_list(ck, "redact", data["redact"]) or []):
                expect_str(ck, item("redact", i), name)
    else:
        _check_mcp(ck, data)
    if "headers" in data:
        _check_headers(ck, data["headers"])
    if "auth" in data:
        _check_auth(ck, data["auth"])
    if "timeout" in data:
        _check_timeout(ck, data["timeout"])
    if "tls" in data:
        _check_tls(ck, data["tls"])
    if "rate_limit" in data:
        _check_rate(ck, data["rate_limit"])
    if "max_in_flight" in data:
        expect_int(ck, "max_in_flight", data["max_in_flight"], 1)
    if "max_response" in data:
        check_size(ck, "max_response", data["max_response"])


def _check_mcp(ck: Checker, data: dict[str, Any]) -> None:
    transport = data.get("transport")
    if "transport" in data and transport not in TRANSPORTS:
        ck.add("transport", unknown("MCP transport", transport, TRANSPORTS))
        return
    # (idempotency_header: the HTTP header a tool call's idempotency key also travels in)
    stdio_only = ("command", "args", "env")
    http_only = ("url", "headers", "auth", "tls", "idempotency_header")
    for key in stdio_only if transport == "http" else http_only if transport == "stdio" else ():
        if key in data:
            ck.add(key, f"{key} does not apply to transport: {transport}")
    if transport == "stdio":
        if "command" not in data:
            ck.add("command", "required key 'command' is missing (transport: stdio starts it)")
        elif expect_str(ck, "command", data["command"]) is not None \
                and (why := literal_credential("", data["command"])) is not None:
            ck.add("command", f"{why}: {ARGS_HINT}")
        _check_args(ck, expect_list(ck, "args", data.get("args", [])) or [])
        for key, value in (expect_mapping(ck, "env", data.get("env", {})) or {}).items():
            expect_identifier(ck, join("env", key), key, "environment variable name")
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                ck.add(join("env", key), f"expected a string, got {describe(value)}")
            elif (ref := parse_secret_ref(value)) is not None:
                check_own_setting(ck, join("env", key), ref)
            elif (why := literal_credential(str(key), value)) is not None:
                ck.add(join("env", key), f"{why}: a secret cannot be written in a definition; "
                                         f"give a reference, {key}: env:NAME (an environment "
                                         "variable of the worker) or file:NAME (a key of the "
                                         "secrets file named in baton.toml)")
    elif transport == "http":
        if "url" not in data:
            ck.add("url", "required key 'url' is missing (transport: http connects to it)")
        else:
            _check_url(ck, "url", data["url"])


def _check_url(ck: Checker, path: str, value: Any) -> None:
    text = expect_str(ck, path, value)
    if text is None:
        return
    try:
        parts = urlsplit(text)
        port = parts.port  # a port that is no number, or above 65535, raises
    except ValueError as exc:  # "http://[::1": an unclosed IPv6 address
        ck.add(path, f"not a valid URL ({exc}), expected one like https://bank.example/api")
        return
    if port == 0:
        ck.add(path, "port 0 is not a port a server listens on (1 to 65535)")
    elif parts.scheme not in ("http", "https") or not parts.hostname:
        ck.add(path, "expected an http:// or https:// URL with a host, like "
                     "https://bank.example/api")
    elif parts.username is not None or parts.password is not None:
        ck.add(path, "a URL must not carry credentials (user:password@); use auth:")
    elif parts.query or parts.fragment:
        ck.add(path, "a base URL has no query or fragment (a callout step sets its query)")


def _check_header_name(ck: Checker, path: str, value: Any) -> str | None:
    name = expect_str(ck, path, value)
    if name is not None and not HEADER_NAME.match(name):
        ck.add(path, f"'{name}' is not a valid HTTP header name")
        return None
    return name


def _check_headers(ck: Checker, value: Any) -> None:
    for name, text in (expect_mapping(ck, "headers", value) or {}).items():
        path = join("headers", name)
        if _check_header_name(ck, path, name) is None:
            continue
        if name.lower() in CREDENTIAL_HEADERS:
            ck.add(path, f"{name} carries credentials: it cannot be written in headers "
                         "(use auth:, whose secrets are references)")
        elif not isinstance(text, str | int | float) or isinstance(text, bool):
            ck.add(path, f"expected a string, got {describe(text)}")
        elif any(c in str(text) for c in "\r\n"):
            ck.add(path, "a header value cannot contain a line break")
        elif (why := literal_credential(name, text)) is not None:
            ck.add(path, f"{why}: a header's value is sent as written (an env:/file: "
                         "reference is not read there), so a secret cannot be written in "
                         f"headers; use auth: {{type: api_key, in: header, name: {name}, "
                         "secret: env:NAME}, whose secret is a reference")


ARGS_HINT = ("a command line is passed as written (an env:/file: reference is not read there) "
             "and other users of the worker's host may see it; give the secret to the server "
             "in env: as a reference (env: {NAME: env:NAME}) for it to read from its "
             "environment")


def _check_args(ck: Checker, args: list[Any]) -> None:
    option = ""  # an option (--token) waiting for its value in the next argument
    for i, arg in enumerate(args):
        if not isinstance(arg, str | int | float) or isinstance(arg, bool):
            ck.add(item("args", i), f"expected a string, got {describe(arg)}")
            option = ""
            continue
        text = str(arg)
        if text.startswith("-") and not SMALL_NUMBER.match(text):
            name, eq, value = text.partition("=")
            why = literal_credential(name, value) if eq else literal_credential("", text)
            option = "" if eq else name
        else:
            why = literal_credential(option, text)
            if why is not None and option and why.startswith(option):
                why += " and this argument is its value"
            option = ""
        if why is not None:
            ck.add(item("args", i), f"{why}: {ARGS_HINT}")


def check_secret(ck: Checker, path: str, value: Any) -> SecretRef | None:
    """A secret reference; the message for anything else never shows the value."""
    ref = parse_secret_ref(value)
    if ref is None:
        got = "a literal string" if isinstance(value, str) else describe(value)
        ck.add(path, f"expected a secret reference, got {got}: {SECRET_HINT}")
    else:
        check_own_setting(ck, path, ref)
    return ref


def check_own_setting(ck: Checker, path: str, ref: SecretRef) -> None:
    """``env:BATON_...`` names one of Baton's own settings (its database URL with its
    password, the SMTP password...): a connection may not send those anywhere."""
    if ref.source == "env" and ref.name.upper().startswith(OWN_SETTINGS_PREFIX):
        ck.add(path, f"{ref} is one of Baton's own settings ({OWN_SETTINGS_PREFIX}*): a "
                     "connection cannot read it; give the secret a variable of its own")


def _check_auth(ck: Checker, value: Any) -> None:
    auth = expect_mapping(ck, "auth", value)
    if auth is None:
        return
    atype = auth.get("type")
    if "type" not in auth:
        ck.add("auth.type", "required key 'type' is missing")
        return
    if atype not in AUTH_TYPES:
        ck.add("auth.type", unknown("auth type", atype, AUTH_TYPES))
        return
    check_keys(ck, "auth", auth, AUTH_KEYS[atype], AUTH_REQUIRED[atype])
    for key in ("secret", "password_secret", "client_secret"):
        if key in auth and key in AUTH_KEYS[atype]:
            check_secret(ck, join("auth", key), auth[key])
    for key in ("username", "client_id", "scope", "audience"):
        if key in auth and key in AUTH_KEYS[atype]:
            expect_str(ck, join("auth", key), auth[key])
    if atype == "api_key":
        placement = auth.get("in", "header")
        if placement not in API_KEY_PLACEMENTS:
            ck.add("auth.in", unknown("api_key placement", placement, API_KEY_PLACEMENTS))
        if "name" in auth:
            if placement == "header":
                _check_header_name(ck, "auth.name", auth["name"])
            else:
                expect_str(ck, "auth.name", auth["name"])
        elif placement == "query":
            ck.add("auth.name", "required key 'name' is missing (the query parameter "
                                "that carries the key)")
    if atype == "oauth2_client_credentials":
        if "token_url" in auth:
            _check_url(ck, "auth.token_url", auth["token_url"])
        if "client_auth" in auth and auth["client_auth"] not in CLIENT_AUTH:
            ck.add("auth.client_auth", unknown("client_auth", auth["client_auth"], CLIENT_AUTH))


def _check_timeout(ck: Checker, value: Any) -> None:
    timeout = expect_mapping(ck, "timeout", value)
    if timeout is None:
        return
    check_keys(ck, "timeout", timeout, TIMEOUT_KEYS)
    for key in TIMEOUT_KEYS:
        if key in timeout and check_duration(ck, join("timeout", key), timeout[key]) == 0:
            ck.add(join("timeout", key), "a timeout must be longer than 0")


def _check_tls(ck: Checker, value: Any) -> None:
    tls = expect_mapping(ck, "tls", value)
    if tls is None:
        return
    check_keys(ck, "tls", tls, TLS_KEYS)
    verify = expect_bool(ck, "tls.verify", tls["verify"]) if "verify" in tls else True
    if "ca_file" in tls:
        expect_str(ck, "tls.ca_file", tls["ca_file"])
        if verify is False:
            ck.add("tls.ca_file", "ca_file is only used when verify is true")


def _check_rate(ck: Checker, value: Any) -> None:
    m = RATE.match(value) if isinstance(value, str) else None
    if m is None or float(m.group(1)) <= 0:
        got = f"'{value}'" if isinstance(value, str) else describe(value)
        ck.add("rate_limit", f"expected a rate like 20/s, 600/m or 1000/h (more than 0), "
                             f"got {got}")


def size_bytes(value: Any) -> int | None:
    """Bytes of a size: a whole number of bytes, or a string like ``512KB`` or ``20MB``
    (KB = 1,024 bytes, MB = 1,048,576); None when it is not one."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    m = SIZE.match(value.strip()) if isinstance(value, str) else None
    if m is None:
        return None
    return int(m.group(1)) * _SIZE_UNITS[(m.group(2) or "").lower()]


def check_size(ck: Checker, path: str, value: Any) -> None:
    """A size (:func:`size_bytes`) from 1 byte to :data:`MAX_RESPONSE_LIMIT`: a connection's
    ``max_response``, a callout or mcp step's ``max_output``."""
    size = size_bytes(value)
    if size is None or not 1 <= size <= MAX_RESPONSE_LIMIT:
        got = f"'{value}'" if isinstance(value, str) else str(value) \
            if isinstance(value, int) and not isinstance(value, bool) else describe(value)
        ck.add(path, f"expected a size like 5MB, 512KB or a number of bytes, from 1 byte to "
                     f"100MB, got {got}")


def _check_callback(ck: Checker, value: Any) -> None:
    cb = expect_mapping(ck, "callback", value)
    if cb is None:
        return
    check_keys(ck, "callback", cb, CALLBACK_KEYS, ("hmac_secret",))
    if "hmac_secret" in cb:
        check_secret(ck, "callback.hmac_secret", cb["hmac_secret"])
    for key in ("header", "timestamp_header"):
        if key in cb:
            _check_header_name(ck, join("callback", key), cb[key])
    if "replay_window" in cb:
        check_duration(ck, "callback.replay_window", cb["replay_window"])


# --- build (only documents that passed validation) -------------------------------------------


def rate_per_second(text: str) -> float:
    m = RATE.match(text)
    assert m is not None  # validated
    return float(m.group(1)) / _PER_SECOND[m.group(2)]


def max_response_bytes(defn: ConnectionDefinition) -> int:
    """The largest response body (HTTP, after its content coding is undone) or tool result
    (MCP) a call over ``defn`` takes; a larger one fails the step (``ResponseTooLarge``)."""
    return defn.max_response


def build_connection(data: Mapping[str, Any]) -> ConnectionDefinition:
    timeout = data.get("timeout") or {}
    tls = data.get("tls") or {}
    cb = data.get("callback")
    limit = size_bytes(data["max_response"]) if "max_response" in data else None
    return ConnectionDefinition(
        name=data["name"],
        type=data["type"],
        label=data.get("label"),
        base_url=str(data["base_url"]).rstrip("/") if data.get("base_url") else None,
        headers=MappingProxyType({k: str(v) for k, v in (data.get("headers") or {}).items()}),
        auth=_build_auth(data["auth"]) if data.get("auth") else None,
        connect_timeout_ms=duration_ms(timeout.get("connect", "5s")) or 5_000,
        read_timeout_ms=duration_ms(timeout.get("read", "30s")) or 30_000,
        tls_verify=tls.get("verify", True),
        ca_file=tls.get("ca_file"),
        rate_limit=rate_per_second(data["rate_limit"]) if data.get("rate_limit") else None,
        max_in_flight=data.get("max_in_flight", 50),
        idempotency_header=data.get("idempotency_header", "Idempotency-Key"),
        callback=None if cb is None else CallbackAuth(
            hmac_secret=_ref(cb["hmac_secret"]),
            header=cb.get("header", "X-Signature"),
            timestamp_header=cb.get("timestamp_header", "X-Timestamp"),
            replay_window_ms=duration_ms(cb.get("replay_window", "5m")) or 300_000,
        ),
        redact=tuple(data.get("redact") or ()),
        transport=data.get("transport"),
        command=data.get("command"),
        args=tuple(str(a) for a in data.get("args") or ()),
        env=MappingProxyType({k: str(v) for k, v in (data.get("env") or {}).items()}),
        url=data.get("url"),
        max_response=MAX_RESPONSE_DEFAULT if limit is None else limit,
    )


def _ref(value: str) -> SecretRef:
    ref = parse_secret_ref(value)
    assert ref is not None  # validated
    return ref


def _build_auth(a: Mapping[str, Any]) -> ConnectionAuth:
    def opt(key: str) -> SecretRef | None:
        return _ref(a[key]) if key in a else None

    return ConnectionAuth(
        type=a["type"],
        secret=opt("secret"),
        username=a.get("username"),
        password_secret=opt("password_secret"),
        placement=a.get("in", "header"),
        key_name=a.get("name") or ("X-Api-Key" if a["type"] == "api_key" else None),
        token_url=a.get("token_url"),
        client_id=a.get("client_id"),
        client_secret=opt("client_secret"),
        scope=a.get("scope"),
        audience=a.get("audience"),
        client_auth=a.get("client_auth", "basic"),
    )
