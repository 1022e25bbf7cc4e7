"""Malformed mail over every way in, on both databases: the audit's poison messages
(``Message-ID: <>``, a display name with an encoded CR/LF, a Date past the last instant)
become cases over a real Dovecot, a real SMTP session and ``accept``; an IMAP poll goes past
a message that fails for a reason of its own (logged with its UID, mailbox and account) and
stops at a failure that is not the message's (the next poll takes it again); after a
UIDVALIDITY reset the poll counts duplicates apart from new messages."""

from __future__ import annotations

import logging
import os
import smtplib
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy.exc import DBAPIError

from baton.intake.imap import ImapPolling, poll
from baton.intake.service import Accepted, IntakeService
from baton.intake.smtp import SmtpListener
from tests.imapd import ImapServer
from tests.integration.test_imap_dovecot import PASSWORD as DOVECOT_PASSWORD
from tests.integration.test_imap_dovecot import dovecot  # noqa: F401 - the fixture
from tests.net import free_port

DEFS = """
kind: object
name: Case
fields:
  subject: {{type: string}}
  who: {{type: string}}
  sent: {{type: string}}
---
kind: mailbox
name: inbox
object: Case
fields: {{subject: subject, sender_name: who, sent_at: sent}}
imap: {{host: 127.0.0.1, port: {port}, username: support, password_secret: env:T_MAILAI_PW,
        ssl: false}}
"""
PASSWORD = "mailai-imap-pw"

POISON = {  # (the audit's samples: each crashed parsing, so blocked an IMAP mailbox)
    "empty_id": b"From: f@dealer.example\r\nTo: support@acme.example\r\nSubject: empty mid\r\n"
                b"Message-ID: <>\r\n\r\nbody A\r\n",
    "crlf_name": b"From: =?utf-8?q?A=0D=0AB?= <a@x.example>\r\nTo: support@acme.example\r\n"
                 b"Subject: crlf name\r\nMessage-ID: <crlf@x>\r\n\r\nbody\r\n",
    "far_date": b"From: f@dealer.example\r\nTo: support@acme.example\r\nSubject: far date\r\n"
                b"Message-ID: <far@x>\r\nDate: Fri, 31 Dec 9999 23:59:59 -1200\r\n\r\nbody\r\n",
}


def mail(n: int, subject: str | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"client{n}@dealer.example"
    msg["To"] = "support@baton.example"
    msg["Subject"] = subject or f"Question {n}"
    msg["Message-ID"] = f"<mailai-{n}@dealer.example>"
    msg.set_content(f"Message number {n}.")
    return msg.as_bytes()


def cases(harness: Any) -> dict[str, dict[str, Any]]:
    return {r["subject"]: r for r in harness.engine.page_records("Case", limit=50).rows}


def box(harness: Any) -> Any:
    return harness.engine.definitions.mailboxes()["inbox"]


def _check_poison_cases(harness: Any) -> None:
    got = cases(harness)
    assert {"empty mid", "crlf name", "far date"} <= got.keys()
    assert got["crlf name"]["who"] == "A B"
    assert got["far date"].get("sent") in (None, "")
    for subject in ("empty mid", "far date"):
        (message,) = harness.engine.intake.messages(got[subject]["id"])
        assert message["notes"], subject  # (the fallback is said on the message)


# ---- the audit's poison over a real Dovecot ------------------------------------------------

def test_poison_messages_do_not_block_a_real_dovecot_mailbox(
        harness: Any, dovecot: int, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import imaplib
    import time

    monkeypatch.setenv("T_MAILAI_PW", DOVECOT_PASSWORD)
    harness.deploy_text(DEFS.format(port=dovecot))
    client = imaplib.IMAP4("127.0.0.1", dovecot, timeout=30)
    try:
        client.login("support", DOVECOT_PASSWORD)
        for raw in (*POISON.values(), mail(5)):
            status, _ = client.append("INBOX", "", imaplib.Time2Internaldate(time.time()), raw)
            assert status == "OK"
    finally:
        client.logout()
    first = poll(harness.engine.intake, box(harness), env=os.environ)
    assert [o for _, o in first.taken] == ["created"] * 4
    assert first.new == 4 and first.last_uid == first.taken[-1][0]
    assert poll(harness.engine.intake, box(harness), env=os.environ).taken == ()
    _check_poison_cases(harness)
    assert "Question 5" in cases(harness)


# ---- SMTP: 250, not 451 ----------------------------------------------------------------------

def test_poison_messages_are_taken_over_smtp(harness: Any) -> None:
    harness.deploy_text(DEFS.format(port=1))
    listener = SmtpListener(harness.engine.intake, "127.0.0.1", free_port(), max_bytes=50_000)
    listener.start()
    try:
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=30) as client:
            for raw in POISON.values():
                assert client.sendmail("f@dealer.example", ["support@acme.example"], raw) == {}
            # a second "<>" message is another message (its bytes' hash), not a duplicate
            other = POISON["empty_id"].replace(b"empty mid", b"empty mid 2")
            assert client.sendmail("f@dealer.example", ["support@acme.example"], other) == {}
            # a message whose values the database refuses (every time): 554, not 451
            _refuse_subject(harness, "poison")
            with pytest.raises(smtplib.SMTPDataError) as refused:
                client.sendmail("f@dealer.example", ["support@acme.example"],
                                mail(7, "poison"))
            assert refused.value.smtp_code == 554
    finally:
        listener.stop()
    _check_poison_cases(harness)
    assert "empty mid 2" in cases(harness) and "poison" not in cases(harness)


# ---- IMAP: a message's own failure is gone past; the setup's is not -------------------------

@pytest.fixture
def imap(harness: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("T_MAILAI_PW", PASSWORD)
    with ImapServer("support", PASSWORD) as server:
        harness.deploy_text(DEFS.format(port=server.port))
        yield server


def _refuse_subject(harness: Any, subject: str) -> None:
    """A database trigger that refuses to store a message with ``subject``: the database
    refusing that message's values, every time (as a value too long for its column does)."""
    store = harness.engine.store
    if store.dialect == "sqlite":
        sql = [(f"CREATE TRIGGER t_mailai BEFORE INSERT ON baton_messages "
                f"WHEN NEW.subject = '{subject}' BEGIN SELECT RAISE(ABORT, 'refused'); END")]
    else:
        sql = [f"""CREATE FUNCTION t_mailai() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN
                     IF NEW.subject = '{subject}' THEN
                       RAISE EXCEPTION 'refused' USING ERRCODE = 'check_violation';
                     END IF;
                     RETURN NEW;
                   END $$""",
               ("CREATE TRIGGER t_mailai BEFORE INSERT ON baton_messages "
                "FOR EACH ROW EXECUTE FUNCTION t_mailai()")]
    with store.write() as tx:
        for statement in sql:
            tx.conn.exec_driver_sql(statement)


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "baton.intake.imap" and r.levelno == level]


def test_a_message_the_database_refuses_is_gone_past(harness: Any, imap: ImapServer,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    _refuse_subject(harness, "poison")
    imap.add(mail(1))
    bad = imap.add(mail(2, "poison"))
    imap.add(mail(3))
    with caplog.at_level(logging.WARNING, logger="baton.intake.imap"):
        got = poll(harness.engine.intake, box(harness), env=os.environ)
    assert [o for _, o in got.taken] == ["created", "failed", "created"]
    assert got.last_uid == 3 and got.new == 2
    assert sorted(cases(harness)) == ["Question 1", "Question 3"]
    (line,) = _records(caplog, logging.ERROR)
    assert f"imap inbox: UID {bad} " in line and "support@127.0.0.1" in line
    assert "failed" in line and "baton intake eml" in line
    assert poll(harness.engine.intake, box(harness), env=os.environ).taken == ()  # (recorded)


class _Buggy(IntakeService):
    """Intake with a bug met on one message's content (no known input makes the real one
    raise anything unexpected any more: this stands for the next such bug)."""

    def accept(self, raw: bytes, **kw: Any) -> Accepted:
        if b"Subject: buggy" in raw:
            raise IndexError("list index out of range")
        return super().accept(raw, **kw)


def test_an_unexpected_error_on_one_message_is_gone_past(
        harness: Any, imap: ImapServer, caplog: pytest.LogCaptureFixture) -> None:
    real = harness.engine.intake
    buggy = _Buggy(real.store, real.definitions, real.records, real.clock, real.ids, real.wake,
                   real.limits)
    imap.add(mail(1, "buggy"))
    imap.add(mail(2))
    with caplog.at_level(logging.WARNING, logger="baton.intake.imap"):
        got = poll(buggy, box(harness), env=os.environ)
    assert [o for _, o in got.taken] == ["failed", "created"]
    (line,) = _records(caplog, logging.ERROR)
    assert "UID 1 " in line and "IndexError" in line
    assert got.summary() == "1 new message(s) (1 created); 1 failed, last UID 2"


def _rename(harness: Any, old: str, new: str) -> None:
    with harness.engine.store.write() as tx:
        tx.conn.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")


def test_a_failure_not_the_messages_own_ends_the_poll_and_is_retried(
        harness: Any, imap: ImapServer, caplog: pytest.LogCaptureFixture) -> None:
    # The messages' table gone (a schema's fault, as a revoked privilege would be): every
    # message would fail alike, so going past would lose them all. The poll stops instead.
    imap.add(mail(1))
    imap.add(mail(2))
    _rename(harness, "baton_messages", "baton_messages_away")
    try:
        with caplog.at_level(logging.WARNING, logger="baton.intake.imap"), \
                pytest.raises(DBAPIError):
            poll(harness.engine.intake, box(harness), env=os.environ)
        (line,) = _records(caplog, logging.WARNING)
        assert "UID 1 " in line and "next poll takes it again" in line
        with caplog.at_level(logging.WARNING, logger="baton.intake.imap"):
            ImapPolling(harness.engine.intake, env=os.environ).round()  # (logged, not raised)
    finally:
        _rename(harness, "baton_messages_away", "baton_messages")  # mended
    assert cases(harness) == {}
    got = poll(harness.engine.intake, box(harness), env=os.environ)
    assert [o for _, o in got.taken] == ["created", "created"]


# ---- the count after a UIDVALIDITY reset ----------------------------------------------------

def test_a_reset_counts_duplicates_apart(harness: Any, imap: ImapServer,
                                         caplog: pytest.LogCaptureFixture) -> None:
    imap.add(mail(1))
    imap.add(mail(2))
    first = poll(harness.engine.intake, box(harness), env=os.environ)
    assert first.summary() == "2 new message(s) (2 created), last UID 2"
    imap.recreate(uidvalidity=2000)
    imap.add(mail(3))
    ticks = iter([0.0, 100.0])
    polling = ImapPolling(harness.engine.intake, monotonic=lambda: next(ticks), env=os.environ)
    with caplog.at_level(logging.INFO, logger="baton.intake.imap"):
        polling.round()
    (line,) = _records(caplog, logging.INFO)
    assert line == ("imap inbox: 1 new message(s) (1 created); 2 duplicate (UIDVALIDITY "
                    "changed: the folder was read from the start), last UID 3")
