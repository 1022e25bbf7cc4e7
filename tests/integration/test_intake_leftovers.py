"""Two intake leftovers, through the real SMTP listener on loopback, on both databases.

A long body is read only as far as it is kept: of an HTML body, the characters its first
5,000,000 of HTML make, and the text stops once past what is kept; a plain one likewise.
The kept text is exactly the start of the whole one (characters whose bytes straddle the
pieces the payload is decoded in, base64 and quoted-printable alike, come out whole), and
the case's timeline says the body was cut.

An attachment declared ``application/octet-stream`` is judged by what its bytes are: a PDF
by ``allow: [application/pdf]`` (and its text read), a program refused even where ``allow``
lists octet-stream or a wildcard; only a list that names a program's type stores one (the
table in docs/yaml-reference.md, ``kind: mailbox``, "Declared and sniffed types")."""

from __future__ import annotations

import base64
import email.policy
import quopri
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest

from baton.intake import sniff
from baton.intake.mail import MAX_BODY, MAX_HTML
from baton.intake.smtp import SmtpListener
from baton.intake.views import describe_message
from tests.net import free_port
from tests.pdfs import pdf_with_text

ALLOWS = {  # mailbox -> its allow list
    "pdfs": "[application/pdf]",
    "octets": "[application/octet-stream]",
    "anything": '["*/*"]',
    "apps": '["application/*"]',
    "windows": "[application/pdf, application/vnd.microsoft.portable-executable]",
}
DEFS = """
kind: object
name: Case
fields:
  subject: {type: string}
  description: {type: text}
  documents: {type: text}
""" + "".join(f"""---
kind: mailbox
name: {box}
object: Case
addresses: [{box}@baton.example]
fields: {{subject: subject, body: description, attachments_text: documents}}
attachments: {{allow: {allow}}}
""" for box, allow in ALLOWS.items())

PE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"PE\x00\x00"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56


@pytest.fixture
def smtp(harness: Any) -> Iterator[SmtpListener]:
    harness.deploy_text(DEFS)
    listener = SmtpListener(harness.engine.intake, "127.0.0.1", free_port())
    listener.start()
    yield listener
    listener.stop()


def send(listener: SmtpListener, to: str, msg: EmailMessage | bytes) -> None:
    raw = msg if isinstance(msg, bytes) else msg.as_bytes(policy=email.policy.SMTP)
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=120) as client:
        assert client.sendmail("ana@dealer.example", [to], raw) == {}


def message(box: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ana@dealer.example", f"{box}@baton.example", subject
    msg["Message-ID"] = f"<{box}-{subject.replace(' ', '-')}@dealer.example>"
    return msg


def one_part(subject: str, content: str, subtype: str, cte: str) -> bytes:
    """A message to the ``pdfs`` mailbox of one UTF-8 text part (encoded by binascii's
    encoders: EmailMessage's quoted-printable takes seconds for megabytes)."""
    data = content.encode()
    body = base64.encodebytes(data) if cte == "base64" else quopri.encodestring(data)
    return (f"From: ana@dealer.example\r\nTo: pdfs@baton.example\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '-')}@dealer.example>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/{subtype}; charset=utf-8\r\n"
            f"Content-Transfer-Encoding: {cte}\r\n\r\n").encode() \
        + body.replace(b"\n", b"\r\n")


def the_case(harness: Any, subject: str) -> dict[str, Any]:
    (record,) = [r for r in harness.engine.page_records("Case", limit=50).rows
                 if r["subject"] == subject]
    return dict(record)


def notes(harness: Any, record_id: str) -> list[str]:
    (event,) = [e for e in harness.engine.timeline(record_id) if e["type"] == "message_received"]
    return list(event["data"].get("notes") or [])


# ---- a long body --------------------------------------------------------------------------

def lines(n: int) -> list[str]:
    # two-, three- and four-byte UTF-8 characters, and "=" (quoted-printable's escape)
    return [f"Zeile {i}: Grüße = 99,50 € 😀" for i in range(n)]


@pytest.mark.pg_slow  # (the body's reading is the same on both: CI runs PostgreSQL's)
@pytest.mark.parametrize(("subtype", "cte"), [
    ("html", "base64"), ("html", "quoted-printable"), ("plain", "quoted-printable")],
    ids=["html-base64", "html-qp", "plain-qp"])
def test_a_long_body_is_kept_as_its_start_and_said_to_be_cut(
        harness: Any, smtp: SmtpListener, subtype: str, cte: str) -> None:
    """~900,000 characters of text (more than the 800,000 read of a plain body, and more
    than the HTML's conversion goes to), then, in the HTML, markup to past the 5,000,000
    characters of HTML read: the payload is decoded in several pieces either way."""
    text = lines(30_000)
    content = ("<html><head><style>p {color: red}</style></head><body>"
               + "".join(f"<p>{line}</p>\n" for line in text) + "<!--" + "x" * MAX_HTML
               + "--></body></html>" if subtype == "html" else "\n".join(text) + "\n")
    assert len("\n".join(text)) > 4 * MAX_BODY
    subject = f"Long {subtype} {cte}"
    send(smtp, "pdfs@baton.example", one_part(subject, content, subtype, cte))
    case = the_case(harness, subject)
    (stored,) = harness.engine.intake.messages(case["id"])
    assert stored["body"] == "\n".join(text)[:MAX_BODY]  # (nothing broken at the pieces)
    assert case["description"] == stored["body"][:100_000]  # (a text field's length)
    assert notes(harness, case["id"]) == [f"the body was cut to its first {MAX_BODY:,} characters"]
    (event,) = [e for e in harness.engine.timeline(case["id"]) if e["type"] == "message_received"]
    assert describe_message(event["data"]).endswith(
        f"; note: the body was cut to its first {MAX_BODY:,} characters")


@pytest.mark.pg_slow
def test_html_past_what_is_read_gives_the_text_of_its_start(
        harness: Any, smtp: SmtpListener) -> None:
    """Text after the first 5,000,000 characters of HTML is not read (an HTML body that is
    mostly markup): the body is the text before, and the note says what was read."""
    html = ("<html><body><p>The pump in bay 3 leaks again.</p><style>"
            + "p.x { color: #123456 }\n" * (MAX_HTML // 23)
            + "</style><p>NOT READ</p></body></html>")
    send(smtp, "pdfs@baton.example", one_part("Mostly markup", html, "html", "quoted-printable"))
    case = the_case(harness, "Mostly markup")
    assert case["description"] == "The pump in bay 3 leaks again."
    assert notes(harness, case["id"]) == [
        f"the body was cut: only its first {MAX_HTML:,} characters of HTML were read"]


def test_a_body_that_fits_has_no_note(harness: Any, smtp: SmtpListener) -> None:
    msg = message("pdfs", "Short html")
    msg.set_content("<p>Grüße, the pump leaks.</p>", subtype="html", cte="base64")
    send(smtp, "pdfs@baton.example", msg)
    case = the_case(harness, "Short html")
    assert case["description"] == "Grüße, the pump leaks."
    assert notes(harness, case["id"]) == []


# ---- octet-stream: judged by what the bytes are ----------------------------------------------

FILES = [  # sent as application/octet-stream, all of them
    ("scan.bin", pdf_with_text("Invoice 4411 total 99.50 EUR")),  # a PDF
    ("tool.bin", PE),  # a Windows program
    ("daemon.bin", ELF),  # a Linux program
    ("blob.bin", bytes(range(256)) * 4),  # bytes of no known type
]
STORED_AS = {"scan.bin": "application/pdf", "tool.bin": sniff.EXE, "daemon.bin": sniff.ELF,
             "blob.bin": "application/octet-stream"}
OUTCOMES = {  # mailbox -> the files it stores (the docs' table)
    "pdfs": {"scan.bin"},
    "octets": {"blob.bin"},
    "anything": {"scan.bin", "blob.bin"},
    "apps": {"scan.bin", "blob.bin"},
    "windows": {"scan.bin", "tool.bin"},
}


def test_octet_stream_is_judged_by_what_its_bytes_are(
        harness: Any, smtp: SmtpListener) -> None:
    for box in OUTCOMES:  # (the same files to each mailbox)
        msg = message(box, f"Octets to {box}")
        msg.set_content("Files attached.")
        for name, data in FILES:
            msg.add_attachment(data, maintype="application", subtype="octet-stream",
                               filename=name)
        send(smtp, f"{box}@baton.example", msg)
    for box, stores in OUTCOMES.items():
        case = the_case(harness, f"Octets to {box}")
        got = {a["filename"]: a for a in harness.engine.intake.attachments(case["id"])}
        assert {n: a["content_type"] for n, a in got.items()} == STORED_AS
        assert {n for n, a in got.items() if a["status"] == "stored"} == stores, box
        allowed = ", ".join(a.strip(' "') for a in ALLOWS[box].strip("[]").split(","))
        for name in {"tool.bin", "daemon.bin"} - stores:  # a program: refused unless named
            kind = STORED_AS[name]
            why = f"type {kind} is not allowed (allowed: {allowed})" if "*" not in allowed \
                else f"type {kind} is a program: stored only when allow names its type " \
                     f"(allowed: {allowed})"
            assert got[name]["reason"] == f"{why} (sent as application/octet-stream)", box
        # a PDF sent as octet-stream, stored, is read as the PDF it is
        assert ("Invoice 4411 total 99.50 EUR" in (case["documents"] or "")) \
            == ("scan.bin" in stores), box
        assert "scan.bin: sent as application/octet-stream, its bytes are application/pdf: " \
               "stored as application/pdf" in notes(harness, case["id"])


def test_a_type_is_allowed_under_any_of_its_names_a_program_only_when_named(
        harness: Any, smtp: SmtpListener) -> None:
    """A PDF declared ``application/x-pdf`` (its bytes agree: stored under that name) is
    allowed by ``application/pdf`` and read; a program declared as one is stored where the
    list names its type by another of its names, refused under a wildcard."""
    for box in ("windows", "anything"):
        msg = message(box, f"Tool to {box}")
        msg.set_content("The tool and the invoice.")
        msg.add_attachment(PE, maintype="application", subtype="x-msdownload",
                           filename="tool.exe")
        msg.add_attachment(pdf_with_text("Invoice 4412"), maintype="application",
                           subtype="x-pdf", filename="invoice.pdf")
        send(smtp, f"{box}@baton.example", msg)
    windows = the_case(harness, "Tool to windows")
    anything = the_case(harness, "Tool to anything")
    got = {(box, a["filename"]): (a["content_type"], a["status"], a["reason"])
           for box, case in (("windows", windows), ("anything", anything))
           for a in harness.engine.intake.attachments(case["id"])}
    assert got == {
        ("windows", "tool.exe"): ("application/x-msdownload", "stored", None),
        ("windows", "invoice.pdf"): ("application/x-pdf", "stored", None),
        ("anything", "tool.exe"): ("application/x-msdownload", "refused", (
            "type application/x-msdownload is a program: stored only when allow names its "
            "type (allowed: */*)")),
        ("anything", "invoice.pdf"): ("application/x-pdf", "stored", None),
    }
    assert "Invoice 4412" in windows["documents"] and "Invoice 4412" in anything["documents"]
