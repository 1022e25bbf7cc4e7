"""A record's messages on its page: the operator sees who wrote, when, about what and the
new text; the full message behind a toggle; the attachments with download links (a refused
one says why, without a link); the timeline says what arrived. The messages come in as
``.eml`` files through ``baton intake eml``, a reply threading onto the case; the server is
its own ``baton serve`` over a copy of ``examples/case_triage`` with a mailbox added."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import EXAMPLE, PASSWORDS, Server, _answers, login, shot
from tests.net import free_port
from tests.pdfs import pdf_with_text
from tests.procs import eventually

MAILBOX = """
kind: mailbox
name: support
object: Case
fields: {subject: subject}
attachments: {allow: [application/pdf, text/*]}
"""
INVOICE = pdf_with_text("Invoice 4411 total 99.50 EUR")


def _mail(msgid: str, subject: str, text: str, files: tuple[tuple[str, str, bytes], ...] = (),
          reply_to: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Ana Costa <ana@dealer-one.example>"
    msg["To"] = "support@baton.example"
    msg["Subject"] = subject
    msg["Date"] = "Tue, 01 Dec 2026 09:30:00 +0000"
    msg["Message-ID"] = f"<{msgid}>"
    if reply_to:
        msg["In-Reply-To"] = f"<{reply_to}>"
    msg.set_content(text)
    for name, kind, data in files:
        major, minor = kind.split("/")
        msg.add_attachment(data, maintype=major, subtype=minor, filename=name)
    return msg.as_bytes()


@pytest.fixture(scope="module")
def mail_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("ui-mail")
    project = base / "case_triage"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("*.db*", "__pycache__"))
    (project / "definitions" / "mailbox.yaml").write_text(MAILBOX)
    port = free_port()
    srv = Server(f"http://127.0.0.1:{port}", project, f"sqlite:///{base / 'baton.db'}",
                 base / "serve.log")
    srv.cli("deploy")
    srv.cli("users", "add", "olga", "--role", "operator", "--email", "olga@example.com",
            "--password-stdin", input=PASSWORDS["olga"] + "\n")
    with srv.log.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from baton.cli.main import main; main()", "--project",
             str(project), "--db", srv.db, "serve", "--port", str(port), "--workers", "0"],
            cwd=project, stdout=log, stderr=subprocess.STDOUT)
        try:
            eventually(lambda: _answers(srv.url), timeout=60, what="baton serve to answer")
            yield srv
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def test_the_record_page_shows_its_messages(mail_server: Server, browser: Any,
                                            tmp_path: Path) -> None:
    first = tmp_path / "first.eml"
    first.write_bytes(_mail(
        "ui-1@dealer-one.example", "Invoice 4411 charges twice",
        "Hello,\n\nthe invoice 4411 charges the panels twice.\n\n-- \nAna Costa\nDealer One",
        files=(("invoice-4411.pdf", "application/pdf", INVOICE),
               ("setup.exe", "application/x-msdownload", b"MZ0000"))))
    reply = tmp_path / "reply.eml"
    reply.write_bytes(_mail("ui-2@dealer-one.example", "Re: Invoice 4411 charges twice",
                            "Any news?\n\nOn Tue, Ana wrote:\n> the invoice 4411",
                            reply_to="ui-1@dealer-one.example"))
    out = json.loads(mail_server.cli("intake", "eml", str(first), str(reply), "--json"))
    outcomes = out
    assert [o["outcome"] for o in outcomes] == ["created", "threaded"]
    record_id = outcomes[0]["record_id"]

    context = browser.new_context(base_url=mail_server.url, accept_downloads=True)
    try:
        page = context.new_page()
        login(page, "olga", next_path=f"/records/{record_id}")
        messages = page.get_by_role("region", name="Messages")
        expect(messages.get_by_role("article")).to_have_count(2)
        first_msg = messages.get_by_role("article", name="Invoice 4411 charges twice", exact=True)
        expect(first_msg).to_contain_text("ana@dealer-one.example")
        expect(first_msg).to_contain_text("the invoice 4411 charges the panels twice.")
        full = first_msg.locator("details.full-message")
        expect(full.locator("pre")).not_to_be_visible()  # the signature is behind the toggle
        full.get_by_text("Show full message").click()
        expect(full.locator("pre")).to_contain_text("Dealer One")
        attachments = first_msg.get_by_role("list", name="Attachments")
        expect(attachments).to_contain_text("not stored: type application/x-msdownload")
        expect(attachments.get_by_role("link", name="setup.exe")).to_have_count(0)
        with page.expect_download() as got:
            attachments.get_by_role("link", name="invoice-4411.pdf").click()
        download = got.value
        assert download.suggested_filename == "invoice-4411.pdf"
        assert Path(download.path()).read_bytes() == INVOICE
        second = messages.get_by_role("article", name="Re: Invoice 4411 charges twice")
        expect(second).to_contain_text("(a reply)")
        expect(second.locator(".new-text")).to_have_text("Any news?")
        timeline = page.locator("table.timeline")
        expect(timeline).to_contain_text(
            "from ana@dealer-one.example: Invoice 4411 charges twice (via eml)")
        expect(timeline).to_contain_text("setup.exe (refused)")
        shot(page, "record-messages")
    finally:
        context.close()
    shown = mail_server.cli_json("records", "show", record_id)
    assert [(a["filename"], a["status"]) for a in shown["attachments"]] == [
        ("invoice-4411.pdf", "stored"), ("setup.exe", "refused")]
