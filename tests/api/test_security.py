"""Who may do what: the role matrix, agent isolation, 401s, CSRF for cookie sessions."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api, assert_problem

ACCOUNT = {"data": {"name": "Acme Solar"}}

# One representative operation per area: (method, url, body).
OPS: dict[str, tuple[str, str, Any]] = {
    "definitions:read": ("GET", "/api/definitions", None),
    "definitions:write": ("POST", "/api/definitions/validate",
                          {"files": {"a.yaml": "kind: object\nname: A\nfields: {}\n"}}),
    "records:read": ("GET", "/api/records", None),
    "records:write": ("POST", "/api/objects/Account/records", ACCOUNT),
    "runs:read": ("GET", "/api/runs", None),
    "runs:write": ("POST", "/api/runs/run_missing/cancel", {"reason": "r"}),  # 404 once allowed
    "fallout": ("GET", "/api/fallout", None),
    "work": ("GET", "/api/work", None),
    "work:all": ("POST", "/api/work/wi_missing/reassign", {"to": "queue:tier2"}),
    "users": ("GET", "/api/users", None),
}
ALLOWED: dict[str, set[str]] = {
    "root": set(OPS),
    "dee": {"definitions:read", "definitions:write", "records:read", "runs:read"},
    "opal": set(OPS) - {"definitions:write", "users"},
    "ann": {"work"},
}


@pytest.mark.parametrize("who", list(ALLOWED))
def test_role_matrix(sqlite_api: Api, who: str) -> None:
    api = sqlite_api
    for perm, (method, url, body) in OPS.items():
        r = api.client.request(method, url, json=body, headers=api.auth(who))
        if perm in ALLOWED[who]:
            assert r.status_code in (200, 201, 404), (who, perm, r.text)
        else:
            problem = assert_problem(r, 403)
            assert perm in problem["detail"] and who in problem["detail"], problem


def test_agent_sees_and_acts_only_in_their_scope(api: Api) -> None:
    """ann is in queue tier1 and group billing; bob in queue tier2; cyd in group billing."""
    rec_q = api.new_case("Invoice 1")  # -> queue tier1 (ann)
    item_q = api.item_of(rec_q["id"])
    rec_u = api.new_case("Inverter fault")
    item_u = api.item_of(rec_u["id"])
    api.engine.reassign(item_u["id"], "user:ann", actor="test")  # ann's own item
    rec_g = api.new_case("Panel cracked")
    item_g = api.item_of(rec_g["id"])
    api.engine.reassign(item_g["id"], "group:billing", actor="test")

    def ids(who: str) -> set[str]:
        return {i["id"] for i in api.get(who, "/api/work").json()["items"]}

    assert ids("ann") == {item_q["id"], item_u["id"], item_g["id"]}
    assert ids("bob") == set()
    assert ids("cyd") == {item_g["id"]}
    assert ids("opal") == {item_q["id"], item_u["id"], item_g["id"]}  # work:all
    assert api.get("cyd", "/api/work").json()["total"] == 1

    before = {i: api.engine.get_work_item(i) for i in (item_q["id"], item_u["id"])}
    for who, item in [("bob", item_q), ("bob", item_u), ("cyd", item_u), ("cyd", item_q)]:
        assert_problem(api.get(who, f"/api/work/{item['id']}"), 404)
        assert_problem(api.post(who, f"/api/work/{item['id']}/claim"), 404)
        assert_problem(api.post(who, f"/api/work/{item['id']}/complete",
                                {"data": {"resolution": "close"}}), 404)
        assert_problem(api.post(who, f"/api/work/{item['id']}/reassign",
                                {"to": f"user:{who}"}), 403)
    for item_id, item in before.items():  # nothing changed
        after = api.engine.get_work_item(item_id)
        assert (after["status"], after["claimed_by"], after["version"], after["assignee"]) == \
            (item["status"], item["claimed_by"], item["version"], item["assignee"])
    # the answer for someone else's item is the same as for an item that does not exist
    missing = api.get("bob", "/api/work/wi_does_not_exist").json()
    other = api.get("bob", f"/api/work/{item_q['id']}").json()
    assert missing["detail"].replace("wi_does_not_exist", "X") == \
        other["detail"].replace(item_q["id"], "X")

    # cyd (group member) may work the group item; ann may claim hers
    r = api.post("cyd", f"/api/work/{item_g['id']}/claim")
    assert r.status_code == 200 and r.json()["claimed_by"] == "cyd"
    assert_problem(api.post("ann", f"/api/work/{item_g['id']}/claim"), 409)  # cyd has it
    r = api.post("ann", f"/api/work/{item_u['id']}/complete", {"data": {"resolution": "close"}})
    assert r.status_code == 200, r.text


def test_an_item_reassigned_away_from_the_agent_is_refused(api: Api) -> None:
    """An item moved out of the agent's scope after they looked at it: claim refused,
    item unchanged."""
    rec = api.new_case("Invoice 9")
    item = api.item_of(rec["id"])
    assert api.get("ann", f"/api/work/{item['id']}").status_code == 200
    api.engine.reassign(item["id"], "queue:tier2", actor="test")
    assert_problem(api.post("ann", f"/api/work/{item['id']}/claim"), 404)
    assert api.engine.get_work_item(item["id"])["status"] == "open"


def test_no_credentials_or_a_bad_token_is_401(sqlite_api: Api) -> None:
    api = sqlite_api
    for headers in [{}, {"Authorization": "Bearer baton_not-a-real-token"},
                    {"Authorization": "Bearer something-else"}]:
        body = assert_problem(api.client.get("/api/work", headers=headers), 401)
        assert body["type"].endswith("/unauthenticated")
        r = api.client.get("/api/me", headers=headers)
        assert r.headers["www-authenticate"].startswith("Bearer")
    info = next(t for t in api.engine.directory.list_tokens("ann"))
    assert api.get("ann", "/api/me").status_code == 200
    api.engine.directory.revoke_token(info.id)
    body = assert_problem(api.get("ann", "/api/me"), 401)
    assert "revoked" in body["detail"]


def test_session_cookie_needs_the_csrf_token_to_change_anything(sqlite_api: Api) -> None:
    api = sqlite_api
    cookie, csrf = api.engine.directory.create_session("opal")
    api.client.cookies.set("baton_session", cookie)
    try:
        r = api.client.get("/api/me")  # reading needs no CSRF token
        assert r.status_code == 200 and r.json()["authenticated_by"] == "session"

        body = assert_problem(api.client.post("/api/objects/Account/records", json=ACCOUNT), 403)
        assert "CSRF" in body["title"]
        assert_problem(api.client.post("/api/objects/Account/records", json=ACCOUNT,
                                       headers={"X-CSRF-Token": "wrong"}), 403)
        assert api.engine.count_records("Account") == 0  # nothing was written

        r = api.client.post("/api/objects/Account/records", json=ACCOUNT, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 201, r.text
        assert api.engine.count_records("Account") == 1
        created = [e for e in api.engine.timeline(r.json()["id"]) if e["type"] == "record_created"]
        assert created[0]["actor"] == "opal"
    finally:
        api.client.cookies.clear()
    # an API token needs no CSRF token: browsers never attach it on their own
    assert api.post("opal", "/api/objects/Account/records", ACCOUNT).status_code == 201


def test_an_agent_removed_from_the_queue_after_claiming_cannot_complete(api: Api) -> None:
    """Hardening #7: membership is checked inside the complete transaction, as the README
    says; having claimed the item is not enough once the agent has left its queue."""
    rec = api.new_case("Invoice 10")
    item = api.item_of(rec["id"])
    assert api.post("ann", f"/api/work/{item['id']}/claim").status_code == 200
    api.engine.directory.update_user("ann", queues=[])
    body = assert_problem(api.post("ann", f"/api/work/{item['id']}/complete",
                                   {"data": {"resolution": "close"}}), 403)
    assert "not a member" in body["detail"]
    after = api.engine.get_work_item(item["id"])
    assert (after["status"], after["claimed_by"]) == ("claimed", "ann")
    # An operator gives it to someone who may work it; they complete it.
    api.engine.reassign(item["id"], "queue:tier2", actor="opal")
    assert api.post("bob", f"/api/work/{item['id']}/claim").status_code == 200
    r = api.post("bob", f"/api/work/{item['id']}/complete", {"data": {"resolution": "close"}})
    assert r.status_code == 200, r.text
