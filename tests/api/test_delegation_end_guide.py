"""The Work Guide once a delegate no longer acts for the approver (see
test_delegation_end.py): the approver's list and item page show the item as hers again,
with a Take back button, and say why; her form is open (completing takes it back); the
former delegate is told his claim no longer stands and may release it. SQLite and
PostgreSQL, through the pages."""

from __future__ import annotations

import re
from typing import Any

from tests.api.conftest import Api
from tests.api.test_delegation import dq, quote
from tests.api.test_work_guide import login

__all__ = ["dq"]

WHY = "whose delegation from ann ended"


def row_of(page: str, item_id: str) -> str:
    found = re.search(rf'<tr id="item-{item_id}".*?</tr>', page, re.DOTALL)
    assert found, page
    return found[0]


def stale_item(api: Api) -> dict[str, Any]:
    """ann's approval, claimed by bob as her delegate; then ann ends the delegation."""
    api.engine.directory.update_user("ann", delegate="bob")
    _rec, item, _follow_up = quote(api)
    api.engine.claim(item["id"], "bob", scope=api.engine.directory.get_user("bob"))
    api.engine.directory.update_user("ann", delegate="")
    return item


def test_her_work_guide_shows_the_item_as_hers_again(dq: Api) -> None:
    item = stale_item(dq)
    iid = item["id"]
    csrf = login(dq, "ann")
    c = dq.client
    row = row_of(c.get("/work?tab=mine").text, iid)
    assert f"by bob, <span class=\"wi-stale\">{WHY}</span>" in row
    assert ">Take back</button>" in row and f'action="/work/{iid}/claim"' in row
    page = c.get(f"/work/{iid}").text
    assert "Take back</button>" in page and "bob's claim no longer stands" in page
    assert 'class="work-form"' in page  # her form is open: completing takes it back
    assert "only they can complete it now" not in page
    # she takes it back from the list (htmx answers the row): hers, with its form
    r = c.post(f"/work/{iid}/claim", data={"csrf_token": csrf}, headers={"HX-Request": "true"})
    assert r.status_code == 200, r.text
    assert "You claimed" in r.text and "Take back" not in r.text and ">Open</a>" in r.text
    got = dq.engine.get_work_item(iid)
    assert (got["status"], got["claimed_by"]) == ("claimed", "ann")
    r = c.post(f"/work/{iid}", data={"csrf_token": csrf, "decision": "approve"},
               follow_redirects=False)
    assert r.status_code == 303, r.text
    assert dq.engine.get_work_item(iid)["completed_by"] == "ann"


def test_she_completes_it_from_its_page_and_he_is_told_to_release_it(dq: Api) -> None:
    item = stale_item(dq)
    iid = item["id"]
    login(dq, "bob")
    c = dq.client
    row = row_of(c.get("/work?tab=mine").text, iid)
    assert WHY in row and ">Release</button>" in row
    assert ">Open</a>" not in row and "Take back" not in row
    page = c.get(f"/work/{iid}").text
    assert f"Your claim no longer stands (bob, {WHY}): release it; ann may take it back" \
        in page
    assert 'class="work-form"' not in page
    csrf = login(dq, "ann")
    r = c.post(f"/work/{iid}", data={"csrf_token": csrf, "decision": "reject",
                                     "comments": "not now"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    done = dq.engine.get_work_item(iid)
    assert (done["status"], done["completed_by"]) == ("completed", "ann")
    reasons = [(e.get("data") or {}).get("reason") for e in dq.engine.run_events(item["run_id"])]
    assert f"taken back from bob, {WHY}" in reasons


def test_a_claim_that_stands_shows_no_take_back(dq: Api) -> None:
    dq.engine.directory.update_user("ann", delegate="bob")
    _rec, item, _follow_up = quote(dq)
    dq.engine.claim(item["id"], "bob", scope=dq.engine.directory.get_user("bob"))
    login(dq, "ann")
    row = row_of(dq.client.get("/work?tab=mine").text, item["id"])
    assert "Take back" not in row and "wi-stale" not in row
    page = dq.client.get(f"/work/{item['id']}").text
    assert "Claimed by bob: only they can complete it now." in page
