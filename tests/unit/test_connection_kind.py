"""``kind: connection``: the schema (http and mcp), located issues, the frozen model, and
secret references resolved from the environment or a mode-checked secrets file."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from baton.connections.secrets import SecretError, Secrets
from baton.definitions.connection import max_response_bytes
from baton.definitions.loader import check_texts, load_text
from baton.definitions.model import ConnectionDefinition, SecretRef
from baton.errors import DefinitionError

BANK = """\
kind: connection
name: bank
label: The bank
type: http
base_url: https://bank.example/api/
headers: {X-Client: baton}
auth:
  type: oauth2_client_credentials
  token_url: https://auth.bank.example/token
  client_id: baton
  client_secret: env:BANK_CLIENT_SECRET
  scope: "addresses accounts"
  audience: bank-api
timeout: {connect: 2s, read: 45s}
tls: {verify: true, ca_file: certs/bank-ca.pem}
rate_limit: 600/m
max_in_flight: 80
idempotency_header: X-Request-Key
callback: {hmac_secret: file:BANK_HMAC, header: X-Sig, replay_window: 2m}
redact: [iban, password]
"""

ERP_STDIO = """\
kind: connection
name: erp
type: mcp
transport: stdio
command: python
args: [examples/mcp_erp/server.py, --quiet]
env: {ERP_DB: env:ERP_DB, MODE: test}
"""

ERP_HTTP = """\
kind: connection
name: erp_http
type: mcp
transport: http
url: http://127.0.0.1:9000/mcp
headers: {X-Client: baton}
auth: {type: bearer, secret: env:ERP_TOKEN}
timeout: {read: 10s}
"""


def _one(text: str) -> ConnectionDefinition:
    (doc,) = load_text(text, "c.yaml")
    assert doc.kind == "connection"
    assert isinstance(doc.definition, ConnectionDefinition)
    return doc.definition


def _issues(text: str) -> list[str]:
    _, issues = check_texts({"c.yaml": textwrap.dedent(text)})
    return [f"{i.line} {i.path}: {i.message}" for i in issues]


def test_an_http_connection_becomes_its_frozen_model() -> None:
    c = _one(BANK)
    assert (c.name, c.type, c.label, c.base_url) == ("bank", "http", "The bank",
                                                     "https://bank.example/api")
    assert dict(c.headers) == {"X-Client": "baton"}
    assert c.auth is not None and c.auth.type == "oauth2_client_credentials"
    assert c.auth.client_secret == SecretRef("env", "BANK_CLIENT_SECRET")
    assert (c.auth.client_id, c.auth.scope, c.auth.audience, c.auth.client_auth) == (
        "baton", "addresses accounts", "bank-api", "basic")
    assert (c.connect_timeout_ms, c.read_timeout_ms) == (2_000, 45_000)
    assert (c.tls_verify, c.ca_file) == (True, "certs/bank-ca.pem")
    assert c.rate_limit == pytest.approx(10.0) and c.max_in_flight == 80
    assert c.idempotency_header == "X-Request-Key"
    assert c.callback is not None and c.callback.hmac_secret == SecretRef("file", "BANK_HMAC")
    assert (c.callback.header, c.callback.timestamp_header, c.callback.replay_window_ms) == (
        "X-Sig", "X-Timestamp", 120_000)
    assert c.redact == ("iban", "password")
    assert set(c.secret_refs()) == {SecretRef("env", "BANK_CLIENT_SECRET"),
                                    SecretRef("file", "BANK_HMAC")}


def test_defaults() -> None:
    c = _one("kind: connection\nname: x\ntype: http\nbase_url: http://127.0.0.1:1\n")
    assert (c.auth, c.connect_timeout_ms, c.read_timeout_ms, c.tls_verify, c.rate_limit,
            c.max_in_flight, c.idempotency_header, c.callback) == (
        None, 5_000, 30_000, True, None, 50, "Idempotency-Key", None)


@pytest.mark.parametrize("auth, expect", [
    ("{type: bearer, secret: env:T}", ("bearer", SecretRef("env", "T"), None)),
    ("{type: basic, username: baton, password_secret: file:PW}",
     ("basic", None, SecretRef("file", "PW"))),
    ("{type: api_key, secret: env:K}", ("api_key", SecretRef("env", "K"), None)),
])
def test_auth_types(auth: str, expect: tuple[object, ...]) -> None:
    c = _one(f"kind: connection\nname: x\ntype: http\nbase_url: https://h\nauth: {auth}\n")
    assert c.auth is not None
    assert (c.auth.type, c.auth.secret, c.auth.password_secret) == expect
    if c.auth.type == "api_key":
        assert (c.auth.placement, c.auth.key_name) == ("header", "X-Api-Key")


def test_mcp_connections() -> None:
    stdio = _one(ERP_STDIO)
    assert (stdio.type, stdio.transport, stdio.command, stdio.args) == (
        "mcp", "stdio", "python", ("examples/mcp_erp/server.py", "--quiet"))
    assert dict(stdio.env) == {"ERP_DB": "env:ERP_DB", "MODE": "test"}
    assert stdio.secret_refs() == (SecretRef("env", "ERP_DB"),)
    http = _one(ERP_HTTP)
    assert (http.transport, http.url, http.read_timeout_ms) == (
        "http", "http://127.0.0.1:9000/mcp", 10_000)
    assert http.auth is not None and http.auth.secret == SecretRef("env", "ERP_TOKEN")


@pytest.mark.parametrize("given, expect", [
    (None, 5 * 1024 * 1024), ("20MB", 20 * 1024 * 1024), ("512KB", 512 * 1024),
    ("2 mb", 2 * 1024 * 1024), (1000, 1000), ("100MB", 100 * 1024 * 1024),
])
def test_max_response_sizes(given: object, expect: int) -> None:
    for text in (ERP_STDIO, "kind: connection\nname: x\ntype: http\nbase_url: http://h\n"):
        if given is not None:
            text += f"max_response: {given}\n"
        assert max_response_bytes(_one(text)) == expect


def test_max_response_must_be_a_size_up_to_100_mb() -> None:
    for bad, got in (("5GB", "'5GB'"), (0, "0"), ("true", "a boolean"), ("101MB", "'101MB'"),
                     (-1, "-1"), ("1.5MB", "'1.5MB'"), ("[1]", "a list")):
        issues = _issues(f"kind: connection\nname: x\ntype: http\nbase_url: http://h\n"
                         f"max_response: {bad}\n")
        assert issues == [("5 max_response: expected a size like 5MB, 512KB or a number "
                           f"of bytes, from 1 byte to 100MB, got {got}")], bad


def test_every_problem_is_reported_with_its_line_and_path() -> None:
    issues = _issues("""\
        kind: connection
        name: bad-name
        type: http
        base_url: ftp://bank.example
        headers: {Authorization: Bearer abc, "bad header": x, X-Ok: [1]}
        auth: {type: api_key, secret: env:K, in: body}
        timeout: {connect: 5 seconds, write: 1s}
        tls: {verify: false, ca_file: ca.pem}
        rate_limit: 20 per second
        max_in_flight: 0
        idempotency_header: "Idem Key"
        callback: {header: X-Sig}
        colour: blue
        """)
    assert issues == [
        ("2 name: connection name 'bad-name' must be an identifier (letters, digits and _, "
        "not starting with a digit)"),
        ("4 base_url: expected an http:// or https:// URL with a host, like "
        "https://bank.example/api"),
        ("5 headers.Authorization: Authorization carries credentials: it cannot be written in "
        "headers (use auth:, whose secrets are references)"),
        "5 headers.bad header: 'bad header' is not a valid HTTP header name",
        "5 headers.X-Ok: expected a string, got a list",
        "6 auth.in: unknown api_key placement 'body' (expected one of: header, query)",
        "7 timeout.write: unknown key 'write' (expected one of: connect, read)",
        "7 timeout.connect: expected a duration like 30s, 10m, 4h or 2d, got '5 seconds'",
        "8 tls.ca_file: ca_file is only used when verify is true",
        ("9 rate_limit: expected a rate like 20/s, 600/m or 1000/h (more than 0), "
        "got '20 per second'"),
        "10 max_in_flight: expected a whole number >= 1, got 0",
        "11 idempotency_header: 'Idem Key' is not a valid HTTP header name",
        "12 callback.hmac_secret: required key 'hmac_secret' is missing",
        "13 colour: unknown key 'colour'",
    ]


def test_a_literal_secret_is_refused_without_repeating_it() -> None:
    issues = _issues("""\
        kind: connection
        name: bank
        type: http
        base_url: https://user:hunter2@bank.example
        auth: {type: bearer, secret: s3cr3t-t0ken}
        callback: {hmac_secret: "hm4c-v4lue"}
        """)
    text = "\n".join(issues)
    for secret in ("s3cr3t-t0ken", "hm4c-v4lue", "hunter2"):
        assert secret not in text
    assert "4 base_url: a URL must not carry credentials (user:password@); use auth:" in text
    assert "5 auth.secret: expected a secret reference, got a literal string: a secret is a " \
           "reference, env:NAME" in text
    assert "6 callback.hmac_secret: expected a secret reference, got a literal string" in text


def test_auth_requirements_per_type() -> None:
    issues = _issues("""\
        kind: connection
        name: bank
        type: http
        base_url: https://bank.example
        auth: {type: oauth2_client_credentials, client_id: x, secret: env:X, client_auth: jwt}
        ---
        kind: connection
        name: bank2
        type: http
        base_url: https://bank.example
        auth: {type: api_key, secret: env:K, in: query}
        ---
        kind: connection
        name: bank3
        type: http
        auth: {type: kerberos}
        """)
    assert issues == [
        "5 auth.secret: unknown key 'secret' (did you mean 'client_secret'?)",
        "5 auth.token_url: required key 'token_url' is missing",
        "5 auth.client_secret: required key 'client_secret' is missing",
        "5 auth.client_auth: unknown client_auth 'jwt' (expected one of: basic, body)",
        "11 auth.name: required key 'name' is missing (the query parameter that carries the key)",
        "13 base_url: required key 'base_url' is missing",
        ("16 auth.type: unknown auth type 'kerberos' (expected one of: bearer, basic, api_key, "
        "oauth2_client_credentials)"),
    ]


def test_mcp_transport_rules() -> None:
    issues = _issues("""\
        kind: connection
        name: a
        type: mcp
        transport: stdio
        url: http://x/mcp
        env: {ok: env:X, 1bad: y}
        ---
        kind: connection
        name: b
        type: mcp
        transport: http
        command: python
        ---
        kind: connection
        name: c
        type: mcp
        transport: pipe
        ---
        kind: connection
        name: d
        type: ftp
        """)
    assert issues == [
        "1 command: required key 'command' is missing (transport: stdio starts it)",
        "5 url: url does not apply to transport: stdio",
        ("6 env.1bad: environment variable name '1bad' must be an identifier (letters, digits "
        "and _, not starting with a digit)"),
        "8 url: required key 'url' is missing (transport: http connects to it)",
        "12 command: command does not apply to transport: http",
        "17 transport: unknown MCP transport 'pipe' (expected one of: stdio, http)",
        "21 type: unknown connection type 'ftp' (expected one of: http, mcp)",
    ]


def test_duplicate_connection_names() -> None:
    issues = _issues("kind: connection\nname: a\ntype: http\nbase_url: http://h\n---\n"
                     "kind: connection\nname: a\ntype: http\nbase_url: http://h\n")
    assert issues == ["7 name: connection 'a' is already defined at c.yaml:1"]


def test_load_text_raises_with_every_issue() -> None:
    with pytest.raises(DefinitionError) as info:
        load_text("kind: connection\nname: a\ntype: http\n", "c.yaml")
    assert [i.path for i in info.value.issues] == ["base_url"]


# --- secrets ---------------------------------------------------------------------------------


def test_env_references_read_the_given_environment() -> None:
    secrets = Secrets({"BANK_TOKEN": "tok-123"})
    assert secrets.resolve(SecretRef("env", "BANK_TOKEN")) == "tok-123"
    with pytest.raises(SecretError, match=r"secret env:MISSING: the environment variable "
                                          r"MISSING is not set"):
        secrets.resolve(SecretRef("env", "MISSING"))


def test_file_references_need_a_private_file(tmp_path: Path) -> None:
    file = tmp_path / "secrets.toml"
    file.write_text('BANK_HMAC = "hmac-value-1"\n')
    os.chmod(file, 0o644)
    secrets = Secrets({}, file)
    with pytest.raises(SecretError) as info:
        secrets.resolve(SecretRef("file", "BANK_HMAC"))
    assert "mode 0644" in str(info.value) and "chmod 600" in str(info.value)
    assert "hmac-value-1" not in str(info.value)
    os.chmod(file, 0o600)
    assert secrets.resolve(SecretRef("file", "BANK_HMAC")) == "hmac-value-1"
    with pytest.raises(SecretError, match="has no key 'OTHER'"):
        secrets.resolve(SecretRef("file", "OTHER"))
    file.write_text('BANK_HMAC = "hmac-value-2"\nEXTRA = "x"\n')  # rotated: read again
    assert secrets.resolve(SecretRef("file", "BANK_HMAC")) == "hmac-value-2"
    file.write_text('BANK_HMAC = "unterminated\n')
    with pytest.raises(SecretError) as bad:
        secrets.resolve(SecretRef("file", "BANK_HMAC"))
    assert "not valid TOML" in str(bad.value) and "unterminated" not in str(bad.value)


def test_file_references_without_a_file() -> None:
    with pytest.raises(SecretError, match=r"no secrets file is configured"):
        Secrets({}).resolve(SecretRef("file", "X"))


def test_a_connection_cannot_read_batons_own_settings() -> None:
    """``env:BATON_DB`` (the database URL with its password) sent as a bearer token, or
    handed to an MCP server: refused at validation, and at call time for a version stored
    before (never resolved)."""
    http = """\
kind: connection
name: leak
type: http
base_url: https://evil.example
auth: {type: bearer, secret: env:BATON_DB}
"""
    mcp = ERP_STDIO.replace("ERP_DB: env:ERP_DB", "ERP_DB: env:baton_smtp_password")
    for text, path in ((http, "auth.secret"), (mcp, "env.ERP_DB")):
        with pytest.raises(DefinitionError) as exc:
            load_text(text, "c.yaml")
        (issue,) = exc.value.issues
        assert issue.path == path and "Baton's own settings" in issue.message, issue
    secrets = Secrets({"BATON_DB": "postgresql://u:pw@db/baton", "BANK": "tok"})
    assert secrets.resolve(SecretRef("env", "BANK")) == "tok"
    with pytest.raises(SecretError) as err:
        secrets.resolve(SecretRef("env", "BATON_DB"))
    assert "pw" not in str(err.value)
