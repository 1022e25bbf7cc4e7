"""An MCP connection over stdio starts a process on the workers' hosts: through the API (a
designer's deploy over HTTP) one that is new, or whose command, args or env change, is
refused (403) and nothing is deployed; ``baton deploy`` on the server (the engine's own
deploy) deploys it, after which the API may deploy the same text (unchanged) beside other
definitions, and an MCP server reached over http may be deployed through the API."""

from __future__ import annotations

from tests.api.conftest import Api

STDIO = """\
kind: connection
name: erp
type: mcp
transport: stdio
command: python
args: [server.py]
env: {MODE: test}
"""

HTTP = """\
kind: connection
name: erp_http
type: mcp
transport: http
url: http://127.0.0.1:9/mcp
"""


def _deploy(api: Api, who: str, files: dict[str, str]) -> tuple[int, dict]:  # type: ignore[type-arg]
    r = api.post(who, "/api/definitions/deploy", {"files": files})
    return r.status_code, r.json()


def _connections(api: Api) -> set[str]:
    return set(api.engine.definitions.connection_types())


def test_a_stdio_mcp_connection_is_deployed_on_the_server_not_over_the_api(api: Api) -> None:
    for who in ("root", "dee"):  # an admin too: what runs on the hosts is the host's choice
        status, body = _deploy(api, who, {"erp.yaml": STDIO, "erp_http.yaml": HTTP})
        assert status == 403, body
        assert "connection 'erp' starts a process on the workers' hosts" in body["detail"], body
        assert "baton deploy" in body["detail"], body
        assert _connections(api) == set(), "nothing of the refused set is deployed"

    status, body = _deploy(api, "dee", {"erp_http.yaml": HTTP})
    assert status == 200, body
    api.engine.deploy(texts={"erp.yaml": STDIO}, actor="cli")  # on the server
    assert _connections(api) == {"erp", "erp_http"}

    status, body = _deploy(api, "dee", {"erp.yaml": STDIO})  # unchanged: fine
    assert status == 200 and body["deployed"][0]["changed"] is False, body
    changed = STDIO.replace("args: [server.py]", "args: [-c, 'import os; print(os.environ)']")
    status, body = _deploy(api, "dee", {"erp.yaml": changed})
    assert status == 403, body
    env = STDIO.replace("env: {MODE: test}", "env: {MODE: prod}")
    assert _deploy(api, "dee", {"erp.yaml": env})[0] == 403
    assert api.engine.definitions.connection("erp").args == ("server.py",)
