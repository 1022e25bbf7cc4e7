"""``baton connections list|check`` and ``baton validate`` on mcp steps, against the example
MCP server (stdio, started by the command; streamable HTTP, started here with a token), on
both databases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli import baton, ok, ok_json, one_line_error
from tests.integration.test_mcp_steps import SERVER, TOKEN, start_http_server, stop
from tests.net import free_port


@pytest.fixture(scope="module")
def erp_url() -> Iterator[str]:
    proc, url = start_http_server()
    yield url
    stop(proc)


def project(tmp_path: Path, url: str, steps: str = "") -> Path:
    proj = tmp_path / "proj"
    (proj / "definitions").mkdir(parents=True)
    (proj / "baton.toml").write_text('database = "sqlite:///baton.db"\n')
    (proj / "definitions" / "connections.yaml").write_text(f"""\
kind: connection
name: erp
type: mcp
transport: stdio
command: python
args: [{SERVER}]
---
kind: connection
name: erp_http
type: mcp
transport: http
url: {url}
auth: {{type: bearer, secret: env:ERP_TOKEN}}
---
kind: connection
name: erp_down
type: mcp
transport: http
url: http://127.0.0.1:{free_port()}/mcp
timeout: {{connect: 3s}}
""")
    if steps:
        (proj / "definitions" / "lookup.yaml").write_text(f"""\
kind: orchestration
name: lookup
trigger: {{type: autolaunched, input: {{domain: {{type: string}}}}}}
stages:
  - name: s
    steps:
{steps}""")
    return proj


def test_check_lists_the_tools_with_their_input_schemas(tmp_path: Path, db_url: str,
                                                        erp_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    proj = project(tmp_path, erp_url)
    shown = ok_json(baton("--db", db_url, "connections", "check", "erp", "--json", cwd=proj))
    assert shown["ok"] is True and shown["type"] == "mcp"
    tools = {t["name"]: t for t in shown["tools"]}
    assert set(tools) == {"find_account", "credit_limit", "month_end_report", "whoami"}
    schema = tools["find_account"]["input_schema"]
    assert schema["properties"]["domain"]["type"] == "string"
    assert schema["required"] == ["domain"]
    text = ok(baton("--db", db_url, "connections", "check", "erp", cwd=proj)).stdout
    assert "ok: erp (stdio: python " in text
    assert "find_account" in text and "domain: string*" in text

    monkeypatch.setenv("ERP_TOKEN", TOKEN)
    over_http = ok_json(baton("--db", db_url, "connections", "check", "erp_http", "--json",
                              cwd=proj))
    assert {t["name"] for t in over_http["tools"]} == set(tools)
    assert TOKEN not in repr(over_http)


def test_check_says_what_failed_without_the_secret(tmp_path: Path, db_url: str, erp_url: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    proj = project(tmp_path, erp_url)
    monkeypatch.setenv("ERP_TOKEN", "wrong-token-31337")
    line = one_line_error(baton("--db", db_url, "connections", "check", "erp_http", cwd=proj),
                          "erp_http", "HTTP 401", "auth was refused")
    assert "wrong-token-31337" not in line
    monkeypatch.delenv("ERP_TOKEN")
    one_line_error(baton("--db", db_url, "connections", "check", "erp_http", cwd=proj),
                   "secret env:ERP_TOKEN", "not set")
    one_line_error(baton("--db", db_url, "connections", "check", "erp_down", cwd=proj),
                   "erp_down", "cannot talk to")
    one_line_error(baton("--db", db_url, "connections", "check", "nope", cwd=proj),
                   "no connection 'nope'")


def test_list_shows_the_project_and_the_deployed_connections(tmp_path: Path, db_url: str,
                                                             erp_url: str) -> None:
    proj = project(tmp_path, erp_url)
    rows = ok_json(baton("--db", db_url, "connections", "list", "--json", cwd=proj))
    assert [(r["name"], r["deployed"]) for r in rows] == [
        ("erp", None), ("erp_down", None), ("erp_http", None)]
    ok(baton("--db", db_url, "deploy", cwd=proj))
    rows = {r["name"]: r for r in ok_json(baton("--db", db_url, "connections", "list",
                                                "--json", cwd=proj))}
    assert rows["erp"]["deployed"] == 1 and rows["erp"]["target"].startswith("stdio: python ")
    assert rows["erp_http"]["auth"] == "bearer" and rows["erp_http"]["target"] == f"http: {erp_url}"


STEPS_OK = """\
      - {name: a, type: mcp, connection: erp, tool: find_account, arguments: {domain: '=input.domain'}}
"""
STEPS_WRONG = """\
      - {name: a, type: mcp, connection: erp, tool: find_acount, arguments: {domain: '=input.domain'}}
      - {name: b, type: mcp, connection: erp, tool: find_account, arguments: {domian: x}}
"""
STEPS_DOWN = """\
      - {name: a, type: mcp, connection: erp_down, tool: anything, arguments: {x: 1}}
"""


def test_validate_checks_tools_and_arguments_when_the_server_answers(
        tmp_path: Path, db_url: str, erp_url: str) -> None:
    proj = project(tmp_path, erp_url, STEPS_OK)
    p = ok(baton("--db", db_url, "validate", cwd=proj))
    assert "valid" in p.stdout and "warning" not in p.stderr
    (proj / "definitions" / "lookup.yaml").unlink()
    proj = project(tmp_path / "wrong", erp_url, STEPS_WRONG)
    p = baton("--db", db_url, "validate", cwd=proj)
    assert p.returncode == 1, p.stderr
    lines = p.stdout.splitlines()
    assert any(line.endswith("stages[0].steps[0]: tool: the server of connection 'erp' has no "
                             "tool 'find_acount' (did you mean 'find_account'?) (its tools: "
                             "credit_limit, find_account, month_end_report, whoami)") for line in lines), lines
    assert any("lookup.yaml:8 stages[0].steps[1]: arguments.domian: tool 'find_account' has "
               "no argument 'domian' (did you mean 'domain'?)" in line for line in lines), lines
    assert any("stages[0].steps[1]: arguments: tool 'find_account' requires the argument "
               "'domain'" in line for line in lines), lines
    # deploy checks what validate checks: refused, nothing deployed
    p = baton("--db", db_url, "deploy", cwd=proj)
    assert p.returncode == 1 and "has no tool 'find_acount'" in p.stdout + p.stderr, p
    assert "lookup" not in ok(baton("--db", db_url, "definitions", "list", cwd=proj)).stdout
    ok(baton("--db", db_url, "deploy", "--skip-tool-check", cwd=proj))  # when asked not to


STEPS_KEY_ARGUMENT = """\
      - {name: a, type: mcp, connection: erp, tool: find_account, idempotency_argument: domain}
      - {name: b, type: mcp, connection: erp, tool: find_account, idempotency_argument: domian}
"""


def test_validate_counts_the_idempotency_argument_as_an_argument(
        tmp_path: Path, db_url: str, erp_url: str) -> None:
    """An argument Baton fills with the call's key (``idempotency_argument``) meets the
    tool's required argument, and is checked against the tool's arguments like any."""
    proj = project(tmp_path, erp_url, STEPS_KEY_ARGUMENT)
    p = baton("--db", db_url, "validate", cwd=proj)
    assert p.returncode == 1, p.stderr
    lines = p.stdout.splitlines()
    assert not any("steps[0]" in line for line in lines), lines
    assert any("stages[0].steps[1]: arguments.domian: tool 'find_account' has no argument "
               "'domian'" in line for line in lines), lines


def test_validate_says_when_a_server_cannot_be_reached(tmp_path: Path, db_url: str,
                                                      erp_url: str) -> None:
    proj = project(tmp_path, erp_url, STEPS_DOWN)
    p = ok(baton("--db", db_url, "validate", cwd=proj))
    assert "valid" in p.stdout
    assert "lookup.yaml:7 warning: stages[0].steps[0]: tool and arguments " \
        "not checked: the server of connection 'erp_down' could not be reached" in p.stdout
    assert "1 warning" in p.stderr
    found = ok_json(baton("--db", db_url, "validate", "--json", cwd=proj))
    assert [(f["path"], f["level"]) for f in found] == [("stages[0].steps[0]", "warning")]
    p = ok(baton("--db", db_url, "deploy", cwd=proj))  # a server away: deployed, said
    assert "warning (not checked): " in p.stderr and "could not be reached" in p.stderr


def test_check_of_an_http_connection_reports_the_status_of_base_url(
        tmp_path: Path, db_url: str, erp_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    proj = project(tmp_path, erp_url)
    (proj / "definitions" / "api.yaml").write_text(f"""\
kind: connection
name: erp_api
type: http
base_url: {erp_url.rsplit("/", 1)[0]}/nothing-here
auth: {{type: bearer, secret: env:ERP_TOKEN}}
""")
    monkeypatch.setenv("ERP_TOKEN", TOKEN)
    shown = ok_json(baton("--db", db_url, "connections", "check", "erp_api", "--json", cwd=proj))
    assert shown["ok"] is True and shown["status"] == 404  # authenticated, then not found
    monkeypatch.setenv("ERP_TOKEN", "bad-token-909")
    text = ok(baton("--db", db_url, "connections", "check", "erp_api", cwd=proj)).stdout
    assert "HTTP 401" in text and "bad-token-909" not in text
