"""IMAP polling on both databases, against a small IMAP server on loopback
(``tests/imapd.py``) through the real ``imapclient``: new messages become cases; the UID
bookkeeping (UIDVALIDITY and the last UID, in the database) fetches nothing twice, across
pollers too; a recreated folder (new UIDVALIDITY) is read again without importing anything
twice; a wrong password or a missing secret is an error that never shows the password."""

from __future__ import annotations

import os
from email.message import EmailMessage
from typing import Any

import pytest

from baton.errors import DefinitionError
from baton.intake.imap import ImapError, ImapPolling, poll
from tests.imapd import ImapServer

DEFS = """
kind: object
name: Case
fields:
  subject: {{type: string}}
  latest: {{type: text}}
---
kind: mailbox
name: inbox
object: Case
fields: {{subject: subject, last_message: latest}}
imap: {{host: 127.0.0.1, port: {port}, username: support, password_secret: env:T_IMAP_PW,
        folder: INBOX, ssl: false, every: 5}}
"""
PASSWORD = "s3cret-imap-pw"


def mail(n: int, reply_to: int | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"client{n}@dealer.example"
    msg["To"] = "support@baton.example"
    msg["Subject"] = f"Question {n}"
    msg["Message-ID"] = f"<imap-{n}@dealer.example>"
    if reply_to is not None:
        msg["In-Reply-To"] = f"<imap-{reply_to}@dealer.example>"
    msg.set_content(f"Message number {n}.")
    return msg.as_bytes()


@pytest.fixture
def imap(harness: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("T_IMAP_PW", PASSWORD)
    with ImapServer("support", PASSWORD) as server:
        harness.deploy_text(DEFS.format(port=server.port))
        yield server


def box(harness: Any) -> Any:
    return harness.engine.definitions.mailboxes()["inbox"]


def subjects(harness: Any) -> list[str]:
    rows = harness.engine.page_records("Case", limit=50).rows
    return sorted(r["subject"] for r in rows)


def test_new_messages_become_cases_once(harness: Any, imap: ImapServer) -> None:
    intake = harness.engine.intake
    for n in (1, 2):
        imap.add(mail(n))
    first = poll(intake, box(harness), env=os.environ)
    assert [o for _, o in first.taken] == ["created", "created"] and first.last_uid == 2
    assert imap.fetched == [1, 2] and not first.reset
    assert subjects(harness) == ["Question 1", "Question 2"]
    again = poll(intake, box(harness), env=os.environ)
    assert again.taken == () and imap.fetched == [1, 2]  # nothing fetched twice
    imap.add(mail(3, reply_to=1))
    imap.add(mail(4))
    third = poll(intake, box(harness), env=os.environ)
    assert [(u, o) for u, o in third.taken] == [(3, "threaded"), (4, "created")]
    assert imap.fetched == [1, 2, 3, 4]
    with harness.engine.store.read() as tx:
        state = tx.imap_state_txn("inbox")
    assert (state["uidvalidity"], state["last_uid"]) == (1000, 4)
    assert state["account"] == f"support@127.0.0.1:{imap.port}/INBOX"
    messages = [m for r in harness.engine.page_records("Case", limit=50).rows
                for m in intake.messages(r["id"])]
    assert sorted(m["via"] for m in messages) == ["imap"] * 4


def test_the_highest_uid_below_the_range_is_not_taken_again(harness: Any,
                                                           imap: ImapServer) -> None:
    imap.add(mail(1))
    imap.add(mail(2))
    poll(harness.engine.intake, box(harness), env=os.environ)
    imap.expunge(2)  # "3:*" now answers UID 1 (the highest): it must not be fetched again
    got = poll(harness.engine.intake, box(harness), env=os.environ)
    assert got.taken == () and imap.fetched == [1, 2]


def test_a_recreated_folder_is_read_again_without_duplicates(harness: Any,
                                                            imap: ImapServer) -> None:
    for n in (1, 2, 3):
        imap.add(mail(n))
    poll(harness.engine.intake, box(harness), env=os.environ)
    imap.recreate(uidvalidity=2000)  # same messages, UIDs 1..3 again, meaning new ones
    imap.add(mail(9))
    got = poll(harness.engine.intake, box(harness), env=os.environ)
    assert got.reset and got.uidvalidity == 2000
    assert [o for _, o in got.taken] == ["duplicate"] * 3 + ["created"]
    assert subjects(harness) == ["Question 1", "Question 2", "Question 3", "Question 9"]


def test_a_second_poller_takes_nothing_twice(harness: Any, imap: ImapServer) -> None:
    from baton.runtime.engine import Engine

    other = Engine(harness.db_url, clock=harness.clock)
    try:
        imap.add(mail(1))
        poll(harness.engine.intake, box(harness), env=os.environ)
        imap.add(mail(2))
        got = poll(other.intake, other.definitions.mailboxes()["inbox"], env=os.environ)
        assert [u for u, _ in got.taken] == [2] and imap.fetched == [1, 2]
    finally:
        other.close()


def test_the_polling_thread_rounds(harness: Any, imap: ImapServer) -> None:
    ticks = iter([0.0, 1.0, 6.0])
    polling = ImapPolling(harness.engine.intake, monotonic=lambda: next(ticks), env=os.environ)
    imap.add(mail(1))
    polling.round()  # due: polls
    imap.add(mail(2))
    polling.round()  # 1 s later, every: 5 → not due
    assert subjects(harness) == ["Question 1"]
    polling.round()  # 6 s: due again
    assert subjects(harness) == ["Question 1", "Question 2"]


def test_refused_login_and_missing_secret(harness: Any, imap: ImapServer,
                                          monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("T_IMAP_PW", "wrong-password-xyz")
    with pytest.raises(ImapError, match="login as 'support' at 127.0.0.1 refused") as err:
        poll(harness.engine.intake, box(harness), env=os.environ)
    assert "wrong-password-xyz" not in str(err.value)
    ImapPolling(harness.engine.intake).round()  # logged, not raised
    assert "poll failed" in caplog.text and "wrong-password-xyz" not in caplog.text
    monkeypatch.delenv("T_IMAP_PW")
    with pytest.raises(ImapError, match="T_IMAP_PW is not set"):
        poll(harness.engine.intake, box(harness), env=os.environ)


def test_imap_options_are_checked(harness: Any) -> None:
    bad = DEFS.format(port=0).replace("password_secret: env:T_IMAP_PW", "password_secret: hunter2")
    bad = bad.replace("every: 5", "every: 1, tls: yes")
    with pytest.raises(DefinitionError) as err:
        harness.deploy_text(bad)
    assert "tls" in str(err.value)
    bad = bad.replace(", tls: yes", "")
    with pytest.raises(DefinitionError) as err:
        harness.deploy_text(bad)
    text = str(err.value)
    assert "imap.port" in text and "imap.password_secret" in text and "imap.every" in text
