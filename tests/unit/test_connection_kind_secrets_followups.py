"""Literal credentials a connection wrote where validation did not look (found by an audit):
custom headers (``X-Api-Key: sk_live_...``), an MCP stdio server's ``env`` values and its
``args``. They are refused, located, with a message that never repeats the value and says
where the secret goes; non-secret headers and variables (``X-Idempotency-Key``,
``TOKENIZERS_PARALLELISM: false``, ``MAX_TOKENS: 100``) still pass. A version stored before
the rule is still read back and built (existing runs keep working)."""

from __future__ import annotations

import textwrap

import pytest

from baton.definitions.credentials import credential_name
from baton.definitions.loader import check_texts, load_stored
from baton.definitions.model import ConnectionDefinition, SecretRef

HTTP = """\
kind: connection
name: api
type: http
base_url: https://api.example/v1
headers:
  {name}: {value}
"""
STDIO = """\
kind: connection
name: tools
type: mcp
transport: stdio
command: python
"""


def _issues(text: str) -> list[tuple[int, str, str]]:
    _, issues = check_texts({"c.yaml": textwrap.dedent(text)})
    return [(i.line, i.path, i.message) for i in issues]


def _header(name: str, value: str) -> list[tuple[int, str, str]]:
    return _issues(HTTP.format(name=name, value=value))


@pytest.mark.parametrize("name, value", [
    ("X-Api-Key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
    ("X-Auth-Token", "t0k-Hq81-a9"),
    ("Api-Key", "abc123def456"),
    ("X-Secret", "hunter2-xyz"),
    ("X-Access-Token", "at-88-qq"),
    ("Private-Token", "glpat-0123456789abcdefghij"),
    ("X-Signature", "c2lnbmF0dXJl"),
    ("X-Hub-Signature-256", "sha256=0a1b2c"),
    ("apiKey", "camel-Case-9"),
    ("X-Session", "sess-77a"),
    ("X-Amz-Security-Token", "FwoGZXIvYXdzE"),
    ("X-Api-Key", "env:API_KEY"),  # a header's value is sent as written: not a reference
])
def test_a_credential_header_is_refused_pointing_to_auth(name: str, value: str) -> None:
    ((line, path, message),) = _header(name, value)
    assert (line, path) == (6, f"headers.{name}")
    assert message.startswith(f"{name} names a credential: a header's value is sent as "
                              "written (an env:/file: reference is not read there)"), message
    assert f"auth: {{type: api_key, in: header, name: {name}, secret: env:NAME}}" in message
    assert value not in message and value.split(":")[-1] not in message


@pytest.mark.parametrize("name, value", [
    ("X-Idempotency-Key", "fixed-1"), ("Idempotency-Key", "k"), ("X-Request-Id", "r-1"),
    ("Accept", "application/json"), ("anthropic-version", "2023-06-01"), ("X-Client", "baton"),
    ("X-Cache-Key", "addresses"), ("X-Session-Id", "s1"), ("X-Auth-Email", "ops@example.com"),
    ("X-Api-Key-Id", "key-17"), ("X-Auth-Mode", "hmac"), ("X-Api-Key", "none"),
    ("X-Auth", "'false'"), ("X-Token-Ttl", "3600"), ("OpenAI-Organization", "org-abc"),
    ("X-Page-Token", "p2"),
])
def test_headers_that_carry_no_secret_still_pass(name: str, value: str) -> None:
    assert _header(name, value) == []


@pytest.mark.parametrize("value", [
    "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv",  # OpenAI
    "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig",  # a JWT
    "AKIAIOSFODNN7EXAMPLE",  # AWS access key
    "https://user:pa55@proxy.example",  # a URL with a password
])
def test_a_value_of_a_credentials_form_is_refused_whatever_the_name(value: str) -> None:
    ((line, path, message),) = _header("X-Upstream", f'"{value}"')
    assert (line, path) == (6, "headers.X-Upstream")
    assert message.startswith("the value has the form of a credential (an API key or token, "
                              "a private key, or a URL with a password): "), message
    for part in value.replace("@", " ").replace(":", " ").split():
        if len(part) > 5:
            assert part not in message


def test_mcp_over_http_headers_follow_the_same_rule() -> None:
    issues = _issues("""\
        kind: connection
        name: tools
        type: mcp
        transport: http
        url: https://mcp.example/mcp
        headers: {X-Api-Key: k-55-literal, X-Request-Id: r1}
        """)
    assert [(line, path) for line, path, _ in issues] == [(6, "headers.X-Api-Key")]
    assert "k-55-literal" not in issues[0][2]


def test_mcp_env_literal_credentials_are_refused_with_a_reference_to_use() -> None:
    issues = _issues(STDIO + textwrap.dedent("""\
        env:
          OPENAI_API_KEY: sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv
          DB_PASSWORD: "pw-77-secret"
          GITHUB_PERSONAL_ACCESS_TOKEN: "tok_88_literal"
          DATABASE_URL: "postgres://erp:pg-Pw-99@db.example/erp"
          LOG_LEVEL: debug
          TOKENIZERS_PARALLELISM: "false"
          MAX_TOKENS: 100
          GOOGLE_APPLICATION_CREDENTIALS: /etc/gcp/service-account.json
          ERP_TOKEN_URL: https://auth.example/token
          AWS_ACCESS_KEY_ID: key-id-17
          API_KEY: env:TOOLS_API_KEY
          CLIENT_SECRET: file:TOOLS_CLIENT_SECRET
        """))
    text = "\n".join(f"{line} {path}: {message}" for line, path, message in issues)
    assert [(line, path) for line, path, _ in issues] == [
        (7, "env.OPENAI_API_KEY"), (8, "env.DB_PASSWORD"),
        (9, "env.GITHUB_PERSONAL_ACCESS_TOKEN"), (10, "env.DATABASE_URL")], text
    for secret in ("Ab3dEf6hIj9kLm2nOp5qRs8tUv", "pw-77-secret", "tok_88_literal", "pg-Pw-99"):
        assert secret not in text
    assert issues[0][2] == (
        "OPENAI_API_KEY names a credential: a secret cannot be written in a definition; give "
        "a reference, OPENAI_API_KEY: env:NAME (an environment variable of the worker) or "
        "file:NAME (a key of the secrets file named in baton.toml)")
    assert issues[3][2].startswith("the value has the form of a credential")
    assert "DATABASE_URL: env:NAME" in issues[3][2]


def test_mcp_args_literal_credentials_are_refused_pointing_to_env() -> None:
    issues = _issues(STDIO + textwrap.dedent("""\
        args: [server.py, --quiet, --api-key, "ak-31-literal", "--token=tk-32-literal",
               --port, 8080, --token-file, secrets/erp.txt, --key, certs/client.key,
               "--password=", sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv, -v]
        """))
    text = "\n".join(f"{line} {path}: {message}" for line, path, message in issues)
    assert [path for _, path, _ in issues] == ["args[3]", "args[4]", "args[12]"], text
    for secret in ("ak-31-literal", "tk-32-literal", "Ab3dEf6hIj9kLm2nOp5qRs8tUv"):
        assert secret not in text
    assert issues[0][2].startswith("--api-key names a credential and this argument is its "
                                   "value: a command line is passed as written"), issues[0][2]
    assert issues[1][2].startswith("--token names a credential: ")
    assert issues[2][2].startswith("the value has the form of a credential")
    for _, _, message in issues:
        assert "give the secret to the server in env: as a reference (env: {NAME: env:NAME})" \
            in message


def test_a_credential_in_the_command_is_refused() -> None:
    issues = _issues(STDIO.replace("command: python",
                                   'command: "mcp-erp --key=sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv"'))
    ((line, path, message),) = issues
    assert (line, path) == (5, "command")
    assert "Ab3dEf6hIj9kLm2nOp5qRs8tUv" not in message


@pytest.mark.parametrize("name, expect", [
    ("OPENAI_API_KEY", True), ("AWS_SECRET_ACCESS_KEY", True), ("SECRET_KEY_BASE", True),
    ("XApiKey", True), ("HF_TOKEN", True), ("DOCKER_AUTH_CONFIG", True), ("MYSQL_PASS", True),
    ("X-Idempotency-Key", False), ("TOKEN_URL", False), ("KEY_ID", False),
    ("PASSWORD_FILE", False), ("SESSION_TTL", False), ("MAX_TOKENS", False),
    ("TOKENIZERS_PARALLELISM", False), ("KEYBOARD_LAYOUT", False), ("X-Next-Token", False),
])
def test_which_names_hold_a_credential(name: str, expect: bool) -> None:
    assert credential_name(name) is expect


def test_a_version_stored_before_the_rule_is_still_built() -> None:
    """An older release deployed it: read back, it is built as it was (its runs keep
    calling with it) and its issues are returned for the caller to report."""
    text = HTTP.format(name="X-Api-Key", value="legacy-Key-7731") + STDIO.replace(
        "kind:", "---\nkind:", 1) + "env: {OPENAI_API_KEY: legacy-Key-7732, MODE: test}\n"
    docs, issues = load_stored(text, "c.yaml")
    http, mcp = (d.definition for d in docs)
    assert isinstance(http, ConnectionDefinition) and isinstance(mcp, ConnectionDefinition)
    assert http.headers["X-Api-Key"] == "legacy-Key-7731"
    assert mcp.env["OPENAI_API_KEY"] == "legacy-Key-7732"
    assert mcp.secret_refs() == ()
    assert [(i.line, i.path) for i in issues] == [(6, "headers.X-Api-Key"),
                                                   (13, "env.OPENAI_API_KEY")]
    assert "legacy-Key" not in " ".join(str(i) for i in issues)


def test_references_in_mcp_env_still_resolve() -> None:
    docs, issues = load_stored(STDIO + "env: {API_KEY: env:TOOLS_KEY, LOG_LEVEL: info}\n")
    assert issues == []
    (doc,) = docs
    assert isinstance(doc.definition, ConnectionDefinition)
    assert doc.definition.secret_refs() == (SecretRef("env", "TOOLS_KEY"),)
