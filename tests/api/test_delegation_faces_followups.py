"""A claim that no longer stands (a delegate's, once they no longer act for the approver:
``baton.work.claims``), on SQLite and PostgreSQL: the API's work item says so
(``claim_stale``), and "next item" counts it as unclaimed for whom it is now: the approver
takes it back, or her delegate now takes it over, audited with why."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import Api
from tests.api.test_delegation import dq, quote
from tests.api.test_delegation_end import claimed_by_bob, claims

__all__ = ["dq"]


def stale_in(api: Api, who: str, item: dict[str, Any]) -> tuple[bool, bool]:
    """``claim_stale`` of ``item`` as ``who`` reads it: alone, and in their list."""
    one = api.get(who, f"/api/work/{item['id']}")
    assert one.status_code == 200, one.text
    listed = api.get(who, "/api/work?tab=all")
    assert listed.status_code == 200, listed.text
    (row,) = [i for i in listed.json()["items"] if i["id"] == item["id"]]
    return one.json()["claim_stale"], row["claim_stale"]


def next_for(api: Api, who: str) -> dict[str, Any] | None:
    r = api.post(who, "/api/work/next")
    assert r.status_code in (200, 204), r.text
    return r.json() if r.status_code == 200 else None


def test_a_lapsed_claim_is_flagged_and_the_approvers_next_item_takes_it_back(dq: Api) -> None:
    item = claimed_by_bob(dq)
    assert stale_in(dq, "ann", item) == (False, False)  # bob acts for her: his claim stands
    assert stale_in(dq, "opal", item) == (False, False)
    # while it stands, her next item is her follow-up, never bob's claim
    follow_up = next_for(dq, "ann")
    assert follow_up is not None and follow_up["step"] == "follow_up"
    assert follow_up["claim_stale"] is False
    assert next_for(dq, "ann") is None
    assert dq.engine.get_work_item(item["id"])["claimed_by"] == "bob"

    dq.engine.directory.update_user("ann", delegate="")  # she is back: the delegation ends
    assert stale_in(dq, "ann", item) == (True, True)
    assert stale_in(dq, "opal", item) == (True, True)  # (an operator's view says so too)
    assert dq.get("ann", f"/api/work/{follow_up['id']}").json()["claim_stale"] is False
    # her next item: the approval bob can no longer decide, taken back from him
    took = next_for(dq, "ann")
    assert took is not None and took["id"] == item["id"], took
    assert (took["claimed_by"], took["claim_stale"]) == ("ann", False)
    last = claims(dq, item)[-1]
    assert last["actor"] == "ann" and last["data"] == {
        "work_item": item["id"], "step": "manager", "via": "next", "taken_back_from": "bob",
        "reason": "taken back from bob, whose delegation from ann ended"}
    assert next_for(dq, "ann") is None


def test_the_delegate_now_takes_over_what_the_former_one_claimed(dq: Api) -> None:
    item = claimed_by_bob(dq)
    dq.engine.directory.update_user("ann", delegate="cyd")  # cyd acts for her now, not bob
    assert stale_in(dq, "cyd", item) == (True, True)
    took = next_for(dq, "cyd")  # (her follow-up is not a delegate's: only the approval)
    assert took is not None and (took["id"], took["claimed_by"]) == (item["id"], "cyd")
    assert claims(dq, item)[-1]["data"] == {
        "work_item": item["id"], "step": "manager", "via": "next", "on_behalf_of": "ann",
        "taken_back_from": "bob",
        "reason": "taken over from bob, who is no longer ann's delegate (cyd is)"}
    assert next_for(dq, "cyd") is None
    # bob's own next item does not take back what he lost
    assert next_for(dq, "bob") is None


def test_a_lapsed_claim_takes_its_turn_by_urgency_among_the_open_items(dq: Api) -> None:
    item = claimed_by_bob(dq)
    dq.engine.directory.update_user("ann", delegate="")
    # a quote of the same priority made later: the older lapsed approval comes first
    _rec, later, _later_follow_up = quote(dq)
    order = [next_for(dq, "ann") for _ in range(4)]
    taken = [i["id"] if i else None for i in order]
    assert taken[0] in (item["id"], _follow_up_of(dq, item)), taken
    assert item["id"] in taken and later["id"] in taken and taken.index(item["id"]) < \
        taken.index(later["id"]), taken
    assert next_for(dq, "ann") is None


def _follow_up_of(api: Api, item: dict[str, Any]) -> str:
    (fu,) = [w["id"] for w in api.engine.list_work(record_id=item["record_id"])
             if w["step"] == "follow_up"]
    return fu
