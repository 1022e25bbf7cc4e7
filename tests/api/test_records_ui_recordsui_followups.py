"""The Records pages create and edit records (brief "recordsui"): their form handlers over
the whole ASGI app (a real Engine on a SQLite file, virtual time), as a browser session
with its CSRF token, or with an API token.

* create: a field's problem is said next to it with what was typed kept (422); a valid
  form creates the record (its trigger starts a run) and answers 303 to the record's page,
  which names the run; the same form sent twice creates one record; without the CSRF
  token nothing is written;
* edit: only the changed fields are written, with the form's version; a form drawn before
  someone else's change writes nothing (409), says what they changed and keeps what was
  typed, over the current values; nothing changed writes nothing;
* roles: who may not write records gets no New or Edit button and a 403.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from tests.api.conftest import Api
from tests.api.test_run_page_actions import login


def _hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{re.escape(name)}" value="([^"]*)"', page)
    assert found, page[:3000]
    return html.unescape(found[1])


def _edit_form(api: Api, record_id: str, csrf: str) -> dict[str, str]:
    """What the edit page's form sends unchanged: its hidden inputs and each field's value
    as the page shows it (as a browser would send it)."""
    page = api.client.get(f"/records/{record_id}/edit").text
    record = api.engine.get_record(record_id)
    sent = {"csrf_token": csrf, "record-version": _hidden(page, "record-version"),
            "record-shown": _hidden(page, "record-shown")}
    for name in ("subject", "origin", "level", "status", "account", "number", "category",
                 "priority", "agent", "resolution"):
        value = record.get(name)
        if value is None:
            sent[name] = ""
        elif name == "resolution":
            sent[name] = json.dumps(value, indent=2)
        else:
            sent[name] = str(value)
    return sent


def _errors(page: str) -> dict[str, str]:
    return {m[0]: html.unescape(m[1]) for m in
            re.findall(r'<p class="error" id="f-(\w+)-err" role="alert">([^<]*)</p>', page)}


def test_a_form_creates_a_record_whose_page_names_the_run_it_started(sqlite_api: Api) -> None:
    api = sqlite_api
    csrf = login(api, "opal")
    listing = api.client.get("/records").text
    assert 'href="/records/new/Case">New Case</a>' in listing
    form = api.client.get("/records/new/Case").text
    assert 'action="/records/new/Case"' in form and 'name="subject"' in form
    assert 'name="status" value="New" checked' in form  # (the field's default)
    token = _hidden(form, "submission-token")

    r = api.client.post("/records/new/Case", data={
        "csrf_token": csrf, "submission-token": token, "subject": "", "level": "two",
        "origin": "Phone", "resolution": "{not json"})
    assert r.status_code == 422, r.text
    errors = _errors(r.text)
    assert set(errors) == {"subject", "level", "resolution"}, errors
    assert "is required" in errors["subject"] and "whole number" in errors["level"]
    assert "not valid JSON" in errors["resolution"]
    assert 'value="two"' in r.text and "{not json</textarea>" in r.text
    assert 'name="origin" value="Phone" checked' in r.text
    assert api.engine.count_records("Case") == 0

    # without the session's CSRF token: refused, nothing written
    r = api.client.post("/records/new/Case", data={"subject": "Forged", "origin": "Web"})
    assert r.status_code == 403
    assert api.engine.count_records("Case") == 0

    good = {"csrf_token": csrf, "submission-token": token, "subject": "Inverter E42",
            "origin": "Phone", "level": "2", "resolution": ""}
    r = api.client.post("/records/new/Case", data=good, follow_redirects=False)
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    (record,) = api.engine.list_records("Case")
    assert record["subject"] == "Inverter E42" and record["level"] == 2
    assert record["status"] == "New" and "resolution" not in record  # (empty: left out)
    (run,) = api.engine.list_runs(record_id=record["id"])
    assert run.orchestration == "case_triage"
    assert location == f"/records/{record['id']}?done=created&v=1&runs={run.id}"
    page = api.client.get(location).text
    assert f"Created Case {record['id']}." in page
    assert f'<a href="/runs/{run.id}">{run.id}</a> case_triage v1' in page
    assert [e["actor"] for e in api.engine.timeline(record["id"])
            if e["type"] == "record_created"] == ["opal"]

    # the same form sent again (a double click, Back and Send): nothing new, the same page
    r = api.client.post("/records/new/Case", data=good, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == location
    assert api.engine.count_records("Case") == 1
    # ... changed first: said, not created; a new token sends it as another
    r = api.client.post("/records/new/Case", data={**good, "subject": "Another"})
    assert r.status_code == 409 and "This form was sent already" in r.text
    assert api.engine.count_records("Case") == 1
    r = api.client.post("/records/new/Case", data={
        **good, "subject": "Another", "submission-token": _hidden(r.text, "submission-token")},
        follow_redirects=False)
    assert r.status_code == 303 and api.engine.count_records("Case") == 2


def test_an_edit_writes_only_what_changed_and_a_stale_one_keeps_what_was_typed(
        sqlite_api: Api) -> None:
    api = sqlite_api
    record = api.engine.create_record("Case", {"subject": "Panel cracked", "origin": "Email",
                                               "resolution": {"by": "ann", "level": 1}},
                                      actor="setup")
    rid = record["id"]
    csrf = login(api, "opal")
    assert f'href="/records/{rid}/edit">Edit</a>' in api.client.get(f"/records/{rid}").text
    form = _edit_form(api, rid, csrf)
    assert form["record-version"] == "1"

    r = api.client.post(f"/records/{rid}/edit", data={**form, "status": "Triaged",
                                                      "number": "12"}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"/records/{rid}?done=updated&v=2"
    (updated,) = [e for e in api.engine.timeline(rid) if e["type"] == "record_updated"]
    assert updated["actor"] == "opal"
    assert updated["data"]["changes"] == {"status": ["New", "Triaged"], "number": [None, 12]}
    assert "Saved: version 2." in api.client.get(r.headers["location"]).text

    # a field's problem: said next to it, what was typed kept, nothing written
    form = _edit_form(api, rid, csrf)
    r = api.client.post(f"/records/{rid}/edit", data={**form, "level": "high", "subject": ""})
    assert r.status_code == 422
    assert set(_errors(r.text)) == {"level", "subject"} and 'value="high"' in r.text
    assert api.engine.get_record(rid)["version"] == 2

    # someone else changes the record after this form was drawn (version 2)
    stale = _edit_form(api, rid, csrf)
    api.engine.update_record(rid, {"subject": "Panel cracked by hail", "priority": 3},
                             actor="olga")
    r = api.client.post(f"/records/{rid}/edit", data={**stale, "agent": "ann",
                                                      "subject": "Panel cracked (hail?)"})
    assert r.status_code == 409, r.text
    now = api.engine.get_record(rid)
    assert now["version"] == 3 and now.get("agent") is None
    page = r.text
    assert "someone changed this record since you opened it (olga" in page
    assert "it was at version 2, it is at version 3 now" in page
    theirs = re.search(r'<table class="fields record-theirs">.*?</table>', page, re.DOTALL)
    assert theirs is not None
    assert re.search(r'data-field="subject"><th scope="row">subject <strong>\(you changed it '
                     r'too\)</strong></th><td>Panel cracked</td><td>Panel cracked by hail</td>',
                     theirs[0])
    assert 'data-field="priority"' in theirs[0] and 'data-field="agent"' not in theirs[0]
    # the form: at version 3, what was typed over the current values
    assert _hidden(page, "record-version") == "3"
    assert 'value="Panel cracked (hail?)"' in page and 'name="agent" value="ann"' in page
    assert re.search(r'id="f-priority" name="priority" value="3"', page)
    # sent again on purpose: the typed fields are written, the other's priority kept
    again = {**stale, "record-version": "3", "record-shown": _hidden(page, "record-shown"),
             "agent": "ann", "subject": "Panel cracked (hail?)", "priority": "3"}
    r = api.client.post(f"/records/{rid}/edit", data=again, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/records/{rid}?done=updated&v=4"
    now = api.engine.get_record(rid)
    assert (now["subject"], now["agent"], now["priority"]) == ("Panel cracked (hail?)", "ann", 3)
    assert now["resolution"] == {"by": "ann", "level": 1}  # (its JSON text sent back as shown)

    # nothing changed: nothing written
    r = api.client.post(f"/records/{rid}/edit", data=_edit_form(api, rid, csrf),
                        follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/records/{rid}?done=unchanged&v=4"
    assert api.engine.get_record(rid)["version"] == 4
    assert "Nothing changed" in api.client.get(r.headers["location"]).text
    # a form without its version is never written unchecked
    sent = {k: v for k, v in _edit_form(api, rid, csrf).items() if k != "record-version"}
    r = api.client.post(f"/records/{rid}/edit", data={**sent, "agent": "cyd"})
    assert r.status_code == 409 and api.engine.get_record(rid)["agent"] == "ann"


def test_who_may_not_write_records_gets_no_button_and_a_403(sqlite_api: Api) -> None:
    api = sqlite_api
    rid = api.engine.create_record("Case", {"subject": "Read only"}, actor="setup")["id"]
    # a designer reads records but does not write them
    listing = api.get("dee", "/records")
    assert listing.status_code == 200 and "/records/new/" not in listing.text
    page = api.get("dee", f"/records/{rid}")
    assert page.status_code == 200 and f"/records/{rid}/edit" not in page.text
    data: dict[str, Any] = {"subject": "Sneaky", "origin": "Web"}
    for who in ("dee", "ann"):  # (an agent may not even read them)
        assert api.get(who, "/records/new/Case").status_code == 403
        assert api.get(who, f"/records/{rid}/edit").status_code == 403
        r = api.post(who, "/records/new/Case", data=data)
        assert r.status_code == 403 and "records:write" in r.text
        r = api.post(who, f"/records/{rid}/edit", data={**data, "record-version": "1"})
        assert r.status_code == 403
    assert api.engine.count_records("Case") == 1
    assert api.engine.get_record(rid)["version"] == 1
    # an operator and an administrator may
    for who in ("opal", "root"):
        assert "New Case" in api.get(who, "/records").text
        assert f"/records/{rid}/edit" in api.get(who, f"/records/{rid}").text
    # an object type there is not: 404
    assert api.get("opal", "/records/new/Nope").status_code == 404
