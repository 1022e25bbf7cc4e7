"""The Work Guide agents work from (issue 16 point 1), through the API and the pages, on
SQLite and PostgreSQL: titles and summaries from the record, the tabs, search and
filters, release (unclaim) and next item, the item page's timeline."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.api.conftest import Api, assert_problem

# Callbacks to customers: autolaunched (no record), titled by an expression over the input,
# for the billing group (ann and cyd are in it), with a priority and a 2 h SLA.
CALLBACK = """
kind: orchestration
name: callback
trigger:
  type: autolaunched
  input: {who: {type: string, required: true}, prio: {type: string, required: true}}
stages:
  - name: call
    steps:
      - name: call
        type: interactive
        label: Call back
        assign: {group: billing}
        title: '="Call " + input.who'
        summary: '="Priority " + input.prio'
        priority: '=input.prio'
        sla: {duration: 2h, jeopardy: 30m}
        form: [{name: done, type: bool}]
"""


@pytest.fixture
def wg(api: Api, tmp_path: Path) -> Api:
    path = tmp_path / "callback.yaml"
    path.write_text(CALLBACK)
    api.engine.deploy([path], actor="setup")
    return api


def callback(api: Api, who: str, prio: str = "normal") -> dict[str, Any]:
    r = api.post("opal", "/api/runs", {"orchestration": "callback",
                                        "input": {"who": who, "prio": prio}})
    assert r.status_code == 201, r.text
    api.work()
    [item] = api.engine.list_work(run_id=r.json()["id"])
    return item


def titles(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [i["title"] for i in r.json()["items"]]


# ---- titles ---------------------------------------------------------------------------------
def test_items_are_titled_and_summarised_from_the_record(wg: Api) -> None:
    case = wg.new_case("Inverter shows error 42")
    item = wg.item_of(case["id"])
    # Case.title_field is subject; the triage step's summary is an expression
    assert (item["title"], item["summary"]) == ("Inverter shows error 42",
                                                "Web case, support tier 1")
    got = wg.get("ann", f"/api/work/{item['id']}").json()
    assert (got["title"], got["summary"]) == ("Inverter shows error 42", "Web case, support tier 1")
    listed = wg.get("ann", "/api/work").json()["items"]
    assert [(i["title"], i["summary"]) for i in listed] == [
        ("Inverter shows error 42", "Web case, support tier 1")]
    # an orchestration without a record: the step's own title and summary
    call = callback(wg, "Mrs Jones", "high")
    assert (call["title"], call["summary"], call["priority"]) == ("Call Mrs Jones",
                                                                 "Priority high", 2)
    # the title is stored: the record changing later does not change it
    wg.engine.update_record(case["id"], {"subject": "Renamed"})
    assert wg.get("ann", f"/api/work/{item['id']}").json()["title"] == "Inverter shows error 42"


def test_title_field_and_step_title_are_validated_with_their_place(wg: Api) -> None:
    bad = {
        "t.yaml": "kind: object\nname: Ticket\ntitle_field: subjet\nsummary_field: 3\n"
                  "fields:\n  subject: {type: string}\n",
        "o.yaml": CALLBACK.replace("name: callback", "name: callback2").replace(
            "title: '=\"Call \" + input.who'", "title: '=input.whom'").replace(
            "summary: '=\"Priority \" + input.prio'", "summary: [not, text]"),
    }
    r = wg.post("root", "/api/definitions/validate", {"files": bad})
    assert r.status_code == 200, r.text
    issues = {(i["file"], i["path"]): i["message"] for i in r.json()["issues"]}
    assert "title_field 'subjet' is not a field of this object type (did you mean 'subject'?)" \
        == issues[("t.yaml", "title_field")]
    assert ("t.yaml", "summary_field") in issues
    assert any(p.endswith(".title") and "whom" in m for (f, p), m in issues.items()
               if f == "o.yaml"), issues
    assert any(p.endswith(".summary") for (f, p) in issues if f == "o.yaml"), issues


# ---- tabs and filters -----------------------------------------------------------------------
def test_tabs_mine_unclaimed_and_all(wg: Api) -> None:
    a = callback(wg, "Ada")
    b = callback(wg, "Bea")
    case = wg.new_case("Invoice 7 is wrong")
    t = wg.item_of(case["id"])  # queue tier1: ann only
    assert wg.post("ann", f"/api/work/{a['id']}/claim").status_code == 200
    assert wg.post("cyd", f"/api/work/{b['id']}/claim").status_code == 200

    def tab(who: str, name: str) -> list[str]:
        return sorted(titles(wg.get(who, f"/api/work?tab={name}")))

    assert tab("ann", "mine") == ["Call Ada"]
    assert tab("ann", "unclaimed") == ["Invoice 7 is wrong"]
    assert tab("ann", "all") == ["Call Ada", "Call Bea", "Invoice 7 is wrong"]
    assert tab("cyd", "mine") == ["Call Bea"]
    assert tab("cyd", "unclaimed") == []
    assert tab("cyd", "all") == ["Call Ada", "Call Bea"]  # not tier1's case
    assert tab("bob", "all") == []
    # an operator's "all" is every item; their "mine" and "unclaimed" only their own
    assert tab("opal", "all") == ["Call Ada", "Call Bea", "Invoice 7 is wrong"]
    assert tab("opal", "mine") == [] and tab("opal", "unclaimed") == []
    # the counts agree with the lists
    assert wg.get("ann", "/api/work?tab=all").json()["total"] == 3
    assert wg.get("cyd", "/api/work?tab=mine").json()["total"] == 1
    # a status keeps some of the tab's statuses; mine=true keeps an operator's "all" to
    # their own scope
    assert sorted(titles(wg.get("ann", "/api/work?tab=all&status=claimed"))) == [
        "Call Ada", "Call Bea"]
    assert titles(wg.get("ann", "/api/work?tab=unclaimed&status=claimed")) == []
    assert titles(wg.get("opal", "/api/work?tab=all&mine=true")) == []
    assert_problem(wg.get("ann", "/api/work?tab=theirs"), 422)
    assert t["id"]


def test_search_and_filters_by_orchestration_queue_and_sla(wg: Api) -> None:
    wg.new_case("Inverter shows error 42")
    wg.new_case("Billing question about invoice 7731")
    callback(wg, "Mr Invoice")  # in the title, another orchestration
    wg.clock.advance(timedelta(minutes=100))  # callbacks: 2 h SLA, jeopardy 30 min before
    wg.work()
    callback(wg, "Mrs Late")

    def q(who: str, query: str) -> list[str]:
        return sorted(titles(wg.get(who, f"/api/work?{query}")))

    assert q("opal", "q=INVOICE") == ["Billing question about invoice 7731", "Call Mr Invoice"]
    assert q("opal", "q=invoice&orchestration=case_triage") == [
        "Billing question about invoice 7731"]
    assert q("opal", "q=tier%201") == ["Billing question about invoice 7731",
                                       "Inverter shows error 42"]  # the summary is searched
    assert q("opal", "q=%25") == []  # LIKE wildcards are text
    assert q("opal", "orchestration=callback") == ["Call Mr Invoice", "Call Mrs Late"]
    assert q("ann", "queue=tier1") == ["Billing question about invoice 7731",
                                       "Inverter shows error 42"]
    # 100 min in: the first callback is in jeopardy (from 90 min), the triage items on
    # track (4 h, 1 h), the new callback on track
    assert q("opal", "sla=in_jeopardy") == ["Call Mr Invoice"]
    assert q("opal", "sla=on_track") == ["Billing question about invoice 7731",
                                         "Call Mrs Late", "Inverter shows error 42"]
    assert q("opal", "sla=overdue") == []
    assert wg.get("opal", "/api/work?sla=in_jeopardy").json()["items"][0]["sla_status"] == \
        "in_jeopardy"
    wg.clock.advance(timedelta(minutes=30))
    wg.work()
    assert q("opal", "sla=overdue") == ["Call Mr Invoice"]
    assert wg.get("opal", "/api/work?sla=overdue").json()["total"] == 1
    assert q("ann", "sla=overdue&tab=mine") == []
    assert_problem(wg.get("opal", "/api/work?sla=late"), 422)


def test_a_filtered_list_pages_by_cursor(wg: Api) -> None:
    for n in range(7):
        callback(wg, f"Customer {n}")
        wg.new_case(f"Case {n}")
    seen: list[str] = []
    after = None
    while True:
        url = "/api/work?tab=all&orchestration=callback&q=customer&limit=3&order=due"
        body = wg.get("ann", url + (f"&after={after}" if after else "")).json()
        seen += [i["title"] for i in body["items"]]
        after = body["next"]
        if after is None:
            break
    assert seen == [f"Call Customer {n}" for n in range(7)]


# ---- release ---------------------------------------------------------------------------------
def test_release_gives_a_claimed_item_back(wg: Api) -> None:
    item = callback(wg, "Ada")
    iid = item["id"]
    assert_problem(wg.post("ann", f"/api/work/{iid}/release"), 409)  # not claimed
    assert wg.post("ann", f"/api/work/{iid}/claim").status_code == 200
    # another member of the group may not release ann's claim; bob may not even see it
    assert_problem(wg.post("cyd", f"/api/work/{iid}/release"), 403)
    assert_problem(wg.post("bob", f"/api/work/{iid}/release"), 404)
    r = wg.post("ann", f"/api/work/{iid}/release")
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["claimed_by"]) == ("open", None)
    # cyd may claim it now; an operator may release anyone's claim
    assert wg.post("cyd", f"/api/work/{iid}/claim").status_code == 200
    r = wg.post("opal", f"/api/work/{iid}/release")
    assert r.status_code == 200 and r.json()["status"] == "open"
    assert_problem(wg.post("opal", f"/api/work/{iid}/release"), 409)
    events = [e for e in wg.engine.run_events(item["run_id"])
              if e["type"] == "work_item_released"]
    assert [(e["actor"], e["data"]["claimed_by"]) for e in events] == [("ann", "ann"),
                                                                        ("opal", "cyd")]


# ---- next item --------------------------------------------------------------------------------
def test_next_item_claims_the_most_urgent_i_may_take(wg: Api) -> None:
    low = callback(wg, "Low", "low")
    wg.clock.advance(timedelta(minutes=1))
    normal = callback(wg, "Normal", "normal")
    wg.clock.advance(timedelta(minutes=1))
    urgent = callback(wg, "Urgent", "urgent")
    wg.clock.advance(timedelta(minutes=1))
    urgent2 = callback(wg, "Urgent later", "urgent")
    case = wg.new_case("Tier 1 case")  # normal, due in 4 h: after the normal callback
    assert wg.post("bob", "/api/work/next").status_code == 204  # nothing in tier2
    order = []
    for _ in range(5):
        r = wg.post("ann", "/api/work/next")
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["claimed_by"]) == ("claimed", "ann")
        order.append(r.json()["id"])
    assert order == [urgent["id"], urgent2["id"], normal["id"], wg.item_of(case["id"])["id"],
                     low["id"]]
    r = wg.post("ann", "/api/work/next")
    assert r.status_code == 204 and r.content == b""
    events = [e for e in wg.engine.run_events(urgent["run_id"]) if e["type"] == "work_item_claimed"]
    assert events[0]["data"]["via"] == "next" and events[0]["actor"] == "ann"


def test_next_item_keeps_to_the_filters_and_skips_claimed_and_others_items(wg: Api) -> None:
    a = callback(wg, "Ada", "high")
    callback(wg, "Bea", "normal")
    case = wg.new_case("Only ann's queue")
    assert wg.post("cyd", f"/api/work/{a['id']}/claim").status_code == 200
    assert wg.post("ann", "/api/work/next?queue=tier2").status_code == 204  # not ann's
    r = wg.post("ann", "/api/work/next?queue=tier1")
    assert r.status_code == 200 and r.json()["id"] == wg.item_of(case["id"])["id"]
    assert wg.post("ann", f"/api/work/{r.json()['id']}/release").status_code == 200
    r = wg.post("ann", "/api/work/next?orchestration=case_triage")
    assert r.status_code == 200 and r.json()["id"] == wg.item_of(case["id"])["id"]
    r = wg.post("cyd", "/api/work/next")  # the tier1 case is not cyd's
    assert r.status_code == 200 and r.json()["title"] == "Call Bea"
    assert wg.post("cyd", "/api/work/next").status_code == 204
    assert_problem(wg.post("cyd", "/api/work/next?sla=soon"), 422)


# ---- the pages ---------------------------------------------------------------------------------
def login(api: Api, name: str, password: str = "pw-secret-123") -> str:
    """A browser session for ``name``; returns its CSRF token."""
    api.engine.directory.update_user(name, password=password)
    client = api.client
    client.cookies.clear()
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    r = client.post("/login", data={"username": name, "password": password,
                                    **({"csrf_token": csrf[1]} if csrf else {})},
                    follow_redirects=False)
    assert r.status_code in (302, 303), r.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/work").text)
    assert token
    return token[1]


def test_pages_release_and_next_need_the_csrf_token(wg: Api) -> None:
    item = callback(wg, "Ada", "urgent")
    csrf = login(wg, "ann")
    c = wg.client
    r = c.post("/work/next", data={}, follow_redirects=False)
    assert r.status_code == 403 and wg.engine.get_work_item(item["id"])["status"] == "open"
    r = c.post("/work/next", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/work/{item['id']}"
    page = c.get(f"/work/{item['id']}").text
    assert "Call Ada" in page and "Priority urgent" in page and ">Release<" in page
    assert "Run timeline" in page and "work item claimed" in page  # the holder sees it
    r = c.post(f"/work/{item['id']}/release", data={}, follow_redirects=False)
    assert r.status_code == 403 and wg.engine.get_work_item(item["id"])["status"] == "claimed"
    r = c.post(f"/work/{item['id']}/release", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert wg.engine.get_work_item(item["id"])["status"] == "open"
    # nothing left for bob: back to the list, saying so
    login(wg, "bob")
    r = c.post("/work/next", data={"csrf_token": login(wg, "bob"), "tab": "mine"},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/work?tab=mine&order=due&none=1"
    assert "Nothing to take right now" in c.get(r.headers["location"]).text


def test_item_page_shows_the_record_timeline_to_the_holder_only(wg: Api) -> None:
    case = wg.new_case("Panel cracked in transit")
    item = wg.item_of(case["id"])
    login(wg, "ann")
    page = wg.client.get(f"/work/{item['id']}").text
    assert "Record timeline" not in page  # open: not held by ann yet
    wg.engine.claim(item["id"], "ann")
    page = wg.client.get(f"/work/{item['id']}").text
    assert "Record timeline" in page and "record created" in page
    assert f'href="/runs/{item["run_id"]}"' not in page  # agents do not get the Monitor
    assert "due in 4 h" in page and f'datetime="{item["due_at"]}"' in page


def test_the_list_page_and_its_live_fragment_keep_the_filters(wg: Api) -> None:
    callback(wg, "Ada")
    callback(wg, "Bea")
    login(wg, "ann")
    page = wg.client.get("/work?tab=all&q=bea&order=priority").text
    assert "Call Bea" in page and "Call Ada" not in page
    live = re.search(r'hx-get="(/work/live\?[^"]+)"', page)
    assert live and "every 10s" in page
    url = live[1].replace("&amp;", "&")
    assert "q=bea" in url and "order=priority" in url and "tab=all" in url
    fragment = wg.client.get(url).text
    assert "Call Bea" in fragment and "Call Ada" not in fragment
    assert "<html" not in fragment and 'id="work-live"' in fragment
    assert "due in 2 h" in fragment and "just now" in fragment


def test_search_ignores_case_beyond_ascii_in_the_list_and_its_count(wg: Api) -> None:
    callback(wg, "Jörg Ähnlich")
    callback(wg, "Jorg Ahnlich")
    for q in ("ÄHNLICH", "jÖrg"):
        body = wg.get("opal", "/api/work", params={"q": q}).json()
        assert [i["title"] for i in body["items"]] == ["Call Jörg Ähnlich"], q
        assert body["total"] == 1, q


def test_operators_reassign_from_the_item_page(wg: Api) -> None:
    """The Work Guide's reassign (what the API's and `baton work reassign` do): operators
    and admins only, CSRF-checked, a bad target said next to the field (422), a good one
    moves the item and says so."""
    item = callback(wg, "Ada")
    url = f"/work/{item['id']}"
    csrf = login(wg, "ann")  # an agent of the item's queue: sees it, may not reassign it
    assert "Reassign to" not in wg.client.get(url).text
    r = wg.client.post(f"{url}/reassign", data={"to": "queue:tier2", "csrf_token": csrf})
    assert r.status_code == 403
    csrf = login(wg, "opal")
    assert "Reassign to" in wg.client.get(url).text
    r = wg.client.post(f"{url}/reassign", data={"to": "queue:tier2"}, follow_redirects=False)
    assert r.status_code == 403, "no CSRF token: refused"
    for to, said in (("user:nobody", "there is no user"), ("tier2", "expected user:NAME")):
        r = wg.client.post(f"{url}/reassign", data={"to": to, "csrf_token": csrf})
        assert r.status_code == 422 and said in r.text, (to, r.status_code)
        assert f'value="{to}"' in r.text  # kept in the field
    assert wg.engine.get_work_item(item["id"])["assignee"] == item["assignee"]
    r = wg.client.post(f"{url}/reassign", data={"to": "queue:tier2", "csrf_token": csrf},
                       follow_redirects=False)
    assert r.status_code == 303
    assert "Reassigned to queue:tier2." in wg.client.get(r.headers["location"]).text
    moved = wg.engine.get_work_item(item["id"])
    assert (moved["assignee_kind"], moved["assignee"]) == ("queue", "tier2")


def test_a_live_refresh_after_the_session_ended_comes_back_to_the_same_filters(wg: Api) -> None:
    """The Work Guide refreshes itself (htmx); when the session has ended, the login page
    brings the person back to the tab and filters they had, not the bare list."""
    wg.client.cookies.clear()
    r = wg.client.get("/work/live?tab=mine&order=created", follow_redirects=False, headers={
        "HX-Request": "true", "HX-Current-URL": "http://testserver/work?tab=mine&order=created"})
    assert r.status_code == 204
    assert r.headers["HX-Redirect"] == "/login?next=%2Fwork%3Ftab%3Dmine%26order%3Dcreated"
