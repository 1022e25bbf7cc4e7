"""Intake's bounds are settings (``BATON_INTAKE_*`` / ``[intake]`` of baton.toml), on both
databases, through the real ways in: the SMTP listener on loopback takes a message over the
old fixed 25 MiB when told to and refuses one under it when told to, a real ``.eml`` file
likewise, PDFs are read to the configured page; bad values are refused naming the setting.
Attachments are stored as what their bytes are (the declaration kept and noted), and only
PDFs go to the PDF reader. The IMAP poller reads no mailbox definitions between its looks
while none polls, and starts polling a deployed ``imap:`` mailbox within its look interval.
A 25 MB message is parsed within a bounded memory (measured in a process of its own)."""

from __future__ import annotations

import email.policy
import io
import os
import smtplib
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from baton.errors import ConfigError
from baton.intake import sniff
from baton.intake.imap import LOOK_EVERY, ImapPolling
from baton.intake.mail import MailError, read_file
from baton.intake.service import IntakeService
from baton.intake.smtp import SmtpListener
from baton.intake.views import describe_message
from baton.runtime.engine import Engine
from baton.settings import IntakeSettings, Settings, environment_variables
from tests.imapd import ImapServer
from tests.net import free_port
from tests.pdfs import pdf_with_text

DEFS = """
kind: object
name: Claim
fields:
  subject: {type: string}
  documents: {type: text}
---
kind: mailbox
name: claims
object: Claim
addresses: [claims@baton.example]
fields: {subject: subject, attachments_text: documents}
attachments: {max_bytes: 40000000, allow: [application/pdf, text/*, image/*, application/zip]}
"""
TO = "claims@baton.example"
MiB = 1024 * 1024


def settings(**env: str) -> Settings:
    return Settings.from_environment({f"BATON_INTAKE_{k.upper()}": v for k, v in env.items()})


def intake_of(harness: Any, config: Settings) -> IntakeService:
    """The harness engine's intake with ``config``'s bounds (as ``Engine(settings=config)``
    makes it: see test_the_engine_gives_intake_its_settings)."""
    e = harness.engine
    return IntakeService(e.store, e.definitions, e.records, e.clock, e.ids, e.wake,
                         limits=config.intake)


@pytest.fixture
def listen(harness: Any) -> Iterator[Any]:
    harness.deploy_text(DEFS)
    started: list[SmtpListener] = []

    def start(intake: IntakeService, **kwargs: Any) -> SmtpListener:
        listener = SmtpListener(intake, "127.0.0.1", free_port(), **kwargs)
        listener.start()
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.stop()


def claim(n: int, files: Sequence[tuple[str, str, bytes]] = (), pad: int = 0) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ana@dealer.example", TO, f"Claim {n}"
    msg["Message-ID"] = f"<limits-{n}@dealer.example>"
    msg.set_content("The documents are attached.")
    for name, ctype, data in files:
        major, minor = ctype.split("/")
        if major == "text":  # (set_content wants text as str for text/*)
            msg.add_attachment(data, maintype="application", subtype="octet-stream",
                               filename=name)
            part: Any = msg.get_payload()[-1]  # type: ignore[index]
            part.replace_header("Content-Type", f'{ctype}; name="{name}"')
        else:
            msg.add_attachment(data, maintype=major, subtype=minor, filename=name)
    if pad:
        msg.add_attachment(b"%PDF-1.4\n" + os.urandom(pad - 9), maintype="application",
                           subtype="pdf", filename="scan.pdf")  # (a PDF to a sniffer)
    return msg.as_bytes(policy=email.policy.SMTP)


def send(listener: SmtpListener, raw: bytes) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=300) as client:
        try:
            client.sendmail("ana@dealer.example", [TO], raw)
        except (smtplib.SMTPDataError, smtplib.SMTPSenderRefused) as exc:
            error = exc.smtp_error
            return exc.smtp_code, error.decode() if isinstance(error, bytes) else error
    return 250, ""


def subjects(harness: Any) -> list[str]:
    return sorted(r["subject"] for r in harness.engine.page_records("Claim", limit=50).rows)


# ---- the settings themselves ----------------------------------------------------------------

def test_defaults_env_and_baton_toml() -> None:
    assert Settings().intake == IntakeSettings() == Settings.from_environment({}).intake
    assert (IntakeSettings().max_message_bytes, IntakeSettings().pdf_max_pages) == (25 * MiB, 500)
    assert {f"BATON_INTAKE_{k}" for k in ("MAX_MESSAGE_BYTES", "PDF_MAX_PAGES", "PDF_SECONDS",
                                          "PDF_MESSAGE_SECONDS", "PDF_MEMORY_MB")} \
        <= set(environment_variables())
    got = settings(max_message_bytes="41943040", pdf_max_pages="20", pdf_seconds="2.5",
                   pdf_message_seconds="10", pdf_memory_mb="512").intake
    assert got == IntakeSettings(40 * MiB, 20, 2.5, 10.0, 512)
    table = {"intake": {"max_message_bytes": 5_000_000, "pdf_seconds": 4}}
    assert Settings.from_environment({}, table).intake.max_message_bytes == 5_000_000
    # the environment beats baton.toml
    assert Settings.from_environment({"BATON_INTAKE_MAX_MESSAGE_BYTES": "6000000"},
                                     table).intake.max_message_bytes == 6_000_000


@pytest.mark.parametrize(("env", "project", "says"), [
    ({"BATON_INTAKE_MAX_MESSAGE_BYTES": "25MB"}, {},
     "BATON_INTAKE_MAX_MESSAGE_BYTES='25MB' is not a whole number"),
    ({"BATON_INTAKE_MAX_MESSAGE_BYTES": "0"}, {},
     ("BATON_INTAKE_MAX_MESSAGE_BYTES / [intake] max_message_bytes=0 must be a whole number of "
     "bytes from 1,024 to 134,217,728")),
    ({"BATON_INTAKE_MAX_MESSAGE_BYTES": "-5"}, {}, "max_message_bytes=-5 must be"),
    ({"BATON_INTAKE_MAX_MESSAGE_BYTES": "10000000000"}, {}, "max_message_bytes=10000000000"),
    ({"BATON_INTAKE_PDF_SECONDS": "nan"}, {}, ("BATON_INTAKE_PDF_SECONDS / [intake] "
     "pdf_seconds=nan must be a number of seconds from 0.1 to 3,600")),
    ({"BATON_INTAKE_PDF_SECONDS": "soon"}, {}, "BATON_INTAKE_PDF_SECONDS='soon' is not a number"),
    ({"BATON_INTAKE_PDF_MAX_PAGES": "2.5"}, {}, "BATON_INTAKE_PDF_MAX_PAGES='2.5' is not a whole"),
    ({"BATON_INTAKE_PDF_MEMORY_MB": "16"}, {}, ("pdf_memory_mb=16 must be a whole number of MiB "
     "from 128 to 65,536")),
    ({}, {"intake": {"max_message_bytes": "25 MiB"}},
     "[intake] max_message_bytes='25 MiB' must be a whole number of bytes"),
    ({}, {"intake": {"pdf_max_pages": True}}, "[intake] pdf_max_pages=True must be"),
    ({}, {"intake": {"pdf_message_seconds": -1}}, "pdf_message_seconds=-1 must be"),
    ({}, {"intake": {"max_bytes": 5}}, ("unknown key(s) in [intake]: max_bytes (known: "
     "max_message_bytes, pdf_max_pages")),
    ({}, {"intake": 5}, "[intake] must be a table"),
])
def test_bad_values_are_refused_naming_the_setting(env: dict[str, str], project: dict[str, Any],
                                                    says: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_environment(env, project)
    assert says in str(err.value)


def test_the_engine_gives_intake_its_settings(tmp_path: Path) -> None:
    config = settings(max_message_bytes="5000000", pdf_max_pages="3")
    with Engine(f"sqlite:///{tmp_path / 'x.db'}", settings=config) as eng:
        assert eng.intake.limits == config.intake


# ---- through the ways in ------------------------------------------------------------------

def test_smtp_takes_the_configured_size_up_and_down(harness: Any, listen: Any) -> None:
    small = listen(intake_of(harness, settings(max_message_bytes=str(2 * MiB))))
    assert send(small, claim(1, pad=1_000_000)) == (250, "")
    code, text = send(small, claim(2, pad=2_000_000))  # 2.7 MB on the wire
    assert code == 552 and "size" in text.lower()
    # --smtp-max-bytes beats the setting; out of bounds it is refused naming it
    wider = listen(intake_of(harness, settings(max_message_bytes=str(2 * MiB))),
                   max_bytes=3 * MiB)
    assert send(wider, claim(3, pad=2_000_000)) == (250, "")
    with pytest.raises(Exception, match=r"--smtp-max-bytes=0 must be a whole number of bytes"):
        SmtpListener(harness.engine.intake, "127.0.0.1", free_port(), max_bytes=0)
    # over the old fixed 25 MiB: a 27 MB scan goes through when the setting says 40 MB
    big = listen(intake_of(harness, settings(max_message_bytes=str(40 * MiB))))
    raw = claim(4, pad=20_000_000)
    assert len(raw) > 25 * MiB
    assert send(big, raw) == (250, "")
    assert subjects(harness) == ["Claim 1", "Claim 3", "Claim 4"]
    (stored,) = [r for r in harness.engine.page_records("Claim", limit=50).rows
                 if r["subject"] == "Claim 4"]
    (scan,) = harness.engine.intake.attachments(stored["id"])
    assert (scan["status"], scan["size"], scan["content_type"]) == (
        "stored", 20_000_000, "application/pdf")
    assert scan["text_error"].startswith("the PDF could not be read")  # (it is noise)


def test_a_real_file_and_the_api_path_take_the_setting(harness: Any, tmp_path: Path) -> None:
    harness.deploy_text(DEFS)
    path = tmp_path / "claim.eml"
    path.write_bytes(claim(5, pad=1_500_000))
    small = intake_of(harness, settings(max_message_bytes=str(MiB)))
    with pytest.raises(MailError, match=r"the file is over 1,048,576 bytes"):
        read_file(path, small.limits.max_message_bytes)
    raw = read_file(path)  # (the default reads it)
    with pytest.raises(MailError, match=r"the message is 2,0\d\d,\d\d\d bytes: at most "
                                        r"1,048,576 are read"):
        small.accept(raw, via="eml")
    assert subjects(harness) == []
    assert intake_of(harness, settings(max_message_bytes=str(3 * MiB))).accept(
        raw, via="eml").outcome == "created"


def test_pdfs_are_read_to_the_configured_page(harness: Any) -> None:
    harness.deploy_text(DEFS)
    intake = intake_of(harness, settings(pdf_max_pages="2"))
    got = intake.accept(claim(6, [("three.pdf", "application/pdf",
                                   pdf_with_text("Page one", "Page two", "Page three"))]),
                        via="eml")
    record = harness.engine.get_record(got.record_id)
    assert "Page one" in record["documents"] and "Page two" in record["documents"]
    assert "Page three" not in record["documents"]


# ---- declared types are not trusted ---------------------------------------------------------

PE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"PE\x00\x00"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 40


def test_attachments_are_stored_as_what_their_bytes_are(harness: Any, listen: Any) -> None:
    listener = listen(harness.engine.intake)
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("word/document.xml", "<w:document/>")
    docx = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    files = [
        ("photo.pdf", "application/pdf", PNG),  # an image sent as a PDF
        ("notes.txt", "text/plain", pdf_with_text("Invoice 4411 total 99.50 EUR")),
        ("readme.txt", "text/plain", PE),  # a Windows program sent as text
        ("blob.txt", "text/plain", bytes(range(256)) * 4),  # binary sent as text
        ("letter.txt", "text/plain", b"Dear Baton, the part is broken.\n"),
        ("claim.docx", docx, zipped.getvalue()),  # a ZIP, as OOXML is
    ]
    assert send(listener, claim(7, files)) == (250, "")
    (record,) = harness.engine.page_records("Claim", limit=5).rows
    got = {a["filename"]: a for a in harness.engine.intake.attachments(record["id"])}
    assert {n: (a["content_type"], a["status"]) for n, a in got.items()} == {
        "photo.pdf": ("image/png", "stored"),
        "notes.txt": ("application/pdf", "stored"),
        "readme.txt": (sniff.EXE, "refused"),
        "blob.txt": ("application/octet-stream", "refused"),
        "letter.txt": ("text/plain", "stored"),
        "claim.docx": (docx, "refused"),  # (its declared type agrees: not on the list)
    }
    assert got["readme.txt"]["reason"] == (
        f"type {sniff.EXE} is not allowed (allowed: application/pdf, text/*, image/*, "
        "application/zip) (sent as text/plain)")
    assert got["photo.pdf"]["text_error"] == "no text is read from image/png"  # (no PDF child)
    assert got["notes.txt"]["text"] and got["notes.txt"]["text_error"] is None
    assert "Invoice 4411 total 99.50 EUR" in record["documents"]
    assert "Dear Baton" in record["documents"] and "\x00" not in record["documents"]
    # the declaration is kept on the message and said on the record's timeline
    (message,) = harness.engine.intake.messages(record["id"])
    stored = harness.engine.intake.message(message["id"])
    declared = {a["filename"]: a.get("declared_type") for a in stored["attachments"]}
    assert declared == {"photo.pdf": "application/pdf", "notes.txt": "text/plain",
                        "readme.txt": "text/plain", "blob.txt": "text/plain",
                        "letter.txt": None, "claim.docx": None}
    (event,) = [e for e in harness.engine.timeline(record["id"])
                if e["type"] == "message_received"]
    line = describe_message(event["data"])
    assert "photo.pdf: sent as application/pdf, its bytes are image/png: stored as image/png" \
        in line
    assert f"readme.txt: sent as text/plain, its bytes are {sniff.EXE}" in line
    # the download still goes out as what it is stored as: the API sends it as an attachment
    # with nosniff (tests/api/test_intake.py); the bytes are kept whole
    photo = harness.engine.intake.attachment(got["photo.pdf"]["id"], content=True)
    assert bytes(photo["content"]) == PNG


# ---- IMAP polling without IMAP mailboxes ------------------------------------------------------

IMAP_DEFS = """
kind: object
name: Case
fields:
  subject: {{type: string}}
---
kind: mailbox
name: inbox
object: Case
fields: {{subject: subject}}
imap: {{host: 127.0.0.1, port: {port}, username: support, password_secret: env:T_IMAP_PW,
        folder: INBOX, ssl: false, every: 5}}
"""


def test_the_poller_reads_no_definitions_while_none_polls_and_finds_a_new_one(
        harness: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    harness.deploy_text(DEFS)  # a mailbox without imap:
    now = [0.0]
    polling = ImapPolling(harness.engine.intake, tick=5.0, monotonic=lambda: now[0],
                          env={"T_IMAP_PW": "pw"})
    reads: list[float] = []
    real = polling.sources

    def counted() -> Any:
        reads.append(now[0])
        return real()

    monkeypatch.setattr(polling, "sources", counted)
    while now[0] < 2 * LOOK_EVERY:  # two minutes of rounds, every 5 s
        polling.round()
        now[0] += 5.0
    assert reads == [0.0, LOOK_EVERY]  # (not 24 reads)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "c@dealer.example", "s@baton.example", "Hello"
    msg["Message-ID"] = "<poll-1@dealer.example>"
    msg.set_content("hi")
    with ImapServer("support", "pw") as server:
        server.add(msg.as_bytes())
        deployed_at = now[0]  # 120 s: the last look was at 60 s, the next is at 120 s
        harness.deploy_text(IMAP_DEFS.format(port=server.port), name="imap.yaml")
        now[0] += 1.0  # a deploy just after a look waits the longest
        first_poll = None
        while first_poll is None and now[0] < deployed_at + LOOK_EVERY + 10:
            polling.round()
            if server.fetched:
                first_poll = now[0]
            now[0] += 5.0
        assert first_poll is not None and first_poll - deployed_at <= LOOK_EVERY + 5.0
        assert [r["subject"] for r in harness.engine.list_records("Case")] == ["Hello"]
        # while a mailbox polls (every: 5), its definition is read when a poll is due
        before = len(reads)
        for _ in range(4):
            now[0] += 5.0
            polling.round()
        assert len(reads) == before + 4


# ---- memory ----------------------------------------------------------------------------------

PARSE = textwrap.dedent("""
    import sys
    from baton.intake.mail import parse
    def hwm():
        with open("/proc/self/status") as f:
            return int(next(l for l in f if l.startswith("VmHWM:")).split()[1]) // 1024
    raw = open(sys.argv[1], "rb").read()
    before = hwm()
    mail = parse(raw)
    assert sum(a.size for a in mail.attachments) == 18_000_000
    print(hwm() - before)
""")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_a_25_mb_message_is_parsed_in_bounded_memory(tmp_path: Path) -> None:
    """Parsing a 24 MB message of three 6 MB attachments grew the process by ~150 MB before
    (the parser's text copies of it); now by ~30 MB (measured: 28-32). The bound leaves
    room for allocator noise and fails the old way."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ana@dealer.example", TO, "Big"
    msg["Message-ID"] = "<big@dealer.example>"
    msg.set_content("Scans attached.")
    for i in range(3):
        msg.add_attachment(os.urandom(6_000_000), maintype="application",
                           subtype="octet-stream", filename=f"scan{i}.bin")
    path = tmp_path / "big.eml"
    path.write_bytes(msg.as_bytes())
    done = subprocess.run([sys.executable, "-c", PARSE, str(path)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    grew = int(done.stdout.strip())
    assert grew < 90, f"parsing took {grew} MB more"
