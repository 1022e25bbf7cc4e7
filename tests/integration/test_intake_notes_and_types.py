"""What intake notes reading a message is kept on the stored message, on both databases, and
given by ``accept``'s answer and ``baton intake eml --json`` (the API's: tests/api); and
attachments sent as ``application/octet-stream`` or as text are stored as what they are: a
CSV as ``text/csv`` (taken by ``text/*``, its text read), a Word file as one, scripts and a
Java archive as programs (refused where ``allow`` does not name their type)."""

from __future__ import annotations

import io
import json
import zipfile
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from baton.intake import sniff
from baton.intake.mail import MAX_BODY
from tests.e2e.test_cli import baton, ok

DEFS = f"""
kind: object
name: Case
fields:
  subject: {{type: string}}
  description: {{type: text}}
  documents: {{type: text}}
---
kind: mailbox
name: files
object: Case
fields: {{subject: subject, body: description, attachments_text: documents}}
attachments: {{allow: ["text/*", "{sniff.DOCX}"]}}
"""
ALLOWED = f"text/*, {sniff.DOCX}"
CSV = b"order;sku;qty\r\n4411;PUMP-3;2\r\n4412;VALVE-1;10\r\n"


def docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("[Content_Types].xml", "_rels/.rels", "word/document.xml"):
            z.writestr(name, "<x/>")
    return out.getvalue()


def jar() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("META-INF/MANIFEST.MF", "Main-Class: Main\n")
        z.writestr("Main.class", b"\xca\xfe\xba\xbe")
    return out.getvalue()


def message(n: int, body: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = "ana@dealer.example", "files@baton.example"
    msg["Subject"], msg["Message-ID"] = f"Files {n}", f"<files-{n}@dealer.example>"
    msg.set_content(body)
    for name, (major, minor), data in (
            ("orders.bin", ("application", "octet-stream"), CSV),
            ("report.bin", ("application", "octet-stream"), docx()),
            ("deploy.sh", ("text", "plain"), b"#!/bin/sh\nrm -rf /srv\n"),
            ("tool.js", ("text", "javascript"), b"new ActiveXObject('WScript.Shell');\n"),
            ("app.bin", ("application", "octet-stream"), jar())):
        msg.add_attachment(data, maintype=major, subtype=minor, filename=name)
    return msg.as_bytes()


def sent_as(name: str, declared: str, how: str, kind: str) -> str:
    return f"{name}: sent as {declared}, {how} {kind}: stored as {kind}"


NOTES = [sent_as("orders.bin", "application/octet-stream", "its bytes are", sniff.CSV),
         sent_as("report.bin", "application/octet-stream", "its bytes are", sniff.DOCX),
         sent_as("deploy.sh", "text/plain", "its name makes it", sniff.SH),
         sent_as("app.bin", "application/octet-stream", "its bytes are", sniff.JAR)]
CUT = f"the body was cut to its first {MAX_BODY:,} characters"


def test_notes_are_kept_on_the_message_and_attachments_stored_as_what_they_are(
        harness: Any, tmp_path: Path) -> None:
    harness.deploy_text(DEFS)
    intake = harness.engine.intake
    long_body = "".join(f"line {i} of a pasted log\n" for i in range(10_000))
    assert len(long_body) > MAX_BODY
    got = intake.accept(message(1, long_body), via="eml")
    assert list(got.notes) == [CUT, *NOTES]
    assert got.as_dict()["notes"] == [CUT, *NOTES]
    (stored,) = intake.messages(got.record_id)
    assert stored["notes"] == [CUT, *NOTES] == intake.message(got.id)["notes"]
    (event,) = [e for e in harness.engine.timeline(got.record_id)
                if e["type"] == "message_received"]
    assert event["data"]["notes"] == [CUT, *NOTES]  # (the same as the timeline's)
    attachments = {a["filename"]: a for a in intake.attachments(got.record_id)}
    program = f"is a program: stored only when allow names its type (allowed: {ALLOWED})"
    refused = f"is not allowed (allowed: {ALLOWED})"
    assert {n: (a["content_type"], a["status"], a["reason"]) for n, a in attachments.items()} \
        == {"orders.bin": (sniff.CSV, "stored", None),
            "report.bin": (sniff.DOCX, "stored", None),
            "deploy.sh": (sniff.SH, "refused", f"type {sniff.SH} {program} (sent as text/plain)"),
            "tool.js": ("text/javascript", "refused", f"type text/javascript {program}"),
            "app.bin": (sniff.JAR, "refused",
                        f"type {sniff.JAR} {refused} (sent as application/octet-stream)")}
    record = harness.engine.get_record(got.record_id)
    assert "--- orders.bin ---\norder;sku;qty" in record["documents"]  # (a CSV's text read)
    # the same message again: a duplicate, answered with the stored notes
    again = intake.accept(message(1, long_body), via="smtp")
    assert again.outcome == "duplicate" and list(again.notes) == [CUT, *NOTES]
    if harness.backend != "sqlite":  # (the CLI's JSON is the same on both)
        return
    # baton intake eml --json: a message without a note has an empty list
    files = [tmp_path / "short.eml", tmp_path / "plain.eml"]
    files[0].write_bytes(message(2, "The files, short."))
    files[1].write_bytes(b"From: bob@dealer.example\r\nTo: files@baton.example\r\n"
                         b"Subject: Nothing attached\r\nMessage-ID: <plain@dealer.example>\r\n"
                         b"\r\nJust words.\r\n")
    out = json.loads(ok(baton("--db", harness.db_url, "intake", "eml", *files, "--json",
                              cwd=tmp_path)).stdout)
    assert [(r["outcome"], r["notes"]) for r in out] == [("created", NOTES), ("created", [])]
