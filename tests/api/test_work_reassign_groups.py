"""Reassigning to a group nobody is in and no deployed definition names, over the API and
the Work Guide's item page: the service's refusal reaches each as an unknown user's does
(a 422 problem naming ``to``; the message next to the field, the value kept), and the
item stays where it was. A group of the directory or of a definition is accepted."""

from __future__ import annotations

import html
import re

from tests.api.conftest import Api, assert_problem

REVIEW = """
kind: routing
name: reviewers
from: {group: reviewers}
"""


def test_the_api_refuses_an_unknown_group_naming_the_field_and_the_known_groups(
        api: Api) -> None:
    """ann and cyd are in group billing (tests/api/conftest.py); a routing rule names
    reviewers, whom nobody is in."""
    r = api.post("root", "/api/definitions/deploy", {"files": {"review.yaml": REVIEW}})
    assert r.status_code in (200, 201), r.text
    item = api.item_of(api.new_case()["id"])
    url = f"/api/work/{item['id']}/reassign"
    problem = assert_problem(api.post("opal", url, {"to": "group:biling"}), 422, "to")
    (error,) = [e for e in problem["errors"] if e["field"] == "to"]
    assert "there is no group 'biling' (did you mean 'billing'?)" in error["message"]
    assert error["message"].endswith("known groups: billing, reviewers"), error
    assert "there is no group 'biling'" in problem["detail"]
    still = api.engine.get_work_item(item["id"])
    assert (still["assignee_kind"], still["assignee"], still["version"]) == (
        item["assignee_kind"], item["assignee"], item["version"])
    for group in ("billing", "reviewers"):  # the directory's; a definition's (nobody in it)
        r = api.post("opal", url, {"to": f"group:{group}"})
        assert r.status_code == 200, r.text
        assert r.json()["assigned_to"] == f"group:{group}"
    assert [i["id"] for i in api.get("cyd", "/api/work").json()["items"]] == []
    api.post("opal", url, {"to": "group:billing"})
    assert [i["id"] for i in api.get("cyd", "/api/work").json()["items"]] == [item["id"]]


def test_the_item_page_says_an_unknown_group_next_to_the_field(sqlite_api: Api) -> None:
    api = sqlite_api
    item = api.item_of(api.new_case()["id"])
    api.engine.directory.update_user("opal", password="pw-secret-123")
    client = api.client
    client.cookies.clear()
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    r = client.post("/login", data={"username": "opal", "password": "pw-secret-123",
                                    **({"csrf_token": csrf[1]} if csrf else {})},
                    follow_redirects=False)
    assert r.status_code in (302, 303), r.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get(f"/work/{item['id']}").text)
    assert token
    r = client.post(f"/work/{item['id']}/reassign",
                    data={"to": "group:nobody", "csrf_token": token[1]})
    assert r.status_code == 422, r.text
    alert = re.search(r'<div id="reassign-err"[^>]*>(.*?)</div>', r.text, re.DOTALL)
    assert alert, r.text
    said = html.unescape(alert[1])
    assert "there is no group 'nobody'" in said and "known groups: billing" in said, said
    assert 'value="group:nobody"' in r.text  # kept in the field
    assert api.engine.get_work_item(item["id"])["assignee"] == item["assignee"]
