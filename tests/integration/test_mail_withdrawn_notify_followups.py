"""Follow-ups (brief "notify") that need the worker's part (/tmp/diffs/notify-1.diff): an
assignment e-mail whose item was completed, canceled or given to someone else before a
worker sent it is withdrawn (``email_withdrawn``), not sent; every attempt of one e-mail
job carries the same ``Message-ID`` and the worker clock's ``Date``; recipients the server
refused while taking the message for others are audited on ``email_sent``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from baton.runtime.engine import Engine
from tests.integration.test_assignment_email import BASE, DEFS, events, start
from tests.needs import need
from tests.net import Inbox, free_port, smtp_server

aiosmtpd = need("aiosmtpd.controller")


@pytest.fixture
def eng(harness: Any) -> Engine:
    e: Engine = harness.engine
    e.applier.notify_assignments = True
    harness.setenv(BATON_BASE_URL=BASE)
    harness.deploy_text(DEFS)
    d = e.directory
    d.add_user("ann", roles=["agent"], queues=["tier1"], email="ann@example.com")
    d.add_user("eve", roles=["agent"], email="eve@example.com")
    harness.work()  # (adding members to queues routes what waits there: nothing yet)
    return e


@pytest.fixture
def inbox(harness: Any, eng: Engine) -> Iterator[Inbox]:
    with smtp_server(harness) as box:
        yield box


def test_no_e_mail_for_an_item_completed_before_it_was_sent(harness: Any, eng: Engine,
                                                            inbox: Inbox) -> None:
    run, _ = start(eng, "t_user_item")
    (item,) = eng.list_work(run_id=run.id)
    eng.claim(item["id"], "eve")
    eng.complete(item["id"], "eve", {})
    harness.work()
    assert inbox.messages == []
    (gone,) = events(eng, run.id, "email_withdrawn")
    assert gone["data"]["reason"] == f"work item {item['id']} is completed already"
    assert events(eng, run.id, "email_sent") == []


def test_no_e_mail_to_whom_the_item_was_taken_from_before_it_was_sent(
        harness: Any, eng: Engine, inbox: Inbox) -> None:
    run, _ = start(eng, "t_user_item")
    (item,) = eng.list_work(run_id=run.id)
    eng.reassign(item["id"], "user:ann", actor="operator")
    harness.work()
    assert [r for r, _ in inbox.messages] == [["ann@example.com"]]  # not eve any more
    (gone,) = events(eng, run.id, "email_withdrawn")
    assert "given to user ann since (user eve before)" in gone["data"]["reason"]
    # Given back to eve before her first e-mail went: both are hers again, she is told.
    inbox.messages.clear()
    run, _ = start(eng, "t_user_item")
    (item,) = eng.list_work(run_id=run.id)
    eng.reassign(item["id"], "user:ann", actor="operator")
    eng.reassign(item["id"], "user:eve", actor="operator")
    harness.work()
    assert sum(r == ["eve@example.com"] for r, _ in inbox.messages) == 2


def test_every_attempt_has_the_same_message_id_and_the_clock_s_date(
        harness: Any, eng: Engine) -> None:
    port = free_port()  # nothing listens there yet
    harness.setenv(BATON_SMTP_HOST="127.0.0.1", BATON_SMTP_PORT=str(port))
    run, _ = start(eng, "t_user_item")
    assert harness.work() == 1
    (failed,) = events(eng, run.id, "email_failed")
    box = Inbox()
    ctl = aiosmtpd.Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        sent_at = harness.clock.advance(timedelta(seconds=30))
        assert harness.work() == 1
    finally:
        ctl.stop()
    ((_, msg),) = box.messages
    assert parsedate_to_datetime(msg["Date"]) == sent_at.replace(microsecond=0)
    assert msg["Message-ID"].startswith(f"<baton.{run.id}.")
    assert msg["Message-ID"].endswith("@localhost>")
    assert failed["data"]["attempt"] == 1


class _Picky(Inbox):
    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_recipients_refused_by_the_server_are_audited(harness: Any, eng: Engine) -> None:
    eng.directory.add_user("gus", roles=["agent"], queues=["tier1"], email="gone@example.com")
    box = _Picky()
    port = free_port()
    harness.setenv(BATON_SMTP_HOST="127.0.0.1", BATON_SMTP_PORT=str(port))
    ctl = aiosmtpd.Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        run, _ = start(eng, "t_queue_item")
        harness.work()
    finally:
        ctl.stop()
    ((rcpts, _),) = box.messages
    assert rcpts == ["ann@example.com"]
    (sent,) = events(eng, run.id, "email_sent")
    assert sent["data"]["refused"] == {"gone@example.com": "550 5.1.1 no such mailbox"}
    assert events(eng, run.id, "email_failed") == []  # not sent again to ann
