"""Assignment e-mail: a work item given to someone (created, reassigned by an operator or
by an SLA) is announced by e-mail to its user, or to every active member of its group or
queue who has an address, with a link to the item in the Work Guide. Sent through a real
SMTP server on loopback (aiosmtpd), by the workers, outside the engine transaction."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from sqlalchemy import select

from baton.runtime.engine import Engine
from baton.settings import Settings, assignments_enabled
from baton.store import schema
from tests.needs import need
from tests.net import Inbox, free_port, smtp_server

aiosmtpd = need("aiosmtpd.controller")

BASE = "https://baton.example.com"

DEFS = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
  level:   {type: int, default: 1}
---
kind: orchestration
name: t_queue_item
trigger: {type: autolaunched, object: Case}
stages:
  - name: s
    steps:
      - name: triage
        type: interactive
        label: Triage the case
        assign: {queue: tier1}
        priority: '=record.level >= 3 ? "urgent" : "high"'
        instructions: |
          Read the case <carefully>.
          Close it or escalate it.
        form: [{name: resolution, type: choice, choices: [close, escalate], required: true}]
        sla:
          duration: 4h
          on_overdue: {reassign: "user:eve"}
---
kind: orchestration
name: t_user_item
trigger: {type: autolaunched, object: Case}
stages:
  - name: s
    steps:
      - {name: review, type: interactive, label: Review the answer, assign: {user: eve}}
---
kind: orchestration
name: t_nobody
trigger: {type: autolaunched, object: Case}
stages:
  - name: s
    steps:
      - {name: a, type: interactive, assign: {queue: empty}}
      - {name: b, type: interactive, assign: {user: cy}}
      - {name: c, type: interactive, assign: {user: ghost}}
      - {name: d, type: interactive, assign: {group: nomail}}
"""


@pytest.fixture
def smtp_env(harness: Any) -> None:
    harness.setenv(BATON_BASE_URL=BASE + "/")


@pytest.fixture
def inbox(smtp_env: None, harness: Any) -> Iterator[Inbox]:
    with smtp_server(harness) as box:
        yield box


@pytest.fixture
def eng(harness: Any) -> Engine:
    """The harness's engine with assignment e-mail on, its definitions and directory."""
    e: Engine = harness.engine
    e.applier.notify_assignments = True
    harness.deploy_text(DEFS)
    d = e.directory
    d.add_user("ann", roles=["agent"], queues=["tier1"], email="ann@example.com")
    d.add_user("bob", roles=["agent"], queues=["tier1", "tier2"], email="bob@example.com")
    d.add_user("cy", roles=["agent"], queues=["tier1"], groups=["nomail"])  # no address
    d.add_user("dee", roles=["agent"], queues=["tier1"], email="dee@example.com")
    d.update_user("dee", active=False)  # left the company: not told
    d.add_user("eve", roles=["agent"], email="eve@example.com")
    d.add_user("fay", roles=["agent"], groups=["nomail"])  # no address either
    harness.work()  # (adding members to queues routes what waits there: nothing yet)
    return e


def start(eng: Engine, name: str, level: int = 1) -> tuple[Any, dict[str, Any]]:
    rec = eng.create_record("Case", {"subject": "Inverter fault", "level": level})
    run = eng.start(name, record_id=rec["id"])
    return run, rec


def events(eng: Engine, run_id: str, type_: str) -> list[dict[str, Any]]:
    with eng.store.read() as tx:
        return [e for e in tx.events_txn(run_id=run_id) if e["type"] == type_]


def email_jobs(eng: Engine) -> list[dict[str, Any]]:
    with eng.store.read() as tx:
        rows = tx.conn.execute(select(schema.jobs).where(schema.jobs.c.kind == "email")).all()
    return [dict(r._mapping) for r in rows]


def bodies(msg: EmailMessage) -> tuple[str, str]:
    plain = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return plain, html


def test_queue_item_goes_to_every_active_member_with_an_address(
        harness: Any, eng: Engine, inbox: Inbox) -> None:
    run, rec = start(eng, "t_queue_item", level=3)
    (item,) = eng.list_work(run_id=run.id)
    assert harness.work() == 1
    ((rcpts, msg),) = inbox.messages
    assert sorted(rcpts) == ["ann@example.com", "bob@example.com"]  # not cy, not dee
    assert msg["To"] == "undisclosed-recipients:;"  # members do not see each other's addresses
    assert msg["Subject"] == "[Baton] Work item for you: Triage the case: Inverter fault (urgent priority)"
    assert msg.is_multipart()
    plain, html = bodies(msg)
    link = f"{BASE}/work/{item['id']}"
    assert link in plain and f'href="{link}"' in html
    for text in (plain, html):
        assert run.id in text and rec["id"] in text and "Case" in text
        assert "urgent" in text and "queue tier1" in text
        assert "2026-01-05 13:00 UTC" in text  # the SLA's due time (the clock starts 09:00)
    assert "&lt;carefully&gt;" in html and "<carefully>" in plain
    (queued,) = events(eng, run.id, "email_queued")
    assert queued["data"]["work_item"] == item["id"]
    assert queued["data"]["recipients"] == ["ann@example.com", "bob@example.com"]
    (sent,) = events(eng, run.id, "email_sent")
    assert sent["data"]["work_item"] == item["id"]
    assert email_jobs(eng) == []


def test_user_item_goes_to_that_user(harness: Any, eng: Engine, inbox: Inbox) -> None:
    run, _ = start(eng, "t_user_item")
    (item,) = eng.list_work(run_id=run.id)
    harness.work()
    ((rcpts, msg),) = inbox.messages
    assert rcpts == ["eve@example.com"]
    assert msg["To"] == "eve@example.com"
    assert msg["Subject"] == "[Baton] Work item for you: Review the answer: Inverter fault"
    plain, html = bodies(msg)
    assert f"{BASE}/work/{item['id']}" in plain and "normal" in plain
    assert "Due" in plain and run.id in html


def test_reassign_tells_the_new_assignee(harness: Any, eng: Engine, inbox: Inbox) -> None:
    run, _ = start(eng, "t_queue_item")
    (item,) = eng.list_work(run_id=run.id)
    eng.claim(item["id"], "ann")
    harness.work()
    inbox.messages.clear()
    eng.reassign(item["id"], "user:eve", actor="operator")
    harness.work()
    ((rcpts, msg),) = inbox.messages
    assert rcpts == ["eve@example.com"]
    assert msg["Subject"] == "[Baton] Work item for you: Triage the case: Inverter fault (high priority)"
    plain, _ = bodies(msg)
    assert f"{BASE}/work/{item['id']}" in plain
    assert "Reassigned from: queue tier1" in plain and "user eve" in plain
    assert len(events(eng, run.id, "email_sent")) == 2


def test_sla_reassign_tells_the_new_assignee(harness: Any, eng: Engine, inbox: Inbox) -> None:
    run, _ = start(eng, "t_queue_item")
    (item,) = eng.list_work(run_id=run.id)
    harness.work()
    inbox.messages.clear()
    harness.clock.advance(timedelta(hours=4, seconds=1))
    harness.work()  # the overdue timer reassigns the item to eve; then the e-mail goes
    assert eng.get_work_item(item["id"])["assignee"] == "eve"
    ((rcpts, msg),) = inbox.messages
    assert rcpts == ["eve@example.com"]
    assert f"{BASE}/work/{item['id']}" in bodies(msg)[0]


def test_smtp_down_commits_the_item_and_retries_the_email(
        harness: Any, eng: Engine, smtp_env: None) -> None:
    port = free_port()  # nothing listens there yet
    harness.setenv(BATON_SMTP_PORT=str(port))
    run, _ = start(eng, "t_user_item")
    (item,) = eng.list_work(run_id=run.id)  # the engine transaction committed
    assert item["status"] == "open" and harness.step_status(run.id) == {"review": "waiting_for_person"}
    assert harness.work() == 1
    (failed,) = events(eng, run.id, "email_failed")
    assert failed["data"]["attempt"] == 1 and failed["data"]["work_item"] == item["id"]
    assert failed["data"]["error"] and failed["data"]["retry_at"]
    assert len(email_jobs(eng)) == 1  # still queued, not due before its backoff
    assert harness.work() == 0
    box = Inbox()
    ctl = aiosmtpd.Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()  # the server comes back
    try:
        harness.clock.advance(timedelta(seconds=30))
        assert harness.work() == 1
    finally:
        ctl.stop()
    ((rcpts, msg),) = box.messages
    assert rcpts == ["eve@example.com"] and f"/work/{item['id']}" in bodies(msg)[0]
    (sent,) = events(eng, run.id, "email_sent")
    assert sent["data"]["attempt"] == 2
    assert email_jobs(eng) == []
    assert eng.get_work_item(item["id"])["status"] == "open"


def test_nobody_with_an_address_is_audited_and_nothing_queued(harness: Any, eng: Engine,
                                                              inbox: Inbox) -> None:
    run, _ = start(eng, "t_nobody")
    assert email_jobs(eng) == []
    reasons = {e["data"]["step"]: e["data"]["reason"] for e in events(eng, run.id, "email_skipped")}
    assert reasons == {
        "a": "queue 'empty' has no active members",
        "b": "user 'cy' has no e-mail address",
        "c": "user 'ghost' is not an active user of the directory",
        "d": "group 'nomail': none of its 2 active member(s) has an e-mail address",
    }
    harness.work()
    assert inbox.messages == []


def test_disabled_queues_no_email(harness: Any, eng: Engine, inbox: Inbox) -> None:
    eng.applier.notify_assignments = False
    run, _ = start(eng, "t_queue_item")
    (item,) = eng.list_work(run_id=run.id)
    eng.reassign(item["id"], "user:eve")
    assert email_jobs(eng) == []
    assert [e for e in events(eng, run.id, "email_queued") + events(eng, run.id, "email_skipped")] == []
    harness.work()
    assert inbox.messages == []


def test_the_enable_rule(harness: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert assignments_enabled({}) is False
    assert assignments_enabled({"BATON_SMTP_HOST": "mail.example.com"}) is True
    assert assignments_enabled({"BATON_SMTP_HOST": "mail", "BATON_NOTIFY_ASSIGNMENTS": "0"}) is False
    assert assignments_enabled({"BATON_NOTIFY_ASSIGNMENTS": "1"}) is True
    monkeypatch.setenv("BATON_SMTP_HOST", "127.0.0.1")
    monkeypatch.delenv("BATON_NOTIFY_ASSIGNMENTS", raising=False)
    on = Engine(harness.engine.store, clock=harness.clock, migrate=False,
                settings=Settings.from_environment())  # what the baton command passes
    assert on.applier.notify_assignments is True
    assert Engine(harness.engine.store, migrate=False,
                  notify_assignments=False).applier.notify_assignments is False


def test_sla_notify_assignee_uses_the_directory_address(harness: Any, eng: Engine,
                                                       inbox: Inbox) -> None:
    """SLA ``notify: assignee`` finds a user-assigned item's address in the directory too."""
    eng.applier.notify_assignments = False
    harness.deploy_text(DEFS.replace(
        "      - {name: review, type: interactive, label: Review the answer, assign: {user: eve}}",
        "      - {name: review, type: interactive, label: Review the answer, assign: {user: eve},\n"
        "         sla: {duration: 4h, jeopardy: 1h, on_jeopardy: {notify: assignee}}}"))
    _run, _ = start(eng, "t_user_item")
    harness.clock.advance(timedelta(hours=3))
    harness.work()
    ((rcpts, msg),) = inbox.messages
    assert rcpts == ["eve@example.com"] and "in jeopardy" in msg["Subject"]


APPROVAL_DEFS = """
kind: orchestration
name: t_approval_mail
trigger: {type: autolaunched, object: Case}
stages:
  - name: s
    steps:
      - {name: ok, type: approval, assign: {user: ann}}
      - {name: other, type: interactive, assign: {user: ann}, form: [{name: x, type: bool}]}
"""


def test_an_approval_goes_to_the_approvers_delegate_too(harness: Any, eng: Engine,
                                                        inbox: Inbox) -> None:
    """As Salesforce e-mails delegated approvers: while ann's delegation to eve is in force,
    eve is told of ann's approvals (not of her other work items)."""
    harness.deploy_text(APPROVAL_DEFS, "approval.yaml")
    eng.directory.update_user("ann", delegate="eve", delegate_until="2026-01-05")
    run, _rec = start(eng, "t_approval_mail")
    harness.work()
    queued = {e["data"]["step"]: e["data"] for e in events(eng, run.id, "email_queued")}
    assert queued["ok"]["recipients"] == ["ann@example.com", "eve@example.com"]
    assert queued["ok"]["delegate"] == "eve"
    assert queued["other"]["recipients"] == ["ann@example.com"]
    assert "delegate" not in queued["other"]
    assert sorted(sorted(r) for r, _ in inbox.messages) == [
        ["ann@example.com"], ["ann@example.com", "eve@example.com"]]
    harness.clock.set(datetime(2026, 1, 6, 9, 0, tzinfo=UTC))  # the delegation is over
    run, _rec = start(eng, "t_approval_mail")
    harness.work()
    queued = {e["data"]["step"]: e["data"] for e in events(eng, run.id, "email_queued")}
    assert queued["ok"]["recipients"] == ["ann@example.com"]
