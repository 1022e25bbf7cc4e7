"""What the work-items service refuses, whoever calls it (the API, the CLI, the Work Guide
and the Python API all go through ``WorkService``): a reassignment to a group nobody is in
and no deployed definition names (the item would be in no one's Work Guide), to a user the
directory does not have or who is inactive, to a misspelt target; blank or padded names of
who acts; list arguments that are not a list's. Each error is a ValidationError naming the
argument, and nothing changes. Both backends, real databases, the CLI as a subprocess."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from baton.errors import ValidationError
from tests.procs import baton_env

DEFS = """
kind: object
name: Ticket
fields:
  subject: {type: string, required: true}
---
kind: routing
name: night_shift
from: {group: nightshift}
---
kind: orchestration
name: handle
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: work
    steps:
      - name: answer
        type: interactive
        assign: {queue: support}
        sla: {duration: 4h, on_overdue: {reassign: "group:escalations"}}
        form:
          - {name: reply, type: text, required: true}
      - name: review
        type: interactive
        after: [answer]
        assign: {group: reviewers}
        form: [{name: ok, type: bool}]
      - name: audit
        type: interactive
        after: [review]
        assign: {routing: {from: {group: auditors}}}
        form: [{name: ok, type: bool}]
"""

# The groups DEFS names: the routing rule's, a step's, an SLA action's, an inline rule's.
NAMED = ["auditors", "escalations", "nightshift", "reviewers"]


def open_item(h: Any) -> dict[str, Any]:
    rec = h.engine.create_record("Ticket", {"subject": "printer on fire"})
    h.work()
    (item,) = h.engine.list_work(record_id=rec["id"])
    return item  # type: ignore[no-any-return]


def unchanged(h: Any, before: dict[str, Any], reassigned: int = 0) -> None:
    """The item is as it was, and no more reassignments than ``reassigned`` were audited."""
    now = h.engine.get_work_item(before["id"])
    keys = ("status", "assignee_kind", "assignee", "claimed_by", "version", "data")
    assert {k: now[k] for k in keys} == {k: before[k] for k in keys}
    assert len([e for e in h.engine.timeline(before["record_id"])
                if e["type"] == "work_item_reassigned"]) == reassigned


def refused(call: Any, field: str, *said: str) -> str:
    with pytest.raises(ValidationError) as exc:
        call()
    assert set(exc.value.fields) == {field}, exc.value
    message = exc.value.fields[field]
    for words in said:
        assert words in message, (words, message)
    return message


# ---- groups --------------------------------------------------------------------------------
def test_a_group_nobody_is_in_and_no_definition_names_is_refused_with_the_known_ones(
        harness: Any) -> None:
    harness.deploy_text(DEFS)
    eng, d = harness.engine, harness.engine.directory
    d.add_user("ann", roles=["agent"], groups=["billing"], queues=["support"])
    d.add_user("zed", roles=["agent"], groups=["night"])
    item = open_item(harness)
    message = refused(lambda: eng.reassign(item["id"], "group:biling", actor="olga"), "to",
                      "there is no group 'biling'", "(did you mean 'billing'?)",
                      "nobody is in it and no deployed definition names it")
    known = sorted(["billing", "night", *NAMED])
    assert message.endswith(f"known groups: {', '.join(known)}"), message
    unchanged(harness, item)
    eng.claim(item["id"], "ann")  # a claim is not released by a refused reassignment
    claimed = eng.get_work_item(item["id"])
    refused(lambda: eng.reassign(item["id"], "group:nobody-here", actor="olga"), "to",
            "there is no group 'nobody-here'")
    unchanged(harness, claimed)


def test_known_groups_are_accepted_even_when_nobody_in_them_is_active_now(harness: Any) -> None:
    """A group someone is in (active or not) or a definition names is a group: a manager may
    park work there while its people are off; it is theirs when they are back."""
    harness.deploy_text(DEFS)
    eng, d = harness.engine, harness.engine.directory
    d.add_user("ann", roles=["agent"], groups=["billing"])
    d.add_user("zed", roles=["agent"], groups=["night"])
    d.update_user("zed", active=False)  # night: nobody active right now
    item = open_item(harness)
    for group in ("night", "billing", *NAMED):
        moved = eng.reassign(item["id"], f"group:{group}", actor="olga")
        assert (moved["assignee_kind"], moved["assignee"], moved["status"]) == (
            "group", group, "open"), group
        assert [i["id"] for i in eng.list_work(group=group)] == [item["id"]]
    d.update_user("zed", active=True)
    eng.reassign(item["id"], "group:night", actor="olga")
    assert [i["id"] for i in eng.list_work(scope=d.get_user("zed"))] == [item["id"]]


def test_a_group_only_the_items_own_run_version_names_is_known(harness: Any) -> None:
    """The run is pinned to the version it started on: the groups it names stay known after
    a new version names others."""
    old = DEFS.replace("group: reviewers", "group: reviewers_v1")
    harness.deploy_text(old)
    eng = harness.engine
    rec = eng.create_record("Ticket", {"subject": "s"})
    harness.work()
    (item,) = eng.list_work(record_id=rec["id"])
    eng.complete(item["id"], "ann", {"reply": "done"})
    harness.work()
    (item,) = eng.list_work(record_id=rec["id"])
    assert (item["assignee_kind"], item["assignee"]) == ("group", "reviewers_v1")
    harness.deploy_text(DEFS)  # version 2 names reviewers, no longer reviewers_v1
    eng.reassign(item["id"], "queue:support", actor="olga")
    back = eng.reassign(item["id"], "group:reviewers_v1", actor="olga")
    assert back["assignee"] == "reviewers_v1"
    other = open_item(harness)  # a run of version 2 does not know it
    refused(lambda: eng.reassign(other["id"], "group:reviewers_v1", actor="olga"), "to",
            "there is no group 'reviewers_v1'")


# ---- users and spelling --------------------------------------------------------------------
def test_a_user_must_be_an_active_directory_user_once_there_are_people(harness: Any) -> None:
    harness.deploy_text(DEFS)
    eng, d = harness.engine, harness.engine.directory
    item = open_item(harness)
    # No people yet (the quickstart): acted on unchecked, as `baton work claim --user` is.
    assert eng.reassign(item["id"], "user:ghost", actor="olga")["assignee"] == "ghost"
    d.add_user("ann", roles=["agent"])
    d.add_user("zed", roles=["agent"])
    d.update_user("zed", active=False)
    item = eng.get_work_item(item["id"])
    refused(lambda: eng.reassign(item["id"], "user:casper", actor="olga"), "to",
            "there is no user 'casper'", "baton users list")
    refused(lambda: eng.reassign(item["id"], "user:zed", actor="olga"), "to",
            "user 'zed' is inactive")
    unchanged(harness, item, reassigned=1)  # (to ghost, above)
    assert eng.reassign(item["id"], "user:ann", actor="olga")["assignee"] == "ann"


def test_a_misspelt_target_is_refused_not_a_traceback(harness: Any) -> None:
    harness.deploy_text(DEFS)
    eng = harness.engine
    eng.directory.add_user("ann", roles=["agent"], groups=["billing"], queues=["support"])
    item = open_item(harness)
    for to, said in (("group: billing", "' billing' is not a group name"),
                     ("queue:sup port", "'sup port' is not a queue name"),
                     ("group:billing\n", "is not a group name"),
                     ("user:", "expected user:NAME, group:NAME or queue:NAME"),
                     ("team:x", "got 'team:x'"),
                     (None, "got nothing"), (7, "got a number")):
        refused(lambda: eng.reassign(item["id"], to, actor="olga"), "to", said)  # noqa: B023
    unchanged(harness, item)


# ---- who acts ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["", "   ", "\t", " ann", "ann "])
def test_blank_or_padded_names_of_who_acts_are_refused(harness: Any, bad: str) -> None:
    harness.deploy_text(DEFS)
    eng = harness.engine
    item = open_item(harness)
    calls = {"claim": lambda: eng.claim(item["id"], bad),
             "accept": lambda: eng.accept(item["id"], bad),
             "decline": lambda: eng.decline(item["id"], bad),
             "complete": lambda: eng.complete(item["id"], bad, {"reply": "x"}),
             "recall": lambda: eng.work.recall(item["id"], bad, None)}
    for what, call in calls.items():
        with pytest.raises(ValidationError) as exc:
            call()
        assert (exc.value.what, set(exc.value.fields)) == (what, {"user"}), exc.value
        assert ("is empty" if not bad.strip() else "has spaces around it") \
            in exc.value.fields["user"]
    refused(lambda: eng.reassign(item["id"], "queue:support", actor=bad), "actor")
    unchanged(harness, item)
    claimed = eng.claim(item["id"], "ann")
    refused(lambda: eng.release(item["id"], bad), "user")
    (result,) = eng.complete_many([(item["id"], bad, {"reply": "x"})])
    assert isinstance(result, ValidationError) and set(result.fields) == {"user"}
    unchanged(harness, claimed)
    assert eng.complete(item["id"], "ann", {"reply": "x"})["status"] == "completed"


def test_complete_many_refuses_a_malformed_submission_before_doing_anything(
        harness: Any) -> None:
    harness.deploy_text(DEFS)
    eng = harness.engine
    first, second = open_item(harness), open_item(harness)
    subs: list[Any] = [(first["id"], "ann", {"reply": "x"}), (second["id"], "ann")]
    refused(lambda: eng.complete_many(subs), "[1]", "expected (item_id, user, data)")
    refused(lambda: eng.complete_many("wi_1"), "(submissions)", "expected a list")
    unchanged(harness, first)
    unchanged(harness, second)


def test_claim_next_needs_the_directory_user(harness: Any) -> None:
    refused(lambda: harness.engine.claim_next(None), "user", "expected the directory user")


# ---- lists ---------------------------------------------------------------------------------
def test_list_arguments_are_checked(harness: Any) -> None:
    harness.deploy_text(DEFS)
    eng = harness.engine
    item = open_item(harness)
    refused(lambda: eng.page_work(statuses=["opened"]), "statuses",
            "expected a list of: open, claimed, completed, canceled")
    refused(lambda: eng.list_work(statuses="open"), "statuses", "got 'open'")
    refused(lambda: eng.count_work(statuses=["done"]), "statuses")
    refused(lambda: eng.count_work_bounded(statuses=[None]), "statuses")
    refused(lambda: eng.page_work(limit=-1), "limit", "at least 1")  # was an IndexError
    refused(lambda: eng.page_work(limit=0), "limit")
    refused(lambda: eng.list_work(offset=-3), "offset")
    assert [i["id"] for i in eng.page_work(statuses=["open"], limit=1).rows] == [item["id"]]


# ---- the CLI -------------------------------------------------------------------------------
def test_the_cli_says_an_unknown_group_or_user_in_one_line(harness: Any) -> None:
    """`baton work reassign` goes through the service: one line naming the target, exit 1,
    the item unchanged (the CLI never checked the user before)."""
    harness.deploy_text(DEFS)
    harness.engine.directory.add_user("ann", roles=["agent"], groups=["billing"])
    item = open_item(harness)
    for to, said in (("group:nobody", "there is no group 'nobody'"),
                     ("user:ghost", "there is no user 'ghost'")):
        p = subprocess.run([sys.executable, "-m", "baton.cli.main", "--db", harness.db_url,
                            "work", "reassign", item["id"], "--to", to],
                           cwd=harness.tmp, env=baton_env(COLUMNS="400"), capture_output=True,
                           text=True, timeout=180, check=False)
        assert p.returncode == 1 and p.stdout == "", (p.stdout, p.stderr)
        lines = p.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: invalid reassign: to: "), p.stderr
        assert said in lines[0], lines[0]
    unchanged(harness, item)
