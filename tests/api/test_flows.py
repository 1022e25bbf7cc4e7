"""Each area's happy path over HTTP, on both backends: what a client of the API does."""

from __future__ import annotations

from tests.api.conftest import FLAKY, Api, assert_problem


def test_me_names_the_caller_and_their_permissions(api: Api) -> None:
    r = api.get("ann", "/api/me")
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["name"] == "ann" and me["roles"] == ["agent"] and me["queues"] == ["tier1"]
    assert me["permissions"] == ["work"] and me["authenticated_by"] == "token"


def test_case_triage_end_to_end_over_http(api: Api) -> None:
    """A record starts a run; an agent of the queue claims and completes the triage item;
    the run closes the case; the timeline and the run show every step."""
    rec = api.new_case("Invoice 7 is wrong")
    assert rec["object_type"] == "Case" and rec["version"] == 1
    assert rec["data"]["subject"] == "Invoice 7 is wrong" and rec["data"]["origin"] == "Web"

    runs = api.get("opal", "/api/runs", params={"record_id": rec["id"]}).json()
    assert runs["total"] == 1
    run_id = runs["items"][0]["id"]
    assert runs["items"][0]["current_stage"] == "triage"

    mine = api.get("ann", "/api/work").json()
    assert mine["total"] == 1
    item = mine["items"][0]
    assert item["assigned_to"] == "queue:tier1" and item["status"] == "open"
    assert [f["name"] for f in item["form"]] == ["resolution", "notes"]
    assert item["sla_status"] == "on_track" and item["due_at"]

    r = api.post("ann", f"/api/work/{item['id']}/claim")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "claimed" and r.json()["claimed_by"] == "ann"

    r = api.post("ann", f"/api/work/{item['id']}/complete",
                 {"data": {"resolution": "close", "notes": "answered"}})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["status"] == "completed" and done["completed_by"] == "ann"
    assert done["data"] == {"resolution": "close", "notes": "answered"}
    assert done["run"]["current_stage"] == "close"

    api.work()
    run = api.get("opal", f"/api/runs/{run_id}").json()
    assert run["status"] == "completed"
    stages = {s["name"]: s["status"] for s in run["stages"]}
    assert list(stages) == ["triage", "escalate", "close"]  # the definition's order
    assert stages == {"triage": "completed", "escalate": "not_started", "close": "completed"}
    steps = {s["name"]: s for s in run["steps"]}
    assert list(steps) == ["classify", "find_agent", "triage", "raise_level", "close_case",
                           "send_survey"]
    assert steps["triage"]["status"] == "completed" and steps["triage"]["work_item_id"] == item["id"]
    assert steps["raise_level"]["status"] == "not_started"
    assert steps["triage"]["sla"]["status"] == "on_track"
    assert steps["send_survey"]["status"] == "completed"
    assert run["decisions"][0]["goto"] == "close"
    assert run["vars"] == {"level": 1}

    record = api.get("opal", f"/api/records/{rec['id']}").json()
    assert record["data"]["status"] == "Closed" and record["version"] > 1

    events = api.get("opal", f"/api/records/{rec['id']}/timeline", params={"limit": 500}).json()
    types = [e["type"] for e in events["items"]]
    assert types[0] == "record_created" and "work_item_completed" in types
    completed = next(e for e in events["items"] if e["type"] == "work_item_completed")
    assert completed["actor"] == "ann"  # the principal's name is audited

    run_events = api.get("opal", f"/api/runs/{run_id}/events").json()
    assert run_events["total"] >= 5


def test_records_crud_with_etag_and_timeline(api: Api) -> None:
    r = api.post("opal", "/api/objects/Account/records", {"data": {"name": "Sunny Roofs"}})
    assert r.status_code == 201, r.text
    acc = r.json()
    assert r.headers["location"] == f"/api/records/{acc['id']}" and r.headers["etag"] == '"1"'

    r = api.patch("opal", f"/api/records/{acc['id']}", {"data": {"name": "Sunny Roofs Ltd"}},
                  headers={"If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.json()["data"]["name"] == "Sunny Roofs Ltd"
    assert r.headers["etag"] == '"2"'

    listed = api.get("dee", "/api/records", params={"object_type": "Account"}).json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == acc["id"]

    r = api.delete("opal", f"/api/records/{acc['id']}")
    assert r.status_code == 204
    assert_problem(api.get("opal", f"/api/records/{acc['id']}"), 404)
    assert_problem(api.delete("opal", f"/api/records/{acc['id']}"), 404)


def test_runs_cancel_and_filters(api: Api) -> None:
    rec = api.new_case("Panel flickers")
    run_id = api.get("opal", "/api/runs", params={"record_id": rec["id"]}).json()["items"][0]["id"]
    for params, n in [({"orchestration": "case_triage"}, 1), ({"status": "in_progress"}, 1),
                      ({"stage": "triage"}, 1), ({"stage": "close"}, 0), ({"version": 1}, 1),
                      ({"version": 2}, 0), ({"orchestration": "nope"}, 0)]:
        assert api.get("dee", "/api/runs", params=params).json()["total"] == n, params

    r = api.post("opal", f"/api/runs/{run_id}/cancel", {"reason": "duplicate case"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "canceled"
    steps = {s["name"]: s["status"] for s in r.json()["steps"]}
    assert steps["triage"] == "canceled"
    assert api.engine.list_work(record_id=rec["id"]) == []  # its work item went with it
    cancel_event = [e for e in api.engine.run_events(run_id) if e["type"] == "run_canceled"]
    assert cancel_event and cancel_event[0]["actor"] == "opal"

    body = assert_problem(api.post("opal", f"/api/runs/{run_id}/cancel", {"reason": "again"}), 409)
    assert "canceled" in body["detail"]
    assert_problem(api.post("opal", f"/api/runs/{run_id}/resume", {"reason": "x"}), 409)
    assert_problem(api.post("opal", f"/api/runs/{run_id}/signal", {"name": "go"}), 409)
    assert_problem(api.post("opal", "/api/runs/run_nope/cancel", {"reason": "x"}), 404)
    assert_problem(api.post("opal", f"/api/runs/{run_id}/cancel", {}), 422, "reason")


def test_reassign_moves_an_item_to_another_queue(api: Api) -> None:
    rec = api.new_case()
    item = api.item_of(rec["id"])
    r = api.post("opal", f"/api/work/{item['id']}/reassign", {"to": "queue:tier2"})
    assert r.status_code == 200, r.text
    assert r.json()["assigned_to"] == "queue:tier2"
    assert api.get("ann", "/api/work").json()["total"] == 0
    assert [i["id"] for i in api.get("bob", "/api/work").json()["items"]] == [item["id"]]
    ev = [e for e in api.engine.timeline(rec["id"]) if e["type"] == "work_item_reassigned"]
    assert ev[0]["actor"] == "opal" and ev[0]["data"]["to"] == "queue:tier2"
    assert_problem(api.post("opal", f"/api/work/{item['id']}/reassign", {"to": "user:ghost"}),
                   422, "to")
    assert_problem(api.post("opal", f"/api/work/{item['id']}/reassign", {"to": "team:x"}),
                   422, "to")


def test_fallout_list_and_operator_actions(api: Api) -> None:
    api.post("dee", "/api/definitions/deploy", {"files": {"flaky.yaml": FLAKY}})
    ids = []
    for _ in range(3):
        r = api.post("opal", "/api/runs", {"orchestration": "flaky_job", "input": {"n": 1}})
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    api.work()
    listed = api.get("opal", "/api/fallout").json()
    assert listed["total"] == 3
    entry = listed["items"][0]
    assert entry["step"] == "boom" and entry["error"]["message"]
    fid = f"{ids[0]}:boom"

    r = api.post("opal", f"/api/fallout/{fid}/skip", {"reason": "not needed"})
    assert r.status_code == 200, r.text
    assert {s["name"]: s["status"] for s in r.json()["steps"]}["boom"] == "skipped"

    r = api.post("opal", f"/api/fallout/{ids[1]}:boom/complete",
                 {"reason": "done by hand", "data": {"ok": True}})
    assert r.status_code == 200, r.text
    steps = {s["name"]: s for s in r.json()["steps"]}
    assert steps["boom"]["status"] == "completed" and steps["boom"]["output"] == {"ok": True}

    r = api.post("opal", f"/api/fallout/{ids[2]}:boom/retry", {"reason": "try again"})
    assert r.status_code == 200, r.text
    assert {s["name"]: s["status"] for s in r.json()["steps"]}["boom"] == "running"

    api.work()
    assert api.get("opal", "/api/fallout").json()["total"] == 1  # the retried one failed again
    body = assert_problem(api.post("opal", f"/api/fallout/{fid}/skip", {"reason": "again"}), 409)
    assert "not in fallout" in body["detail"]
    assert_problem(api.post("opal", f"/api/fallout/{ids[2]}:boom/skip", {}), 422, "reason")
    assert_problem(api.post("opal", "/api/fallout/nocolon/skip", {"reason": "x"}), 422,
                   "path.fallout_id")
    acts = [e for e in api.engine.run_events(ids[0]) if e["actor"] == "opal"]
    assert acts, "the operator's action is audited under their name"


def test_people_users_and_tokens(api: Api) -> None:
    r = api.post("root", "/api/users", {"name": "eve", "roles": ["agent"], "queues": ["tier1"],
                                        "email": "eve@example.com"})
    assert r.status_code == 201, r.text
    assert r.json()["queues"] == ["tier1"] and r.json()["has_password"] is False
    assert_problem(api.post("root", "/api/users", {"name": "eve", "roles": ["agent"]}), 409)
    assert_problem(api.post("root", "/api/users", {"name": "x y", "roles": ["agent"]}), 422, "name")
    assert_problem(api.post("root", "/api/users", {"name": "zed", "roles": ["boss"]}), 422)

    r = api.patch("root", "/api/users/eve", {"queues": ["tier1", "tier2"], "display_name": "Eve"})
    assert r.status_code == 200, r.text
    assert r.json()["queues"] == ["tier1", "tier2"] and r.json()["display_name"] == "Eve"
    users = api.get("root", "/api/users").json()
    assert users["total"] == 7 and "eve" in [u["name"] for u in users["items"]]

    # a token for another user (users permission); its secret is shown once
    r = api.post("root", "/api/tokens", {"user": "eve", "label": "laptop"})
    assert r.status_code == 201, r.text
    tok = r.json()
    assert tok["user"] == "eve" and tok["secret"].startswith("baton_")
    eve = {"Authorization": f"Bearer {tok['secret']}"}
    assert api.client.get("/api/me", headers=eve).json()["name"] == "eve"
    listed = api.client.get("/api/tokens", headers=eve).json()
    assert [t["id"] for t in listed["items"]] == [tok["id"]]
    assert "secret" not in listed["items"][0]

    # an agent makes their own token, cannot make or list someone else's
    r = api.post("ann", "/api/tokens", {"label": "cli"})
    assert r.status_code == 201 and r.json()["user"] == "ann"
    assert_problem(api.post("ann", "/api/tokens", {"user": "bob"}), 403)
    assert_problem(api.get("ann", "/api/tokens", params={"user": "bob"}), 403)
    assert_problem(api.delete("ann", f"/api/tokens/{tok['id']}"), 404)  # not theirs: not found

    # revoke: the token stops working at once
    r = api.client.delete(f"/api/tokens/{tok['id']}", headers=eve)
    assert r.status_code == 200 and r.json()["revoked_at"]
    assert_problem(api.client.get("/api/me", headers=eve), 401)

    # deactivating a user locks their tokens out
    api.patch("root", "/api/users/ann", {"active": False})
    assert_problem(api.get("ann", "/api/me"), 401)

