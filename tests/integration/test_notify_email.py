"""SLA ``notify`` sends e-mail through a real SMTP server on loopback (aiosmtpd), outside
the engine transaction; a server that is down never touches the step or the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from baton.engine.status import RunStatus
from baton.settings import Settings
from baton.work.notify import resolve_recipients
from tests.needs import need
from tests.net import Inbox, free_port, smtp_server

aiosmtpd = need("aiosmtpd.controller")

DEFS = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
---
kind: orchestration
name: t_notify
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - name: triage
        type: interactive
        assign: {queue: tier1}
        sla:
          duration: 4h
          jeopardy: 1h
          on_jeopardy: {notify: [supervisor, "ops@example.com", nobody]}
"""


@pytest.fixture
def smtp_env(harness: Any) -> None:
    harness.setenv(BATON_NOTIFY_ADDRESSES=json.dumps({"supervisor": "sup@example.com"}),
                   BATON_BASE_URL="https://baton.example.com/")


@pytest.fixture
def inbox(smtp_env: None, harness: Any) -> Iterator[Inbox]:
    with smtp_server(harness) as box:
        yield box


def events(harness: Any, run_id: str, type_: str) -> list[dict[str, Any]]:
    with harness.engine.store.read() as tx:
        return [e for e in tx.events_txn(run_id=run_id) if e["type"] == type_]


def start_run(harness: Any) -> Any:
    harness.deploy_text(DEFS)
    rec = harness.engine.create_record("Case", {"subject": "mail"})
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    return run


def test_jeopardy_notify_sends_one_message_to_every_resolved_address(harness: Any,
                                                                     inbox: Inbox) -> None:
    run = start_run(harness)
    harness.clock.advance(timedelta(hours=3))
    harness.work()
    assert harness.engine.get_run(run.id).steps["triage"].sla["status"] == "in_jeopardy"
    ((rcpts, msg),) = inbox.messages
    assert sorted(rcpts) == ["ops@example.com", "sup@example.com"]
    assert "triage" in msg["Subject"] and "in jeopardy" in msg["Subject"]
    assert msg.is_multipart()
    plain = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert run.id in plain and run.id in html
    assert f"https://baton.example.com/runs/{run.id}" in plain
    (queued,) = events(harness, run.id, "email_queued")
    assert queued["data"]["unresolved"] == ["nobody"]
    (sent,) = events(harness, run.id, "email_sent")
    assert sorted(sent["data"]["recipients"]) == ["ops@example.com", "sup@example.com"]
    assert events(harness, run.id, "email_failed") == []


def test_smtp_down_leaves_the_run_alone_and_the_email_is_retried(
        harness: Any, smtp_env: None) -> None:
    harness.setenv(BATON_SMTP_PORT=str(free_port()))  # nothing listens there
    run = start_run(harness)
    harness.clock.advance(timedelta(hours=3))
    harness.work()
    got = harness.engine.get_run(run.id)
    assert got.status is RunStatus.IN_PROGRESS
    assert got.steps["triage"].status.value == "waiting_for_person"
    assert got.steps["triage"].sla["status"] == "in_jeopardy"
    (failed,) = events(harness, run.id, "email_failed")
    assert failed["data"]["attempt"] == 1 and failed["data"]["error"]
    assert harness.work() == 0  # the retry waits for its backoff
    harness.clock.advance(timedelta(seconds=30))
    assert harness.work() == 1
    assert len(events(harness, run.id, "email_failed")) == 2
    for _ in range(3):  # 60 s, 120 s, 240 s later: the fifth and last attempt
        harness.clock.advance(timedelta(minutes=5))
        harness.work()
    assert len(events(harness, run.id, "email_failed")) == 5
    (dropped,) = events(harness, run.id, "email_dropped")
    assert dropped["data"]["attempt"] == 5
    assert harness.engine.get_run(run.id).status is RunStatus.IN_PROGRESS
    assert events(harness, run.id, "email_sent") == []


def test_recipient_resolution() -> None:
    s = Settings.from_environment({
        "BATON_NOTIFY_ADDRESSES": json.dumps({"tier1": ["a@x", "b@x"], "sup": "s@x"}),
        "BATON_USER_EMAILS": json.dumps({"alice": "alice@x"})})
    assert resolve_recipients(["tier1", "sup", "c@x", "a@x", "who", "assignee"], "alice", s) == (
        ["a@x", "b@x", "s@x", "c@x", "alice@x"], ["who"])
    assert resolve_recipients(["assignee"], "bob@x", s) == (["bob@x"], [])
    assert resolve_recipients(["assignee"], None, s) == ([], ["assignee"])
