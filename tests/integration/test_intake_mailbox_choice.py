"""Which mailbox a message goes to is the same whichever way it comes: a mailbox that lists
its addresses takes mail for those only (an ``.eml`` file by its To and Cc, as the SMTP
listener by the envelope), even when it is the only one; naming the mailbox puts a message
in it all the same; only a sole mailbox that lists no address takes any."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest

from baton.errors import NotFound

CASE = """
kind: object
name: Case
fields:
  subject: {type: string}
  description: {type: text}
"""
BOX = """---
kind: mailbox
name: support
object: Case
{addresses}fields: {{subject: subject, body: description}}
"""


def raw(to: str, subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "ana@dealer.example", to, subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@dealer.example>"
    msg.set_content("hello")
    return msg.as_bytes()


def subjects(harness: Any) -> list[str]:
    return sorted(r["subject"] for r in harness.engine.page_records("Case", limit=50).rows)


def test_the_only_mailbox_takes_only_the_addresses_it_lists(harness: Any) -> None:
    harness.deploy_text(CASE + BOX.format(addresses="addresses: [support@acme.example]\n"))
    intake = harness.engine.intake
    intake.accept(raw("support@acme.example", "listed"), via="eml")
    with pytest.raises(NotFound, match=r"sales@acme\.example.*support: support@acme\.example"
                                       r".*--mailbox NAME"):
        intake.accept(raw("sales@acme.example", "not listed"), via="eml")
    assert not intake.accepts("sales@acme.example")  # (the SMTP listener's RCPT check agrees)
    assert subjects(harness) == ["listed"]  # nothing stored for the refused one
    intake.accept(raw("sales@acme.example", "named"), via="eml", mailbox="support")
    assert subjects(harness) == ["listed", "named"]


def test_a_sole_mailbox_listing_no_address_takes_any(harness: Any) -> None:
    harness.deploy_text(CASE + BOX.format(addresses=""))
    harness.engine.intake.accept(raw("anyone@acme.example", "any"), via="eml")
    assert harness.engine.intake.accepts("anyone@acme.example")
    assert subjects(harness) == ["any"]
