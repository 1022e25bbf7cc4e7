"""Delegation of approvals (issue 18 item 3), on SQLite and PostgreSQL: an approver names a
delegate (optionally between two dates) by the CLI's directory call, the API or their own
settings page; the delegate sees the approvals in their Work Guide, claims and decides them,
and the history says "approved by X on behalf of Y". Only approvals, only while the
delegation is in force, never someone else's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from baton.errors import PermissionDenied, ValidationError
from tests.api.conftest import Api, assert_problem
from tests.api.test_work_guide import login

# A quote goes to the approver its record names; a follow-up is an ordinary work item for
# the same person (a delegate may not do that one).
QUOTES = """
kind: object
name: Quote
fields:
  amount: {type: int}
  approver: {type: string}
---
kind: orchestration
name: quote_ok
trigger: {type: record, object: Quote, on: [create]}
stages:
  - name: approve
    steps:
      - {name: manager, type: approval, assign: {resource: '=record.approver'}}
      - {name: follow_up, type: interactive, assign: {resource: '=record.approver'},
         form: [{name: done, type: bool}]}
    exit_when: '=steps.manager.status == "completed"'
    next:
      - {when: '=steps.manager.output.decision == "approve"', goto: end, label: Approved}
      - {goto: end, label: Rejected}
"""


@pytest.fixture
def dq(api: Api, tmp_path: Path) -> Api:
    path = tmp_path / "quotes.yaml"
    path.write_text(QUOTES)
    api.engine.deploy([path], actor="setup")
    return api


def quote(api: Api, approver: str = "user:ann") -> tuple[dict[str, Any], dict[str, Any],
                                                          dict[str, Any]]:
    """A quote for ``approver``: (record, its approval item, its follow-up item)."""
    rec = api.engine.create_record("Quote", {"amount": 5000, "approver": approver},
                                   actor="user:opal")
    api.work()
    items = {i["step"]: i for i in api.engine.list_work(record_id=rec["id"])}
    return rec, items["manager"], items["follow_up"]


def ids(r: Any) -> set[str]:
    assert r.status_code == 200, r.text
    return {i["id"] for i in r.json()["items"]}


def test_the_delegate_decides_on_behalf_of_the_approver_audited_as_such(dq: Api) -> None:
    eng = dq.engine
    eng.directory.update_user("ann", delegate="bob", delegate_until="2026-01-10")
    rec, item, follow_up = quote(dq)
    assert item["step_type"] == "approval" and follow_up["step_type"] == "interactive"
    # bob sees ann's approval in his Work Guide (every tab that lists his items), not her
    # other work; cyd, who is nobody's delegate, sees neither
    for tab in ("all", "mine", "unclaimed"):
        assert item["id"] in ids(dq.get("bob", f"/api/work?tab={tab}")), tab
        assert follow_up["id"] not in ids(dq.get("bob", f"/api/work?tab={tab}")), tab
    assert item["id"] in ids(dq.get("bob", "/api/work"))
    assert dq.get("bob", "/api/work?tab=mine").json()["total"] == 1
    assert not {item["id"], follow_up["id"]} & ids(dq.get("cyd", "/api/work"))
    assert dq.get("bob", f"/api/work/{item['id']}").status_code == 200
    assert dq.get("bob", f"/api/work/{follow_up['id']}").status_code == 404
    assert dq.get("bob", "/api/me").json()["acting_for"] == ["ann"]
    # the delegate may not do ann's other work
    with pytest.raises(PermissionDenied, match="assigned to user ann, not bob"):
        eng.complete(follow_up["id"], "bob", {"done": True})
    # he claims and approves it
    r = dq.post("bob", f"/api/work/{item['id']}/claim")
    assert r.status_code == 200, r.text
    r = dq.post("bob", f"/api/work/{item['id']}/complete",
                {"data": {"decision": "approve", "comments": "ann is away; fine"}})
    assert r.status_code == 200, r.text
    out = eng.get_run(r.json()["run"]["id"]).steps["manager"].output
    assert (out["approver"], out["on_behalf_of"], out["decision"]) == ("bob", "ann", "approve")
    assert r.json()["run"]["status"] == "completed"
    events = {e["type"]: e for e in eng.timeline(rec["id"])}
    decided = events["approval_decided"]
    assert decided["actor"] == "bob" and decided["data"]["on_behalf_of"] == "ann"
    assert events["work_item_claimed"]["data"]["on_behalf_of"] == "ann"
    assert events["work_item_completed"]["data"]["on_behalf_of"] == "ann"
    # the timelines say it in words (the record's page and the CLI's table use one line)
    login(dq, "opal")
    page = dq.client.get(f"/records/{rec['id']}").text
    assert "manager: approved by bob on behalf of ann: ann is away; fine" in page
    assert "Approval history" in page and "bob on behalf of ann" in page


def test_only_while_the_delegation_is_in_force(dq: Api) -> None:
    eng, clock = dq.engine, dq.clock  # the virtual clock is at 2026-01-05 09:00 UTC
    eng.directory.update_user("ann", delegate="bob", delegate_from="2026-01-06",
                              delegate_until="2026-01-07")
    _rec, item, _ = quote(dq)
    assert item["id"] not in ids(dq.get("bob", "/api/work"))  # not yet
    assert_problem(dq.post("bob", f"/api/work/{item['id']}/claim"), 404)
    with pytest.raises(PermissionDenied):
        eng.complete(item["id"], "bob", {"decision": "approve"})
    clock.set(datetime(2026, 1, 6, 0, 0, tzinfo=UTC))  # the first day, from midnight
    assert item["id"] in ids(dq.get("bob", "/api/work"))
    clock.set(datetime(2026, 1, 7, 23, 59, tzinfo=UTC))  # the last day, to its end
    assert item["id"] in ids(dq.get("bob", "/api/work"))
    clock.set(datetime(2026, 1, 8, 0, 0, tzinfo=UTC))  # over
    assert item["id"] not in ids(dq.get("bob", "/api/work"))
    with pytest.raises(PermissionDenied):
        eng.complete(item["id"], "bob", {"decision": "approve"})
    # ann extends it (dates alone change the current delegation's)
    me = dq.patch("ann", "/api/me", {"delegate_until": "2026-01-31"})
    assert me.status_code == 200, me.text
    assert (me.json()["delegate"], me.json()["delegate_from"], me.json()["delegate_until"]) \
        == ("bob", "2026-01-06", "2026-01-31")
    result = eng.complete(item["id"], "bob", {"decision": "reject", "comments": "too high"})
    assert result["run"].decisions[-1]["label"] == "Rejected"
    assert result["run"].steps["manager"].output["on_behalf_of"] == "ann"


def test_the_approver_still_decides_and_a_claim_by_one_holds_off_the_other(dq: Api) -> None:
    eng = dq.engine
    eng.directory.update_user("ann", delegate="bob")
    _rec, item, _ = quote(dq)
    eng.claim(item["id"], "ann")
    with pytest.raises(Exception, match="claimed by ann"):
        eng.complete(item["id"], "bob", {"decision": "approve"})
    result = eng.complete(item["id"], "ann", {"decision": "approve"})
    out = result["run"].steps["manager"].output
    assert out["approver"] == "ann" and "on_behalf_of" not in out


def test_group_and_queue_approvals_are_not_delegated_and_next_item_takes_delegated(
        dq: Api) -> None:
    eng = dq.engine
    eng.directory.update_user("ann", delegate="bob")
    _r1, queue_item, _ = quote(dq, "queue:tier1")  # ann's queue; bob is not in it
    _r2, item, _ = quote(dq, "user:ann")
    assert queue_item["id"] not in ids(dq.get("bob", "/api/work"))
    r = dq.post("bob", "/api/work/next?queue=tier2")  # his own queue only: nothing
    assert r.status_code == 204
    r = dq.post("bob", "/api/work/next")
    assert r.status_code == 200 and r.json()["id"] == item["id"], r.text
    claimed = [e for e in eng.run_events(item["run_id"]) if e["type"] == "work_item_claimed"]
    assert claimed[-1]["data"] == {"work_item": item["id"], "step": "manager", "via": "next",
                                   "on_behalf_of": "ann"}
    # ending the delegation ends it: bob no longer acts for ann
    r = dq.patch("ann", "/api/me", {"delegate": ""})
    assert r.status_code == 200 and r.json()["delegate"] is None
    with pytest.raises(PermissionDenied):
        eng.complete(item["id"], "bob", {"decision": "approve"})


BAD = [
    ({"delegate": "ann"}, "delegate", "own delegate"),
    ({"delegate": "bob", "delegate_from": "2026-02-30"}, "delegate_from", "not a date"),
    ({"delegate": "bob", "delegate_from": "2026-03-01", "delegate_until": "2026-02-01"},
     "delegate_until", "before the start"),
    ({"delegate_until": "2026-02-01"}, "delegate", "dates need a delegate"),
    ({"delegate": "", "delegate_until": "2026-02-01"}, "delegate", "dates need a delegate"),
]


def test_bad_delegations_are_refused_naming_the_field(dq: Api) -> None:
    for change, field, says in BAD:
        with pytest.raises(ValidationError) as exc:
            dq.engine.directory.update_user("ann", **change)
        assert field in exc.value.fields and says in exc.value.fields[field], change
        body = assert_problem(dq.patch("ann", "/api/me", change), 422, field)
        assert says in str(body), change
    assert dq.get("ann", "/api/me").json()["delegate"] is None  # nothing was changed
    assert_problem(dq.patch("ann", "/api/me", {"delegate_from": "5 May"}), 422,
                   "delegate_from")  # (the schema's pattern)
    # a name that is no user's: refused to who may list users (the directory's default,
    # the Team's operator); an agent is not told (tests/api/test_access_tightening.py)
    with pytest.raises(ValidationError, match="no user 'nobody'"):
        dq.engine.directory.update_user("ann", delegate="nobody")
    assert_problem(dq.patch("opal", "/api/me", {"delegate": "nobody"}), 422, "delegate")


def test_admins_set_anyones_delegate_and_agents_only_their_own(dq: Api) -> None:
    r = dq.patch("root", "/api/users/ann", {"delegate": "cyd", "delegate_from": "2026-01-05"})
    assert r.status_code == 200, r.text
    assert (r.json()["delegate"], r.json()["delegate_from"], r.json()["delegate_until"]) \
        == ("cyd", "2026-01-05", None)
    assert dq.get("cyd", "/api/me").json()["acting_for"] == ["ann"]
    assert_problem(dq.patch("bob", "/api/users/ann", {"delegate": "bob"}), 403)
    r = dq.get("root", "/api/users/ann")
    assert r.json()["delegate"] == "cyd"
    r = dq.patch("bob", "/api/me", {"delegate": "cyd", "delegate_until": "2026-02-01"})
    assert r.status_code == 200 and r.json()["name"] == "bob"
    assert dq.get("root", "/api/users/bob").json()["delegate_until"] == "2026-02-01"


def test_the_settings_page_names_and_ends_the_delegate(dq: Api) -> None:
    csrf = login(dq, "ann")
    c = dq.client
    page = c.get("/settings")
    assert page.status_code == 200 and "Now: nobody." in page.text
    assert 'href="/settings"' in c.get("/work").text  # reachable from every page
    r = c.post("/settings", data={"delegate": "bob", "delegate_until": "2026-01-31"})
    assert r.status_code == 403  # no CSRF token
    r = c.post("/settings", data={"csrf_token": csrf, "delegate": "bob", "delegate_from": "",
                                  "delegate_until": "2026-01-31"})
    assert r.status_code == 200 and "Saved." in r.text and "Now: bob until 2026-01-31." in r.text
    assert dq.engine.directory.get_user("ann").delegation is not None
    r = c.post("/settings", data={"csrf_token": csrf, "delegate": "no body"})
    assert r.status_code == 422 and "invalid user name &#39;no body&#39;" in r.text
    assert dq.engine.directory.get_user("ann").delegation.to == "bob"  # type: ignore[union-attr]
    # bob's Work Guide marks ann's approval as hers, and his page says whom he acts for
    _rec, item, _ = quote(dq)
    login(dq, "bob")
    assert "(you act for ann)" in c.get("/work").text
    assert "You act for: ann" in c.get("/settings").text
    item_page = c.get(f"/work/{item['id']}").text
    assert "you decide on behalf of ann" in item_page
    csrf = login(dq, "ann")
    r = c.post("/settings", data={"csrf_token": csrf, "delegate": ""})
    assert r.status_code == 200 and "Now: nobody." in r.text


def test_recall_tells_only_who_may_see_the_item_what_it_is(dq: Api) -> None:
    """Who may not recall an item and cannot see it gets 404, as for a missing one (not its
    kind, state or submitter); who sees it but did not submit it, 403; the submitter
    recalls it once, and then hears it cannot be *recalled*."""
    rec = dq.engine.create_record("Quote", {"amount": 5000, "approver": "user:ann"},
                                  actor="user:cyd")
    dq.work()
    item = next(i for i in dq.engine.list_work(record_id=rec["id"]) if i["step"] == "manager")
    case = dq.item_of(dq.new_case()["id"])  # a tier1 triage item: not an approval
    url = f"/api/work/{item['id']}/recall"
    for who in ("bob", "dee"):  # an agent of another queue; a designer (no work at all)
        for target in (url, f"/api/work/{case['id']}/recall"):
            body = assert_problem(dq.post(who, target), 404)
            assert "approval" not in body["detail"] and "submitted" not in body["detail"]
    assert_problem(dq.post("ann", url), 403)  # the approver sees it, did not submit it
    assert_problem(dq.post("ann", f"/api/work/{case['id']}/recall"), 403)
    assert_problem(dq.post("opal", f"/api/work/{case['id']}/recall"), 422, "work_item")
    assert dq.post("cyd", url).status_code == 200
    again = assert_problem(dq.post("cyd", url), 409)
    assert "cannot be recalled" in again["detail"], again


def test_a_delegate_who_may_not_work_items_is_refused(dq: Api) -> None:
    # a designer could neither open nor decide the approvals handed to them
    with pytest.raises(ValidationError, match="'dee'.*may not work items"):
        dq.engine.directory.update_user("ann", delegate="dee")
    assert_problem(dq.patch("root", "/api/users/ann", {"delegate": "dee"}), 422, "delegate")
    assert dq.get("ann", "/api/me").json()["delegate"] is None  # nothing was changed


def test_a_deactivated_delegate_is_refused(dq: Api) -> None:
    dq.engine.directory.update_user("cyd", active=False)
    with pytest.raises(ValidationError, match="'cyd' is deactivated"):
        dq.engine.directory.update_user("ann", delegate="cyd")
    assert_problem(dq.patch("root", "/api/users/ann", {"delegate": "cyd"}), 422, "delegate")
    assert dq.get("ann", "/api/me").json()["delegate"] is None
