"""Public intake forms (issue 14 item 3): ``kind: intake_form`` validated with located
errors; ``/forms/NAME`` shows the object type's fields without a login; a submission
creates the record through the records write (triggers start its run, the audit names
``form:NAME``), needs the form's CSRF token, is refused field by field when invalid, and is
rate-limited per client address. On both databases."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from baton.errors import DefinitionError
from tests.api.conftest import Api

DEFS = """
kind: object
name: Inquiry
fields:
  subject: {type: string, required: true, max_length: 200}
  message: {type: text, required: true}
  body: {type: text}
  email: {type: string, required: true}
  topic: {type: choice, choices: [billing, technical, other]}
  cars: {type: int}
  channel: {type: string}
  owner: {type: ref, object: Inquiry}
---
kind: intake_form
name: contact
object: Inquiry
label: Write to us
description: We answer within one working day.
fields:
  - subject
  - {field: message, label: Your message, help: "No passwords, please.", also: [body]}
  - {field: email, label: Your e-mail address}
  - topic
  - {field: cars, label: How many cars}
set: {channel: web}
rate_limit: 3
thanks: Thank you, we will answer soon.
---
kind: orchestration
name: inquiry_flow
trigger: {type: record, object: Inquiry, on: [create]}
stages:
  - name: answer
    steps: [{name: answer, type: interactive, assign: {queue: support}}]
"""


def visitor(api: Api, address: str = "203.0.113.7") -> TestClient:
    return TestClient(api.app, client=(address, 40000), follow_redirects=False)


def token(c: TestClient, name: str = "contact") -> str:
    r = c.get(f"/forms/{name}")
    assert r.status_code == 200, r.text
    found = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
    assert found, r.text
    return found.group(1)


def send(c: TestClient, data: dict[str, Any], csrf: str | None = None) -> Any:
    return c.post("/forms/contact", data={"csrf_token": token(c) if csrf is None else csrf,
                                          **data})


GOOD = {"subject": "Invoice twice", "message": "Invoice 44 was charged twice.",
        "email": "ana@dealer.example", "topic": "billing", "cars": "2"}


@pytest.fixture
def forms(api: Api) -> Api:
    _deploy(api)
    return api


def _deploy(api: Api) -> None:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "defs.yaml").write_text(DEFS)
        api.engine.deploy([Path(d)], actor="test")


def test_the_page_asks_for_the_fields_without_a_login(forms: Api) -> None:
    r = visitor(forms).get("/forms/contact")
    assert r.status_code == 200, r.text
    page = r.text
    assert '<h1 id="intake-h">Write to us</h1>' in page and "We answer within one working day." in page
    for label in ("Subject", "Your message", "Your e-mail address", "Topic", "How many cars"):
        assert label in page, label
    assert 'name="message"' in page and "<textarea" in page and "No passwords, please." in page
    assert 'type="number"' in page  # cars: an int
    assert 'value="billing"' in page  # topic: its choices
    assert 'name="body"' not in page and 'name="owner"' not in page  # only what it asks
    assert "baton_form_csrf" in r.headers["set-cookie"] and "Path=/forms" in r.headers["set-cookie"]
    assert visitor(forms).get("/forms/nope").status_code == 404


def test_a_submission_creates_the_record_and_starts_its_run(forms: Api) -> None:
    c = visitor(forms)
    r = send(c, GOOD)
    assert r.status_code == 303, r.text  # to its thanks page (Post/Redirect/Get)
    r = c.get(r.headers["location"])
    assert r.status_code == 200, r.text
    assert "Thank you, we will answer soon." in r.text
    ref = re.search(r'class="ref">(rec_\w+)<', r.text)
    assert ref, r.text
    rec = forms.engine.get_record(ref.group(1))
    assert rec["subject"] == "Invoice twice" and rec["message"] == rec["body"] \
        == "Invoice 44 was charged twice."
    assert rec["cars"] == 2 and rec["topic"] == "billing" and rec["channel"] == "web"
    (run,) = forms.engine.list_runs(record_id=rec["id"])
    assert run.orchestration == "inquiry_flow"
    created = [e for e in forms.engine.timeline(rec["id"]) if e["type"] == "record_created"]
    assert created and created[0]["actor"] == "form:contact", created


def test_invalid_values_are_shown_next_to_their_fields_and_nothing_is_stored(forms: Api) -> None:
    c = visitor(forms)
    r = send(c, {**GOOD, "subject": "", "cars": "many", "topic": "spam"})
    assert r.status_code == 422, r.text
    assert "Subject is required" in r.text
    assert re.search(r"How many cars [^<]*(int|number|whole)", r.text), r.text
    assert re.search(r"Topic [^<]*billing", r.text), r.text  # names the choices
    assert "Invoice 44 was charged twice." in r.text  # what was written is kept
    assert forms.engine.list_records("Inquiry") == []


def test_a_post_without_the_forms_token_is_refused(forms: Api) -> None:
    c = visitor(forms)
    token(c)
    assert send(c, GOOD, csrf="forged").status_code == 403
    other = visitor(forms, "198.51.100.9")  # no cookie: a post from another site
    r = other.post("/forms/contact", data={"csrf_token": "x", **GOOD})
    assert r.status_code == 403 and "did not come from this site" in r.text
    assert forms.engine.list_records("Inquiry") == []


def test_submissions_are_rate_limited_per_client_address(forms: Api) -> None:
    c = visitor(forms)
    for i in range(3):
        assert send(c, {**GOOD, "subject": f"n{i}"}).status_code == 303
    r = send(c, GOOD)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, r.text
    assert "Too many submissions" in r.text
    # another address is not limited by this one
    assert send(visitor(forms, "198.51.100.20"), GOOD).status_code == 303
    # a minute later (the engine's clock) the first may send again
    forms.clock.advance(timedelta(seconds=61))
    assert send(c, GOOD).status_code == 303
    assert len(forms.engine.list_records("Inquiry")) == 5


@pytest.mark.parametrize("body, path, message", [
    ("fields: [nope]", "fields[0]", "unknown field 'nope' of Inquiry"),
    ("fields: [owner]", "fields[0]", "a public form asks only for"),
    ("fields: [subject, subject]", "fields[1]", "filled twice"),
    ("fields: [{field: message, also: [bodyy]}]", "fields[0].also[0]", "did you mean 'body'"),
    ("fields: [subject]\nset: {subject: x}", "set.subject", "asked on the form and set too"),
    ("fields: [subject]\nset: {channel: '=record.x'}", "set.channel", "fixed value"),
    ("fields: [subject]\nrate_limit: 0", "rate_limit", "from 1 to"),
    ("fields: []", "fields", "at least one field"),
    ("fields: [subject]\ncolour: red", "colour", "unknown key"),
])
def test_definition_mistakes_are_located(api: Api, body: str, path: str, message: str) -> None:
    from baton.definitions.loader import load_text

    text = DEFS.split("---")[0] + "---\nkind: intake_form\nname: bad\nobject: Inquiry\n" + body
    with pytest.raises(DefinitionError) as err:
        load_text(text, "forms.yaml")
    found = [str(i) for i in err.value.issues]
    assert any(path in i and message in i for i in found), found


# ---- systems: POST /api/intake/{form} -----------------------------------------------------

ANSWERS = {"subject": "Invoice twice", "message": "Invoice 44 was charged twice.",
           "email": "ana@dealer.example", "topic": "billing", "cars": 2}


def test_a_system_posts_answers_and_gets_the_record_the_page_would_make(forms: Api) -> None:
    r = forms.post("opal", "/api/intake/contact", {"data": ANSWERS})
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["outcome"] == "created" and out["form"] == "contact"
    assert out["object_type"] == "Inquiry"
    assert r.headers["location"] == f"/api/records/{out['record_id']}"
    rec = forms.engine.get_record(out["record_id"])
    # the form's `also` and `set` apply as on the page
    assert rec["message"] == rec["body"] == "Invoice 44 was charged twice."
    assert rec["cars"] == 2 and rec["topic"] == "billing" and rec["channel"] == "web"
    (run,) = forms.engine.list_runs(record_id=rec["id"])
    assert run.orchestration == "inquiry_flow"
    created = [e for e in forms.engine.timeline(rec["id"]) if e["type"] == "record_created"]
    assert created and created[0]["actor"] == "opal", created  # the caller answers for it


def test_a_systems_answers_are_refused_question_by_question(forms: Api) -> None:
    r = forms.post("opal", "/api/intake/contact",
                   {"data": {**ANSWERS, "subject": "", "cars": "many", "topic": "spam",
                             "channel": "phone", "owner": "rec_x"}})
    assert r.status_code == 422, r.text
    errors = {e["field"]: e["message"] for e in r.json()["errors"]}
    assert set(errors) == {"body.data.subject", "body.data.cars", "body.data.topic",
                           "body.data.channel", "body.data.owner"}, errors
    assert "required" in errors["body.data.subject"]
    assert "billing" in errors["body.data.topic"]  # names the choices
    assert "does not ask" in errors["body.data.channel"] and "subject" in errors[
        "body.data.channel"]  # fixed by the form's `set`, not by the caller
    assert forms.engine.list_records("Inquiry") == []
    r = forms.post("opal", "/api/intake/contact", {"answers": ANSWERS})
    assert r.status_code == 422 and r.json()["errors"][0]["field"].startswith("body"), r.text


def test_a_retried_submission_makes_one_record(forms: Api) -> None:
    key = {"Idempotency-Key": "contact-7731"}
    first = forms.post("opal", "/api/intake/contact", {"data": ANSWERS}, headers=key)
    again = forms.post("opal", "/api/intake/contact", {"data": ANSWERS}, headers=key)
    assert first.status_code == again.status_code == 201, again.text
    assert first.json() == again.json()
    assert len(forms.engine.list_records("Inquiry")) == 1
    other = forms.post("opal", "/api/intake/contact",
                       {"data": {**ANSWERS, "cars": 3}}, headers=key)
    assert other.status_code == 422, other.text  # the key was used with another body


def test_form_intake_needs_records_write_json_and_a_known_name(forms: Api) -> None:
    assert forms.post("ann", "/api/intake/contact", {"data": ANSWERS}).status_code == 403
    assert forms.post("dee", "/api/intake/contact", {"data": ANSWERS}).status_code == 403
    r = forms.post("opal", "/api/intake/contact", content=b"Subject: hi\r\n\r\nhello",
                   headers={"Content-Type": "message/rfc822"})
    assert r.status_code == 422 and "intake form 'contact'" in r.text, r.text
    assert r.json()["errors"][0]["field"] == "body"
    r = forms.post("opal", "/api/intake/nothing_here", {"data": ANSWERS})
    assert r.status_code == 404, r.text
    assert forms.engine.list_records("Inquiry") == []
