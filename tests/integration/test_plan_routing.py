"""A plan's steps find what an orchestration's steps name (brief P): a fulfillment step
template whose ``assign: {routing: NAME}`` names a routing rule (not one bound to a queue)
has its work item routed by that rule, in the plan, in an amended plan and in a cancel's
compensation run (an interactive ``rollback`` routed by it too); a rule changed later routes
the plan's next step by its new version, one deactivated later fails the step at start
(as for an orchestration's run). Before, a plan's definition had only the queues' rules, and
every such step fell out at start with "routing rule 'NAME' is not deployed".

Deploy, validation, activation and deactivation judge a fulfillment's templates (and
their rollbacks) as they judge an orchestration's steps: a template naming a rule not
active is refused, located; deactivating a rule an active fulfillment routes by is refused,
naming it; a rule reading a field the order lacks is refused.

The other names a plan step may use are found as an orchestration's: an SLA's calendar, an
SLA action's routing rule, a child orchestration. Real Engine and Worker on SQLite and
PostgreSQL, virtual time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from baton import flow
from baton.errors import DefinitionError, Issue
from baton.flows import FlowContext
from baton.work.team import ProfileChange
from tests.conftest import Harness

OBJECTS = """kind: object
name: Order
fields:
  number: {type: string, required: true}
  region: {type: string, default: north}
  status: {type: choice, choices: [Draft, Submitted], default: Draft}
---
kind: object
name: OrderLine
fields:
  order: {type: ref, object: Order, required: true}
  product: {type: string, required: true}
"""
CATALOG = """kind: catalog
products:
  - {code: ACCESS, family: Access}
"""
# A named rule (no for_queue): only a step naming it routes by it.
FITTERS = """kind: routing
name: fitters
from: {queue: installers}
required_skills: ['="region:" + record.region']
"""
FITTERS_V2 = FITTERS.replace("""['="region:" + record.region']""", "[ladder]")
# survey (plan scope) is done by the lead; then each line's install is routed by fitters,
# and undone (a cancel, an amendment) by a task routed by fitters as well.
ROUTED = """kind: fulfillment
name: routed
trigger: {type: record, object: Order, on: [create, update], when: '=record.status == "Submitted"', changed_to_meet: true}
lines: {object: OrderLine}
lanes: [field]
scenarios:
  - name: every_order
    when: '=true'
    steps:
      - {name: survey, type: interactive, lane: field, scope: plan, assign: {user: lead},
         form: [{name: ok, type: bool}]}
      - name: install
        type: interactive
        lane: field
        after: [survey]
        assign: {routing: fitters}
        form: [{name: done, type: bool}]
        rollback: {type: interactive, assign: {routing: fitters}, form: [{name: removed, type: bool}]}
"""


def _deploy(h: Harness, **texts: str) -> None:
    h.engine.deploy(texts={f"{name}.yaml": text for name, text in texts.items()},
                    known_flows=None)


def _refused(act: Any) -> list[Issue]:
    with pytest.raises(DefinitionError) as refused:
        act()
    return list(refused.value.issues)


def _active(h: Harness) -> dict[tuple[str, str], int]:
    return {(r.kind, r.name): r.version for r in h.engine.definitions.list_versions()
            if r.active}


def _agent(h: Harness, name: str, queue: str, skills: dict[str, int]) -> None:
    h.engine.directory.add_user(name, roles=["agent"], queues=[queue])
    h.engine.team.update(name, ProfileChange(add_skills=skills), "admin")


def _team(h: Harness) -> None:
    h.engine.directory.add_user("lead", roles=["agent"])
    _agent(h, "ann", "installers", {"region:north": 3})
    _agent(h, "bob", "installers", {"region:south": 3, "ladder": 2})


def _order(h: Harness, number: str, lines: int = 1, **fields: Any) -> str:
    rec = h.engine.create_record("Order", {"number": number, "status": "Submitted", **fields},
                                 children={"OrderLine": [{"product": "ACCESS"}] * lines})
    return str(rec["id"])


def _open(h: Harness, order: str) -> dict[str, dict[str, Any]]:
    """The order's open work items, by step."""
    return {i["step"]: i for i in h.engine.list_work(record_id=order,
                                                     statuses=["open", "claimed"])}


def _survey_done(h: Harness, order: str) -> None:
    h.engine.complete(_open(h, order)["survey"]["id"], "lead", {"ok": True})
    h.work()


def _status(h: Harness, order: str) -> dict[str, str]:
    return {s["name"]: s["status"] for s in h.engine.plans.show(order)["steps"]}


# ---- a template routed by a named rule --------------------------------------------------
def test_a_plan_step_naming_a_rule_is_routed_by_it(harness: Harness) -> None:
    _deploy(harness, objects=OBJECTS, catalog=CATALOG, fitters=FITTERS, routed=ROUTED)
    _team(harness)
    north, south = _order(harness, "O-1", lines=2), _order(harness, "O-2", region="south")
    for order in (north, south):
        _survey_done(harness, order)
    items = _open(harness, north)
    assert _status(harness, north) == {"survey": "completed", "install[L1]": "waiting_for_person",
                                       "install[L2]": "waiting_for_person"}
    for step in ("install[L1]", "install[L2]"):
        item = items[step]
        assert (item["assignee_kind"], item["assignee"], item["routing_status"]) == (
            "user", "ann", "routed"), item
        assert item["routing"]["rule"] == "fitters"
    (item,) = _open(harness, south).values()
    assert (item["step"], item["assignee"], item["routing_status"]) == (
        "install[L1]", "bob", "routed"), item
    routed = [e["data"] for e in harness.engine.timeline(south) if e["type"] == "routed"]
    assert [(e["rule"], e["winner"]) for e in routed] == [("fitters", "bob")], routed
    # Canceled after its install: the compensation run's rollback is routed by the rule.
    harness.engine.complete(item["id"], "bob", {"done": True})
    harness.work()
    harness.engine.plans.cancel(south, "customer moved", "t")
    harness.work()
    (undo,) = _open(harness, south).values()
    assert undo["step"] == "rollback_install[L1]", undo
    assert (undo["assignee"], undo["routing_status"], undo["routing"]["rule"]) == (
        "bob", "routed", "fitters"), undo


def test_an_amended_plan_routes_its_new_steps_by_the_rule(harness: Harness) -> None:
    _deploy(harness, objects=OBJECTS, catalog=CATALOG, fitters=FITTERS, routed=ROUTED)
    _team(harness)
    order = _order(harness, "O-3")
    _survey_done(harness, order)
    harness.engine.create_record("OrderLine", {"order": order, "product": "ACCESS"})
    assert harness.engine.plans.amend(order, "t")["added"] == ["install[L2]"]
    harness.work()
    items = _open(harness, order)
    assert {s: (i["assignee"], i["routing_status"]) for s, i in items.items()} == {
        "install[L1]": ("ann", "routed"), "install[L2]": ("ann", "routed")}, items


def test_a_rule_changed_or_deactivated_later_applies_at_the_next_step_start(
        harness: Harness) -> None:
    _deploy(harness, objects=OBJECTS, catalog=CATALOG, fitters=FITTERS, routed=ROUTED)
    _team(harness)
    first, second = _order(harness, "O-4"), _order(harness, "O-5")
    # Changed while the plans wait at their survey: the next install is routed by v2
    # (it asks for a ladder: bob, not the north's ann).
    _deploy(harness, fitters=FITTERS_V2)
    _survey_done(harness, first)
    (item,) = _open(harness, first).values()
    assert (item["step"], item["assignee"], item["routing_status"]) == (
        "install[L1]", "bob", "routed"), item
    assert item["routing"]["required"] == [["ladder", None]]
    # Deactivating it while the fulfillment routes by it is refused, naming the template.
    before = _active(harness)
    issue, undo = _refused(lambda: harness.engine.definitions.set_active(
        "routing", "fitters", None, "t"))
    assert (issue.file, issue.line, issue.path) == (
        "routed.yaml", 16, "scenarios[0].steps[1].assign.routing"), issue
    assert issue.message == (
        "fulfillment 'routed' v1 step 'install' routes its work by routing rule 'fitters', "
        "which this would deactivate (unknown routing rule 'fitters'): deactivate routed "
        "first, or deploy a version of it that does not need it"), issue.message
    assert (undo.file, undo.line, undo.path) == (
        "routed.yaml", 18, "scenarios[0].steps[1].rollback.assign.routing"), undo
    assert undo.message.startswith(
        "fulfillment 'routed' v1 step 'install' (its rollback) routes its work by routing "
        "rule 'fitters', which this would deactivate"), undo.message
    assert _active(harness) == before
    # The fulfillment first, then its rule: the plan in progress finds no rule at its
    # next step's start, as an orchestration's run does.
    harness.engine.definitions.set_active("fulfillment", "routed", None, "t")
    harness.engine.definitions.set_active("routing", "fitters", None, "t")
    _survey_done(harness, second)
    assert _status(harness, second)["install[L1]"] == "fallout"
    run = harness.engine.get_run(harness.engine.plans.show(second)["run_id"])
    assert run.steps["install[L1]"].error == {
        "type": "AssignmentError", "message": "routing rule 'fitters' is not deployed"}
    # Bringing the fulfillment back while its rule is not active: refused.
    issues = _refused(lambda: harness.engine.definitions.set_active(
        "fulfillment", "routed", 1, "t"))
    assert [(i.file, i.path) for i in issues] == [
        ("routed.yaml", "scenarios[0].steps[1].assign.routing"),
        ("routed.yaml", "scenarios[0].steps[1].rollback.assign.routing")], issues
    assert all(i.message.startswith("unknown routing rule 'fitters'") for i in issues), issues


# ---- validation of the templates' rules -------------------------------------------------
GROUPED = ROUTED.replace("lanes: [field]\n", """lanes: [field]
groups:
  fit:
    - {name: fit, type: interactive, lane: field, assign: {routing: fiters},
       form: [{name: done, type: bool}]}
""").replace("    when: '=true'\n", "    when: '=true'\n    groups: [fit]\n")


def test_a_template_naming_a_rule_not_active_is_refused_located(harness: Harness) -> None:
    _deploy(harness, objects=OBJECTS, catalog=CATALOG)
    issues = _refused(lambda: _deploy(harness, routed=GROUPED))
    got = sorted((i.file, i.line, i.path) for i in issues)
    assert got == [("routed.yaml", 8, "groups.fit[0].assign.routing"),
                   ("routed.yaml", 21, "scenarios[0].steps[1].assign.routing"),
                   ("routed.yaml", 23, "scenarios[0].steps[1].rollback.assign.routing")], issues
    by_path = {i.path: i.message for i in issues}
    assert by_path["groups.fit[0].assign.routing"].startswith(
        "unknown routing rule 'fiters' (active routing rules: none): a rule deployed and "
        "active, or deployed with it, is needed"), by_path
    assert ("fulfillment", "routed") not in _active(harness)
    # validate says the same as the deploy
    same = harness.engine.validate_texts({"routed.yaml": GROUPED}, known_flows=None)
    assert sorted((i.path, i.message) for i in same) == sorted(
        (i.path, i.message) for i in issues)
    # A near name is suggested; with the rule in the same set, deployed.
    issues = _refused(lambda: _deploy(harness, fitters=FITTERS, routed=GROUPED))
    assert [(i.path, i.message.split(":")[0]) for i in issues] == [
        ("groups.fit[0].assign.routing",
         "unknown routing rule 'fiters' (did you mean 'fitters'?)")], issues
    _deploy(harness, fitters=FITTERS, routed=GROUPED.replace("fiters", "fitters"))
    assert _active(harness)[("fulfillment", "routed")] == 1


def test_a_rule_reading_a_field_the_order_lacks_is_refused(harness: Harness) -> None:
    _deploy(harness, objects=OBJECTS, catalog=CATALOG, fitters=FITTERS, routed=ROUTED)
    # the rule changed to read a field Order lacks: refused in the rule's file, naming
    # the fulfillment's template
    by_size = FITTERS.replace("record.region", "record.size")
    issues = _refused(lambda: _deploy(harness, fitters=by_size))
    assert {(i.file, i.line, i.path) for i in issues} == {
        ("fitters.yaml", 4, "required_skills[0]")}, issues
    assert any(i.message.startswith(
        "fulfillment 'routed' v1 step 'install' (routed.yaml, line 16 of v1) routes its work "
        "by routing rule 'fitters', whose required_skills[0] reads record.size, which is "
        "not a field of Order: every item of that step would fall out at start")
        for i in issues), issues
    assert _active(harness)[("routing", "fitters")] == 1
    # a fulfillment routed by a rule its order does not fit: refused in its own file
    _deploy(harness, sizes=by_size.replace("name: fitters", "name: sizes"))
    (issue,) = _refused(lambda: _deploy(harness, routed=ROUTED.replace(
        "assign: {routing: fitters}\n", "assign: {routing: sizes}\n")))
    assert (issue.file, issue.line, issue.path) == (
        "routed.yaml", 16, "scenarios[0].steps[1].assign.routing"), issue
    assert issue.message.startswith(
        "step 'install' routes its work by routing rule 'sizes', whose required_skills[0] "
        "(sizes.yaml, line 4 of v1) reads record.size, which is not a field of Order"), \
        issue.message


# ---- the other names a plan step uses -----------------------------------------------------
@flow("plan_routing.visit")
def _visit(ctx: FlowContext) -> dict[str, Any]:
    ctx.vars["seen"] = ctx.input["order"]
    return {"ok": True}


LOOKUPS = """kind: calendar
name: office
timezone: UTC
hours: {mon: ["09:00-17:00"], tue: ["09:00-17:00"], wed: ["09:00-17:00"],
        thu: ["09:00-17:00"], fri: ["09:00-17:00"]}
---
kind: routing
name: backup
from: {queue: backup_desk}
---
kind: orchestration
name: site_visit
trigger:
  type: autolaunched
  input: {order: {type: string, required: true}}
variables: {seen: ''}
stages:
  - name: s
    steps:
      - {name: noted, type: background, flow: plan_routing.visit}
---
kind: fulfillment
name: looked_up
trigger: {type: record, object: Order, on: [create, update], when: '=record.status == "Submitted"', changed_to_meet: true}
lines: {object: OrderLine}
lanes: [field]
scenarios:
  - name: every_order
    when: '=true'
    steps:
      - {name: visit, type: orchestration, lane: field, scope: plan, orchestration: site_visit,
         input: {order: '=record.number'}}
      - {name: sign, type: interactive, lane: field, scope: plan, assign: {user: lead},
         sla: {duration: 16h, calendar: office}, form: [{name: ok, type: bool}]}
      - {name: check, type: interactive, lane: field, assign: {queue: desk},
         sla: {duration: 4h, jeopardy: 1h, on_jeopardy: {routing: backup}},
         form: [{name: ok, type: bool}]}
"""


def test_a_plan_step_finds_its_calendar_sla_rule_and_child_orchestration(
        harness: Harness) -> None:
    _deploy(harness, objects=OBJECTS, catalog=CATALOG, lookups=LOOKUPS)
    harness.engine.directory.add_user("lead", roles=["agent"])
    _agent(harness, "carl", "backup_desk", {})
    order = _order(harness, "O-6")
    harness.work()
    items = _open(harness, order)
    # 16 business hours from Monday 09:00 (UTC): Tuesday 17:00, not Tuesday 01:00
    assert items["sign"]["due_at"] == "2026-01-06T17:00:00.000Z", items["sign"]
    assert (items["check[L1]"]["assignee_kind"], items["check[L1]"]["assignee"]) == (
        "queue", "desk")
    # the child orchestration ran (its active version) and the step has its run
    run = harness.engine.get_run(harness.engine.plans.show(order)["run_id"])
    assert run.steps["visit"].status.value == "completed", run.steps["visit"]
    (child,) = run.steps["visit"].output["children"]
    assert child["vars"] == {"seen": "O-6"}, child
    assert harness.engine.get_run(child["run_id"]).orchestration == "site_visit"
    # at jeopardy the SLA action's rule routes the item again
    harness.clock.advance(timedelta(hours=3, minutes=1))
    harness.work()
    now = _open(harness, order)["check[L1]"]
    assert (now["assignee"], now["routing_status"], now["routing"]["rule"]) == (
        "carl", "routed", "backup"), now
    assert not [e for e in harness.engine.timeline(order)
                if e["type"] in ("sla_routing_failed", "sla_calendar_missing")]
