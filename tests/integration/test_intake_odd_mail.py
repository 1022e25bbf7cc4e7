"""Odd mail at the intake, on both databases (and the dealer_support example through the
CLI): a part the mail leaves empty still fills its field, so a definition's expression over
it reads ``""`` instead of failing; a message its mailbox's object type refuses is refused
for good (SMTP ``554`` with the reason, IMAP goes past it) while a failure that is not the
message's (a database locked) is ``451``, retried; a ``multipart`` message without a
boundary is read as text, with a note on the case's timeline."""

from __future__ import annotations

import json
import os
import shutil
import smtplib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from baton.definitions import validate
from baton.errors import DefinitionError
from baton.intake.imap import poll
from baton.intake.smtp import SmtpListener
from baton.store import schema
from tests.e2e.test_cli import EXAMPLES, baton, ok
from tests.imapd import ImapServer
from tests.net import free_port

DEFS = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
  description: {type: text}
  request: {type: text}
  customer_email: {type: string}
  customer_name: {type: string, default: unknown sender}
  latest: {type: text}
---
kind: mailbox
name: support
object: Case
addresses: [support@baton.example]
fields: {subject: subject, body: description, new_text: request, sender: customer_email,
         sender_name: customer_name, last_message: latest}
---
kind: orchestration
name: t_odd_mail
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: read
    steps:
      - name: intent
        type: ai
        task: classify
        text: '=record.subject + "\\n" + record.request'
        min_confidence: 0.3
        categories:
          - name: billing
            description: invoices, charges and payments
            examples: ["I was charged twice on my invoice", "my payment did not go through",
                       "refund the extra charge on my bill", "why is this invoice so high"]
          - name: technical
            description: something does not work
            examples: ["the app crashes when I log in", "error 500 on the dashboard",
                       "I cannot reset my password, the link is broken", "the page will not load"]
    next: [{goto: handle}]
  - name: handle
    steps:
      - name: answer
        type: interactive
        assign: {queue: support}
        summary: '=record.subject + ": " + record.description'
"""

IMAP_BOX = """---
kind: mailbox
name: inbox
object: Case
fields: {subject: subject, body: description}
imap: {host: 127.0.0.1, port: PORT, username: support, password_secret: env:T_ODD_IMAP_PW,
       ssl: false}
"""
INVOICE = (b"From: b@dealer.example\r\nTo: support@baton.example\r\n"
           b"Subject: Invoice charged twice\r\nMessage-ID: <%s@dealer.example>\r\n\r\n")


def count(harness: Any, table: Any) -> int:
    with harness.engine.store.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(table)).scalar_one())


@pytest.fixture
def smtp(harness: Any) -> Iterator[SmtpListener]:
    harness.deploy_text(DEFS)
    listener = SmtpListener(harness.engine.intake, "127.0.0.1", free_port())
    listener.start()
    yield listener
    listener.stop()


def send(listener: SmtpListener, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", listener.port, timeout=30) as client:
        assert client.sendmail("b@dealer.example", ["support@baton.example"], raw) == {}


# ---- an empty part ---------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "description"), [
    (b"", ""),
    (b"-- \r\nBob\r\n", "--\nBob"),  # a signature only: the new text is empty
], ids=["empty", "signature_only"])
def test_an_empty_body_fills_its_fields_and_the_case_is_read_on_its_subject(
        harness: Any, body: bytes, description: str) -> None:
    harness.deploy_text(DEFS)
    got = harness.engine.intake.accept(INVOICE % b"empty" + body, via="eml")
    assert got.outcome == "created"
    rec = harness.engine.get_record(got.record_id)
    assert (rec["request"], rec["description"]) == ("", description)
    assert rec["customer_name"] == "unknown sender"  # empty, with a default: the default
    harness.work()
    run = harness.engine.get_run(harness.engine.list_runs()[0].id)
    assert harness.step_status(run.id)["intent"] == "completed", run.steps["intent"].error
    assert run.steps["intent"].output["category"] == "billing"
    (item,) = harness.engine.list_work(queue="support")
    assert item["summary"] == " ".join(f"Invoice charged twice: {description}".split())


# ---- refused for good, or not taken now ----------------------------------------------------

def test_a_message_its_object_type_refuses_is_refused_for_good_over_smtp(
        harness: Any, smtp: SmtpListener) -> None:
    no_subject = (b"From: a@dealer.example\r\nTo: support@baton.example\r\n"
                  b"Message-ID: <nosub1@dealer.example>\r\n\r\nhello there, invoice problem\r\n")
    with pytest.raises(smtplib.SMTPDataError) as exc:
        send(smtp, no_subject)
    assert exc.value.smtp_code == 554  # permanent: the sender's server bounces it now, saying why
    assert exc.value.smtp_error == (b"5.6.0 invalid Case record: subject: is required "
                                    b"(the message's subject is empty)")
    assert count(harness, schema.records) == 0 and count(harness, schema.messages) == 0


@pytest.mark.parametrize("error", [
    OperationalError("INSERT INTO baton_records", {}, Exception("database is locked")),
    RuntimeError("a bug"),
], ids=["database_locked", "unexpected"])
def test_a_failure_that_is_not_the_messages_is_451_and_the_retry_is_taken(
        harness: Any, smtp: SmtpListener, monkeypatch: pytest.MonkeyPatch,
        error: Exception) -> None:
    def fail(*_: Any, **__: Any) -> Any:
        raise error

    raw = INVOICE % b"retried" + b"Please refund one of them.\r\n"
    with monkeypatch.context() as patched:
        patched.setattr(harness.engine.intake.records, "create_txn", fail)
        with pytest.raises(smtplib.SMTPDataError) as exc:
            send(smtp, raw)
    assert (exc.value.smtp_code, exc.value.smtp_error) == (451, b"4.3.0 try again later")
    assert count(harness, schema.messages) == 0  # rolled back: the retry is not a duplicate
    send(smtp, raw)  # the sending server's retry, once the database is back
    (stored,) = harness.engine.page_records("Case", limit=5).rows
    assert stored["subject"] == "Invoice charged twice"


def test_a_record_no_message_could_make_is_451_until_the_definition_is_fixed(
        harness: Any, smtp: SmtpListener, monkeypatch: pytest.MonkeyPatch) -> None:
    # a required field the mailbox does not fill: the definitions' fault, not the sender's,
    # so the message waits in the sending server's queue instead of bouncing
    unfilled = "  latest: {type: text}\n  priority: {type: string, required: true}\n"
    with pytest.raises(DefinitionError, match="required field priority is filled by no part"):
        harness.deploy_text(DEFS.replace("  latest: {type: text}\n", unfilled))  # (together)
    harness.deploy_text(DEFS)
    with pytest.raises(DefinitionError, match="required field priority is filled by no part"):
        # the object type changed later, alone: the deployed mailbox is checked against it
        harness.deploy_text(DEFS.split("---")[0].replace("  latest: {type: text}\n", unfilled))
    # deployed before validation refused such a mailbox (an older release):
    monkeypatch.setattr(validate, "_required_fields", lambda docs, deployed: {})
    harness.deploy_text(DEFS.split("---")[0].replace("  latest: {type: text}\n", unfilled))
    monkeypatch.undo()
    raw = INVOICE % b"waits" + b"Please refund one of them.\r\n"
    with pytest.raises(smtplib.SMTPDataError) as exc:
        send(smtp, raw)
    assert exc.value.smtp_code == 451
    harness.deploy_text(DEFS.replace("  latest: {type: text}\n", unfilled.replace(
        "required: true", "required: true, default: normal")))
    send(smtp, raw)  # the retry, once the definition is fixed
    (stored,) = harness.engine.page_records("Case", limit=5).rows
    assert stored["priority"] == "normal"


def test_a_part_longer_than_its_field_is_cut_to_fit(harness: Any) -> None:
    harness.deploy_text(DEFS)
    log = "\r\n".join(f"line {i:06d} of a pasted log" for i in range(6000)).encode()
    got = harness.engine.intake.accept(INVOICE % b"long" + log + b"\r\n", via="eml")
    rec = harness.engine.get_record(got.record_id)
    assert len(rec["description"]) == 100_000 and rec["description"].startswith("line 000000")
    (stored,) = harness.engine.intake.messages(got.record_id)
    assert len(stored["body"]) > 100_000  # the message keeps it whole


def test_a_long_reply_updates_its_record_cut_to_fit(harness: Any) -> None:
    """A reply's new text goes to last_message cut to what the field takes (it used to
    make the whole update refused, silently: the record kept the older message)."""
    harness.deploy_text(DEFS)
    first = harness.engine.intake.accept(INVOICE % b"first" + b"Charged twice.\r\n", via="eml")
    log = "\r\n".join(f"line {i:06d} of a pasted log" for i in range(6000)).encode()
    reply = (b"From: b@dealer.example\r\nTo: support@baton.example\r\n"
             b"Subject: Re: Invoice charged twice\r\nMessage-ID: <reply@dealer.example>\r\n"
             b"In-Reply-To: <first@dealer.example>\r\n\r\n" + log + b"\r\n")
    got = harness.engine.intake.accept(reply, via="eml")
    assert got.outcome == "threaded" and got.record_id == first.record_id
    rec = harness.engine.get_record(first.record_id)
    assert len(rec["latest"]) == 100_000 and rec["latest"].startswith("line 000000")


def test_imap_goes_past_a_message_its_mailbox_refuses(
        harness: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_ODD_IMAP_PW", "pw-odd")
    with ImapServer("support", "pw-odd") as server:
        harness.deploy_text(DEFS + IMAP_BOX.replace("PORT", str(server.port)))
        server.add(b"From: a@dealer.example\r\nMessage-ID: <imap-nosub@dealer.example>\r\n"
                   b"\r\nno subject here\r\n")
        server.add(INVOICE % b"imap-2" + b"Please refund one of them.\r\n")
        box = harness.engine.definitions.mailboxes()["inbox"]
        got = poll(harness.engine.intake, box, env=os.environ)
        # the refused message does not hold up the one after it, nor is it fetched again
        assert got.taken == ((1, "refused"), (2, "created")) and got.last_uid == 2
        assert poll(harness.engine.intake, box, env=os.environ).taken == ()
    assert count(harness, schema.records) == 1


# ---- a defective multipart -------------------------------------------------------------------

def test_a_multipart_without_a_boundary_is_read_as_text_with_a_note(harness: Any) -> None:
    harness.deploy_text(DEFS)
    raw = (b"From: c@dealer.example\r\nTo: support@baton.example\r\nSubject: Bonus missing\r\n"
           b"Message-ID: <noboundary@dealer.example>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed\r\n\r\nsome text\r\n")
    got = harness.engine.intake.accept(raw, via="eml")
    rec = harness.engine.get_record(got.record_id)
    assert (rec["description"], rec["request"]) == ("some text", "some text")
    (event,) = [e for e in harness.engine.timeline(got.record_id)
                if e["type"] == "message_received"]
    assert event["data"]["notes"] == [
        "multipart/mixed without a boundary: its content was read as text/plain"]
    (stored,) = harness.engine.intake.messages(got.record_id)
    assert stored["body"] == "some text"


# ---- the dealer_support example, as its README runs it ---------------------------------------

def test_dealer_support_takes_mail_without_a_subject_or_a_body(tmp_path: Path) -> None:
    """What a Salesforce admin expects of Email-to-Case: every dealer's message makes a case
    (an empty subject stays empty), classified on what it has; nothing in fallout."""
    project = tmp_path / "ds"
    shutil.copytree(EXAMPLES / "dealer_support", project, ignore=shutil.ignore_patterns("mail"))
    db = f"sqlite:///{tmp_path / 'ds.db'}"
    ok(baton("--db", db, "deploy", cwd=project))
    head = b"From: b@x.example\r\nTo: support@dealers.baton.example\r\n"
    mails = {
        "no_subject.eml": head + b"Message-ID: <nosub1@x>\r\n\r\nhello there, invoice problem\r\n",
        "empty_body.eml": head + b"Subject: Invoice charged twice\r\nMessage-ID: <emptybody@x>\r\n\r\n",
        "signature_only.eml": head + b"Subject: Invoice charged twice\r\nMessage-ID: <sig@x>\r\n"
                                     b"\r\n-- \r\nBob\r\n",
    }
    for name, raw in mails.items():
        (tmp_path / name).write_bytes(raw)
    ok(baton("--db", db, "intake", "eml", *(tmp_path / n for n in mails), cwd=project))
    ok(baton("--db", db, "worker", "--until-idle", cwd=project, timeout=600))
    assert json.loads(ok(baton("--db", db, "fallout", "list", "--json", cwd=project)).stdout) == []
    cases = json.loads(ok(baton("--db", db, "records", "list", "DealerCase", "--json",
                                cwd=project)).stdout)
    assert sorted((c["subject"], c["request"], c["intent"]) for c in cases) == [
        ("", "hello there, invoice problem", "billing"),
        ("Invoice charged twice", "", "billing"),
        ("Invoice charged twice", "", "billing")]


def test_a_message_given_as_text_from_python_is_a_mail_error(harness: Any) -> None:
    """The Python API's ``accept`` takes the message's bytes: a ``str`` or None is a
    MailError saying so (it was a TypeError from deep in the parser)."""
    from baton.intake.mail import MailError

    harness.deploy_text(DEFS)
    for raw in ((INVOICE % b"text").decode(), None):
        with pytest.raises(MailError, match="a message is its bytes"):
            harness.engine.intake.accept(raw, via="eml")
    got = harness.engine.intake.accept(bytearray(INVOICE % b"bytes" + b"hi\r\n"), via="eml")
    assert got.outcome == "created", got
