"""The API's contract: problem documents, pagination, optimistic concurrency, the claim
race, definitions (validate, deploy, versions, diff, activate/deactivate), form checks."""

from __future__ import annotations

import threading
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import Api, assert_problem

HELLO = """kind: orchestration
name: hello
trigger:
  type: autolaunched
  input: {who: {type: string, required: true}}
stages:
  - name: greet
    steps:
      - {name: say, type: background, flow: api_tests.ok}
"""
HELLO_V2 = HELLO.replace("name: say,", "name: say_hello,")
TYPO = """kind: orchestration
name: typo
trigger: {type: autolaunched}
stages:
  - name: one
    steps:
      - {name: classify, type: background, flow: api_tests.ok}
      - {name: triage, type: background, flow: api_tests.nope, after: [clasify]}
"""


def test_problem_documents_name_the_offending_fields(sqlite_api: Api) -> None:
    api = sqlite_api
    body = assert_problem(api.post("opal", "/api/objects/Case/records",
                                   {"data": {"origin": "Fax", "level": "high", "colour": "red"}}),
                          422, "data.subject", "data.origin", "data.level", "data.colour")
    assert body["type"].endswith("/validation") and body["instance"] == "/api/objects/Case/records"
    assert_problem(api.get("opal", "/api/records", params={"limit": 0}), 422, "query.limit")
    assert_problem(api.get("opal", "/api/records", params={"limit": 501}), 422, "query.limit")
    assert_problem(api.get("opal", "/api/records", params={"offset": -1}), 422, "query.offset")
    assert_problem(api.get("opal", "/api/runs", params={"version": 2**40}), 422, "query.version")
    assert_problem(api.get("opal", "/api/runs", params={"status": "sleeping"}), 422,
                   "query.status")
    assert_problem(api.post("opal", "/api/objects/Account/records", [1, 2]), 422, "body")
    assert_problem(api.post("opal", "/api/objects/Account/records", {"data": [1]}), 422, "data")
    assert_problem(api.post("opal", "/api/objects/Account/records", {"data": {"name": "a\x00b"}}), 422,
                   "data.name")
    assert_problem(api.get("dee", "/api/definitions/widget/x"), 422, "path.kind")
    assert_problem(api.post("opal", "/api/objects/Spaceship/records", {"data": {}}), 404)
    for content, kind, said in ((b"{not json", "application/json", "not valid JSON at character 1"),
                                (b'{"data": {', "application/json", "at character 10")):
        bad = assert_problem(api.client.post("/api/objects/Account/records", content=content,
                                             headers=api.auth("opal") | {"content-type": kind}),
                             422, "body")  # the field is the body, not a character offset
        assert said in bad["detail"], bad
    # a body that is not JSON at all: 415, saying what was sent
    bad = assert_problem(api.client.post("/api/objects/Account/records", content=b'{"data": {}}',
                                         headers=api.auth("opal") | {"content-type": "text/plain"}),
                         415)
    assert "got Content-Type text/plain" in bad["detail"], bad


def test_pagination(sqlite_api: Api) -> None:
    api = sqlite_api
    created = [api.post("opal", "/api/objects/Account/records", {"data": {"name": f"A{i}"}}).json()["id"]
               for i in range(7)]
    first = api.get("opal", "/api/records", params={"limit": 3}).json()
    assert (first["total"], first["limit"], first["offset"], first["next_offset"]) == (7, 3, 0, 3)
    seen = [r["id"] for r in first["items"]]
    offset = first["next_offset"]
    while offset is not None:
        p = api.get("opal", "/api/records", params={"limit": 3, "offset": offset}).json()
        seen += [r["id"] for r in p["items"]]
        offset = p["next_offset"]
    assert sorted(seen) == sorted(created) and len(seen) == 7
    last = api.get("opal", "/api/records", params={"limit": 3, "offset": 6}).json()
    assert len(last["items"]) == 1 and last["next_offset"] is None
    past = api.get("opal", "/api/records", params={"offset": 100}).json()
    assert past["items"] == [] and past["total"] == 7 and past["next_offset"] is None


def test_optimistic_concurrency(api: Api) -> None:
    rec = api.post("opal", "/api/objects/Account/records", {"data": {"name": "Old"}}).json()
    url = f"/api/records/{rec['id']}"
    assert api.patch("opal", url, {"data": {"name": "Mine"}, "version": 1}).status_code == 200
    # a second writer who read version 1 too is refused, with what to do
    body = assert_problem(api.patch("opal", url, {"data": {"name": "Theirs"}},
                                    headers={"If-Match": '"1"'}), 409)
    assert "read it again and retry" in body["detail"]
    assert_problem(api.patch("opal", url, {"data": {"name": "Theirs"}, "version": 1}), 409)
    assert api.engine.get_record(rec["id"])["name"] == "Mine"  # nothing written
    assert_problem(api.patch("opal", url, {"data": {}}, headers={"If-Match": "soon"}), 422,
                   "header.If-Match")
    assert_problem(api.delete("opal", url, headers={"If-Match": '"1"'}), 409)
    r = api.patch("opal", url, {"data": {"name": "Theirs"}}, headers={"If-Match": 'W/"2"'})
    assert r.status_code == 200 and r.json()["version"] == 3


def test_claim_race_one_wins_the_other_gets_409(api: Api) -> None:
    rec = api.new_case("Invoice race")
    item = api.item_of(rec["id"])
    api.engine.directory.update_user("cyd", queues=["tier1"])
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def claim(who: str) -> None:
        try:
            with TestClient(api.app) as client:
                barrier.wait()
                results[who] = client.post(f"/api/work/{item['id']}/claim",
                                           headers=api.auth(who))
        except BaseException as exc:  # (a thread's exception would be lost: show it)
            results[who] = exc
            raise

    threads = [threading.Thread(target=claim, args=(w,)) for w in ("ann", "cyd")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not [r for r in results.values() if isinstance(r, BaseException)], results
    codes = sorted(r.status_code for r in results.values())
    assert codes == [200, 409], {w: r.text for w, r in results.items()}
    winner = next(w for w, r in results.items() if r.status_code == 200)
    loser = next(r for r in results.values() if r.status_code == 409)
    assert f"already claimed by {winner}" in loser.json()["detail"]
    assert api.engine.get_work_item(item["id"])["claimed_by"] == winner


def test_work_list_filters_order_and_form_validation(api: Api) -> None:
    recs = [api.new_case(s) for s in ("Invoice a", "Inverter b", "Invoice cc")]
    items = [api.item_of(r["id"]) for r in recs]
    api.engine.reassign(items[2]["id"], "queue:tier2", actor="test")
    listed = api.get("opal", "/api/work", params={"queue": "tier1"}).json()
    assert {i["id"] for i in listed["items"]} == {items[0]["id"], items[1]["id"]}
    by_record = api.get("opal", "/api/work", params={"record_id": recs[2]["id"]}).json()
    assert [i["id"] for i in by_record["items"]] == [items[2]["id"]]
    for order in ("due", "priority", "created"):
        r = api.get("opal", "/api/work", params={"order": order})
        assert r.status_code == 200 and r.json()["total"] == 3
    assert_problem(api.get("opal", "/api/work", params={"order": "random"}), 422, "query.order")
    mine = api.get("opal", "/api/work", params={"mine": "true"}).json()
    assert mine["total"] == 0  # the operator is in no queue

    body = assert_problem(api.post("ann", f"/api/work/{items[0]['id']}/complete",
                                   {"data": {"resolution": "maybe", "mood": "happy"}}),
                          422, "data.resolution", "data.mood")
    assert "close" in body["detail"]
    assert_problem(api.post("ann", f"/api/work/{items[0]['id']}/complete", {"data": {}}),
                   422, "data.resolution")
    assert api.engine.get_work_item(items[0]["id"])["status"] == "open"  # unchanged
    r = api.post("ann", f"/api/work/{items[0]['id']}/complete",
                 {"data": {"resolution": "escalate"}})
    assert r.status_code == 200 and r.json()["run"]["current_stage"] == "escalate"
    done = api.get("ann", "/api/work", params={"status": ["completed"]}).json()
    assert [i["id"] for i in done["items"]] == [items[0]["id"]]
    assert_problem(api.post("ann", f"/api/work/{items[0]['id']}/claim"), 409)


def test_definitions_validate_and_deploy_report_every_issue_with_lines(api: Api) -> None:
    r = api.post("dee", "/api/definitions/validate", {"files": {"typo.yaml": TYPO}})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["valid"] is False
    issues = {(i["file"], i["line"], i["path"]): i["message"] for i in result["issues"]}
    assert ("typo.yaml", 8, "stages[0].steps[1].after") in issues
    assert "did you mean 'classify'" in issues[("typo.yaml", 8, "stages[0].steps[1].after")]
    assert any("api_tests.nope" in m for m in issues.values())

    body = assert_problem(api.post("dee", "/api/definitions/deploy",
                                   {"files": {"typo.yaml": TYPO, "hello.yaml": HELLO}}), 422)
    assert body["type"].endswith("/definition")
    assert {(i["file"], i["line"]) for i in body["issues"]} >= {("typo.yaml", 8)}
    names = [d["name"] for d in api.get("dee", "/api/definitions").json()["items"]]
    assert "hello" not in names and "typo" not in names  # nothing deployed

    body = assert_problem(api.post("dee", "/api/definitions/deploy",
                                   {"files": {"bad.yaml": "kind: object\nname: X\n\x07"}}), 422)
    assert body["issues"][0]["file"] == "bad.yaml" and body["issues"][0]["line"] == 3
    assert_problem(api.post("dee", "/api/definitions/deploy", {"files": {}}), 422, "files")

    ok = api.post("dee", "/api/definitions/validate", {"files": {"hello.yaml": HELLO}}).json()
    assert ok == {"valid": True, "issues": [], "warnings": []}


def test_definition_versions_diff_activate_deactivate(api: Api) -> None:
    for text, version in [(HELLO, 1), (HELLO, 1), (HELLO_V2, 2)]:
        r = api.post("dee", "/api/definitions/deploy", {"files": {"hello.yaml": text}})
        assert r.status_code == 200, r.text
        assert r.json()["deployed"][0]["version"] == version
    detail = api.get("dee", "/api/definitions/orchestration/hello").json()
    assert (detail["active_version"], detail["latest_version"], detail["versions"]) == (2, 2, 2)
    assert [v["deployed_by"] for v in detail["history"]] == ["dee", "dee"]
    listed = api.get("opal", "/api/definitions", params={"kind": "orchestration"}).json()
    assert {d["name"] for d in listed["items"]} == {"case_triage", "hello"}

    v1 = api.get("dee", "/api/definitions/orchestration/hello/versions/1").json()
    assert v1["source"] == HELLO and v1["active"] is False
    assert_problem(api.get("dee", "/api/definitions/orchestration/hello/versions/9"), 404)

    diff = api.get("dee", "/api/definitions/orchestration/hello/diff",
                   params={"from": 1, "to": 2}).json()["diff"]
    assert "--- hello v1" in diff and "+++ hello v2" in diff
    assert "-      - {name: say, type" in diff and "+      - {name: say_hello, type" in diff
    assert_problem(api.get("dee", "/api/definitions/orchestration/hello/diff",
                           params={"from": 1}), 422, "query.to")

    r = api.post("dee", "/api/definitions/orchestration/hello/activate", {"version": 1})
    assert r.status_code == 200 and r.json()["active"] is True and r.json()["version"] == 1
    run = api.post("opal", "/api/runs", {"orchestration": "hello", "input": {"who": "x"}}).json()
    assert run["version"] == 1 and [s["name"] for s in run["steps"]] == ["say"]

    r = api.post("dee", "/api/definitions/orchestration/hello/deactivate")
    assert r.status_code == 200 and r.json()["active_version"] is None
    body = assert_problem(api.post("opal", "/api/runs",
                                   {"orchestration": "hello", "input": {"who": "x"}}), 409)
    assert "deactivated" in body["detail"] and "activate" in body["detail"]
    api.work()  # the run started before goes on
    assert api.get("opal", f"/api/runs/{run['id']}").json()["status"] == "completed"

    assert_problem(api.post("dee", "/api/definitions/object/Case/deactivate"), 409)
    assert_problem(api.post("dee", "/api/definitions/orchestration/nope/deactivate"), 404)
    assert_problem(api.post("opal", "/api/definitions/orchestration/hello/activate",
                            {"version": 2}), 403)
    api.post("dee", "/api/definitions/orchestration/hello/activate", {"version": 2})
    r = api.post("opal", "/api/runs", {"orchestration": "hello", "input": {}})
    assert_problem(r, 422, "input.who")
    r = api.post("opal", "/api/runs", {"orchestration": "hello", "input": {"who": "y"}})
    assert r.status_code == 201 and r.json()["version"] == 2
    body = assert_problem(api.post("opal", "/api/runs", {"orchestration": "case_triage"}), 409)
    assert "record trigger, not by hand" in body["detail"]  # schema-valid: 409, was 400
    assert_problem(api.post("opal", "/api/runs", {"orchestration": "ghost"}), 404)


def test_validate_refuses_an_alias_bomb_with_a_located_issue(api: Api) -> None:
    """Hardening #1: validating is harmless whatever the text (it was a 500 or a stall)."""
    lines = ["kind: object", "name: Bomb", 'a0: &a0 ["lol"]']
    lines += [f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 10)]
    deep = "kind: object\nname: Deep\nx: " + "[" * 10_000 + "]" * 10_000 + "\n"
    r = api.post("dee", "/api/definitions/validate",
                 {"files": {"bomb.yaml": "\n".join(lines) + "\n", "deep.yaml": deep}})
    assert r.status_code == 200, r.text
    issues = {i["file"]: i for i in r.json()["issues"]}
    assert issues["bomb.yaml"]["line"] == 1
    assert "aliases are expanded" in issues["bomb.yaml"]["message"]
    assert issues["deep.yaml"]["line"] == 3
    assert "nested too deeply" in issues["deep.yaml"]["message"]
    many = {f"f{n}.yaml": "#" * 260_000 for n in range(4)}  # under the 1 MiB body limit
    assert_problem(api.post("dee", "/api/definitions/validate", {"files": many}), 422, "files")


def test_validate_and_the_definition_page_show_warnings(api: Api) -> None:
    guarded = HELLO.replace("name: hello", "name: guarded").replace(
        "flow: api_tests.ok}", "flow: api_tests.ok, when: '=input.who == \"ann\"'}")
    r = api.post("dee", "/api/definitions/validate", {"files": {"guarded.yaml": guarded}})
    assert r.status_code == 200, r.text
    result = r.json()
    assert result["valid"] is True and result["issues"] == []
    (warning,) = result["warnings"]
    assert (warning["file"], warning["line"], warning["path"]) == (
        "guarded.yaml", 9, "stages[0].steps[0].when")
    assert "stage never completes" in warning["message"]
    assert api.post("dee", "/api/definitions/deploy",
                    {"files": {"guarded.yaml": guarded}}).status_code == 200
    page = api.get("dee", "/definitions/orchestration/guarded")
    assert page.status_code == 200 and "1 warning" in page.text and "stage never completes" in page.text


def test_operations_without_a_body_refuse_one(sqlite_api: Api) -> None:
    """A body sent to an operation that takes none is a 422 naming it (the filters of
    /api/work/next are query parameters: in a body they would be ignored and an item of
    any queue taken); an empty body, {} or null is what clients send and is fine."""
    api = sqlite_api
    item = api.item_of(api.new_case()["id"])
    before = api.engine.get_work_item(item["id"])
    for url, body in (("/api/work/next", b'{"queue": "no-such-queue"}'),
                      (f"/api/work/{item['id']}/claim", b'{"user": "bob"}'),
                      (f"/api/work/{item['id']}/release", b"{not json")):
        bad = assert_problem(api.client.post(url, content=body, headers=api.auth("ann") | {
            "content-type": "application/json"}), 422, "body")
        assert "takes no body" in bad["detail"], bad
    assert "query parameters: " in assert_problem(api.client.post(
        "/api/work/next", content=b'{"queue": "x"}',
        headers=api.auth("ann") | {"content-type": "application/json"}), 422)["detail"]
    assert api.engine.get_work_item(item["id"]) == before  # nothing claimed
    for body in (b"", b"{}", b" { } ", b"null"):
        r = api.client.post(f"/api/work/{item['id']}/claim", content=body,
                            headers=api.auth("ann") | {"content-type": "application/json"})
        assert r.status_code == 200, (body, r.text)
        assert api.client.post(f"/api/work/{item['id']}/release",
                               headers=api.auth("ann")).status_code == 200
