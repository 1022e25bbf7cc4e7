"""Attachments of intake's messages on both databases: stored once per content in the
message's transaction, refused by type and size (listed, not stored), their text read
(a real PDF through pypdf, plain text, HTML) onto the record for AI steps, a reply's
appended; a broken PDF is kept without text; definitions' attachment options checked."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import func, select

from baton.errors import DefinitionError, NotFound
from baton.store import schema
from tests.pdfs import pdf_with_text

DEFS = """
kind: object
name: Claim
fields:
  subject: {type: string}
  request: {type: text}
  documents: {type: text}
---
kind: mailbox
name: claims
object: Claim
fields: {subject: subject, new_text: request, attachments_text: documents}
attachments: {max_bytes: 50000, allow: [application/pdf, text/*]}
"""


def message(msgid: str, subject: str, files: list[tuple[str, str, bytes]],
            reply_to: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ana Costa <ana@dealer-one.example>"
    msg["To"] = "claims@baton.example"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{msgid}>"
    if reply_to:
        msg["In-Reply-To"] = f"<{reply_to}>"
    msg.set_content("The documents for the claim are attached.\n\nAna")
    for name, kind, data in files:
        major, minor = kind.split("/")
        msg.add_attachment(data, maintype=major, subtype=minor, filename=name)
    return msg.as_bytes()


def count(harness: Any, table: Any) -> int:
    with harness.engine.store.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(table)).scalar_one())


INVOICE = pdf_with_text("Invoice 4411 total 99.50 EUR", "Dealer account DL-7")


def test_attachments_are_stored_refused_and_read(harness: Any) -> None:
    harness.deploy_text(DEFS)
    intake = harness.engine.intake
    got = intake.accept(message("c1@dealer-one.example", "Claim 4411", [
        ("invoice-4411.pdf", "application/pdf", INVOICE),
        ("notes.txt", "text/plain", b"Mileage: 48 210 km"),
        ("photo.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"0" * 100),
        ("big.txt", "text/plain", b"x" * 60_000),
        ("page.html", "text/html", b"<html><body><p>Part <b>A-17</b></p><script>x()</script>"),
    ]), via="eml")
    assert got.outcome == "created"
    assert [(a["filename"], a["status"]) for a in got.attachments] == [
        ("invoice-4411.pdf", "stored"), ("notes.txt", "stored"), ("photo.png", "refused"),
        ("big.txt", "refused"), ("page.html", "stored")]
    rid = got.record_id
    listed = intake.attachments(rid)
    assert [a["status"] for a in listed] == ["stored", "stored", "refused", "refused", "stored"]
    assert "image/png is not allowed" in listed[2]["reason"] and listed[2]["url"] is None
    assert "60000 bytes is over the limit of 50000" in listed[3]["reason"]
    assert listed[0]["text"] and listed[0]["url"] == f"/api/attachments/{listed[0]['id']}"
    pdf = intake.attachment(listed[0]["id"], content=True)
    assert bytes(pdf["content"]) == INVOICE and pdf["size"] == len(INVOICE)
    assert "Invoice 4411 total 99.50 EUR" in pdf["text"] and "DL-7" in pdf["text"]
    with pytest.raises(NotFound, match="refused"):
        intake.attachment(listed[2]["id"], content=True)
    with pytest.raises(NotFound):
        intake.attachment("att-nope")
    documents = harness.engine.get_record(rid)["documents"]
    assert documents.startswith("--- invoice-4411.pdf ---\nInvoice 4411 total 99.50 EUR")
    assert "--- notes.txt ---\nMileage: 48 210 km" in documents
    assert "Part A-17" in documents and "x()" not in documents
    assert intake.attachments_text(rid) == documents
    assert count(harness, schema.blobs) == 3  # refused ones keep no content
    (msg,) = intake.messages(rid)
    assert [a["filename"] for a in msg["attachments"]] == [a["filename"] for a in listed]
    (event,) = [e for e in harness.engine.timeline(rid) if e["type"] == "message_received"]
    assert event["data"]["refused"] == ["photo.png", "big.txt"]


def test_content_is_stored_once_and_a_reply_adds_its_text(harness: Any) -> None:
    harness.deploy_text(DEFS)
    intake = harness.engine.intake
    first = intake.accept(message("c2@dealer-one.example", "Claim 7",
                                  [("invoice.pdf", "application/pdf", INVOICE)]), via="smtp")
    other = intake.accept(message("c3@dealer-one.example", "Claim 8",
                                  [("copy.pdf", "application/pdf", INVOICE)]), via="smtp")
    assert first.record_id != other.record_id
    assert count(harness, schema.blobs) == 1 and count(harness, schema.attachments) == 2
    reply = intake.accept(message("c4@dealer-one.example", "Re: Claim 7",
                                  [("receipt.txt", "text/plain", b"Paid on 2026-11-30")],
                                  reply_to="c2@dealer-one.example"), via="smtp")
    assert (reply.outcome, reply.record_id) == ("threaded", first.record_id)
    documents = harness.engine.get_record(first.record_id)["documents"]
    assert documents.index("invoice.pdf") < documents.index("--- receipt.txt ---\nPaid on")
    assert [a["filename"] for a in intake.attachments(first.record_id)] == \
        ["invoice.pdf", "receipt.txt"]
    again = intake.accept(message("c2@dealer-one.example", "Claim 7",
                                  [("invoice.pdf", "application/pdf", INVOICE)]), via="smtp")
    assert again.outcome == "duplicate" and count(harness, schema.attachments) == 3


def test_a_broken_pdf_is_kept_without_text(harness: Any) -> None:
    harness.deploy_text(DEFS)
    got = harness.engine.intake.accept(message("c5@dealer-one.example", "Scan", [
        ("scan.pdf", "application/pdf", b"%PDF-1.4\n% cut short\n")]), via="eml")
    (a,) = harness.engine.intake.attachments(got.record_id)
    assert a["status"] == "stored" and not a["text"] and "could not be read" in a["text_error"]
    # no text read: the field is empty (present, so an expression over it reads "")
    assert harness.engine.get_record(got.record_id)["documents"] == ""


def test_default_policy_and_the_checks_of_attachment_options(harness: Any) -> None:
    harness.deploy_text(DEFS.replace("attachments: {max_bytes: 50000, allow: [application/pdf, "
                                     "text/*]}\n", ""))
    got = harness.engine.intake.accept(message("c6@dealer-one.example", "Photo", [
        ("photo.jpg", "image/jpeg", b"\xff\xd8\xff" + b"1" * 50),
        ("tool.exe", "application/x-msdownload", b"MZ" + b"0" * 50)]), via="eml")
    assert [a["status"] for a in got.attachments] == ["stored", "refused"]
    bad = DEFS.replace("{max_bytes: 50000, allow: [application/pdf, text/*]}",
                       "{max_bytes: -1, allow: [pdf, 7], keep: yes}")
    with pytest.raises(DefinitionError) as err:
        harness.deploy_text(bad)
    text = str(err.value)
    assert "attachments" in text and "keep" in text
    bad = DEFS.replace("{max_bytes: 50000, allow: [application/pdf, text/*]}",
                       "{max_bytes: -1, allow: [pdf, 7]}")
    with pytest.raises(DefinitionError) as err:
        harness.deploy_text(bad)
    text = str(err.value)
    assert "attachments.max_bytes" in text and "attachments.allow[0]" in text \
        and "attachments.allow[1]" in text
