"""What the work item actions answer, over the API on both backends: every action that
answers a work item (claim, release, the next item, reassign, accept, decline, complete)
answers it as a GET of it does, ``sla_status`` and ``due_at`` included (they were null
while a GET said ``on_track``), and an Idempotency-Key replay answers the same. And an
item is never given to someone who cannot work it: a user whose roles lack the ``work``
permission (a designer), a group or queue only such people are in; routing never offers
or routes them one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.api.conftest import Api, assert_problem

OFFERS = """
kind: object
name: Lead
fields:
  subject: {type: string, required: true}
---
kind: routing
name: desk_offers
from: {queue: desk}
offer: {timeout: 2m}
---
kind: orchestration
name: leads
trigger: {type: record, object: Lead, on: [create]}
stages:
  - name: s
    steps:
      - {name: call, type: interactive, assign: {routing: desk_offers},
         form: [{name: done, type: bool}], sla: {duration: 4h, jeopardy: 1h}}
"""


def shown(api: Api, item_id: str) -> dict[str, Any]:
    r = api.get("opal", f"/api/work/{item_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def answered(api: Api, r: Any, item_id: str) -> dict[str, Any]:
    """The action's answer, checked to be what a GET of the item says now."""
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == shown(api, item_id)
    return body  # type: ignore[no-any-return]


def test_each_action_answers_the_item_as_a_get_does(api: Api) -> None:
    item = api.item_of(api.new_case()["id"])  # queue tier1: ann
    iid = item["id"]
    before = shown(api, iid)
    assert before["sla_status"] == "on_track" and before["due_at"]
    url = f"/api/work/{iid}"
    got = answered(api, api.post("ann", f"{url}/claim"), iid)
    assert (got["status"], got["claimed_by"], got["sla_status"]) == ("claimed", "ann", "on_track")
    assert got["due_at"] == before["due_at"]
    got = answered(api, api.post("ann", f"{url}/release"), iid)
    assert (got["status"], got["sla_status"]) == ("open", "on_track")
    got = answered(api, api.post("ann", "/api/work/next"), iid)
    assert (got["status"], got["sla_status"]) == ("claimed", "on_track")
    got = answered(api, api.post("opal", f"{url}/reassign", {"to": "user:ann"}), iid)
    assert (got["assigned_to"], got["sla_status"]) == ("user:ann", "on_track")

    # An SLA past its jeopardy threshold: the answers say so too (not just "not null").
    api.clock.advance(timedelta(hours=3, minutes=30))
    api.work()
    assert shown(api, iid)["sla_status"] == "in_jeopardy"
    got = answered(api, api.post("ann", f"{url}/claim"), iid)
    assert got["sla_status"] == "in_jeopardy"

    r = api.post("ann", f"{url}/complete", {"data": {"resolution": "close"}})
    assert r.status_code == 200, r.text
    done = r.json()
    run = done.pop("run")
    assert run["id"] == item["run_id"]
    assert done == shown(api, iid)
    assert (done["status"], done["sla_status"]) == ("completed", "in_jeopardy")


def test_a_replayed_answer_is_the_first_and_carries_the_sla(api: Api) -> None:
    iid = api.item_of(api.new_case()["id"])["id"]
    key = {"Idempotency-Key": "claim-once-1"}
    first = api.post("ann", f"/api/work/{iid}/claim", headers=key)
    assert first.status_code == 200, first.text
    again = api.post("ann", f"/api/work/{iid}/claim", headers=key)
    assert again.status_code == 200, again.text
    assert again.json() == first.json() == shown(api, iid)
    assert again.json()["sla_status"] == "on_track"

    other = api.item_of(api.new_case("Second case")["id"])["id"]
    take = {"Idempotency-Key": "next-once-1"}
    first = api.post("ann", "/api/work/next", headers=take)
    assert first.status_code == 200 and first.json()["id"] == other, first.text
    again = api.post("ann", "/api/work/next", headers=take)
    assert again.status_code == 200, again.text
    assert again.json() == first.json() == shown(api, other)
    assert again.json()["sla_status"] == "on_track"

    key = {"Idempotency-Key": "reassign-once-1"}
    first = api.post("opal", f"/api/work/{iid}/reassign", {"to": "queue:tier2"}, headers=key)
    again = api.post("opal", f"/api/work/{iid}/reassign", {"to": "queue:tier2"}, headers=key)
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert again.json() == first.json() == shown(api, iid)
    assert first.json()["sla_status"] == "on_track"


def test_offers_answer_the_sla_and_never_go_to_who_cannot_work(api: Api) -> None:
    """Queue desk: bob (agent) and dee (designer): dee is never offered an item, and the
    decision says why; accept and decline answer as a GET does."""
    api.engine.directory.update_user("bob", queues=["tier2", "desk"])
    api.engine.directory.update_user("dee", queues=["desk"])
    api.engine.deploy(texts={"offers.yaml": OFFERS}, actor="setup")
    first = api.engine.create_record("Lead", {"subject": "call back"})
    (item,) = api.engine.list_work(record_id=first["id"], statuses=["open"])
    assert (item["assignee"], item["routing_status"]) == ("bob", "offered")
    timeline = api.get("opal", f"/api/records/{first['id']}/timeline").json()["items"]
    (offered,) = [e["data"] for e in timeline if e["type"] == "offered"]
    assert {"user": "dee", "reason": "may not work items"} in offered["excluded"], offered
    got = answered(api, api.post("bob", f"/api/work/{item['id']}/accept"), item["id"])
    assert (got["routing_status"], got["sla_status"]) == ("routed", "on_track")

    second = api.engine.create_record("Lead", {"subject": "call again"})
    (other,) = api.engine.list_work(record_id=second["id"], statuses=["open"])
    assert (other["assignee"], other["routing_status"]) == ("bob", "offered")
    r = api.post("bob", f"/api/work/{other['id']}/decline")
    assert r.status_code == 200, r.text
    got = r.json()
    # bob passed on it and dee may not work: nobody is left, it waits in the queue
    assert (got["assigned_to"], got["routing_status"]) == ("queue:desk", "waiting")
    assert got == shown(api, other["id"]) and got["sla_status"] == "on_track"
    timeline = api.get("opal", f"/api/records/{second['id']}/timeline").json()["items"]
    waiting = [e["data"] for e in timeline if e["type"] == "waiting_for_routing"]
    assert waiting and waiting[-1]["reasons"].get("may not work items") == 1, waiting


def test_reassigning_to_who_cannot_work_is_refused(api: Api) -> None:
    """dee is a designer: no ``work`` permission. An item given to her would answer her
    403 and be in no one's Work Guide."""
    item = api.item_of(api.new_case()["id"])
    url = f"/api/work/{item['id']}/reassign"
    problem = assert_problem(api.post("opal", url, {"to": "user:dee"}), 422, "to")
    (error,) = [e for e in problem["errors"] if e["field"] == "to"]
    assert error["message"].startswith("user 'dee' (designer) may not work items"), error
    assert "no one's Work Guide" in error["message"]
    assert "roles: admin, operator, agent" in error["message"], error

    # A queue only dee is in (and no definition names): refused, naming her.
    api.engine.directory.update_user("dee", queues=["drafts"], groups=["design"])
    for target in ("queue:drafts", "group:design"):
        problem = assert_problem(api.post("opal", url, {"to": target}), 422, "to")
        (error,) = [e for e in problem["errors"] if e["field"] == "to"]
        kind, name = target.split(":")
        assert error["message"].startswith(
            f"nobody in {kind} '{name}' may work items (dee (designer))"), error
    still = api.engine.get_work_item(item["id"])
    assert (still["assignee_kind"], still["assignee"], still["version"]) == (
        item["assignee_kind"], item["assignee"], item["version"])

    # Once someone who may work is in it (deactivated or not), it is accepted.
    api.engine.directory.update_user("cyd", queues=["drafts"])
    api.engine.directory.update_user("cyd", active=False)
    r = api.post("opal", url, {"to": "queue:drafts"})
    assert r.status_code == 200, r.text
    assert r.json()["assigned_to"] == "queue:drafts"
    # An admin, an operator and an agent may all work items.
    for who in ("root", "opal", "ann"):
        r = api.post("opal", url, {"to": f"user:{who}"})
        assert r.status_code == 200, r.text
        assert r.json()["assigned_to"] == f"user:{who}"
