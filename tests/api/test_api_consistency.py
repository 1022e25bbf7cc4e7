"""The API behaves the same on every operation: unknown query parameters, cursors on every
list, 406/415/405/404 as problem documents, JSON-merge-patch nulls, documented answers."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api, assert_problem

LISTS = ["/api/users", "/api/tokens", "/api/definitions", "/api/records", "/api/runs",
         "/api/work", "/api/fallout", "/api/incidents"]


def test_an_unknown_query_parameter_is_a_422_naming_it(sqlite_api: Api) -> None:
    api = sqlite_api
    rid = api.new_case()["id"]
    for url in [*LISTS, "/api/team", "/api/me", f"/api/records/{rid}",
                f"/api/records/{rid}/timeline"]:
        body = assert_problem(api.get("root", url, params={"stauts": "open"}), 422, "query.stauts")
        assert "unknown query parameter" in body["detail"], (url, body)
    # nothing was filtered by a typo: the known ones still work
    assert api.get("root", "/api/runs", params={"status": "in_progress"}).status_code == 200
    r = api.post("opal", "/api/objects/Case/records", {"data": {"subject": "x"}},
                 params={"dry_run": "1"})
    assert_problem(r, 422, "query.dry_run")
    assert api.get("root", "/api/records", params={"object_type": "Case"}).json()["total"] == 1


def _walk(api: Api, url: str) -> list[Any]:
    seen: list[Any] = []
    r = api.get("root", url, params={"limit": 1}).json()
    while True:
        seen += r["items"]
        if r["next"] is None:
            return seen
        r = api.get("root", url, params={"limit": 1, "after": r["next"]}).json()


def test_every_list_pages_by_next_and_after(sqlite_api: Api) -> None:
    api = sqlite_api
    rid = api.new_case()["id"]
    api.new_case("another case")
    api.post("root", "/api/tokens", {"label": "second"})
    for url in ["/api/users", "/api/tokens", "/api/definitions", "/api/records", "/api/runs",
                f"/api/records/{rid}/timeline"]:
        whole = api.get("root", url, params={"limit": 500}).json()
        assert whole["next"] is None and whole["total"] > 1, url
        assert _walk(api, url) == whole["items"], url
        assert_problem(api.get("root", url, params={"after": "garbage"}), 422, "query.after")
        first = api.get("root", url, params={"limit": 1}).json()
        assert_problem(api.get("root", url, params={"after": first["next"], "offset": 1}), 422)
    users_next = api.get("root", "/api/users", params={"limit": 1}).json()["next"]
    for other in ("/api/tokens", "/api/records", "/api/runs", f"/api/records/{rid}/timeline"):
        body = assert_problem(api.get("root", other, params={"after": users_next}), 422,
                              "query.after")
        assert "it pages 'users'" in body["detail"], body
    other = api.new_case("a third")["id"]  # one record's cursor is not another's
    tl_next = api.get("root", f"/api/records/{rid}/timeline", params={"limit": 1}).json()["next"]
    assert_problem(api.get("root", f"/api/records/{other}/timeline", params={"after": tl_next}),
                   422, "query.after")
    for url in LISTS:  # limit bounds, the same everywhere
        assert_problem(api.get("root", url, params={"limit": 0}), 422, "query.limit")
        assert_problem(api.get("root", url, params={"limit": 100000}), 422, "query.limit")


def test_media_types_405_and_404_are_problem_documents(sqlite_api: Api) -> None:
    api = sqlite_api
    rid = api.new_case()["id"]
    item = api.item_of(rid)["id"]
    posts = [("POST", "/api/objects/Case/records", '{"data": {}}'), ("POST", "/api/runs", "{}"),
             ("PATCH", f"/api/records/{rid}", '{"data": {}}'), ("PATCH", "/api/me", "{}"),
             ("PATCH", "/api/users/ann", "{}"), ("PATCH", "/api/users/ann/routing", "{}"),
             ("POST", "/api/tokens", "{}"), ("POST", f"/api/work/{item}/complete", "{}"),
             ("POST", "/api/definitions/validate", "{}")]
    for method, url, body in posts:
        for headers in ({"Content-Type": "text/csv"}, {}):
            r = api.client.request(method, url, content=body, headers=api.auth("root") | headers)
            p = assert_problem(r, 415)
            assert p["type"].endswith("/unsupported-media-type"), p
            assert "application/json" in (r.headers.get("accept-post", "")
                                          + r.headers.get("accept-patch", ""))
    for url in ("/api/runs", f"/api/records/{rid}", "/api/me", "/api/team"):
        assert_problem(api.get("root", url, headers={"Accept": "text/csv"}), 406)
        assert_problem(api.get("root", url, headers={"Accept": "application/json;q=0"}), 406)
        for ok in ("application/json", "*/*", "text/csv, application/*;q=0.5",
                   "application/problem+json"):
            assert api.get("root", url, headers={"Accept": ok}).status_code == 200, (url, ok)
    r = api.client.put(f"/api/records/{rid}", headers=api.auth("root"))
    p = assert_problem(r, 405)
    assert r.headers["allow"] and "PUT" in p["detail"] and p["type"].endswith("/method-not-allowed")
    p = assert_problem(api.get("root", "/api/nope"), 404)
    assert p["type"].endswith("/not-found") and "/openapi.json" in p["detail"]


def test_patch_nulls_clear_or_are_refused_never_ignored(sqlite_api: Api) -> None:
    api = sqlite_api
    r = api.patch("root", "/api/users/ann", {"email": None})
    assert r.status_code == 200 and r.json()["email"] is None, r.text
    for field in ("roles", "groups", "display_name", "active", "password"):
        p = assert_problem(api.patch("root", "/api/users/ann", {field: None}), 422, field)
        assert "may not be null" in p["detail"], p
    assert api.get("root", "/api/users/ann").json()["roles"] == ["agent"]
    assert api.patch("ann", "/api/me", {"delegate": "bob"}).json()["delegate"] == "bob"
    assert api.patch("ann", "/api/me", {"delegate": None}).json()["delegate"] is None
    for field in ("availability", "skills"):
        assert_problem(api.patch("root", "/api/users/ann/routing", {field: None}), 422, field)
    assert api.patch("root", "/api/users/ann/routing", {"capacity": 3}).json()["capacity"] == 3
    assert api.patch("root", "/api/users/ann/routing", {"capacity": None}).json()["capacity"] is None
    rid = api.new_case(origin="Web")["id"]
    r = api.patch("opal", f"/api/records/{rid}", {"data": {"origin": None}})
    assert r.status_code == 200 and r.json()["data"]["origin"] is None, r.text


def test_the_document_declares_the_answers_given_before_a_route_runs(sqlite_api: Api) -> None:
    doc = sqlite_api.client.get("/openapi.json").json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = op["responses"]
            if op.get("security") == []:
                continue
            body = list((op.get("requestBody") or {}).get("content") or {})
            if body == ["application/json"]:
                assert "415" in codes, (method, path)
            if "401" in codes:
                assert "429" in codes, (method, path)
            answers_json = any("application/json" in (r.get("content") or {})
                               for c, r in codes.items() if c.startswith("2"))
            assert "406" in codes or not answers_json, (method, path)
            for name in ("limit",):
                params = {p["name"] for p in op.get("parameters", [])}
                if name in params and method == "get":
                    assert "after" in params, (method, path)
