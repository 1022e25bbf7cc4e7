"""E-mail intake on both databases: a message becomes a record in one transaction with its
stored message; the same message twice changes nothing; automatic mail is stored but makes
no case; a reply (three deep) lands on its case's timeline and fires ``on: update``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from baton.errors import DefinitionError, NotFound
from baton.intake.mail import MailError
from baton.store import schema

CORPUS = Path(__file__).parents[1] / "data" / "eml"

DEFS = """
kind: object
name: Case
fields:
  subject: {type: string}
  description: {type: text}
  request: {type: text}
  customer_email: {type: string}
  latest: {type: text}
---
kind: mailbox
name: support
object: Case
addresses: [support@baton.example]
fields: {subject: subject, body: description, new_text: request, sender: customer_email,
         last_message: latest}
---
kind: orchestration
name: t_mail_case
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: triage
    steps: [{name: look, type: interactive, assign: {queue: support}}]
---
kind: orchestration
name: t_mail_followup
trigger: {type: record, object: Case, on: [update]}
stages:
  - name: note
    steps: [{name: read_reply, type: interactive, assign: {queue: support}}]
"""


def eml(name: str) -> bytes:
    return (CORPUS / f"{name}.eml").read_bytes()


def count(harness: Any, table: Any) -> int:
    with harness.engine.store.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(table)).scalar_one())


def runs_of(harness: Any, record_id: str) -> list[str]:
    with harness.engine.store.read() as tx:
        rows = tx.conn.execute(select(schema.runs.c.orchestration).where(
            schema.runs.c.record_id == record_id).order_by(schema.runs.c.created_at))
        return [r[0] for r in rows]


def test_a_message_becomes_a_case_once(harness: Any) -> None:
    harness.deploy_text(DEFS)
    intake = harness.engine.intake
    got = intake.accept(eml("11_signature_dashes"), via="eml")
    assert got.outcome == "created" and got.mailbox == "support"
    rec = harness.engine.get_record(got.record_id)
    assert rec["subject"] == "Parts order 7781" and rec["customer_email"] == "dan@garage-moreau.example"
    assert rec["request"] == "Please confirm parts order 7781 ships this week."
    assert "Garage Moreau" in rec["description"]  # the whole body is kept
    assert runs_of(harness, got.record_id) == ["t_mail_case"]
    (event,) = [e for e in harness.engine.timeline(got.record_id) if e["type"] == "message_received"]
    assert event["data"]["message_id"] == "11@garage-moreau.example" and event["data"]["via"] == "eml"
    again = intake.accept(eml("11_signature_dashes"), via="smtp")
    assert (again.outcome, again.record_id) == ("duplicate", got.record_id)
    assert count(harness, schema.records) == 1 and count(harness, schema.messages) == 1
    (stored,) = intake.messages(got.record_id)
    assert stored["outcome"] == "created" and stored["size"] > 0 and stored["via"] == "eml"


def test_automatic_mail_is_stored_but_makes_no_case(harness: Any) -> None:
    harness.deploy_text(DEFS)
    for name in ("14_auto_submitted", "17_bounce_report", "19_out_of_office_subject"):
        got = harness.engine.intake.accept(eml(name), via="smtp")
        assert got.outcome == "ignored" and got.record_id is None and got.reason
    assert count(harness, schema.records) == 0 and count(harness, schema.messages) == 3
    harness.deploy_text(DEFS.replace("fields: {subject: subject,",
                                     "automatic: create\nfields: {subject: subject,"))
    assert harness.engine.intake.accept(eml("15_x_autoreply"), via="smtp").outcome == "created"


def test_replies_thread_onto_their_case_and_fire_update(harness: Any) -> None:
    harness.deploy_text(DEFS)
    intake = harness.engine.intake
    first = intake.accept(eml("23_thread_start"), via="smtp")
    outcomes = [intake.accept(eml(n), via="smtp") for n in
                ("24_thread_reply_1", "25_thread_reply_2", "26_thread_reply_3_references_only")]
    assert [o.outcome for o in outcomes] == ["threaded"] * 3
    assert {o.record_id for o in outcomes} == {first.record_id}
    assert count(harness, schema.records) == 1
    rec = harness.engine.get_record(first.record_id)
    assert rec["latest"] == "Please send a replacement."
    texts = [e["data"]["text"] for e in harness.engine.timeline(first.record_id)
             if e["type"] == "message_received"]
    assert texts == ["Order 9001 was due yesterday and has not arrived.", "Still nothing today.",
                     "The carrier says it is lost.", "Please send a replacement."]
    assert runs_of(harness, first.record_id) == ["t_mail_case"] + ["t_mail_followup"] * 3
    assert [m["outcome"] for m in intake.messages(first.record_id)] == \
        ["created", "threaded", "threaded", "threaded"]


def test_mailbox_choice_and_refusals(harness: Any) -> None:
    harness.deploy_text(DEFS + """---
kind: mailbox
name: sales
object: Case
addresses: [sales@baton.example]
fields: {subject: subject}
""")
    intake = harness.engine.intake
    assert intake.accepts("Support@Baton.example") and not intake.accepts("nobody@baton.example")
    got = intake.accept(eml("01_plain"), via="smtp", recipients=["sales@baton.example"])
    assert got.mailbox == "sales"  # the envelope recipient decides, not the To header
    with pytest.raises(NotFound, match="no mailbox lists"):
        intake.accept(eml("02_utf8_encoded_subject"), via="smtp",
                      recipients=["other@elsewhere.example"])
    with pytest.raises(NotFound, match="mailbox"):
        intake.accept(eml("02_utf8_encoded_subject"), via="eml", mailbox="nope")
    with pytest.raises(MailError):
        intake.accept(b"not an e-mail at all", via="eml")
    assert count(harness, schema.messages) == 1


def test_mailbox_definitions_are_validated(harness: Any) -> None:
    bad = DEFS.replace("fields: {subject: subject, body: description,",
                       "addresses: [not-an-address]\nfields: {subjet: subject, body: descripton,")
    with pytest.raises(DefinitionError) as exc:
        harness.deploy_text(bad)
    text = str(exc.value)
    assert "unknown e-mail part 'subjet' (did you mean 'subject'?)" in text
    assert "unknown field 'descripton' of Case (did you mean 'description'?)" in text


# ---- over SMTP: a real listener on loopback, a real client -------------------------------

def test_smtp_listener_end_to_end(harness: Any) -> None:
    import smtplib

    from baton.intake.smtp import SmtpListener
    from tests.net import free_port

    harness.deploy_text(DEFS)
    listener = SmtpListener(harness.engine.intake, "127.0.0.1", free_port(), max_bytes=50_000,
                            allowed_domains=["baton.example"])
    listener.start()
    try:
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=30) as client:
            refused = client.sendmail("ann@dealer-one.example", ["support@baton.example"],
                                      eml("01_plain"))
            assert refused == {}
            # the same message again (a sending server's retry): accepted, no second case
            client.sendmail("ann@dealer-one.example", ["support@baton.example"], eml("01_plain"))
            with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
                client.sendmail("x@y.example", ["someone@elsewhere.example"], eml("02_utf8_encoded_subject"))
            code, text = exc.value.recipients["someone@elsewhere.example"]
            assert code == 550 and b"not allowed" in text
            with pytest.raises(smtplib.SMTPRecipientsRefused) as exc:
                client.sendmail("x@y.example", ["nobody@baton.example"], eml("02_utf8_encoded_subject"))
            assert exc.value.recipients["nobody@baton.example"][0] == 550
            big = eml("03_latin1") + b"\r\n" + b"x" * 80 + (b"\r\n" + b"y" * 998) * 60
            with pytest.raises(smtplib.SMTPException) as exc:
                client.sendmail("joao@concessionaria.example", ["support@baton.example"], big)
            assert "552" in str(exc.value) or "size" in str(exc.value).lower()
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=30) as client:
            client.sendmail("MAILER-DAEMON@mx.baton.example", ["support@baton.example"],
                            eml("17_bounce_report"))
            with pytest.raises(smtplib.SMTPDataError) as data_exc:
                client.sendmail("a@b.example", ["support@baton.example"], b"\r\n\r\nno headers")
            assert data_exc.value.smtp_code == 554
    finally:
        listener.stop()
    assert count(harness, schema.records) == 1  # the plain message only; the bounce made none
    assert count(harness, schema.messages) == 2
