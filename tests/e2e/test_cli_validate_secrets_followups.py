"""``baton validate`` and ``baton deploy`` (a subprocess) on connections that write a
credential in the clear outside ``auth:``: a custom header, an MCP server's env and args.
Each is a located problem saying where the secret goes; no output repeats a value."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import baton, ok

VALUES = ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv", "tk-32-literal")
CONNECTIONS = f"""\
kind: connection
name: payments
type: http
base_url: https://payments.example/v1
headers: {{X-Api-Key: {VALUES[0]}, X-Idempotency-Key: fixed, Accept: application/json}}
---
kind: connection
name: tools
type: mcp
transport: stdio
command: python
args: [server.py, "--token={VALUES[2]}"]
env:
  OPENAI_API_KEY: {VALUES[1]}
  TOKENIZERS_PARALLELISM: "false"
  MAX_TOKENS: 100
"""
FIXED = """\
kind: connection
name: payments
type: http
base_url: https://payments.example/v1
headers: {X-Idempotency-Key: fixed, Accept: application/json}
auth: {type: api_key, in: header, name: X-Api-Key, secret: env:PAYMENTS_KEY}
---
kind: connection
name: tools
type: mcp
transport: stdio
command: python
args: [server.py]
env:
  OPENAI_API_KEY: env:OPENAI_API_KEY
  TOOLS_TOKEN: file:TOOLS_TOKEN
  TOKENIZERS_PARALLELISM: "false"
  MAX_TOKENS: 100
"""


def test_validate_and_deploy_refuse_literal_credentials_without_showing_them(
        tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "definitions").mkdir(parents=True)
    (proj / "baton.toml").write_text('database = "sqlite:///baton.db"\n')
    conns = proj / "definitions" / "connections.yaml"
    conns.write_text(CONNECTIONS)

    p = baton("validate", cwd=proj)
    assert p.returncode == 1, (p.stdout, p.stderr)
    for value in VALUES:
        assert value not in p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert len(lines) == 3, p.stdout
    assert "connections.yaml:5 headers.X-Api-Key: X-Api-Key names a credential" in lines[0]
    assert "use auth: {type: api_key, in: header, name: X-Api-Key, secret: env:NAME}" in lines[0]
    assert "connections.yaml:12 args[1]: --token names a credential" in lines[1]
    assert "connections.yaml:14 env.OPENAI_API_KEY: OPENAI_API_KEY names a credential" in lines[2]
    assert "give a reference, OPENAI_API_KEY: env:NAME" in lines[2]

    as_json = baton("validate", "--json", cwd=proj)
    assert as_json.returncode == 1
    assert [(i["line"], i["path"]) for i in json.loads(as_json.stdout)] == [
        (5, "headers.X-Api-Key"), (12, "args[1]"), (14, "env.OPENAI_API_KEY")]
    assert not any(v in as_json.stdout for v in VALUES)

    d = baton("deploy", cwd=proj)
    assert d.returncode == 1 and "nothing was deployed" in d.stderr, (d.stdout, d.stderr)
    assert not any(v in d.stdout + d.stderr for v in VALUES)

    conns.write_text(FIXED)
    assert "valid" in ok(baton("validate", cwd=proj)).stdout
