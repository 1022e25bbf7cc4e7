"""An approval a delegate claimed is not stuck once the delegate no longer acts for the
approver (audit finding: dora delegates to ann, ann claims dora's approval, dora ends the
delegation; then nobody but ann's own release could free it). On SQLite and PostgreSQL,
through the API and the Engine.

Here ann is the approver and bob her delegate: once bob no longer acts for her (the
delegation ended or is out of its dates, bob is deactivated or lost the ``work``
permission), ann claims the item back or completes it straight away, audited with why; bob
can no longer complete it (he may release it); should he act for her again before that,
his claim stands again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from baton.errors import PermissionDenied, TransitionConflict
from baton.web.ui.events import describe_event
from tests.api.conftest import Api, assert_problem
from tests.api.test_delegation import dq, quote

__all__ = ["dq"]


def claimed_by_bob(api: Api, **delegation: str) -> dict[str, Any]:
    """ann's approval, claimed by bob as her delegate (over the API)."""
    api.engine.directory.update_user("ann", delegate="bob", **delegation)
    _rec, item, _follow_up = quote(api)
    r = api.post("bob", f"/api/work/{item['id']}/claim")
    assert r.status_code == 200 and r.json()["claimed_by"] == "bob", r.text
    return item


def claims(api: Api, item: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in api.engine.run_events(item["run_id"]) if e["type"] == "work_item_claimed"]


def test_the_approver_takes_back_what_her_former_delegate_claimed(dq: Api) -> None:
    item = claimed_by_bob(dq)
    url = f"/api/work/{item['id']}"
    r = dq.patch("ann", "/api/me", {"delegate": ""})  # she is back: the delegation ends
    assert r.status_code == 200 and r.json()["delegate"] is None, r.text
    # bob may no longer decide it: he is told why, and what can be done
    body = assert_problem(dq.post("bob", f"{url}/complete", {"data": {"decision": "approve"}}),
                          403)
    assert "the claim by bob, whose delegation from ann ended, no longer stands" \
        in body["detail"], body
    assert f"baton work release {item['id']} --user bob" in body["detail"], body
    # nor can a bystander take it (they do not even see it)
    assert_problem(dq.post("cyd", f"{url}/claim"), 404)
    assert dq.engine.get_work_item(item["id"])["claimed_by"] == "bob"  # nothing changed
    # ann claims it: she has it back, and the timeline says from whom and why
    r = dq.post("ann", f"{url}/claim")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["claimed_by"]) == ("claimed", "ann")
    back = claims(dq, item)[-1]
    assert back["actor"] == "ann" and back["data"] == {
        "work_item": item["id"], "step": "manager", "taken_back_from": "bob",
        "reason": "taken back from bob, whose delegation from ann ended"}
    # her claim stands: bob's is gone for good (no longer his to see; the engine says whose)
    assert_problem(dq.post("bob", f"{url}/complete", {"data": {"decision": "approve"}}), 404)
    assert_problem(dq.post("bob", f"{url}/release"), 404)
    with pytest.raises(TransitionConflict, match="claimed by ann"):
        dq.engine.complete(item["id"], "bob", {"decision": "approve"})
    r = dq.post("ann", f"{url}/complete", {"data": {"decision": "reject", "comments": "no"}})
    assert r.status_code == 200, r.text
    out = dq.engine.get_run(item["run_id"]).steps["manager"].output
    assert (out["approver"], out["decision"]) == ("ann", "reject") and "on_behalf_of" not in out
    # the record's timeline says it, in the web page's words too
    said = [describe_event(e) for e in dq.engine.timeline(item["record_id"])
            if e["type"] == "work_item_claimed"]
    assert "reason: taken back from bob, whose delegation from ann ended" in said[-1], said


def test_the_approver_completes_it_straight_away(dq: Api) -> None:
    item = claimed_by_bob(dq)
    dq.engine.directory.update_user("ann", delegate="")
    r = dq.post("ann", f"/api/work/{item['id']}/complete", {"data": {"decision": "approve"}})
    assert r.status_code == 200, r.text
    assert (r.json()["completed_by"], r.json()["run"]["status"]) == ("ann", "completed")
    events = [e for e in dq.engine.run_events(item["run_id"])
              if e["type"] in ("work_item_claimed", "work_item_completed")]
    assert [(e["type"], e["actor"]) for e in events] == [
        ("work_item_claimed", "bob"), ("work_item_claimed", "ann"),
        ("work_item_completed", "ann")]
    assert events[1]["data"]["reason"] == "taken back from bob, whose delegation from ann ended"
    assert "on_behalf_of" not in events[2]["data"]


@pytest.mark.parametrize(("change", "why"), [
    ({"active": False}, "who is deactivated"),
    ({"roles": ["designer"]}, "who may no longer work items (designer)"),
])
def test_a_delegate_who_may_no_longer_work_loses_the_claim(
        dq: Api, change: dict[str, Any], why: str) -> None:
    item = claimed_by_bob(dq)
    dq.engine.directory.update_user("bob", **change)  # (ann still names him)
    with pytest.raises(PermissionDenied):
        dq.engine.complete(item["id"], "bob", {"decision": "approve"})
    got = dq.engine.claim(item["id"], "ann", scope=dq.engine.directory.get_user("ann"))
    assert got["claimed_by"] == "ann"
    assert claims(dq, item)[-1]["data"]["reason"] == f"taken back from bob, {why}"


def test_out_of_its_dates_the_claim_lapses_and_comes_back_with_them(dq: Api) -> None:
    clock = dq.clock  # 2026-01-05
    item = claimed_by_bob(dq, delegate_until="2026-01-06")
    clock.set(datetime(2026, 1, 7, 8, 0, tzinfo=UTC))  # the day after its last
    body = assert_problem(dq.post("bob", f"/api/work/{item['id']}/complete",
                                  {"data": {"decision": "approve"}}), 403)
    assert "whose delegation from ann ran until 2026-01-06" in body["detail"], body
    # ann extends it before anyone took the item: bob acts for her again, his claim stands
    r = dq.patch("ann", "/api/me", {"delegate_until": "2026-01-31"})
    assert r.status_code == 200, r.text
    body = assert_problem(dq.post("ann", f"/api/work/{item['id']}/claim"), 409)
    assert "already claimed by bob" in body["detail"]  # (a claim that stands holds her off)
    r = dq.post("bob", f"/api/work/{item['id']}/complete", {"data": {"decision": "approve"}})
    assert r.status_code == 200, r.text
    out = dq.engine.get_run(item["run_id"]).steps["manager"].output
    assert (out["approver"], out["on_behalf_of"]) == ("bob", "ann")


def test_a_delegation_not_yet_in_force_again(dq: Api) -> None:
    item = claimed_by_bob(dq)
    # ann moves bob's delegation to later dates (away again next month)
    dq.engine.directory.update_user("ann", delegate_from="2026-02-01",
                                    delegate_until="2026-02-10")
    with pytest.raises(PermissionDenied, match="not in force until 2026-02-01"):
        dq.engine.complete(item["id"], "bob", {"decision": "approve"})
    dq.engine.claim(item["id"], "ann")
    # next month bob acts for her again: the item is hers now (her claim holds him off)
    dq.clock.set(datetime(2026, 2, 2, 9, 0, tzinfo=UTC))
    assert dq.engine.directory.get_user("bob").acting_for == frozenset({"ann"})
    with pytest.raises(TransitionConflict, match="claimed by ann"):
        dq.engine.complete(item["id"], "bob", {"decision": "approve"})
    with pytest.raises(TransitionConflict, match="already claimed by ann"):
        dq.engine.claim(item["id"], "bob")
    # until she gives it back
    dq.engine.release(item["id"], "ann", scope=dq.engine.directory.get_user("ann"))
    result = dq.engine.complete(item["id"], "bob", {"decision": "approve"})
    assert result["run"].steps["manager"].output["on_behalf_of"] == "ann"


def test_her_new_delegate_takes_it_over(dq: Api) -> None:
    item = claimed_by_bob(dq)
    r = dq.patch("ann", "/api/me", {"delegate": "cyd"})
    assert r.status_code == 200, r.text
    r = dq.post("cyd", f"/api/work/{item['id']}/claim")
    assert r.status_code == 200 and r.json()["claimed_by"] == "cyd", r.text
    assert claims(dq, item)[-1]["data"] == {
        "work_item": item["id"], "step": "manager", "on_behalf_of": "ann",
        "taken_back_from": "bob", "reason": "taken over from bob, who is no longer ann's "
        "delegate (cyd is)"}
    r = dq.post("cyd", f"/api/work/{item['id']}/complete", {"data": {"decision": "approve"}})
    assert r.status_code == 200, r.text
    out = dq.engine.get_run(item["run_id"]).steps["manager"].output
    assert (out["approver"], out["on_behalf_of"]) == ("cyd", "ann")


def test_the_former_delegate_may_release_it(dq: Api) -> None:
    item = claimed_by_bob(dq)
    dq.engine.directory.update_user("ann", delegate="")
    r = dq.post("bob", f"/api/work/{item['id']}/release")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["claimed_by"], r.json()["assigned_to"]) == (
        "open", None, "user:ann")
    assert dq.post("ann", f"/api/work/{item['id']}/claim").json()["claimed_by"] == "ann"
    assert "taken_back_from" not in claims(dq, item)[-1]["data"]  # (an ordinary claim)


def test_an_operator_or_a_bystander_takes_nothing_back(dq: Api) -> None:
    item = claimed_by_bob(dq)
    dq.engine.directory.update_user("ann", delegate="")
    # an operator does not decide ann's approval either: reassign or release it instead
    body = assert_problem(dq.post("opal", f"/api/work/{item['id']}/claim"), 403)
    assert "assigned to user ann, not opal" in body["detail"]
    with pytest.raises(PermissionDenied, match="assigned to user ann, not cyd"):
        dq.engine.complete(item["id"], "cyd", {"decision": "approve"})
    assert dq.engine.get_work_item(item["id"])["claimed_by"] == "bob"
    assert len(claims(dq, item)) == 1
