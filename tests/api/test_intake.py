"""Intake over the API, on both databases: ``POST /api/intake/{mailbox}`` with a raw
e-mail and with a JSON form (each role: who may post, who may not), idempotent by key and
by Message-ID, threading a reply; a record's messages and attachments listed, and an
attachment downloaded with a safe Content-Disposition by who may read records only."""

from __future__ import annotations

import base64
import re
import textwrap
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import null, update

from baton.intake.mail import MAX_BODY
from baton.store import schema
from tests.api.conftest import Api, assert_problem
from tests.api.test_work_guide import login
from tests.pdfs import pdf_with_text

DEFS = """
kind: object
name: Ticket
fields:
  subject: {type: string}
  request: {type: text}
  customer: {type: string}
  latest: {type: text}
  documents: {type: text}
---
kind: mailbox
name: dealers
object: Ticket
addresses: [dealers@baton.example]
fields: {subject: subject, new_text: request, sender: customer, last_message: latest,
         attachments_text: documents}
attachments: {max_bytes: 100000, allow: [application/pdf, text/plain]}
"""
RFC822 = {"Content-Type": "message/rfc822"}
INVOICE = pdf_with_text("Invoice 4411 total 99.50 EUR")


@pytest.fixture
def intake_api(api: Api, tmp_path: Path) -> Api:
    path = tmp_path / "intake.yaml"
    path.write_text(textwrap.dedent(DEFS))
    api.engine.deploy([path], actor="setup", known_flows=None)
    return api


def raw_mail(msgid: str, subject: str = "Invoice 4411 is wrong",
             files: tuple[tuple[str, str, bytes], ...] = ()) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ana Costa <ana@dealer-one.example>"
    msg["To"] = "dealers@baton.example"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{msgid}>"
    msg.set_content("Hello,\n\nthe invoice 4411 charges twice.\n\n-- \nAna Costa\nDealer One")
    for name, kind, data in files:
        major, minor = kind.split("/")
        msg.add_attachment(data, maintype=major, subtype=minor, filename=name)
    return msg.as_bytes()


def test_a_raw_message_becomes_a_ticket_once(intake_api: Api) -> None:
    api = intake_api
    raw = raw_mail("r1@dealer-one.example", files=(
        ("invoice 4411 (copy).pdf", "application/pdf", INVOICE),
        ("tool.exe", "application/x-msdownload", b"MZ0000")))
    r = api.post("opal", "/api/intake/dealers", content=raw, headers=RFC822)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["outcome"] == "created" and out["message_id"] == "r1@dealer-one.example"
    assert r.headers["location"] == f"/api/records/{out['record_id']}"
    assert [(a["filename"], a["status"]) for a in out["attachments"]] == [
        ("invoice 4411 (copy).pdf", "stored"), ("tool.exe", "refused")]
    rec = api.get("opal", f"/api/records/{out['record_id']}").json()["data"]
    assert rec["request"] == "Hello,\n\nthe invoice 4411 charges twice."
    assert rec["customer"] == "ana@dealer-one.example"
    assert "Invoice 4411 total 99.50 EUR" in rec["documents"]
    again = api.post("root", "/api/intake/dealers", content=raw, headers=RFC822).json()
    assert (again["outcome"], again["record_id"], again["id"]) == \
        ("duplicate", out["record_id"], out["id"])


def test_a_json_form_and_its_reply(intake_api: Api) -> None:
    api = intake_api
    form = {"subject": "Brake noise on VIN 123", "sender": "bo@dealer-two.example",
            "sender_name": "Bo", "body": "The brakes squeal.\n\n-- \nBo, Dealer Two",
            "message_id": "form-1@dealer-two.example",
            "attachments": [{"filename": "log.txt", "content_type": "text/plain",
                             "content_base64": base64.b64encode(b"squeal at 30 km/h").decode()}]}
    r = api.post("opal", "/api/intake/dealers", form)
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["outcome"] == "created"
    rec = api.get("opal", f"/api/records/{first['record_id']}").json()["data"]
    assert rec["subject"] == "Brake noise on VIN 123" and rec["customer"] == "bo@dealer-two.example"
    assert rec["request"] == "The brakes squeal." and "squeal at 30 km/h" in rec["documents"]
    reply = api.post("opal", "/api/intake/dealers", {
        "subject": "Re: Brake noise", "sender": "bo@dealer-two.example",
        "body": "It stopped after the update.", "in_reply_to": "form-1@dealer-two.example"})
    assert reply.json()["outcome"] == "threaded"
    assert reply.json()["record_id"] == first["record_id"]
    rec = api.get("opal", f"/api/records/{first['record_id']}").json()["data"]
    assert rec["latest"] == "It stopped after the update."
    messages = api.get("opal", f"/api/records/{first['record_id']}/messages").json()["items"]
    assert [m["outcome"] for m in messages] == ["created", "threaded"]
    assert messages[0]["via"] == "api" and messages[0]["attachments"][0]["filename"] == "log.txt"
    # an id as a header has it, between < >, is the same id
    again = api.post("opal", "/api/intake/dealers", {
        "subject": "Re: Brake noise", "sender": "bo@dealer-two.example",
        "body": "Thanks.", "in_reply_to": "<form-1@dealer-two.example>"})
    assert again.status_code == 200, again.text
    assert (again.json()["outcome"], again.json()["record_id"]) == ("threaded", first["record_id"])
    for bad in ("<form-1@dealer-two.example", "form-1@dealer-two.example>", "<>", "<<a@b>>"):
        assert_problem(api.post("opal", "/api/intake/dealers", {
            "sender": "c@d.example", "body": "x", "in_reply_to": bad}), 422, "body.in_reply_to")
    assert first["notes"] == messages[0]["notes"] == messages[1]["notes"] == []  # (none made)
    # Two forms without a message_id are two messages (each gets a new id).
    a = api.post("opal", "/api/intake/dealers", {"sender": "c@d.example", "body": "x"}).json()
    b = api.post("opal", "/api/intake/dealers", {"sender": "c@d.example", "body": "x"}).json()
    assert a["outcome"] == b["outcome"] == "created" and a["record_id"] != b["record_id"]


def test_what_e_mail_takes_for_a_line_break_in_a_form(intake_api: Api) -> None:
    """A fuzzed message_id holding U+001C (a line break to Python's e-mail headers, not
    whitespace to the schema's ``\\s``) made a 500; a subject holding one did too."""
    api = intake_api
    for bad in ("a\x1cb@x", "a\u2028b@x", "a\x85b@x", "a\x0bb@x"):
        for field in ("message_id", "in_reply_to"):
            r = api.post("opal", "/api/intake/dealers",
                         {"sender": "c@d.example", "body": "x", field: bad})
            assert_problem(r, 422, f"body.{field}")
    r = api.post("opal", "/api/intake/dealers", {"sender": "c@d.example", "body": "x",
                                                 "subject": "Two\x1clines\u2028here"})
    assert r.status_code == 200, r.text
    rec = api.get("opal", f"/api/records/{r.json()['record_id']}").json()["data"]
    assert rec["subject"] == "Two lines here"


def test_idempotency_key(intake_api: Api) -> None:
    api = intake_api
    form = {"sender": "c@d.example", "body": "please call me"}
    key = {"Idempotency-Key": "intake-1"}
    first = api.post("opal", "/api/intake/dealers", form, headers=key)
    replay = api.post("opal", "/api/intake/dealers", form, headers=key)
    assert replay.headers.get("idempotent-replayed") == "true"
    assert replay.json() == first.json() and first.json()["outcome"] == "created"
    other = api.post("opal", "/api/intake/dealers", {**form, "body": "other"}, headers=key)
    assert_problem(other, 422, "header.Idempotency-Key")
    raw = raw_mail("r9@dealer-one.example")
    one = api.post("opal", "/api/intake/dealers", content=raw,
                   headers={**RFC822, "Idempotency-Key": "intake-raw"})
    two = api.post("opal", "/api/intake/dealers", content=raw,
                   headers={**RFC822, "Idempotency-Key": "intake-raw"})
    assert one.json()["outcome"] == "created" and two.json() == one.json()
    assert two.headers.get("idempotent-replayed") == "true"
    assert len(api.engine.page_records("Ticket", limit=10).rows) == 2


@pytest.mark.parametrize(("who", "status"), [("root", 200), ("opal", 200), ("dee", 403),
                                             ("ann", 403)])
def test_who_may_post(intake_api: Api, who: str, status: int) -> None:
    r = intake_api.post(who, "/api/intake/dealers", {"sender": f"{who}@x.example", "body": "hi"})
    assert r.status_code == status, r.text
    if status == 403:
        assert "records:write" in r.json()["detail"]
    anon = intake_api.client.post("/api/intake/dealers", json={"sender": "a@b.example"})
    assert anon.status_code == 401


def test_bad_input(intake_api: Api) -> None:
    api = intake_api
    assert_problem(api.post("opal", "/api/intake/nobody", {"sender": "a@b.example"}), 404)
    assert_problem(api.post("opal", "/api/intake/dealers", {"body": "no sender"}), 422,
                   "body.sender")
    assert_problem(api.post("opal", "/api/intake/dealers", {
        "sender": "a@b.example", "attachments": [
            {"filename": "a.txt", "content_type": "text/plain", "content_base64": "%%%"}]}),
        422, "body.attachments.0.content_base64")
    assert_problem(api.post("opal", "/api/intake/dealers", content=b"just words",
                            headers=RFC822), 422, "body")
    assert_problem(api.post("opal", "/api/intake/dealers", content=b"a,b",
                            headers={"Content-Type": "text/csv"}), 415)
    assert_problem(api.post("opal", "/api/intake/dealers", content=b"", headers=RFC822), 422)
    assert_problem(api.post("opal", "/api/intake/dealers", headers=RFC822,
                            content=raw_mail("nul@x.example").replace(b"Hello", b"He\x00llo")),
                   422, "body")
    # A "text" attachment with NUL in it (base64 in the message) is binary: typed as such
    # (the mailbox's allow list then judges application/octet-stream), and no text read.
    nul = base64.b64encode(b"a\x00b").decode()
    got = api.post("opal", "/api/intake/dealers", {"sender": "a@b.example", "attachments": [
        {"filename": "n.txt", "content_type": "text/plain", "content_base64": nul}]})
    assert got.status_code == 200, got.text
    (a,) = api.get("opal", f"/api/records/{got.json()['record_id']}/attachments").json()["items"]
    assert (a["content_type"], a["status"], a["url"]) == (
        "application/octet-stream", "refused", None)
    assert a["reason"].endswith("(sent as text/plain)")
    # ... noted in the answer, and on the stored message as on the record's timeline
    note = ("n.txt: sent as text/plain, its bytes are application/octet-stream: stored as "
            "application/octet-stream")
    assert got.json()["notes"] == [note]
    (stored,) = api.get("opal", f"/api/records/{got.json()['record_id']}/messages").json()[
        "items"]
    assert stored["notes"] == [note]
    assert not api.get("opal", f"/api/records/{got.json()['record_id']}").json()["data"].get(
        "documents")
    # The record's page shows each message's notes: a reply whose body was cut says so; a
    # reply without notes, and one stored before migration 29 (notes NULL), show none.
    long_body = "".join(f"line {i} of a pasted log\n" for i in range(10_000))
    assert len(long_body) > MAX_BODY
    replies = [api.post("opal", "/api/intake/dealers", {
        "sender": "a@b.example", "body": body, "in_reply_to": got.json()["message_id"]}).json()
        for body in (long_body, "Sorry, the log was long.", "One more thing.")]
    assert [r["outcome"] for r in replies] == ["threaded"] * 3
    cut = f"the body was cut to its first {MAX_BODY:,} characters"
    assert [r["notes"] for r in replies] == [[cut], [], []]
    with api.engine.store.write() as tx:
        tx.conn.execute(update(schema.messages).where(schema.messages.c.id == replies[2]["id"])
                        .values(notes=null()))
    assert api.engine.intake.message(replies[2]["id"])["notes"] == []
    login(api, "opal")
    page = api.client.get(f"/records/{got.json()['record_id']}")
    assert page.status_code == 200
    shown = re.findall(r'<p class="muted" id="([^"]+)-notes">Noted when it was read:</p>\s*'
                       r'<ul aria-labelledby="\1-notes">(.*?)</ul>', page.text, re.DOTALL)
    assert shown == [(got.json()["id"], f"<li>{note}</li>"),
                     (replies[0]["id"], f"<li>{cut}</li>")]
    assert page.text.count("Noted when it was read") == 2


def test_attachments_listed_and_downloaded_by_readers_only(intake_api: Api) -> None:
    api = intake_api
    raw = raw_mail("r2@dealer-one.example", files=(
        ('../../etc/"passwd"; x.pdf', "application/pdf", INVOICE),
        ("Façture €.txt", "text/plain", "Total: 99,50 €".encode())))
    out = api.post("opal", "/api/intake/dealers", content=raw, headers=RFC822).json()
    rid = out["record_id"]
    listed = api.get("dee", f"/api/records/{rid}/attachments").json()["items"]
    assert [a["filename"] for a in listed] == ['"passwd"; x.pdf', "Façture €.txt"]
    assert all(a["status"] == "stored" and a["text"] for a in listed)
    pdf = api.get("dee", listed[0]["url"])
    assert pdf.status_code == 200 and pdf.content == INVOICE
    assert pdf.headers["content-type"] == "application/pdf"
    disposition = pdf.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="_passwd__ x.pdf"; ')
    assert "filename*=UTF-8''%22passwd%22%3B%20x.pdf" in disposition
    assert pdf.headers["x-content-type-options"] == "nosniff"
    txt = api.get("root", listed[1]["url"])
    assert txt.headers["content-type"] == "text/plain"  # no charset the file may not have
    assert txt.content == "Total: 99,50 €".encode()
    assert "filename*=UTF-8''Fa%C3%A7ture%20%E2%82%AC.txt" in txt.headers["content-disposition"]
    for who in ("ann", "bob"):  # agents may not read records
        assert_problem(api.get(who, listed[0]["url"]), 403)
        assert_problem(api.get(who, f"/api/records/{rid}/attachments"), 403)
    assert api.client.get(listed[0]["url"]).status_code == 401
    assert_problem(api.get("opal", "/api/attachments/att-unknown"), 404)
    assert_problem(api.get("opal", "/api/records/rec-unknown/attachments"), 404)


def test_refused_attachments_cannot_be_downloaded(intake_api: Api) -> None:
    api = intake_api
    raw = raw_mail("r3@dealer-one.example", files=(("t.exe", "application/x-msdownload", b"MZ"),))
    rid = api.post("opal", "/api/intake/dealers", content=raw, headers=RFC822).json()["record_id"]
    (a,) = api.get("opal", f"/api/records/{rid}/attachments").json()["items"]
    assert a["status"] == "refused" and a["url"] is None and "not allowed" in a["reason"]
    body = assert_problem(api.get("opal", f"/api/attachments/{a['id']}"), 404)
    assert "refused" in body["detail"]


def test_openapi_documents_intake(intake_api: Api) -> None:
    doc = intake_api.client.get("/openapi.json").json()
    op = doc["paths"]["/api/intake/{target}"]["post"]
    content = op["requestBody"]["content"]
    assert set(content) == {"application/json", "message/rfc822"}
    assert content["application/json"]["example"]["sender"]
    assert "Message-ID" in content["message/rfc822"]["example"]
    message, answers = content["application/json"]["schema"]["anyOf"]  # a mailbox's, a form's
    assert "sender" in message["required"]
    assert "content_base64" in message["properties"]["attachments"]["items"]["properties"]
    assert answers["required"] == ["data"] and answers["examples"][0]["data"]["subject"]
    assert "201" in op["responses"] and "200" in op["responses"]
    assert "/api/attachments/{attachment_id}" in doc["paths"]
    # A deployed mailbox is a definition like the others (read, versions, deactivate).
    r = intake_api.get("dee", "/api/definitions/mailbox/dealers")
    assert r.status_code == 200, r.text


def test_a_message_the_object_type_refuses_is_located(intake_api: Api, tmp_path: Path) -> None:
    path = tmp_path / "strict.yaml"
    path.write_text(textwrap.dedent("""
        kind: object
        name: Strict
        fields:
          title: {type: string, required: true}
        ---
        kind: mailbox
        name: strict
        object: Strict
        fields: {subject: title}
        """))
    intake_api.engine.deploy([path], actor="setup", known_flows=None)
    r = intake_api.post("opal", "/api/intake/strict", {"sender": "a@b.example", "body": "x"})
    assert_problem(r, 422, "body.title")
