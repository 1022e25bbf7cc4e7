"""Follow-ups to the definition checks a deploy, an activation, a validate or an import
makes (brief "checks"). Each refused change here was accepted before, and failed (or
never ended) at run time:

* a dependent that names a connection, a child orchestration or a routing rule through a
  YAML alias (``connection: *bank``), an anchor, a tag or an escape was missed by the text
  pre-filter: deactivating (or changing) what it names was accepted;
* a step naming an unknown routing rule was reported only once its file had no other
  problem: one attempt shows every problem now;
* SLA actions are checked as step assignments are: ``on_jeopardy: {routing: NAME}`` must
  name an active rule (deactivating one an SLA action routes by is refused), a queue one
  reassigns to is judged by the queue's rule, a person one reassigns to must be able to
  work the item;
* ``assign: {user: NAME}`` naming someone who may not work items (a designer) or who is
  deactivated is refused at deploy and validate; a name the directory does not have is
  still taken (the person may be added later: the item waits for them).

Real databases (SQLite and PostgreSQL), the engine's Python API.
"""

from __future__ import annotations

from typing import Any

import pytest

from baton import Engine
from baton.errors import DefinitionError, Issue

BANK = "kind: connection\nname: bank\ntype: http\nbase_url: http://127.0.0.1:9\n"
BANK_MCP = ("kind: connection\nname: bank\ntype: mcp\ntransport: stdio\ncommand: python\n"
            "args: [-c, pass]\n")
KID = """kind: orchestration
name: kid
trigger: {type: autolaunched, input: {n: {type: int, required: true}}}
stages:
  - name: s
    steps:
      - {name: hold, type: pause, signal: go}
"""
# The callout's connection, spelled in ways a YAML text may spell a value: each is 'bank'.
ORDER = """kind: orchestration
name: order
description: &who bank
trigger: {type: autolaunched}
stages:
  - name: s
    steps:
      - {name: charge, type: callout, CALL, method: POST, path: /x}
"""
SPELLINGS = {
    "alias": "connection: *who",
    "anchor": "connection: &c bank",
    "tag": "connection: !!str bank",
    "escape": 'connection: "\\x62ank"',
    "complex key": "? connection\n        : bank",
}
TICKET = """kind: object
name: Ticket
fields:
  subject:  {type: string, required: true}
  category: {type: string, default: billing}
"""
LEAD = """kind: object
name: Lead
fields:
  subject: {type: string, required: true}
"""
TRIAGE = """kind: routing
name: triage
from: {queue: desk}
"""
HANDLE = """kind: orchestration
name: handle
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: s
    steps:
      - name: answer
        type: interactive
        ASSIGN
        form: [{name: done, type: bool}]
"""


def _active(eng: Engine) -> dict[tuple[str, str], int]:
    return {(r.kind, r.name): r.version for r in eng.definitions.list_versions() if r.active}


def _refused(act: Any) -> list[Issue]:
    with pytest.raises(DefinitionError) as refused:
        act()
    return list(refused.value.issues)


def _deploy(eng: Engine, **texts: str) -> None:
    eng.deploy(texts={f"{name}.yaml": text for name, text in texts.items()})


def _handle(assign: str, sla: str = "") -> str:
    text = HANDLE.replace("ASSIGN", assign)
    if sla:
        text = text.replace("        form:", f"        sla: {sla}\n        form:")
    return text


# ---- 1. dependents named otherwise than plainly -------------------------------------------
@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_a_connection_named_otherwise_than_plainly_is_a_dependent(
        db_url: str, spelling: str) -> None:
    order = ORDER.replace("CALL", SPELLINGS[spelling]) if spelling != "complex key" else \
        ORDER.replace("      - {name: charge, type: callout, CALL, method: POST, path: /x}",
                      "      - name: charge\n        type: callout\n        "
                      + SPELLINGS[spelling] + "\n        method: POST\n        path: /x")
    with Engine(db_url) as eng:
        _deploy(eng, bank=BANK, order=order)
        assert eng.definitions.orchestration("order")[0].stages[0].steps[0].options[
            "connection"] == "bank"
        before = _active(eng)
        (issue,) = _refused(lambda: eng.definitions.set_active("connection", "bank", None, "t"))
        assert (issue.file, issue.path) == ("order.yaml", "stages[0].steps[0].connection"), issue
        assert issue.message == (
            "orchestration 'order' v1 step 'charge' calls connection 'bank', which this would "
            "deactivate (unknown connection 'bank'): deactivate order first, or deploy a "
            "version of it that does not need it"), issue.message
        # a change of its type, deployed, is refused the same way
        (issue,) = _refused(lambda: _deploy(eng, bank=BANK_MCP))
        assert "step 'charge' calls connection 'bank', which this would make an mcp " \
               "connection" in issue.message, issue.message
        assert _active(eng) == before


def test_a_child_orchestration_started_through_an_alias_is_a_dependent(db_url: str) -> None:
    onboard = """kind: orchestration
name: onboard
label: &child kid
trigger: {type: autolaunched}
stages:
  - name: s
    steps:
      - {name: check, type: orchestration, orchestration: *child, input: {n: 1}}
"""
    with Engine(db_url) as eng:
        _deploy(eng, kid=KID, onboard=onboard)
        (issue,) = _refused(lambda: eng.definitions.set_active("orchestration", "kid", None,
                                                               "t"))
        assert (issue.file, issue.path) == ("onboard.yaml", "stages[0].steps[0].orchestration")
        assert issue.message.startswith(
            "orchestration 'onboard' v1 step 'check' starts orchestration 'kid', which this "
            "would deactivate"), issue.message
        assert ("orchestration", "kid") in _active(eng)


def test_a_rule_named_through_an_alias_may_not_be_deactivated(db_url: str) -> None:
    handle = _handle("assign: {routing: *rule}").replace(
        "name: handle\n", "name: handle\nlabel: &rule triage\n")
    with Engine(db_url) as eng:
        _deploy(eng, ticket=TICKET, triage=TRIAGE, handle=handle)
        (issue,) = _refused(lambda: eng.definitions.set_active("routing", "triage", None, "t"))
        assert (issue.file, issue.path) == ("handle.yaml", "stages[0].steps[0].assign.routing")
        assert issue.message == (
            "orchestration 'handle' v1 step 'answer' routes its work by routing rule 'triage', "
            "which this would deactivate (unknown routing rule 'triage'): deactivate handle "
            "first, or deploy a version of it that does not need it"), issue.message
        assert ("routing", "triage") in _active(eng)


# ---- 2. an unknown rule said with the file's other problems ------------------------------
def test_an_unknown_rule_is_said_with_the_other_problems_of_its_file(db_url: str) -> None:
    text = _handle("assign: {routing: triag}").replace(
        "form: [{name: done, type: bool}]", "form: [{name: done, type: boolean}]")
    with Engine(db_url) as eng:
        _deploy(eng, ticket=TICKET, triage=TRIAGE)
        for issues in (_refused(lambda: _deploy(eng, handle=text)),
                       eng.validate_texts({"handle.yaml": text})):
            assert [(i.file, i.line, i.path) for i in issues] == [
                ("handle.yaml", 9, "stages[0].steps[0].assign.routing"),
                ("handle.yaml", 10, "stages[0].steps[0].form[0].type")], issues
            assert issues[0].message == (
                "unknown routing rule 'triag' (did you mean 'triage'?): a rule deployed and "
                "active, or deployed with it, is needed, or its step fails at start"), issues
        # a rule deployed with it counts, as before
        _deploy(eng, handle=text.replace("boolean", "bool").replace("triag}", "desk2}"),
                desk2=TRIAGE.replace("name: triage", "name: desk2"))
        assert ("orchestration", "handle") in _active(eng)


def test_a_fulfillment_template_naming_an_unknown_rule_is_said_with_its_other_problems(
        db_url: str) -> None:
    order = """kind: object
name: Order
fields:
  number: {type: string, required: true}
---
kind: object
name: OrderLine
fields:
  order: {type: ref, object: Order, required: true}
"""
    fulfillment = """kind: fulfillment
name: routed
trigger: {type: record, object: Order, on: [create]}
lines: {object: OrderLine}
lanes: [field]
scenarios:
  - name: every_order
    when: '=true'
    steps:
      - {name: install, type: interactive, lane: field, scope: plan, assign: {routing: nobody},
         form: [{name: ok, type: bool}], sla: {duration: 4h, jeopardy: 5h}}
"""
    with Engine(db_url) as eng:
        _deploy(eng, order=order)
        issues = eng.validate_texts({"routed.yaml": fulfillment})
        assert {i.path for i in issues} == {"scenarios[0].steps[0].assign.routing",
                                            "scenarios[0].steps[0].sla.jeopardy"}, issues
        said = next(i for i in issues if i.path.endswith("assign.routing"))
        assert said.message.startswith("unknown routing rule 'nobody' (active routing rules: "
                                       "none)"), said


# ---- 3. SLA actions ------------------------------------------------------------------------
def test_an_sla_action_naming_a_rule_not_active_is_refused(db_url: str) -> None:
    text = _handle("assign: {queue: desk}",
                   "{duration: 4h, jeopardy: 1h, on_jeopardy: {routing: backup}}")
    with Engine(db_url) as eng:
        _deploy(eng, ticket=TICKET, triage=TRIAGE)
        (issue,) = _refused(lambda: _deploy(eng, handle=text))
        assert (issue.file, issue.line, issue.path) == (
            "handle.yaml", 10, "stages[0].steps[0].sla.on_jeopardy.routing"), issue
        assert issue.message == (
            "unknown routing rule 'backup' (active routing rules: triage): a rule deployed "
            "and active, or deployed with it, is needed, or its on_jeopardy action leaves the "
            "item where it is (sla_routing_failed)"), issue.message
        (same,) = eng.validate_texts({"handle.yaml": text})
        assert same == issue
        # With the rule: deployed; deactivating the rule then is refused, naming the step.
        _deploy(eng, handle=text, backup=TRIAGE.replace("name: triage", "name: backup"))
        (issue,) = _refused(lambda: eng.definitions.set_active("routing", "backup", None, "t"))
        assert (issue.file, issue.path) == ("handle.yaml",
                                            "stages[0].steps[0].sla.on_jeopardy.routing")
        assert issue.message == (
            "orchestration 'handle' v1 step 'answer' routes its work when in jeopardy "
            "(sla.on_jeopardy) by routing rule 'backup', which this would deactivate (unknown "
            "routing rule 'backup'): deactivate handle first, or deploy a version of it that "
            "does not need it"), issue.message
        assert ("routing", "backup") in _active(eng)


def test_an_sla_reassigning_to_a_queue_whose_rule_misreads_the_record_is_refused(
        db_url: str) -> None:
    tier2 = """kind: routing
name: tier2_agents
from: {queue: tier2}
for_queue: true
required_skills: ['="product:" + record.category']
"""
    leads = _handle("assign: {queue: desk}",
                    "{duration: 4h, on_overdue: {reassign: 'queue:tier2'}}").replace(
        "object: Ticket", "object: Lead")
    with Engine(db_url) as eng:
        _deploy(eng, lead=LEAD, tier2=tier2)
        (issue,) = _refused(lambda: _deploy(eng, handle=leads))
        assert (issue.file, issue.path) == ("handle.yaml",
                                            "stages[0].steps[0].sla.on_overdue.reassign"), issue
        assert issue.message == (
            "step 'answer' reassigns its work to queue 'tier2' when overdue (sla.on_overdue), "
            "which routing rule 'tier2_agents' routes (for_queue), whose required_skills[0] "
            "(tier2.yaml, line 5 of v1) reads record.category, which is not a field of Lead: "
            "its on_overdue action would leave each item of the step where it is "
            "(sla_routing_failed); give Lead the field, or guard the read with "
            "has(record.category) in the rule"), issue.message
        # a queue without a rule of its own is taken as it is (as a step's queue is)
        _deploy(eng, handle=leads.replace("queue:tier2", "queue:tier3"))
        assert ("orchestration", "handle") in _active(eng)


def test_an_sla_reassigning_to_someone_who_may_not_work_is_refused(db_url: str) -> None:
    text = _handle("assign: {queue: desk}",
                   "{duration: 4h, on_overdue: {reassign: 'user:dana'}}")
    with Engine(db_url) as eng:
        _deploy(eng, ticket=TICKET)
        eng.directory.add_user("dana", roles=["designer"])
        (issue,) = _refused(lambda: _deploy(eng, handle=text))
        assert (issue.file, issue.line, issue.path) == (
            "handle.yaml", 10, "stages[0].steps[0].sla.on_overdue.reassign"), issue
        assert issue.message.startswith(
            "step 'answer' reassigns its work when overdue (sla.on_overdue) to user 'dana' "
            "(designer), who may not work items:"), issue.message
        assert issue.message.endswith("or reassign it to someone else"), issue.message
        assert eng.validate_texts({"handle.yaml": text}) == [issue]
        eng.directory.update_user("dana", roles=["designer", "agent"])
        _deploy(eng, handle=text)
        assert ("orchestration", "handle") in _active(eng)


# ---- 4. a step's user who can never do the work ------------------------------------------
def test_a_step_assigned_to_a_designer_or_a_deactivated_person_is_refused(
        db_url: str) -> None:
    text = _handle("assign: {user: dana}")
    with Engine(db_url) as eng:
        _deploy(eng, ticket=TICKET)
        eng.directory.add_user("dana", roles=["designer"])
        (issue,) = _refused(lambda: _deploy(eng, handle=text))
        assert (issue.file, issue.line, issue.path) == (
            "handle.yaml", 9, "stages[0].steps[0].assign.user"), issue
        assert issue.message == (
            "step 'answer' assigns its work to user 'dana' (designer), who may not work "
            "items: the item would be in their Work Guide, which they cannot open, and never "
            "done; give them a role with the 'work' permission (admin, operator, agent: "
            "`baton users update dana --role agent`, with their other roles), or assign the "
            "step to someone else"), issue.message
        assert eng.validate_texts({"handle.yaml": text}) == [issue]
        assert ("orchestration", "handle") not in _active(eng)
        # an agent, deactivated
        eng.directory.update_user("dana", roles=["agent"], active=False)
        (issue,) = _refused(lambda: _deploy(eng, handle=text))
        assert issue.message == (
            "step 'answer' assigns its work to user 'dana', who is deactivated and cannot "
            "sign in: the item would never be done; reactivate them (`baton users update "
            "dana --active`), or assign the step to someone else"), issue.message
        # active again: deployed, and the item is hers
        eng.directory.update_user("dana", active=True)
        _deploy(eng, handle=text)
        rec = eng.create_record("Ticket", {"subject": "s"})
        (item,) = eng.list_work(record_id=rec["id"])
        assert (item["assignee_kind"], item["assignee"]) == ("user", "dana")


def test_a_step_assigned_to_a_name_nobody_has_is_taken_as_before(db_url: str) -> None:
    """Today's behaviour, kept: a name the directory does not have is deployed (the
    person may be added later); the item waits assigned to that name."""
    with Engine(db_url) as eng:
        _deploy(eng, ticket=TICKET)
        eng.directory.add_user("ann", roles=["agent"])
        _deploy(eng, handle=_handle("assign: {user: zoe}"))
        rec = eng.create_record("Ticket", {"subject": "s"})
        (item,) = eng.list_work(record_id=rec["id"])
        assert (item["status"], item["assignee_kind"], item["assignee"]) == (
            "open", "user", "zoe")
