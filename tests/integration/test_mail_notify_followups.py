"""Follow-ups to an audit of e-mail notifications and delegation (brief "notify"), through a
real SMTP server on loopback (aiosmtpd) and a virtual clock:

* every message has a ``Date`` and a ``Message-ID`` (RFC 5322; Gmail refuses mail without
  a Message-ID) and ``Auto-Submitted: auto-generated`` (no out-of-office replies to it);
* STARTTLS checks the server's certificate before the SMTP password goes out (smtplib's
  default context checks nothing);
* a server that takes a message for some recipients and refuses others: the refused ones
  are returned (and not sent to again), not lost;
* SLA ``notify: assignee`` reaches whoever works the item: a group or queue item's
  claimer (it was skipped as unresolved), the approver's delegate as well as the approver;
* an approver's delegate who may no longer work items is not told of the approvals;
* the SLA e-mail's due time reads as the assignment e-mail's (``2026-01-05 13:00 UTC``).
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from baton.runtime.engine import Engine
from baton.settings import SmtpSettings
from baton.work.notify import build_message, message_id, send_email
from tests.integration.test_assignment_email import BASE, DEFS, bodies, events, start
from tests.needs import need
from tests.net import Inbox, free_port, smtp_server

aiosmtpd = need("aiosmtpd.controller")

MORE = """
kind: orchestration
name: t_queue_jeopardy
trigger: {type: autolaunched, object: Case}
stages:
  - name: s
    steps:
      - {name: check, type: interactive, assign: {queue: tier1}, form: [{name: ok, type: bool}],
         sla: {duration: 4h, jeopardy: 1h, on_jeopardy: {notify: assignee}}}
---
kind: orchestration
name: t_approval_jeopardy
trigger: {type: autolaunched, object: Case}
stages:
  - name: s
    steps:
      - {name: ok, type: approval, assign: {user: ann},
         sla: {duration: 4h, jeopardy: 1h, on_jeopardy: {notify: assignee}}}
"""


@pytest.fixture
def inbox(harness: Any) -> Iterator[Inbox]:
    harness.setenv(BATON_BASE_URL=BASE)
    with smtp_server(harness) as box:
        yield box


@pytest.fixture
def eng(harness: Any) -> Engine:
    e: Engine = harness.engine
    e.applier.notify_assignments = True
    harness.deploy_text(DEFS)
    harness.deploy_text(MORE, "more.yaml")
    d = e.directory
    d.add_user("ann", roles=["agent"], queues=["tier1"], email="ann@example.com")
    d.add_user("bob", roles=["agent"], queues=["tier1"], email="bob@example.com")
    d.add_user("eve", roles=["agent"], email="eve@example.com")
    return e


# ---- headers -------------------------------------------------------------------------------
def test_every_message_has_a_date_a_message_id_and_says_it_is_automatic(
        harness: Any, eng: Engine, inbox: Inbox) -> None:
    start(eng, "t_user_item")
    harness.work()
    ((_, msg),) = inbox.messages
    assert msg["Auto-Submitted"] == "auto-generated"
    assert parsedate_to_datetime(msg["Date"]).tzinfo is not None
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith("@localhost>")
    settings = SmtpSettings(sender="Baton <baton@example.com>")
    a = build_message(settings, ["x@example.com"], "s", "t")
    b = build_message(settings, ["x@example.com"], "s", "t")
    assert a["Message-ID"] != b["Message-ID"] and a["Message-ID"].endswith("@example.com>")
    # One given by the caller (the worker: its job) is kept, without anything unsafe in it.
    assert message_id(settings, "baton.run_1.7") == "<baton.run_1.7@example.com>"
    assert message_id(settings, "a b>\r\nBcc: x") == "<abBccx@example.com>"


# ---- STARTTLS ------------------------------------------------------------------------------
def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("smtpcerts")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.pem", "-days", "2", "-subj", "/CN=Baton Test Mail CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
             "server.csr", "-subj", "/CN=localhost", cwd=d)
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d


def test_starttls_checks_the_certificate_before_the_password_goes(
        certs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smtp = need("aiosmtpd.smtp")
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str,
                      data: Any) -> Any:
        logins.append((data.login, data.password))
        return smtp.AuthResult(success=True)

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(certs / "server.pem", certs / "server.key")
    box = Inbox()
    port = free_port()
    ctl = aiosmtpd.Controller(box, hostname="127.0.0.1", port=port, tls_context=tls,
                              require_starttls=True, authenticator=authenticator,
                              auth_require_tls=True)
    ctl.start()
    try:
        settings = SmtpSettings(host="localhost", port=port, starttls=True, user="baton",
                                password="s3cret-mail-pass", sender="baton@example.com")
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        # A certificate no trusted CA signed (someone in the middle): nothing is sent.
        with pytest.raises(ssl.SSLCertVerificationError):
            send_email(["ann@example.com"], "s", "t", None, settings)
        assert logins == [] and box.messages == []
        # Trusted (the operator's CA, as OpenSSL reads it): sent, after the login.
        monkeypatch.setenv("SSL_CERT_FILE", str(certs / "ca.pem"))
        assert send_email(["ann@example.com"], "s", "t", None, settings) == {}
        assert logins == [(b"baton", b"s3cret-mail-pass")]
        ((rcpts, _),) = box.messages
        assert rcpts == ["ann@example.com"]
    finally:
        ctl.stop()


# ---- a server that refuses some recipients -------------------------------------------------
class _Picky(Inbox):
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_recipients_the_server_refuses_are_returned_not_lost() -> None:
    box = _Picky()
    port = free_port()
    ctl = aiosmtpd.Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        settings = SmtpSettings(host="127.0.0.1", port=port)
        refused = send_email(["ann@example.com", "gone@example.com"], "s", "t", None, settings)
        assert refused == {"gone@example.com": "550 5.1.1 no such mailbox"}
        ((rcpts, _),) = box.messages
        assert rcpts == ["ann@example.com"]
        with pytest.raises(Exception, match="no such mailbox"):  # all refused: an error
            send_email(["gone@example.com"], "s", "t", None, settings)
    finally:
        ctl.stop()


# ---- SLA notify: assignee ------------------------------------------------------------------
def test_notify_assignee_reaches_who_claimed_a_queue_item(harness: Any, eng: Engine,
                                                          inbox: Inbox) -> None:
    eng.applier.notify_assignments = False
    run, _ = start(eng, "t_queue_jeopardy")
    (item,) = eng.list_work(run_id=run.id)
    eng.claim(item["id"], "bob")
    harness.clock.advance(timedelta(hours=3))
    harness.work()
    ((rcpts, msg),) = inbox.messages  # was: email_skipped, "assignee" unresolved
    assert rcpts == ["bob@example.com"] and "in jeopardy" in msg["Subject"]
    assert "Due:       2026-01-05 13:00 UTC" in bodies(msg)[0]
    (queued,) = events(eng, run.id, "email_queued")
    assert queued["data"]["unresolved"] == []
    # Unclaimed, a queue item has nobody in particular: skipped, as before.
    run, _ = start(eng, "t_queue_jeopardy")
    harness.clock.advance(timedelta(hours=3))
    harness.work()
    (skipped,) = events(eng, run.id, "email_skipped")
    assert skipped["data"]["unresolved"] == ["assignee"]


def test_notify_assignee_reaches_the_approver_and_her_delegate(harness: Any, eng: Engine,
                                                               inbox: Inbox) -> None:
    eng.applier.notify_assignments = False
    eng.directory.update_user("ann", delegate="eve", delegate_until="2026-01-05")
    run, _ = start(eng, "t_approval_jeopardy")
    (item,) = eng.list_work(run_id=run.id)
    eng.claim(item["id"], "eve")  # the delegate works it
    harness.clock.advance(timedelta(hours=3))
    harness.work()
    ((rcpts, _msg),) = inbox.messages
    assert sorted(rcpts) == ["ann@example.com", "eve@example.com"]
    # The delegation over (the next day, UTC) and the claim released: ann alone.
    inbox.messages.clear()
    harness.clock.advance(timedelta(hours=13))  # 2026-01-06 01:00 UTC
    run, _ = start(eng, "t_approval_jeopardy")
    harness.clock.advance(timedelta(hours=3))
    harness.work()
    assert [r for r, _ in inbox.messages] == [["ann@example.com"]]


def test_a_delegate_who_may_no_longer_work_items_is_not_told(harness: Any, eng: Engine,
                                                             inbox: Inbox) -> None:
    harness.deploy_text("""
kind: orchestration
name: t_approval
trigger: {type: autolaunched, object: Case}
stages:
  - name: s
    steps:
      - {name: ok, type: approval, assign: {user: ann}}
""", "approval.yaml")
    eng.directory.update_user("ann", delegate="eve")
    eng.directory.update_user("eve", roles=["designer"])  # she could not act on it
    run, _ = start(eng, "t_approval")
    harness.work()
    (queued,) = events(eng, run.id, "email_queued")
    assert queued["data"]["recipients"] == ["ann@example.com"]
    assert "delegate" not in queued["data"]
    assert [r for r, _ in inbox.messages] == [["ann@example.com"]]
