"""Four rough edges of the REST API, smoothed: a definition's file is never shown as an
absolute path of the deploying machine; every POST that creates something honours
``Idempotency-Key`` (a token's create refuses a retry it cannot replay); an unknown query
parameter is refused only after authentication; a record's messages and attachments are
pages like every other list."""

from __future__ import annotations

import dataclasses
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from baton.clock import iso
from baton.errors import IdempotencyKeyTaken
from baton.runtime.idempotency import IdempotencyClaim, fingerprint
from baton.web.api.people import NewUser
from tests.api.conftest import CASE_TRIAGE, Api, assert_problem
from tests.api.test_intake import DEFS as INTAKE_DEFS
from tests.api.test_intake import RFC822, raw_mail


def key(k: str) -> dict[str, str]:
    return {"Idempotency-Key": k}


def kept_row(api: Api, who: str, k: str) -> dict[str, Any] | None:
    with api.engine.store.read() as tx:
        return tx.idempotency_key_txn(who, k)


# ---- 1. a definition's file -------------------------------------------------------------
def _no_absolute_path(value: Any) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _no_absolute_path(v)
    elif isinstance(value, list):
        for v in value:
            _no_absolute_path(v)
    elif isinstance(value, str):
        assert not value.startswith("/") and ":\\" not in value, value


def test_a_definitions_file_is_relative_to_the_project_or_only_its_name(
        sqlite_api: Api, tmp_path: Path) -> None:
    api = sqlite_api
    # The server runs in the project the fixture deployed from (as `baton serve` there).
    api.engine.settings = dataclasses.replace(api.engine.settings, project_dir=str(CASE_TRIAGE))
    elsewhere = tmp_path / "home" / "ann" / "case.yaml"  # outside the project
    elsewhere.parent.mkdir(parents=True)
    text = (CASE_TRIAGE / "definitions" / "case.yaml").read_text()
    elsewhere.write_text(text + "\n# changed on Ann's laptop\n")
    api.engine.deploy([elsewhere], actor="setup")

    detail = api.get("dee", "/api/definitions/object/Case")
    assert detail.status_code == 200, detail.text
    assert [v["file"] for v in detail.json()["history"]] == ["definitions/case.yaml",
                                                             "case.yaml"]
    _no_absolute_path(detail.json())
    for version in (1, 2):
        one = api.get("dee", f"/api/definitions/object/Case/versions/{version}").json()
        assert one["file"] == ["definitions/case.yaml", "case.yaml"][version - 1]
        _no_absolute_path({k: v for k, v in one.items() if k != "source"})
    activated = api.post("dee", "/api/definitions/object/Case/activate", {"version": 1})
    assert activated.status_code == 200, activated.text
    assert activated.json()["file"] == "definitions/case.yaml"
    # A file name sent with the texts over the API is not a path of the server's disk either.
    sent = api.post("dee", "/api/definitions/deploy", {"files": {
        "/srv/secret/team/case.yaml": text + "\n# sent\n"}})
    assert sent.status_code == 200, sent.text
    history = api.get("dee", "/api/definitions/object/Case").json()["history"]
    assert history[-1]["file"] == "case.yaml"
    # Nor in the issues of a deployed definition that a change would break.
    breaking = {"case.yaml": "kind: object\nname: Case\nfields:\n  subject: {type: string}\n"}
    checked = api.post("dee", "/api/definitions/validate", {"files": breaking}).json()
    refused = assert_problem(api.post("dee", "/api/definitions/deploy", {"files": breaking}),
                             422)
    for issues in (checked["issues"], refused["issues"]):
        assert "definitions/case_triage.yaml" in {i["file"] for i in issues}, issues
        _no_absolute_path(issues)


# ---- 2. Idempotency-Key on every create -------------------------------------------------
USER = {"name": "zed", "roles": ["agent"], "queues": ["tier1"], "password": "s3cret-pass"}


def test_a_retried_user_create_replays_and_a_failed_one_frees_its_key(api: Api) -> None:
    # Refused by the directory (the name is taken): the key is not used up.
    assert_problem(api.post("root", "/api/users", {**USER, "name": "ann"}, headers=key("u1")),
                   409)
    first = api.post("root", "/api/users", USER, headers=key("u1"))
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = api.post("root", "/api/users", USER, headers=key("u1"))
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"] == "/api/users/zed"
    # Another password is another request: a 422, as records answer.
    assert_problem(api.post("root", "/api/users", {**USER, "password": "other-pass"},
                            headers=key("u1")), 422, "header.Idempotency-Key")
    # The password is not kept as a plain hash of the body (a slow one, salted per key).
    row = kept_row(api, "root", "u1")
    assert row is not None and row["response"] is not None
    assert row["fingerprint"] != fingerprint("POST", "/api/users", USER)
    assert "s3cret" not in repr(row)
    assert len([u for u in api.engine.directory.list_users() if u.name == "zed"]) == 1


def test_a_retried_token_create_is_refused_not_replayed_nor_done_twice(api: Api) -> None:
    body = {"label": "billing integration"}
    first = api.post("opal", "/api/tokens", body, headers=key("t1"))
    assert first.status_code == 201, first.text
    made = first.json()
    assert made["secret"]
    again = api.post("opal", "/api/tokens", body, headers=key("t1"))
    problem = assert_problem(again, 409)
    assert problem["type"].endswith("idempotency-key-used")
    assert made["id"] in problem["detail"] and "revoke" in problem["detail"]
    assert made["secret"] not in again.text
    assert_problem(api.post("opal", "/api/tokens", {"label": "other"}, headers=key("t1")),
                   422, "header.Idempotency-Key")
    labels = [t.label for t in api.engine.directory.list_tokens("opal")]
    assert labels.count("billing integration") == 1
    row = kept_row(api, "opal", "t1")
    assert row is not None and row["resource_id"] == made["id"] and row["response"] is None
    assert made["secret"] not in repr(row)  # never stored
    # A token made for someone else is refused before any key is used.
    assert_problem(api.post("opal", "/api/tokens", {"user": "ann"}, headers=key("t2")), 403)
    assert kept_row(api, "opal", "t2") is None


def test_a_retried_deploy_replays_the_first_answer(sqlite_api: Api) -> None:
    api = sqlite_api
    text = "kind: object\nname: Gizmo\nfields:\n  label: {type: string}\n"
    files = {"files": {"gizmo.yaml": text}}
    first = api.post("dee", "/api/definitions/deploy", files, headers=key("d1"))
    assert first.status_code == 200, first.text
    assert first.json()["deployed"][0]["changed"] is True
    again = api.post("dee", "/api/definitions/deploy", files, headers=key("d1"))
    assert (again.status_code, again.json()) == (200, first.json())  # not "changed: false"
    assert again.headers["Idempotent-Replayed"] == "true"
    changed = {"files": {"gizmo.yaml": text.replace("label", "title")}}
    assert_problem(api.post("dee", "/api/definitions/deploy", changed, headers=key("d1")),
                   422, "header.Idempotency-Key")
    assert api.get("dee", "/api/definitions/object/Gizmo").json()["latest_version"] == 1


def test_a_key_whose_first_request_was_cut_off_is_refused_not_done_again(
        sqlite_api: Api) -> None:
    """The server died after claiming the key, before the user was made or its answer
    kept: nothing tells which, so the retry is a 409, never a second create."""
    api = sqlite_api
    body = {**USER, "password": None}
    sent = NewUser.model_validate(body).model_dump(mode="json")  # as the operation reads it
    claim = IdempotencyClaim("root", "cut", "POST", "/api/users",
                             fingerprint("POST", "/api/users", sent), "user")
    with api.engine.store.write() as tx:
        claim.claim_txn(tx, api.clock.now())
    problem = assert_problem(api.post("root", "/api/users", body, headers=key("cut")), 409)
    assert problem["type"].endswith("idempotency-key-in-progress")
    assert api.engine.directory.find_user("zed") is None


def test_the_header_says_what_each_create_does_with_a_key(sqlite_api: Api) -> None:
    spec = sqlite_api.client.get("/openapi.json").json()

    def header(path: str) -> str:
        (param,) = [p for p in spec["paths"][path]["post"]["parameters"]
                    if p["name"] == "Idempotency-Key"]
        return str(param["description"])

    for path in ("/api/users", "/api/definitions/deploy", "/api/runs",
                 "/api/objects/{object_type}/records", "/api/intake/{target}"):
        assert "answers what the first request got" in header(path), path
        assert "API tokens" in header(path)  # which operations honour it
    assert "refused with 409" in header("/api/tokens")
    assert "409" in spec["paths"]["/api/tokens"]["post"]["responses"]
    for path, status in (("/api/users", "201"), ("/api/definitions/deploy", "200")):
        assert "Idempotent-Replayed" in spec["paths"][path]["post"]["responses"][status][
            "headers"]


# ---- 2b. work/next honours the key; a failed create's key is deleted ---------------------
NEXT = "/api/work/next"


def claimed(api: Api) -> list[str]:
    return sorted(i["id"] for i in api.engine.list_work(statuses=["claimed"]))


def test_a_retried_next_item_replays_the_same_item_and_claims_nothing_more(api: Api) -> None:
    cases = [api.new_case("First"), api.new_case("Second")]
    items = [api.item_of(c["id"])["id"] for c in cases]
    first = api.post("ann", NEXT, headers=key("n1"))
    assert first.status_code == 200, first.text
    assert "Idempotent-Replayed" not in first.headers
    took = first.json()["id"]
    assert took in items and first.json()["claimed_by"] == "ann"
    again = api.post("ann", NEXT, headers=key("n1"))
    assert (again.status_code, again.json()) == (200, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert claimed(api) == [took]  # the other item is still open
    run = api.engine.get_work_item(took)["run_id"]
    assert len([e for e in api.engine.run_events(run) if e["type"] == "work_item_claimed"]) == 1
    # Other filters with the same key are another request: a 422, nothing taken.
    assert_problem(api.post("ann", NEXT + "?queue=tier1", headers=key("n1")), 422,
                   "header.Idempotency-Key")
    assert claimed(api) == [took]
    row = kept_row(api, "ann", "n1")
    assert row is not None and row["resource_id"] == took and row["response"] is not None
    # A new key is a new request: it takes the other item.
    other = api.post("ann", NEXT, headers=key("n2"))
    assert other.status_code == 200 and other.json()["id"] != took
    assert claimed(api) == sorted(items)


def test_the_next_items_key_commits_with_its_claim_or_not_at_all(api: Api) -> None:
    item = api.item_of(api.new_case()["id"])["id"]
    ann = api.engine.directory.get_user("ann")
    next_claim = IdempotencyClaim("ann", "k", "POST", NEXT, fingerprint("POST", NEXT, {
        "orchestration": None, "queue": None, "sla": None}), "work_item")
    # The key is taken (by a request in progress): the item's claim rolls back with it.
    with api.engine.store.write() as tx:
        dataclasses.replace(next_claim, key="busy").claim_txn(tx, api.clock.now())
    with pytest.raises(IdempotencyKeyTaken):
        api.engine.work.claim_next(ann, claim=dataclasses.replace(next_claim, key="busy"))
    assert api.engine.get_work_item(item)["status"] == "open"
    # The item and the key committed, then the server died before the answer was kept:
    # the retry answers the item it took, taking nothing more.
    assert api.engine.work.claim_next(ann, claim=next_claim)["id"] == item
    api.new_case("Another")
    retry = api.post("ann", NEXT, headers=key("k"))
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
    assert (retry.json()["id"], retry.json()["claimed_by"]) == (item, "ann")
    assert claimed(api) == [item]


def test_an_empty_next_item_does_not_use_up_its_key(api: Api) -> None:
    empty = api.post("ann", NEXT, headers=key("e1"))
    assert (empty.status_code, empty.content) == (204, b"")
    assert kept_row(api, "ann", "e1") is None
    case = api.new_case()
    r = api.post("ann", NEXT, headers=key("e1"))
    assert r.status_code == 200 and "Idempotent-Replayed" not in r.headers
    assert r.json()["id"] == api.item_of(case["id"])["id"]
    row = kept_row(api, "ann", "e1")
    assert row is not None and row["resource_id"] == r.json()["id"]


def test_a_failed_creates_key_is_deleted_and_its_retry_runs(api: Api) -> None:
    assert_problem(api.post("root", "/api/users", {**USER, "name": "ann"}, headers=key("f1")),
                   409)
    assert kept_row(api, "root", "f1") is None  # gone, not kept as an expired row
    retry = api.post("root", "/api/users", USER, headers=key("f1"))
    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry.headers
    assert kept_row(api, "root", "f1") is not None
    # The release is a compare-and-set: only the claim of the request that failed goes.
    claim = IdempotencyClaim("root", "cas", "POST", "/api/users", "f" * 64, "user")
    at = api.clock.now()
    with api.engine.store.write() as tx:
        claim.claim_txn(tx, at)
    for other in ({"fingerprint": "e" * 64, "claimed_at": iso(at)},  # another request's
                  {"fingerprint": "f" * 64, "claimed_at": iso(at - timedelta(days=2))}):
        with api.engine.store.write() as tx:  # (an earlier claim of the key, long expired)
            assert tx.release_idempotency_key_txn("root", "cas", **other) is False
    with api.engine.store.write() as tx:
        claim.bind_txn(tx, "usr_made")  # it got through: its key stays
        assert tx.release_idempotency_key_txn("root", "cas", fingerprint="f" * 64,
                                              claimed_at=iso(at)) is False
    assert kept_row(api, "root", "cas") is not None


# ---- 3. authentication before query validation ------------------------------------------
def test_an_unknown_query_parameter_is_a_401_before_it_is_a_422(sqlite_api: Api) -> None:
    api = sqlite_api
    for method, url in (("GET", "/api/records?stauts=open"), ("GET", "/api/me?x=1"),
                        ("POST", "/api/tokens?user=ann")):
        anonymous = api.client.request(method, url, json={} if method == "POST" else None)
        assert_problem(anonymous, 401)
        assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = api.client.request(method, url, headers={"Authorization": "Bearer baton_nope"})
        assert_problem(wrong, 401)
        known = api.client.request(method, url, headers=api.auth("opal"),
                                   json={} if method == "POST" else None)
        assert_problem(known, 422)
        assert known.json()["errors"][0]["field"].startswith("query.")
    # The same order for the other checks before the route: a body that is not JSON.
    assert_problem(api.client.post("/api/tokens", content=b"label=x",
                                   headers={"Content-Type": "text/plain"}), 401)
    assert_problem(api.post("opal", "/api/tokens", content=b"label=x",
                            headers={"Content-Type": "text/plain"}), 415)


# ---- 4. a record's messages and attachments are pages -----------------------------------
def test_a_records_messages_and_attachments_are_cursor_pages(sqlite_api: Api,
                                                             tmp_path: Path) -> None:
    api = sqlite_api
    path = tmp_path / "intake.yaml"
    path.write_text(textwrap.dedent(INTAKE_DEFS))
    api.engine.deploy([path], actor="setup")
    raw = raw_mail("p1@dealer-one.example", files=(
        ("a.txt", "text/plain", b"first"), ("b.txt", "text/plain", b"second")))
    rid = api.post("opal", "/api/intake/dealers", content=raw, headers=RFC822).json()[
        "record_id"]
    reply = {"sender": "ana@dealer-one.example", "body": "More.",
             "in_reply_to": "p1@dealer-one.example"}
    assert api.post("opal", "/api/intake/dealers", reply).json()["outcome"] == "threaded"

    for what, expected in (("messages", 2), ("attachments", 2)):
        url = f"/api/records/{rid}/{what}"
        whole = api.get("opal", url).json()
        assert set(whole) >= {"items", "total", "limit", "offset", "next_offset", "next"}
        assert (whole["total"], len(whole["items"]), whole["next"]) == (expected, expected, None)
        first = api.get("opal", url, params={"limit": 1}).json()
        assert first["total"] == expected and first["next"]
        second = api.get("opal", url, params={"limit": 1, "after": first["next"]}).json()
        assert second["next"] is None
        assert first["items"] + second["items"] == whole["items"]
    # A cursor of the other list is not one of this list.
    cursor = api.get("opal", f"/api/records/{rid}/messages", params={"limit": 1}).json()["next"]
    assert_problem(api.get("opal", f"/api/records/{rid}/attachments",
                           params={"after": cursor}), 422, "query.after")
    spec = api.client.get("/openapi.json").json()
    for what in ("messages", "attachments"):
        op = spec["paths"][f"/api/records/{{record_id}}/{what}"]["get"]
        assert "Breaking change" in op["description"]
        ok = op["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"].startswith("#/components/schemas/Page_")
