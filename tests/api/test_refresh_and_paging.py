"""What an audit found on the pages (brief G), through the whole app on SQLite and
PostgreSQL: a public form's submission and a work item's completion answer 303 to a page
that a reload only reads (the thanks page only in the browser that sent the form; a form
sent twice files one record), a refused submission does not use up the rate limit (refused
ones have their own, larger, allowance), and the Fallout page says how many steps and
incidents there are in all, pages through them, and its "Retry all N" retries N or none."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from baton.web.ui.fallout import PAGE
from baton.web.ui.forms import SUBMISSION_FIELD, RateLimiter
from tests.api.conftest import Api
from tests.api.test_intake_forms import DEFS, GOOD, visitor

PASSWORD = "pw-secret-123"


@pytest.fixture
def forms(api: Api, tmp_path: Path) -> Api:
    (tmp_path / "defs.yaml").write_text(DEFS)  # contact: rate_limit 3
    api.engine.deploy([tmp_path / "defs.yaml"], actor="test")
    return api


def shown(c: TestClient, name: str = "contact") -> dict[str, str]:
    """The form's hidden fields, as a browser showing it holds them."""
    r = c.get(f"/forms/{name}")
    assert r.status_code == 200, r.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
    token = re.search(rf'name="{SUBMISSION_FIELD}" value="([^"]+)"', r.text)
    assert csrf and token, r.text
    return {"csrf_token": csrf[1], SUBMISSION_FIELD: token[1]}


def reference(page: str) -> str | None:
    found = re.search(r'class="ref">(rec_\w+)<', page)
    return found[1] if found else None


# ---- the public form: Post/Redirect/Get, one record per showing of the form ---------------
def test_the_thanks_page_is_a_get_that_files_nothing_and_shows_only_in_that_browser(
        forms: Api) -> None:
    c = visitor(forms)
    r = c.post("/forms/contact", data={**shown(c), **GOOD})
    assert r.status_code == 303, r.text
    thanks = r.headers["location"]
    assert thanks.startswith("/forms/contact?")
    ref = parse_qs(urlsplit(thanks).query)["sent"][0]  # what a client that POSTs reads
    for _ in range(3):  # reloads
        page = c.get(thanks)
        assert page.status_code == 200 and reference(page.text) == ref, page.text
        assert "Thank you, we will answer soon." in page.text
        assert page.headers["cache-control"] == "no-store"
    (record,) = forms.engine.list_records("Inquiry")
    assert record["id"] == ref and len(forms.engine.list_runs(record_id=ref)) == 1

    # anyone else with the address (another browser: another cookie, or none) gets the form
    for other in (visitor(forms, "198.51.100.30"), TestClient(forms.app)):
        shown(other)
        page = other.get(thanks)
        assert page.status_code == 200 and reference(page.text) is None, page.text
        assert ref not in page.text and "only in the browser that sent it" in page.text
    # nor does a forged or altered signature show anything
    for bad in (thanks.replace(ref, ref[:-1] + ("x" if ref[-1] != "x" else "y")),
                thanks.split("&check=")[0], thanks + "x"):
        page = c.get(bad)
        assert page.status_code == 200 and reference(page.text) is None, (bad, page.text)
    assert len(forms.engine.list_records("Inquiry")) == 1


def test_the_same_form_sent_again_files_nothing_and_other_values_say_so(forms: Api) -> None:
    c = visitor(forms)
    hidden = shown(c)
    first = c.post("/forms/contact", data={**hidden, **GOOD})
    again = c.post("/forms/contact", data={**hidden, **GOOD})  # Back and Send, two clicks
    assert first.status_code == again.status_code == 303, again.text
    assert again.headers["location"] == first.headers["location"]
    assert len(forms.engine.list_records("Inquiry")) == 1

    # the same showing of the form, changed and sent: said, with its reference, not filed
    changed = c.post("/forms/contact", data={**hidden, **GOOD, "subject": "Another thing"})
    assert changed.status_code == 409, changed.text
    ref = parse_qs(urlsplit(first.headers["location"]).query)["sent"][0]
    assert f"sent already (your reference: {ref})" in changed.text
    assert 'value="Another thing"' in changed.text  # what was typed is kept
    assert len(forms.engine.list_records("Inquiry")) == 1
    token = re.search(rf'name="{SUBMISSION_FIELD}" value="([^"]+)"', changed.text)
    assert token and token[1] != hidden[SUBMISSION_FIELD]  # a new one: Send files it
    r = c.post("/forms/contact", data={**hidden, SUBMISSION_FIELD: token[1], **GOOD,
                                       "subject": "Another thing"})
    assert r.status_code == 303 and r.headers["location"] != first.headers["location"]
    assert sorted(x["subject"] for x in forms.engine.list_records("Inquiry")) == [
        "Another thing", "Invoice twice"]

    # another browser that got hold of the token files its own record: the key is per
    # browser, so it learns nothing of the first one
    other = visitor(forms, "198.51.100.31")
    r = other.post("/forms/contact", data={**shown(other), SUBMISSION_FIELD:
                                           hidden[SUBMISSION_FIELD], **GOOD})
    assert r.status_code == 303 and ref not in r.headers["location"]
    assert len(forms.engine.list_records("Inquiry")) == 3


def test_refused_submissions_do_not_lock_out_a_visitor_but_are_bounded(forms: Api) -> None:
    c = visitor(forms)
    for _ in range(5):  # five typos: more than the form's rate (3 a minute)
        r = c.post("/forms/contact", data={**shown(c), **GOOD, "cars": "many"})
        assert r.status_code == 422, r.text
    for i in range(3):
        r = c.post("/forms/contact", data={**shown(c), **GOOD, "subject": f"n{i}"})
        assert r.status_code == 303, r.text
    r = c.post("/forms/contact", data={**shown(c), **GOOD})
    assert r.status_code == 429 and "Too many submissions" in r.text
    assert len(forms.engine.list_records("Inquiry")) == 3

    # rubbish alone is bounded too: its own allowance, then 429 for it and the rest
    bot = visitor(forms, "198.51.100.40")
    allowance = RateLimiter.refused_limit(3)
    for _ in range(allowance):
        assert bot.post("/forms/contact", data={**shown(bot), "cars": "x"}).status_code == 422
    r = bot.post("/forms/contact", data={**shown(bot), "cars": "x"})
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert bot.post("/forms/contact", data={**shown(bot), **GOOD}).status_code == 429
    forms.clock.advance(timedelta(seconds=61))
    assert bot.post("/forms/contact", data={**shown(bot), **GOOD}).status_code == 303
    assert len(forms.engine.list_records("Inquiry")) == 4


# ---- the Work Guide: what happened next is a page of its own -------------------------------
def signed_in(api: Api, name: str) -> tuple[TestClient, str]:
    api.engine.directory.update_user(name, password=PASSWORD)
    c = TestClient(api.app, follow_redirects=False)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text)
    assert csrf
    r = c.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": csrf[1]})
    assert r.status_code == 303, r.text
    page = c.get("/settings").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page) or re.search(
        r'"X-CSRF-Token": "([^"]+)"', page)
    assert token, page[:500]
    return c, token[1]


def test_completing_an_item_goes_to_a_page_a_reload_only_reads(api: Api) -> None:
    case = api.new_case("Inverter shows error 42")
    item = api.item_of(case["id"])
    ann, csrf = signed_in(api, "ann")
    r = ann.post(f"/work/{item['id']}", data={"csrf_token": csrf, "resolution": "escalate"})
    assert r.status_code == 303, r.text
    after = r.headers["location"]
    assert after == f"/work/{item['id']}?done=completed"
    for _ in range(2):  # the page, then a reload: no 409, the same item completed once
        page = ann.get(after)
        assert page.status_code == 200, page.text
        assert "What happened next" in page.text and "Completed." in page.text
        assert f"({item['id']}) was submitted" in page.text and "409" not in page.text
    assert api.engine.get_work_item(item["id"])["completed_by"] == "ann"
    api.work()  # the run goes on: escalated, triaged again by tier 2 (bob)
    page = ann.get(after)
    assert "1 new work item(s) went to other people." in page.text, page.text
    assert "stage-name\">triage<" in page.text

    # only to who completed it: an operator who may see the item gets its page; an agent
    # who may not, the 404 of an item that does not exist
    opal, _ = signed_in(api, "opal")
    page = opal.get(after)
    assert page.status_code == 200 and "What happened next" not in page.text
    assert "Completed by ann" in page.text
    cyd, _ = signed_in(api, "cyd")
    assert cyd.get(after).status_code == 404


# ---- Fallout: true totals, pages, and a group retry that does what it says -----------------
FAILING = """
kind: orchestration
name: {name}
trigger: {{type: autolaunched}}
stages:
  - name: only
    steps: [{{name: {step}, type: background, flow: api_tests.boom}}]
"""


def _fail(api: Api, name: str, n: int) -> None:
    for _ in range(n):
        api.engine.start(name, {}, actor="test")
    api.work()


def _listed(page: str) -> list[str]:
    return re.findall(r'<input type="hidden" name="id" value="(run_[^"]+)">', page)


def test_the_fallout_page_pages_through_every_step_and_counts_them_all(
        api: Api, tmp_path: Path) -> None:
    for name, step in (("sync_a", "push"), ("sync_b", "pull")):
        (tmp_path / f"{name}.yaml").write_text(FAILING.format(name=name, step=step))
    api.engine.deploy([tmp_path / "sync_a.yaml", tmp_path / "sync_b.yaml"], actor="setup")
    _fail(api, "sync_a", 209)
    _fail(api, "sync_b", 6)
    every = sorted((e["run_id"], e["step"]) for e in api.engine.list_fallout(limit=1000))
    assert len(every) == 215
    opal, csrf = signed_in(api, "opal")
    page = opal.get("/fallout")
    assert page.status_code == 200, page.text
    assert "215 steps in fallout: 50 on this page." in page.text
    assert "215 in all" in page.text  # the pager
    rows = re.findall(r"<td>(\d[\d,]*)</td>\s*<td><form[^>]*aria-label=\"([^\"]+)\"", page.text)
    assert rows == [("209", "Retry all 209 of sync_a / push"),
                    ("6", "Retry all 6 of sync_b / pull")], rows

    # the pages, by their Next links: each step once, in order; resolving the step a page
    # ends with (its cursor) does not skip the next page's first
    seen: list[str] = []
    url: str | None = "/fallout"
    while url is not None:
        page = opal.get(url)
        ids = _listed(page.text)
        assert 0 < len(ids) <= PAGE, (url, len(ids))
        seen += ids
        nxt = re.search(r'<a rel="next" href="([^"]+)"', page.text)
        url = nxt[1].replace("&amp;", "&") if nxt else None
        if len(seen) == PAGE:  # the first page's last: resolved before following Next
            r = opal.post("/fallout", data={"csrf_token": csrf, "id": ids[-1],
                                            "action": "skip", "reason": "done by hand"})
            assert r.status_code == 303, r.text
    assert seen == [f"{run}:{step}" for run, step in every]
    assert len(set(seen)) == 215 and len(seen) == 215

    # a cursor that is not one is said, not a 500
    bad = opal.get("/fallout?after=nonsense")
    assert bad.status_code == 422 and "query.after" in bad.text

    # "Retry all 208": the group grew since the page was shown: nothing is retried
    _fail(api, "sync_a", 1)
    key = next(m for m in re.findall(r'name="key" value="([^"]+)"', opal.get("/fallout").text)
               if m.startswith("sync_a"))
    key = key.replace("&#31;", "\x1f").replace("&amp;", "&")
    r = opal.post("/fallout/group", data={"csrf_token": csrf, "key": key, "count": "208",
                                          "reason": "the CRM is back"})
    assert r.status_code == 409, r.text
    assert "it holds 209 steps now, not 208; nothing was retried" in r.text
    assert "Retry all 209" in r.text
    assert len(api.engine.list_fallout(limit=1000)) == 215
    r = opal.post("/fallout/group", data={"csrf_token": csrf, "key": key,
                                          "reason": "the CRM is back"})
    assert r.status_code == 422 and "how many steps to retry" in r.text
    r = opal.post("/fallout/group", data={"csrf_token": csrf, "key": key, "count": "209",
                                          "reason": "the CRM is back"})
    assert r.status_code == 303 and "done=retried%20209%20steps" in r.headers["location"]
    left = api.engine.list_fallout(limit=1000)
    assert sorted(e["orchestration"] for e in left) == ["sync_b"] * 6
    page = opal.get(r.headers["location"])
    assert "Done: retried 209 steps." in page.text and "6 steps in fallout." in page.text
    assert 'rel="next"' not in page.text


def test_the_fallout_page_pages_through_incidents_and_says_how_many(
        sqlite_api: Api, tmp_path: Path) -> None:
    api = sqlite_api
    (tmp_path / "g.yaml").write_text("""
kind: object
name: Gadget
fields:
  label: {type: string, required: true}
  n: {type: int, default: 0}
---
kind: orchestration
name: gadget_check
trigger: {type: record, object: Gadget, on: [create], when: '=10 / record.n > 1'}
stages:
  - name: only
    steps: [{name: look, type: interactive, assign: {queue: tier1}}]
""")
    api.engine.deploy([tmp_path / "g.yaml"], actor="setup")
    for i in range(57):
        api.engine.create_record("Gadget", {"label": f"g{i}"}, actor="test")
    opal, csrf = signed_in(api, "opal")
    page = opal.get("/fallout").text
    assert "57 open incidents: 1–50 shown." in page
    ids = re.findall(r"<dt>Incident</dt><dd>(inc_\w+)</dd>", page)
    assert len(ids) == 50
    nxt = re.search(r'<a href="([^"]+)">Next incidents</a>', page)
    assert nxt, page
    second = opal.get(nxt[1].replace("&amp;", "&")).text
    rest = re.findall(r"<dt>Incident</dt><dd>(inc_\w+)</dd>", second)
    assert "57 open incidents: 51–57 shown." in second and "Next incidents" not in second
    assert sorted(ids + rest) == sorted(i["id"] for i in api.engine.list_incidents(limit=100))
    # an action from the second page comes back to it
    r = opal.post("/fallout/incidents", data={"csrf_token": csrf, "id": rest[0],
                                              "action": "dismiss", "reason": "a test",
                                              "incidents": "50"})
    assert r.status_code == 303 and "incidents=50" in r.headers["location"], r.text
    again = opal.get(r.headers["location"]).text
    assert "56 open incidents: 51–56 shown." in again and rest[0] not in again
    bad = opal.get("/fallout?incidents=-1")
    assert bad.status_code == 422
