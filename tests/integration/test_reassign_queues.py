"""A reassignment to a queue is checked as one to a group: the queue must be known (someone
is in it, active or not, or a deployed definition names it: a step assigns to it, a routing
rule draws from it or routes it, an SLA action reassigns to it, or an expression of a
step's ``assign`` spells its name out). A typo is refused, naming the close match and the
known queues, and the item stays where it was. A queue (or group) that a definition
computes by an expression whose name it does not spell out is not known: the refusal says
how to make it known. Both backends, real databases, the engine's Python API (the API, the
CLI and the Work Guide go through the same service)."""

from __future__ import annotations

from typing import Any

import pytest

from baton.errors import ValidationError
from baton.work.service import expression_literals

DEFS = """
kind: object
name: Ticket
fields:
  subject: {type: string, required: true}
  region:  {type: string, default: EU}
---
kind: routing
name: night_shift
from: {queue: nightq}
---
kind: routing
name: vip_rule
from: {queue: vipq}
for_queue: true
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
        sla: {duration: 4h, on_overdue: {reassign: "queue:escalq"}}
        form: [{name: reply, type: text, required: true}]
      - name: regional
        type: interactive
        after: [answer]
        assign: {queue: '=record.region == "EU" ? "eu_desk" : "us_desk"'}
        form: [{name: ok, type: bool}]
      - name: computed
        type: interactive
        after: [regional]
        assign: {queue: '="team_" + record.region'}
        form: [{name: ok, type: bool}]
      - name: by_group
        type: interactive
        after: [computed]
        assign: {group: '=record.region == "EU" ? "eu_reviewers" : "team_" + record.region'}
        form: [{name: ok, type: bool}]
"""

# The queues DEFS names: a step's, an SLA action's, two routing rules', an expression's two.
NAMED = ["escalq", "eu_desk", "nightq", "support", "us_desk", "vipq"]


def open_item(h: Any) -> dict[str, Any]:
    h.deploy_text(DEFS)
    rec = h.engine.create_record("Ticket", {"subject": "printer on fire"})
    h.work()
    (item,) = h.engine.list_work(record_id=rec["id"])
    return item  # type: ignore[no-any-return]


def refused(h: Any, item: dict[str, Any], to: str) -> str:
    with pytest.raises(ValidationError) as exc:
        h.engine.reassign(item["id"], to, actor="olga")
    assert set(exc.value.fields) == {"to"}, exc.value
    now = h.engine.get_work_item(item["id"])
    assert (now["assignee_kind"], now["assignee"], now["version"]) == (
        item["assignee_kind"], item["assignee"], item["version"])
    return exc.value.fields["to"]


def test_a_queue_nobody_is_in_and_no_definition_names_is_refused(harness: Any) -> None:
    h = harness
    item = open_item(h)
    said = refused(h, item, "queue:suport")
    assert said.startswith("there is no queue 'suport' (did you mean 'support'?): nobody is "
                           "in it and no deployed definition names it"), said
    # the steps that compute theirs without spelling it out are named, with the way out
    assert "if the queue comes from an expression in a definition (as steps handle.regional," \
        " handle.computed do) and the expression does not spell its name out, it is known " \
        "once someone is in it: `baton users update USER --queue suport`" in said, said
    assert said.endswith(f"known queues: {', '.join(NAMED)}"), said
    assert [e for e in h.engine.timeline(item["record_id"])
            if e["type"] == "work_item_reassigned"] == []


@pytest.mark.parametrize("queue", NAMED)
def test_a_queue_a_deployed_definition_names_is_taken_with_nobody_in_it(
        harness: Any, queue: str) -> None:
    h = harness
    item = open_item(h)
    moved = h.engine.reassign(item["id"], f"queue:{queue}", actor="olga")
    assert (moved["assignee_kind"], moved["assignee"]) == ("queue", queue)


def test_a_queue_someone_is_in_is_taken_even_when_they_are_inactive(harness: Any) -> None:
    h = harness
    item = open_item(h)
    h.engine.directory.add_user("ann", roles=["agent"], queues=["backoffice"])
    h.engine.directory.update_user("ann", active=False)
    moved = h.engine.reassign(item["id"], "queue:backoffice", actor="olga")
    assert (moved["assignee_kind"], moved["assignee"]) == ("queue", "backoffice")
    # a queue of the directory is listed among the known ones
    assert "known queues: backoffice, escalq" in refused(h, moved, "queue:nowhere")


def test_a_computed_queue_or_group_is_known_once_someone_is_in_it(harness: Any) -> None:
    """``="team_" + record.region`` gives team_EU: not spelled out, so not known until a
    person is in it; a group's refusal says the same for a group's expression."""
    h = harness
    item = open_item(h)
    refused(h, item, "queue:team_EU")
    said = refused(h, item, "group:team_EU")
    assert "if the group comes from an expression in a definition (as step handle.by_group " \
        "does)" in said and "--group team_EU" in said, said
    # the names the group's expression spells out are known
    moved = h.engine.reassign(item["id"], "group:eu_reviewers", actor="olga")
    assert moved["assignee"] == "eu_reviewers"
    h.engine.directory.add_user("bo", roles=["agent"], queues=["team_EU"], groups=["team_EU"])
    for to in ("queue:team_EU", "group:team_EU"):
        moved = h.engine.reassign(item["id"], to, actor="olga")
        assert f"{moved['assignee_kind']}:{moved['assignee']}" == to


def test_a_retired_orchestration_no_longer_names_its_queues(harness: Any) -> None:
    """Only what is deployed and active counts (and the item's own run's version): once the
    routing rule that named nightq is deactivated, nightq is a queue nobody knows."""
    h = harness
    item = open_item(h)
    h.engine.definitions.set_active("routing", "night_shift", None, "admin")
    said = refused(h, item, "queue:nightq")
    assert "there is no queue 'nightq'" in said, said


def test_the_literals_an_expression_spells_out() -> None:
    assert expression_literals('=record.region == "EU" ? "eu_desk" : \'us_desk\'') == {
        "eu_desk", "us_desk"}
    assert expression_literals('="team_" + record.region') == set()
    assert expression_literals("={'EU': 'eu_q', 'US': 'us_q'}[record.region]") == {
        "eu_q", "us_q"}
    assert expression_literals("=record.tags.exists(t, t in ['a', 'b']) ? r'''x''' : "
                               "b'bytes'") == {"x"}
    assert expression_literals("='queue:tier1'") == {"queue:tier1"}
    assert expression_literals("=record.name.startsWith('vip') ? 'vipq' : 'std'") == {
        "vipq", "std"}
