"""Case splitting (issue 14 item 7), on both databases: a message naming three dealer
accounts becomes three child records, each a ``Case`` linked to the message (``parent``)
and to its account, each with its own child run; both timelines show the link; the parent
waits for the children, or (``wait: false``) goes on at once."""

from __future__ import annotations

from typing import Any

import pytest

from baton.engine.status import RunStatus
from baton.errors import DefinitionError
from tests.conftest import Harness

DEFS = """
kind: object
name: Account
fields:
  name: {type: string, required: true}
  domain: {type: string}
---
kind: object
name: Email
fields:
  subject: {type: string, required: true}
  body: {type: text}
---
kind: object
name: Case
fields:
  parent: {type: ref, object: Email}
  account: {type: ref, object: Account}
  subject: {type: string}
---
kind: orchestration
name: t_case
trigger: {type: record, object: Case}
stages:
  - name: handle
    steps: [{name: handle, type: interactive, assign: {queue: dealers}}]
---
kind: orchestration
name: t_split
trigger: {type: record, object: Email}
stages:
  - name: read
    steps:
      - name: accounts
        type: ai
        task: match
        text: '=record.subject + "\\n" + record.body'
        match: {object: Account, fields: [domain, name], min_score: 85, many: true}
      - name: split
        type: orchestration
        after: [accounts]
        when: '=steps.accounts.output.outcome == "matched"'
        orchestration: t_case
        for_each: '=steps.accounts.output.record_ids'
        record:
          create: Case
          fields: {parent: '=record.id', account: '=item', subject: '=record.subject'}
        wait: {wait}
"""

MESSAGE = ("Hello, please reset the portal logins of our three dealerships: Autohaus Schmidt, "
           "Bayview Cars (bayviewcars.com) and the team at joao@lisboamotors.pt.\n\n"
           "Kind regards\nMaria\nRegional Office")


def setup(harness: Harness, wait: str) -> tuple[dict[str, str], dict[str, Any]]:
    harness.deploy_text(DEFS.replace("{wait}", wait))
    eng = harness.engine
    accounts = {name: eng.create_record("Account", {"name": name, "domain": domain})["id"]
                for name, domain in [("Autohaus Schmidt GmbH", "autohaus-schmidt.de"),
                                     ("Bayview Cars Inc.", "bayviewcars.com"),
                                     ("Lisboa Motors", "lisboamotors.pt"),
                                     ("Nordic Trucks AB", "nordictrucks.se")]}
    email = eng.create_record("Email", {"subject": "Three dealers", "body": MESSAGE})
    harness.work()
    return accounts, email


def cases(harness: Harness, email_id: str) -> list[dict[str, Any]]:
    (parent,) = harness.engine.list_runs(record_id=email_id)
    children = harness.engine.get_run(parent.id).steps["split"].children or []
    return [harness.engine.get_record(c["record_id"]) for c in children]


def test_three_accounts_make_three_linked_cases_with_runs(harness: Harness) -> None:
    accounts, email = setup(harness, "true")
    eng = harness.engine
    (parent,) = eng.list_runs(record_id=email["id"])
    found = cases(harness, email["id"])
    assert len(found) == 3
    wanted = {accounts[n] for n in ("Autohaus Schmidt GmbH", "Bayview Cars Inc.",
                                    "Lisboa Motors")}
    assert {c["account"] for c in found} == wanted
    assert {c["parent"] for c in found} == {email["id"]}
    assert {c["subject"] for c in found} == {"Three dealers"}
    # one child run per case, linked to the parent's step, each with its work item
    for case in found:
        (child,) = eng.list_runs(record_id=case["id"])
        assert child.orchestration == "t_case" and child.parent is not None
        assert (child.parent.run_id, child.parent.step) == (parent.id, "split")
        assert [w["step"] for w in eng.list_work(run_id=child.id)] == ["handle"]
    # the parent's timeline names the children; each child's names its parent
    (started,) = [e for e in eng.timeline(email["id"]) if e["type"] == "child_runs_started"]
    assert sorted(c["record_id"] for c in started["data"]["children"]) == sorted(
        c["id"] for c in found)
    from baton.cli.main import describe_event
    from baton.web.ui.events import describe_event as page_line

    for line in (describe_event(started), page_line(started)):
        assert line.startswith("step split: 3 child runs of t_case v1 on rec"), line
        assert all(c["id"] in line for c in found)
    for case in found:
        (created,) = [e for e in eng.timeline(case["id"]) if e["type"] == "record_created"]
        assert created["data"]["parent_record_id"] == email["id"]
        assert created["data"]["parent_run_id"] == parent.id
        for line in (describe_event(created), page_line(created)):
            assert f"child of record {email['id']} (run {parent.id}, step split #" in line
    # the parent waits for its children
    assert eng.get_run(parent.id).steps["split"].status.value == "running"
    for case in found:
        (child,) = eng.list_runs(record_id=case["id"])
        (item,) = eng.list_work(run_id=child.id)
        eng.complete(item["id"], "agent", {})
    harness.work()
    done = eng.get_run(parent.id)
    assert done.status is RunStatus.COMPLETED
    assert done.steps["split"].output is not None and done.steps["split"].output["count"] == 3


def test_wait_false_goes_on_while_the_children_run(harness: Harness) -> None:
    _accounts, email = setup(harness, "false")
    eng = harness.engine
    (parent,) = eng.list_runs(record_id=email["id"])
    run = eng.get_run(parent.id)
    assert run.status is RunStatus.COMPLETED
    assert run.steps["split"].output == {"count": 3, "waited": False}
    found = cases(harness, email["id"])
    assert len(found) == 3
    for case in found:  # the children were started and are still open
        (child,) = eng.list_runs(record_id=case["id"])
        assert child.status is RunStatus.IN_PROGRESS
        (item,) = eng.list_work(run_id=child.id)
        eng.complete(item["id"], "agent", {})
    harness.work()  # their ends reach a parent that has moved on: nothing breaks
    for case in found:
        (child,) = eng.list_runs(record_id=case["id"])
        assert child.status is RunStatus.COMPLETED
    assert eng.get_run(parent.id).status is RunStatus.COMPLETED


def test_wait_takes_true_or_false(harness: Harness) -> None:
    with pytest.raises(DefinitionError) as exc:
        harness.deploy_text(DEFS.replace("{wait}", "later"))
    assert "wait takes true" in str(exc.value) and "steps[1].wait" in str(exc.value)
