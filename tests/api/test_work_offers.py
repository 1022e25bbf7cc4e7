"""Routing's offer mode over the API: only the offeree accepts or declines (403 for an
operator, 404 for an agent who cannot see the item), 409 when there is no offer; the
item's ``routing_status`` says where it is."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api, assert_problem

OFFERS = """
kind: object
name: Lead
fields:
  subject: {type: string, required: true}
---
kind: routing
name: billing_offers
from: {group: billing}
offer: {timeout: 2m}
---
kind: orchestration
name: leads
trigger: {type: record, object: Lead, on: [create]}
stages:
  - name: s
    steps:
      - {name: call, type: interactive, assign: {routing: billing_offers},
         form: [{name: done, type: bool}]}
"""


def lead(api: Api) -> dict[str, Any]:
    rec = api.engine.create_record("Lead", {"subject": "call back"})
    (item,) = api.engine.list_work(record_id=rec["id"], statuses=["open"])
    return dict(item)


def test_only_the_offeree_accepts_or_declines(sqlite_api: Api) -> None:
    api = sqlite_api
    api.engine.deploy(texts={"offers.yaml": OFFERS}, actor="setup")
    item = lead(api)
    iid = item["id"]
    assert item["assignee"] == "ann"  # billing: ann and cyd, least loaded, by name
    shown = api.get("ann", f"/api/work/{iid}").json()
    assert shown["routing_status"] == "offered" and shown["assigned_to"] == "user:ann"
    assert_problem(api.post("ann", f"/api/work/{iid}/claim"), 409)  # accept it first
    assert_problem(api.post("opal", f"/api/work/{iid}/accept"), 403)
    assert_problem(api.post("cyd", f"/api/work/{iid}/accept"), 404)  # not theirs to see
    assert_problem(api.post("ann", "/api/work/wi_nope/accept"), 404)
    r = api.post("ann", f"/api/work/{iid}/accept")
    assert r.status_code == 200, r.text
    assert r.json()["routing_status"] == "routed" and r.json()["assigned_to"] == "user:ann"
    assert_problem(api.post("ann", f"/api/work/{iid}/decline"), 409)

    second = lead(api)  # ann has one already: cyd is offered it
    assert second["assignee"] == "cyd"
    r = api.post("cyd", f"/api/work/{second['id']}/decline")
    assert r.status_code == 200, r.text
    assert r.json()["assigned_to"] == "user:ann" and r.json()["routing_status"] == "offered"
    timeline = api.get("opal", f"/api/records/{second['record_id']}/timeline").json()["items"]
    kinds = [e["type"] for e in timeline]
    assert kinds.count("offered") == 2 and "offer_declined" in kinds


def test_the_work_guide_accepts_and_declines_with_the_csrf_token(sqlite_api: Api) -> None:
    from tests.api.test_work_guide import login

    api = sqlite_api
    api.engine.deploy(texts={"offers.yaml": OFFERS}, actor="setup")
    first, second = lead(api), lead(api)
    assert (first["assignee"], second["assignee"]) == ("ann", "cyd")
    csrf = login(api, "ann")
    c = api.client
    listed = c.get("/work?tab=mine").text
    assert "offered to ann" in listed and "Open the offer" in listed
    page = c.get(f"/work/{first['id']}").text
    assert "This item is offered to you until" in page and ">Accept<" in page
    assert ">Decline<" in page and "The form opens once the offer is accepted" in page
    r = c.post(f"/work/{first['id']}/accept", data={}, follow_redirects=False)
    assert r.status_code == 403  # no CSRF token: nothing changes
    assert api.engine.get_work_item(first["id"])["routing_status"] == "offered"
    r = c.post(f"/work/{first['id']}/accept", data={"csrf_token": csrf},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/work/{first['id']}"
    page = c.get(r.headers["location"]).text
    assert ">Accept<" not in page and ">Claim<" in page and ">Complete<" in page

    csrf = login(api, "cyd")
    assert "Offered to cyd" not in c.get(f"/work/{second['id']}").text
    r = c.post(f"/work/{second['id']}/decline", data={"csrf_token": csrf},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/work"
    now = api.engine.get_work_item(second["id"])
    assert (now["assignee"], now["routing_status"]) == ("ann", "offered")
