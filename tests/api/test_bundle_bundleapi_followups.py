"""Bundles over the REST API (``GET /api/bundle``, ``POST /api/bundle/import``), on SQLite
and PostgreSQL, against the CLI's ``baton export`` / ``baton import`` on the same databases:

* the API's export is the CLI's bundle (the same members, byte for byte; the manifest's
  ``exported_at`` aside), a download with its file name;
* an import into a second database, dry run (the report ``baton import --dry-run --json``
  prints for that database, nothing written) then real (the definitions, their activations
  and the people written); a second import changes nothing;
* a refused bundle (a broken text, a refused user, a file that is not a bundle, an MCP
  connection over stdio) is a problem document saying where, and writes nothing;
* roles: an agent gets 403 on both; an operator exports, does not import; a designer
  imports definitions but not people (nor exports them);
* an Idempotency-Key replays the first answer and imports nothing twice.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from baton.clock import VirtualClock
from baton.runtime.engine import Engine
from tests.api.conftest import CASE_TRIAGE, Api, assert_problem
from tests.e2e.test_cli import baton, ok, ok_json

GZIP = {"Content-Type": "application/gzip"}

NIGHTLY = """kind: orchestration
name: nightly_close
trigger: {type: schedule, cron: "0 2 * * *"}
stages:
  - name: work
    steps: [{name: sweep, type: background, flow: cases.close}]
"""

STDIO = """kind: connection
name: erp
type: mcp
transport: stdio
command: python
args: [server.py]
"""


def members(data: bytes) -> dict[str, bytes]:
    """A bundle's members by name, in the order the tar holds them."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def bundle_of(parts: dict[str, Any]) -> bytes:
    """A bundle made of these members (JSON values), as ``baton export`` packs one."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, value in parts.items():
            data = value if isinstance(value, bytes) else orjson.dumps(value)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def export(api: Api, who: str = "root", query: str = "") -> bytes:
    r = api.get(who, f"/api/bundle{query}")
    assert r.status_code == 200, r.text
    return bytes(r.content)


def import_(api: Api, data: bytes, who: str = "root", query: str = "",
            headers: dict[str, str] | None = None) -> Any:
    return api.post(who, f"/api/bundle/import{query}", content=data,
                    headers=GZIP | (headers or {}))


def state(api: Api) -> tuple[Any, ...]:
    """What an import writes: every definition version with its activation, every user
    with their roles, groups and queues."""
    eng = api.engine
    eng.definitions.refresh(now=True)
    return (sorted((r.kind, r.name, r.version, r.active, r.checksum)
                   for r in eng.definitions.list_versions()),
            sorted((u.name, sorted(u.roles), sorted(u.groups), sorted(u.queues), u.active)
                   for u in eng.directory.list_users()))


@pytest.fixture
def source(tmp_path: Path, clock: VirtualClock) -> Any:
    """Another database (SQLite) with more than the API's: case_triage changed (v2, with
    v1 as history), a scheduled orchestration, and a user of its own."""
    engine = Engine(f"sqlite:///{tmp_path / 'source.db'}", clock=clock)
    engine.deploy([CASE_TRIAGE / "definitions"], actor="setup")
    triage = (CASE_TRIAGE / "definitions" / "case_triage.yaml").read_text()
    engine.deploy(texts={
        "case_triage.yaml": triage.replace("name: case_triage\n",
                                           "name: case_triage\nlabel: Case triage (v2)\n", 1),
        "nightly.yaml": NIGHTLY}, actor="setup")
    engine.directory.add_user("zed", roles=["agent"], queues=["tier1"], email="zed@example.com")
    yield engine
    engine.close()


def test_the_api_export_is_the_cli_export(api: Api, tmp_path: Path) -> None:
    triage = (CASE_TRIAGE / "definitions" / "case_triage.yaml").read_text()
    api.engine.deploy(texts={"case_triage.yaml": triage + "\n# v2\n"}, actor="setup")
    for query, flags in (("", []), ("?all_versions=true&include=people",
                                    ["--all-versions", "--include", "people"])):
        r = api.get("root", f"/api/bundle{query}")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/gzip"
        disposition = r.headers["content-disposition"]
        assert disposition.startswith('attachment; filename="baton-bundle-'), disposition
        assert '.tar.gz"' in disposition, disposition
        written = tmp_path / f"cli{len(flags)}.tar.gz"
        ok(baton("--db", api.db_url, "export", *flags, "-o", written, cwd=tmp_path))
        got, want = members(r.content), members(written.read_bytes())
        assert list(got) == list(want), (list(got), list(want))
        for name in want:
            if name == "manifest.json":  # (made at another time: its exported_at differs)
                a, b = orjson.loads(got[name]), orjson.loads(want[name])
                assert a.pop("exported_at") and b.pop("exported_at")
                assert a == b, (a, b)
            else:
                assert got[name] == want[name], name
    manifest = orjson.loads(members(r.content)["manifest.json"])
    assert manifest["all_versions"] is True and manifest["people"] == 6, manifest
    versions = orjson.loads(members(r.content)["definitions.json"])
    assert [d["version"] for d in versions if d["name"] == "case_triage"] == [1, 2]


def test_import_into_a_second_database_dry_run_then_real(
        api: Api, source: Engine, tmp_path: Path) -> None:
    from baton.runtime.bundle import export_bundle

    data = export_bundle(source, include_people=True, all_versions=True)
    before = state(api)

    r = import_(api, data, query="?dry_run=true")
    assert r.status_code == 200, r.text
    dry = r.json()
    assert dry["dry_run"] is True
    assert state(api) == before, "a dry run writes nothing"
    changes = {(c["kind"], c["name"], c["change"]) for c in dry["changes"]}
    assert ("orchestration", "case_triage", "unchanged (v1)") in changes, changes
    assert ("orchestration", "case_triage", "new version 2") in changes, changes
    assert ("orchestration", "case_triage", "activate v2") in changes, changes
    assert ("orchestration", "nightly_close", "new version 1") in changes, changes
    assert any(c[:2] == ("user", "zed") and c[2].startswith("add") for c in changes), changes
    # ... what `baton import --dry-run --json` prints for the same database and bundle
    file = tmp_path / "bundle.tar.gz"
    file.write_bytes(data)
    cli = ok_json(baton("--db", api.db_url, "import", file, "--dry-run", "--json",
                        cwd=tmp_path))
    assert dry == cli

    r = import_(api, data)
    assert r.status_code == 200, r.text
    assert r.json() == {**dry, "dry_run": False}
    defs, users = state(api)
    assert ("orchestration", "case_triage", 2) in {d[:3] for d in defs if d[3]}
    assert ("orchestration", "nightly_close", 1) in {d[:3] for d in defs if d[3]}
    assert ("zed", ["agent"], [], ["tier1"], True) in users
    assert api.engine.definitions.schedules().get("nightly_close"), "the schedule is armed"

    again = import_(api, data)
    assert again.status_code == 200, again.text
    assert not any(c["writes"] for c in again.json()["changes"]), again.json()
    assert state(api) == (defs, users)


def test_a_refused_bundle_writes_nothing_and_says_where(api: Api) -> None:
    good = members(export(api, query="?include=people"))
    before = state(api)

    # a definition's text broken: located in its bundle entry, dry run or not
    defs = orjson.loads(good["definitions.json"])
    for d in defs:
        if d["name"] == "case_triage":
            d["source"] = d["source"].replace("type: interactive", "type: interactiv", 1) \
                + "\n# broken\n"
    broken = bundle_of({**good, "definitions.json": defs})
    for query in ("?dry_run=true", ""):
        body = assert_problem(import_(api, broken, query=query), 422)
        files = {i["file"] for i in body["issues"]}
        assert files == {"definitions/orchestration/case_triage/v1.yaml"}, body
        assert any("interactiv" in i["message"] for i in body["issues"]), body
        assert state(api) == before

    # a user refused: named where the request has them
    people = orjson.loads(good["people.json"])
    people[2]["roles"] = ["wizard"]
    refused = bundle_of({**good, "people.json": people})
    body = assert_problem(import_(api, refused), 422, "body.people.2.roles")
    assert people[2]["name"] in body["detail"], body
    assert state(api) == before

    # a user's field of the wrong type, a user twice, text no database stores: said as the
    # bundle's shape (before, a number for roles, groups or an e-mail was a 500)
    for person, said in (({"roles": 5}, "roles: expected a list of names"),
                         ({"groups": [1]}, "groups: expected a list of names"),
                         ({"email": 7}, "email: expected text"),
                         ({"active": "no"}, "active: expected true or false"),
                         ({"display_name": "A\x00"}, "must not contain NUL characters")):
        shaped = [*people[:2], {**people[2], "roles": ["agent"], **person}]
        body = assert_problem(import_(api, bundle_of({**good, "people.json": shaped})), 422,
                              "body")
        assert said in body["detail"], (said, body)
    twice = [*people, people[0]]
    body = assert_problem(import_(api, bundle_of({**good, "people.json": twice})), 422, "body")
    assert f"user {people[0]['name']!r} is in it twice" in body["detail"], body
    defs = orjson.loads(good["definitions.json"])
    defs[0]["file"] = "case\x00.yaml"
    body = assert_problem(import_(api, bundle_of({**good, "definitions.json": defs})), 422,
                          "body")
    assert "definitions.json.0.file: must not contain NUL" in body["detail"], body
    assert state(api) == before

    # not a bundle at all; an empty body; a bundle of another format
    for data in (b"not a tarball", bundle_of({"manifest.json": {"format": 99}})):
        body = assert_problem(import_(api, data), 422, "body")
        assert "bundle" in body["detail"], body
    assert_problem(import_(api, b""), 422, "body")
    # the bundle's bytes, not JSON
    r = api.post("root", "/api/bundle/import", {"definitions": []})
    assert_problem(r, 415)
    assert r.headers["accept-post"] == "application/gzip"
    assert state(api) == before


def test_an_mcp_connection_over_stdio_is_imported_on_the_server_not_over_the_api(
        api: Api, source: Engine) -> None:
    from baton.runtime.bundle import apply_import, export_bundle, plan_import, read_bundle

    source.deploy(texts={"erp.yaml": STDIO}, actor="cli")
    data = export_bundle(source)
    before = state(api)
    for query in ("?dry_run=true", ""):
        body = assert_problem(import_(api, data, query=query), 403)
        assert "definitions/connection/erp/v1.yaml: connection 'erp' starts a process" \
            in body["detail"], body
        assert "baton import" in body["detail"], body
        assert state(api) == before
    # on the server it imports; then the API may import the same bundle (the text is here)
    apply_import(api.engine, plan_import(api.engine, read_bundle(data)), actor="cli")
    r = import_(api, data)
    assert r.status_code == 200, r.text
    assert not any(c["writes"] for c in r.json()["changes"]), r.json()


def test_who_may_export_and_import(sqlite_api: Api) -> None:
    api = sqlite_api
    data = export(api)
    with_people = export(api, query="?include=people")
    before = state(api)
    # an agent: neither
    assert_problem(api.get("ann", "/api/bundle"), 403)
    assert_problem(import_(api, data, who="ann", query="?dry_run=true"), 403)
    # an operator reads definitions: exports them; does not deploy: does not import
    assert api.get("opal", "/api/bundle").status_code == 200
    body = assert_problem(import_(api, data, who="opal"), 403)
    assert "definitions:write" in body["detail"], body
    assert_problem(api.get("opal", "/api/bundle?include=people"), 403)
    # a designer deploys: imports definitions, but not people (users with roles), nor
    # exports them, dry run or not
    r = import_(api, data, who="dee")
    assert r.status_code == 200, r.text
    for query in ("?dry_run=true", ""):
        body = assert_problem(import_(api, with_people, who="dee", query=query), 403)
        assert "'users'" in body["detail"], body
    assert_problem(api.get("dee", "/api/bundle?include=people"), 403)
    # without a token
    assert_problem(api.client.get("/api/bundle"), 401)
    assert_problem(api.client.post("/api/bundle/import", content=data, headers=GZIP), 401)
    assert state(api) == before


def test_an_idempotency_key_replays_the_first_answer(sqlite_api: Api, source: Engine) -> None:
    from baton.runtime.bundle import export_bundle

    api = sqlite_api
    data = export_bundle(source)
    key = {"Idempotency-Key": "bundle-7f3c"}
    first = import_(api, data, headers=key)
    assert first.status_code == 200, first.text
    after = state(api)
    assert any(c["writes"] for c in first.json()["changes"])
    again = import_(api, data, headers=key)
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json(), "the first answer, not a second import's"
    assert state(api) == after
    # the same key for another request (a dry run of it, or another bundle): 422
    assert_problem(import_(api, data, query="?dry_run=true", headers=key), 422,
                   "header.Idempotency-Key")
    assert_problem(import_(api, export(api, query="?include=people"), headers=key), 422,
                   "header.Idempotency-Key")
    # a refused import does not use its key up
    other = {"Idempotency-Key": "bundle-8a11"}
    assert_problem(import_(api, b"garbage", headers=other), 422)
    r = import_(api, data, headers=other)
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers, r.text


def test_the_operations_are_documented(sqlite_api: Api) -> None:
    doc = sqlite_api.client.get("/openapi.json").json()
    get = doc["paths"]["/api/bundle"]["get"]
    post = doc["paths"]["/api/bundle/import"]["post"]
    assert (get["operationId"], post["operationId"]) == ("exportBundle", "importBundle")
    assert get["tags"] == post["tags"] == ["Definitions"]
    assert "application/gzip" in get["responses"]["200"]["content"]
    assert {p["name"] for p in get["parameters"]} == {"all_versions", "include"}
    body = post["requestBody"]["content"]["application/gzip"]
    assert body["schema"]["format"] == "binary" and body["example"]
    assert {"200", "403", "409", "413", "415", "422"} <= set(post["responses"])
    report = post["responses"]["200"]["content"]["application/json"]["schema"]
    assert report["$ref"].endswith("/ImportReport")
