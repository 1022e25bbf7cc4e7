"""Regression tests for what the schemathesis run over a real ``baton serve`` found: answers
that contradicted the OpenAPI document (schema-valid input refused, schema-invalid input
accepted) and one lax parse. Each failed before its fix."""

from __future__ import annotations

from typing import Any

import pytest

from baton.auth.directory import EMAIL_RE, NAME_RE
from tests.api.conftest import Api, assert_problem


def _op(api: Api, method: str, path: str) -> dict[str, Any]:
    return api.client.get("/openapi.json").json()["paths"][path][method]  # type: ignore[no-any-return]


def test_a_user_name_with_a_trailing_newline_is_refused(sqlite_api: Api) -> None:
    """``NAME_RE.match`` let ``$`` match before a final newline: "zed\\n" was a new user."""
    r = sqlite_api.post("root", "/api/users", {"name": "zed\n", "roles": ["agent"]})
    assert_problem(r, 422, "name")
    assert NAME_RE.fullmatch("zed") and not NAME_RE.fullmatch("zed\n")
    r = sqlite_api.post("root", "/api/users", {"name": "zed", "roles": ["agent"],
                                               "queues": ["tier1\n"]})
    assert_problem(r, 422, "queues.0")


def test_user_names_and_emails_are_declared_as_the_server_checks_them(sqlite_api: Api) -> None:
    """The schema said any string; the server refused a non-address with 422."""
    schema = sqlite_api.client.get("/openapi.json").json()["components"]["schemas"]["NewUser"]
    props = schema["properties"]
    assert "pattern" in props["name"] and "pattern" in props["groups"]["items"]
    email = next(b for b in props["email"]["anyOf"] if b.get("type") == "string")
    assert email["pattern"].startswith("^$|")
    for bad in ("0000", "a b@c", "a\x85@b", "a@b@c"):
        assert not EMAIL_RE.fullmatch(bad)
        r = sqlite_api.post("root", "/api/users", {"name": "eve", "roles": ["agent"],
                                                   "email": bad})
        assert_problem(r, 422, "email")
    r = sqlite_api.post("root", "/api/users", {"name": "eve", "roles": ["agent"],
                                               "email": "eve@example.com"})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("value", [0, 1, "false", "no"])
def test_active_takes_a_json_boolean_only(sqlite_api: Api, value: Any) -> None:
    """``{"active": 0}`` deactivated the user (pydantic's lax bool), though the schema says
    boolean."""
    assert_problem(sqlite_api.patch("root", "/api/users/bob", {"active": value}), 422, "active")
    assert sqlite_api.get("root", "/api/users/bob").json()["active"] is True


def test_if_match_is_declared_and_a_disagreeing_version_is_a_conflict(sqlite_api: Api) -> None:
    """If-Match was declared as any string (and ``null``); If-Match and version that
    disagree are well formed, so the answer is the stale-version 409, not a 422."""
    record = sqlite_api.new_case("Invoice 9")
    url = f"/api/records/{record['id']}"
    params = {p["name"]: p for p in _op(sqlite_api, "patch", "/api/records/{record_id}")
              ["parameters"]}
    assert params["If-Match"]["schema"]["pattern"] and "anyOf" not in params["If-Match"]["schema"]
    version = sqlite_api.get("opal", url).json()["version"]
    r = sqlite_api.patch("opal", url, {"data": {}, "version": version},
                         headers={"If-Match": f'"{version + 1}"'})
    body = assert_problem(r, 409)
    assert "If-Match says version" in body["detail"]
    assert_problem(sqlite_api.patch("opal", url, {"data": {}}, headers={"If-Match": "null"}),
                   422, "header.If-Match")


def test_optional_parameters_are_not_nullable_in_the_document(sqlite_api: Api) -> None:
    """A query or header parameter cannot carry null; the document said it could (a client
    sent the text ``null`` and got a 422)."""
    doc = sqlite_api.client.get("/openapi.json").json()
    nullable = [(path, p["name"]) for path, ops in doc["paths"].items() for op in ops.values()
                for p in op.get("parameters", [])
                if {"type": "null"} in p["schema"].get("anyOf", [])]
    assert not nullable, nullable
    runs = {p["name"]: p for p in doc["paths"]["/api/runs"]["get"]["parameters"]}
    assert runs["version"]["schema"]["type"] == "integer" and not runs["version"]["required"]


def test_every_operation_with_a_body_documents_413(sqlite_api: Api) -> None:
    doc = sqlite_api.client.get("/openapi.json").json()
    missing = [f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m, op in ops.items()
               if "requestBody" in op and "413" not in op["responses"]]
    assert not missing, missing
    big = {"data": {"subject": "x" * (sqlite_api.engine.settings.max_body_bytes + 1)}}
    assert_problem(sqlite_api.post("opal", "/api/objects/Case/records", big), 413)


def test_starting_a_record_triggered_orchestration_by_hand_is_a_conflict(sqlite_api: Api) -> None:
    """The request is schema-valid; the orchestration's trigger refuses it: 409 (was 400)."""
    body = assert_problem(sqlite_api.post("opal", "/api/runs", {"orchestration": "case_triage"}),
                          409)
    assert "record trigger, not by hand" in body["detail"]


@pytest.mark.parametrize("reason", [" ", "\x1d", "\u3000\t"])
def test_a_blank_reason_is_refused_as_the_schema_says(sqlite_api: Api, reason: str) -> None:
    """A reason of separators only passed the schema (min length 1) and was refused by the
    engine; the schema now says "not blank" in a pattern every regex engine reads alike."""
    r = sqlite_api.post("opal", "/api/runs/run_nope/cancel", {"reason": reason})
    assert_problem(r, 422, "reason")
    schema = sqlite_api.client.get("/openapi.json").json()["components"]["schemas"]["Reason"]
    assert schema["properties"]["reason"]["pattern"]


def test_links_name_only_operations_and_statuses_that_exist() -> None:
    """``add_links`` refuses a link whose ends are not in the document."""
    from baton.web.openapi import LINKS, add_links

    doc = {"paths": {"/a": {"get": {"operationId": "a", "responses": {"200": {}}}}}}
    with pytest.raises(ValueError, match="no operation 'POST /a'"):
        add_links(doc, [type(LINKS[0])("X", "GET /a", "200", "POST /a")])
    with pytest.raises(ValueError, match="declares no 201"):
        add_links(doc, [type(LINKS[0])("X", "GET /a", "201", "GET /a")])


def test_the_document_links_records_runs_and_work_items(sqlite_api: Api) -> None:
    doc = sqlite_api.client.get("/openapi.json").json()
    created = doc["paths"]["/api/objects/{object_type}/records"]["post"]["responses"]["201"]
    link = created["links"]["ReadRecord"]
    assert link["parameters"] == {"path.record_id": "$response.body#/id"}
    assert doc["paths"]["/api/records/{record_id}"]["get"]["operationId"] == link["operationId"]
    listed = doc["paths"]["/api/work"]["get"]["responses"]["200"]["links"]
    assert {"ClaimWorkItem", "CompleteWorkItem"} <= set(listed)
    users = doc["paths"]["/api/users"]["get"]["responses"]["200"]["links"]
    assert set(users) == {"ReadUser"}  # never from a list into a change of a user


@pytest.mark.parametrize("name", ["{", "a}b{status}", "{0}"])
def test_a_signal_name_with_braces_is_a_conflict_not_a_500(sqlite_api: Api, name: str) -> None:
    """The refusal text was a format string with the client's signal name inside: a name
    holding a brace raised ValueError in ``str.format`` (500, found on PostgreSQL)."""
    from tests.api.conftest import FLAKY

    sqlite_api.post("root", "/api/definitions/deploy", {"files": {"flaky.yaml": FLAKY}})
    run = sqlite_api.post("opal", "/api/runs", {"orchestration": "flaky_job",
                                                "input": {"n": 1}}).json()
    body = assert_problem(sqlite_api.post("opal", f"/api/runs/{run['id']}/signal",
                                          {"name": name}), 409)
    assert f"waiting for signal {name!r}" in body["detail"]
