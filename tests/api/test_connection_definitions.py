"""``kind: connection`` is deployed, versioned, listed and shown like the other kinds, on
both databases; only secret references are ever stored or shown."""

from __future__ import annotations

from baton.errors import NotFound
from tests.api.conftest import Api

BANK_V1 = """\
kind: connection
name: bank
type: http
base_url: https://bank.example/api
auth: {type: bearer, secret: env:BANK_TOKEN}
"""
BANK_V2 = BANK_V1.replace("https://bank.example/api", "https://bank2.example/api")
ERP = """\
kind: connection
name: erp
type: mcp
transport: stdio
command: python
args: [server.py]
"""


def test_connections_deploy_version_and_show(api: Api) -> None:
    # (a stdio MCP server runs on the workers' hosts: deployed on the server, see
    # test_mcp_stdio_deploy.py; the API deploys the same text again, unchanged)
    api.engine.deploy(texts={"erp.yaml": ERP}, actor="cli")
    r = api.post("dee", "/api/definitions/deploy", {"files": {"c.yaml": BANK_V1 + "---\n" + ERP}})
    assert r.status_code == 200, r.text
    assert {(d["kind"], d["name"], d["version"]) for d in r.json()["deployed"]} == {
        ("connection", "bank", 1), ("connection", "erp", 1)}
    again = api.post("dee", "/api/definitions/deploy", {"files": {"c.yaml": BANK_V1}})
    assert again.json()["deployed"] == [{"kind": "connection", "name": "bank", "version": 1,
                                         "changed": False}]
    v2 = api.post("dee", "/api/definitions/deploy", {"files": {"c.yaml": BANK_V2}})
    assert v2.json()["deployed"][0]["version"] == 2

    listed = api.get("opal", "/api/definitions?kind=connection").json()["items"]
    assert sorted(d["name"] for d in listed) == ["bank", "erp"]
    source = api.get("opal", "/api/definitions/connection/bank/versions/2").json()["source"]
    assert "env:BANK_TOKEN" in source and "bank2.example" in source
    diff = api.get("opal", "/api/definitions/connection/bank/diff?from=1&to=2").json()
    assert "+base_url: https://bank2.example/api" in diff["diff"]

    assert api.engine.definitions.connection("bank").base_url == "https://bank2.example/api"
    assert api.engine.definitions.connection_types() == {"bank": "http", "erp": "mcp"}
    try:
        api.engine.definitions.connection("nope")
    except NotFound as exc:
        assert "deployed connections: bank, erp" in str(exc)
    else:
        raise AssertionError("an unknown connection must be NotFound")


def test_a_literal_secret_is_refused_and_not_echoed(api: Api) -> None:
    text = BANK_V1.replace("env:BANK_TOKEN", "tok-LITERAL-9")
    r = api.post("dee", "/api/definitions/deploy", {"files": {"c.yaml": text}})
    assert r.status_code == 422
    assert "tok-LITERAL-9" not in r.text
    assert "expected a secret reference" in r.text
    v = api.post("dee", "/api/definitions/validate", {"files": {"c.yaml": text}})
    assert v.json()["valid"] is False and "tok-LITERAL-9" not in v.text
    assert api.get("opal", "/api/definitions?kind=connection").json()["items"] == []
