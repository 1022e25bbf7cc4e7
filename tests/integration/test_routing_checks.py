"""Routing rules checked against what uses them, at validate, deploy, activation,
deactivation and bundle import, judged on the state after the change:

* a step's ``assign: {routing: NAME}`` must name a rule active after it (one in the same
  set counts), as a step naming a connection or a child orchestration must; deactivating a
  rule an active orchestration's step routes by is refused, naming that orchestration's
  file, line and step;
* a rule a step routes by (the one it names, or the one bound to the queue its ``assign:
  {queue: NAME}`` names) must not read a field of the record that the orchestration's
  object type lacks: each item of that step would fall out at start (``NOT_FOUND: Key not
  found in map``). A change to the rule is refused in the rule's file, naming the
  orchestration; a change to the orchestration in its own file, naming the rule. What
  cannot be judged before a run (a ``has()`` guard, a map's keys, the record used whole,
  a queue an expression gives) is not refused.

Before the check each refused change here was accepted, and the step failed at run time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from baton import Engine
from baton.errors import DefinitionError, Issue
from baton.runtime.bundle import apply_import, plan_import
from baton.work.team import ProfileChange

LEAD = """kind: object
name: Lead
fields:
  subject: {type: string, required: true}
  attrs:   {type: json}
"""
TICKET = """kind: object
name: Ticket
fields:
  subject:  {type: string, required: true}
  category: {type: string, default: billing}
"""
# Assigns its step to queue tier1 by name: the queue's rule (for_queue) routes it.
LEADS = """kind: orchestration
name: leads
trigger: {type: record, object: Lead, on: [create]}
stages:
  - name: s
    steps:
      - name: call
        type: interactive
        assign: {queue: tier1}
        form: [{name: done, type: bool}]
"""
TICKETS = LEADS.replace("name: leads", "name: tickets").replace("object: Lead", "object: Ticket")
TIER1 = """kind: routing
name: tier1_agents
from: {queue: tier1}
for_queue: true
required_skills: ['="product:" + record.category']
"""
# Names its rule: assign: {routing: triage}.
TRIAGE = """kind: routing
name: triage
from: {queue: desk}
required_skills: ['="product:" + record.category']
"""
NAMED = """kind: orchestration
name: named
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: s
    steps:
      - name: handle
        type: interactive
        assign: {routing: triage}
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


def _agent(eng: Engine, name: str, queue: str, skills: dict[str, int]) -> None:
    eng.directory.add_user(name, roles=["agent"], queues=[queue])
    eng.team.update(name, ProfileChange(add_skills=skills, capacity=None), "admin")


def _item(eng: Engine, object_type: str, **fields: Any) -> dict[str, Any]:
    rec = eng.create_record(object_type, {"subject": "s", **fields})
    (item,) = eng.list_work(record_id=rec["id"], statuses=["open", "claimed"])
    return item


# ---- a step naming a rule ---------------------------------------------------------------
def test_a_step_naming_a_rule_not_deployed_is_refused_unless_it_comes_along(
        db_url: str) -> None:
    with Engine(db_url) as eng:
        _deploy(eng, ticket=TICKET)
        (issue,) = _refused(lambda: _deploy(eng, named=NAMED))
        assert (issue.file, issue.line, issue.path) == (
            "named.yaml", 9, "stages[0].steps[0].assign.routing"), issue
        assert issue.message.startswith(
            "unknown routing rule 'triage' (active routing rules: none)"), issue.message
        assert ("orchestration", "named") not in _active(eng)
        # validate says the same, as a deploy would
        (same,) = eng.validate_texts({"named.yaml": NAMED})
        assert (same.path, same.message) == (issue.path, issue.message)
        # a near name is suggested
        (issue,) = _refused(lambda: _deploy(eng, triag=TRIAGE.replace("name: triage",
                                                                      "name: triag"),
                                            named=NAMED.replace("routing: triage",
                                                                "routing: triage2")))
        assert "unknown routing rule 'triage2' (did you mean 'triag'?)" in issue.message
        # With the rule in the same set: deployed, and the item is routed by it.
        _deploy(eng, named=NAMED, triage=TRIAGE)
        _agent(eng, "ann", "desk", {"product:billing": 2})
        item = _item(eng, "Ticket")
        assert (item["assignee"], item["routing_status"]) == ("ann", "routed"), item


def test_deactivating_a_rule_an_active_step_routes_by_is_refused(db_url: str) -> None:
    with Engine(db_url) as eng:
        _deploy(eng, ticket=TICKET, triage=TRIAGE, named=NAMED)
        before = _active(eng)
        (issue,) = _refused(lambda: eng.definitions.set_active("routing", "triage", None, "t"))
        assert (issue.file, issue.line, issue.path) == (
            "named.yaml", 9, "stages[0].steps[0].assign.routing"), issue
        assert issue.message == (
            "orchestration 'named' v1 step 'handle' routes its work by routing rule 'triage', "
            "which this would deactivate (unknown routing rule 'triage'): deactivate named "
            "first, or deploy a version of it that does not need it"), issue.message
        assert _active(eng) == before
        # The way out: the orchestration first, then its rule.
        eng.definitions.set_active("orchestration", "named", None, "t")
        eng.definitions.set_active("routing", "triage", None, "t")
        # Bringing the orchestration back now names a rule no longer active: refused.
        (issue,) = _refused(lambda: eng.definitions.set_active("orchestration", "named", 1,
                                                               "t"))
        assert (issue.file, issue.path) == ("named.yaml", "stages[0].steps[0].assign.routing")
        assert issue.message.startswith("unknown routing rule 'triage'"), issue.message
        eng.definitions.set_active("routing", "triage", 1, "t")
        eng.definitions.set_active("orchestration", "named", 1, "t")
        assert _active(eng) == before


def test_a_named_rule_reading_a_field_the_record_lacks_is_refused(db_url: str) -> None:
    with Engine(db_url) as eng:
        _deploy(eng, lead=LEAD, triage=TRIAGE)
        on_leads = NAMED.replace("object: Ticket", "object: Lead")
        (issue,) = _refused(lambda: _deploy(eng, named=on_leads))
        assert (issue.file, issue.line, issue.path) == (
            "named.yaml", 9, "stages[0].steps[0].assign.routing"), issue
        assert issue.message == (
            "step 'handle' routes its work by routing rule 'triage', whose "
            "required_skills[0] (triage.yaml, line 4 of v1) reads record.category, which "
            "is not a field of Lead: every item of the step would fall out at start; give "
            "Lead the field, or guard the read with has(record.category) in the rule"), \
            issue.message
        assert ("orchestration", "named") not in _active(eng)


# ---- the queue's rule ---------------------------------------------------------------------
def test_a_queue_rule_reading_a_field_an_assigning_orchestration_lacks_is_refused(
        harness: Any) -> None:
    eng = harness.engine
    _deploy(eng, lead=LEAD, ticket=TICKET, leads=LEADS, tickets=TICKETS)
    (issue,) = _refused(lambda: _deploy(eng, tier1=TIER1))
    assert (issue.file, issue.line, issue.path) == ("tier1.yaml", 5, "required_skills[0]"), issue
    assert issue.message == (
        "orchestration 'leads' v1 step 'call' (leads.yaml, line 9 of v1) assigns to queue "
        "'tier1', which routing rule 'tier1_agents' routes (for_queue), whose "
        "required_skills[0] reads record.category, which is not a field of Lead: every item "
        "of that step would fall out at start; guard the read with has(record.category) in "
        "the rule, or deploy a version of leads that fits, in the same set"), issue.message
    assert ("routing", "tier1_agents") not in _active(eng)
    (same,) = eng.validate_texts({"tier1.yaml": TIER1})
    assert same == issue
    # Guarded by has(): deployed, and the leads' items are routed without falling out
    # (a lead asks for product:none, a ticket for its category).
    guarded = TIER1.replace("record.category",
                            "(has(record.category) ? record.category : \"none\")")
    _deploy(eng, tier1=guarded)
    _agent(eng, "ann", "tier1", {"product:none": 2, "product:billing": 2})
    for object_type in ("Lead", "Ticket"):
        item = _item(eng, object_type)
        assert (item["assignee"], item["routing_status"]) == ("ann", "routed"), item


def test_an_orchestration_assigning_to_a_queue_whose_rule_it_does_not_fit_is_refused(
        db_url: str) -> None:
    with Engine(db_url) as eng:
        _deploy(eng, lead=LEAD, ticket=TICKET, tier1=TIER1, tickets=TICKETS)
        (issue,) = _refused(lambda: _deploy(eng, leads=LEADS))
        assert (issue.file, issue.line, issue.path) == (
            "leads.yaml", 9, "stages[0].steps[0].assign.queue"), issue
        assert issue.message == (
            "step 'call' assigns to queue 'tier1', which routing rule 'tier1_agents' routes "
            "(for_queue), whose required_skills[0] (tier1.yaml, line 5 of v1) reads "
            "record.category, which is not a field of Lead: every item of the step would "
            "fall out at start; give Lead the field, or guard the read with "
            "has(record.category) in the rule"), issue.message
        # Its object type given the field in the same set: deployed.
        _deploy(eng, leads=LEADS, lead=LEAD + "  category: {type: string}\n")
        assert _active(eng)[("orchestration", "leads")] == 1
        # Taking the field away again would break it: refused in the object type's file.
        (issue,) = _refused(lambda: _deploy(eng, lead=LEAD))
        assert (issue.file, issue.path) == ("lead.yaml", "fields"), issue
        assert "reads record.category, which Lead would no longer have" in issue.message
        # So is activating the version without it.
        (issue,) = _refused(lambda: eng.definitions.set_active("object", "Lead", 1, "t"))
        assert "reads record.category, which Lead would no longer have" in issue.message
        assert _active(eng)[("object", "Lead")] == 2
        # An orchestration whose runs have no record cannot have it read either.
        schedule = LEADS.replace("name: leads", "name: nightly").replace(
            "{type: record, object: Lead, on: [create]}",
            "{type: schedule, cron: '0 2 * * *'}")
        (issue,) = _refused(lambda: _deploy(eng, nightly=schedule))
        assert "reads record.category, and its runs have no record" in issue.message, issue


def test_activating_a_rule_version_that_does_not_fit_is_refused(db_url: str) -> None:
    with Engine(db_url) as eng:
        by_subject = TIER1.replace("record.category", "record.subject")
        _deploy(eng, lead=LEAD, ticket=TICKET, tier1=by_subject, tickets=TICKETS)
        # (version 2 reads the category: fits tickets, alone)
        eng.definitions.set_active("orchestration", "tickets", None, "t")
        _deploy(eng, tier1=TIER1)
        eng.definitions.set_active("routing", "tier1_agents", 1, "t")
        eng.definitions.set_active("orchestration", "tickets", 1, "t")
        _deploy(eng, leads=LEADS)
        (issue,) = _refused(lambda: eng.definitions.set_active("routing", "tier1_agents", 2,
                                                               "t"))
        assert (issue.file, issue.path) == ("tier1.yaml", "required_skills[0]"), issue
        assert issue.message.startswith("orchestration 'leads' v1 step 'call' "), issue.message
        assert issue.message.endswith("or deploy a version of leads that fits, or deactivate "
                                      "it, first"), issue.message
        assert _active(eng)[("routing", "tier1_agents")] == 1


def test_what_cannot_be_judged_before_a_run_is_not_refused(harness: Any) -> None:
    eng = harness.engine
    _deploy(eng, lead=LEAD, leads=LEADS)
    # a json field's key, the record used whole, a field has() guards; and an orchestration
    # whose assignee an expression gives (the queue is not known before it runs)
    rule = TIER1.replace("['=\"product:\" + record.category']",
                         "['=\"lang:\" + record.attrs.lang',"
                         " '=has(record.category) ? record.category : \"any\"']\n"
                         "preferred_skills: ['=\"n:\" + string(size(record))']")
    _deploy(eng, tier1=rule)
    by_expression = LEADS.replace("name: leads", "name: dynamic").replace(
        "{queue: tier1}", "{queue: '=\"tier\" + string(1)'}")
    _deploy(eng, dynamic=by_expression)
    _agent(eng, "ann", "tier1", {"lang:de": 1, "any": 1})
    rec = eng.create_record("Lead", {"subject": "s", "attrs": {"lang": "de"}})
    items = eng.list_work(record_id=rec["id"], statuses=["open", "claimed"])
    assert sorted((i["assignee"], i["routing_status"]) for i in items) == [
        ("ann", "routed"), ("ann", "routed")], items


# ---- bundles and the CLI ------------------------------------------------------------------
def _entry(kind: str, name: str, source: str, *, active: bool = True) -> dict[str, Any]:
    return {"kind": kind, "name": name, "version": 1, "active": active,
            "file": f"{name}.yaml", "source": source}


def _bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"manifest.json": {"format": 1}, "definitions.json": list(entries)}


def test_a_bundle_is_judged_on_the_rules_active_after_it(db_url: str) -> None:
    with Engine(db_url) as eng:
        _deploy(eng, lead=LEAD, ticket=TICKET, triage=TRIAGE, named=NAMED, leads=LEADS)
        before = _active(eng)
        with pytest.raises(DefinitionError) as refused:
            plan_import(eng, _bundle(_entry("routing", "triage", TRIAGE, active=False)))
        (issue,) = refused.value.issues
        assert (issue.file, issue.path) == ("named.yaml", "stages[0].steps[0].assign.routing")
        assert issue.message.endswith("import a version of it that fits, or deactivate it, "
                                      "in the same bundle"), issue.message
        with pytest.raises(DefinitionError) as refused:
            plan_import(eng, _bundle(_entry("routing", "tier1_agents", TIER1)))
        (issue,) = refused.value.issues
        assert issue.file.endswith("tier1_agents/v1.yaml"), issue
        assert (issue.line, issue.path) == (5, "required_skills[0]"), issue
        assert issue.message.startswith("orchestration 'leads' v1 step 'call'"), issue.message
        assert issue.message.endswith("or import a version of leads that fits, or deactivate "
                                      "it, in the same bundle"), issue.message
        assert _active(eng) == before
        # The rule deactivated with the step that names it, and a bound rule with a lead
        # orchestration that assigns elsewhere: imported.
        apply_import(eng, plan_import(eng, _bundle(
            _entry("routing", "triage", TRIAGE, active=False),
            _entry("orchestration", "named", NAMED, active=False),
            _entry("routing", "tier1_agents", TIER1),
            _entry("orchestration", "leads", LEADS.replace("queue: tier1", "queue: tier2")))),
            "t")
        after = _active(eng)
        assert ("routing", "triage") not in after and ("orchestration", "named") not in after
        assert after[("routing", "tier1_agents")] == 1


def test_the_cli_says_where_a_rule_does_not_fit(tmp_path: Path) -> None:
    project = tmp_path / "p"
    (project / "definitions").mkdir(parents=True)
    (project / "baton.toml").write_text('database = "sqlite:///baton.db"\nflows = []\n')
    for name, text in {"lead": LEAD, "leads": LEADS, "ticket": TICKET, "named": NAMED}.items():
        (project / "definitions" / f"{name}.yaml").write_text(text)

    def baton(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "baton.cli.main", *args], cwd=project,
                              capture_output=True, text=True, timeout=180, check=False)

    p = baton("deploy")
    assert p.returncode == 1 and "Traceback" not in p.stdout + p.stderr, p.stderr
    assert "definitions/named.yaml:9 stages[0].steps[0].assign.routing: unknown routing " \
           "rule 'triage'" in p.stdout, p.stdout
    (project / "definitions" / "triage.yaml").write_text(TRIAGE)
    p = baton("deploy")
    assert p.returncode == 0, p.stdout + p.stderr
    (project / "rules").mkdir()
    (project / "rules" / "tier1.yaml").write_text(TIER1)
    for command in ("validate", "deploy"):
        p = baton(command, "rules")
        assert p.returncode == 1, p.stdout + p.stderr
        assert "rules/tier1.yaml:5 required_skills[0]: orchestration 'leads' v1 step 'call' " \
               in p.stdout, p.stdout
    p = baton("definitions", "deactivate", "triage", "--kind", "routing")
    assert p.returncode == 1 and "nothing was changed" in p.stderr, p.stderr
    assert "orchestration 'named' v1 step 'handle' routes its work by routing rule " \
           "'triage', which this would deactivate" in p.stdout, p.stdout


@pytest.mark.parametrize(("source", "judged"), [
    ('="product:" + record.category', {"category"}),
    ('="x:" + record["category"] + record.brand.lowerAscii()', {"category", "brand"}),
    ('="x:" + record.attrs.lang', {"attrs"}),  # (what it reads of attrs: not judged)
    ('=has(record.category) ? record.category : record.brand', {"brand"}),
    ('="n:" + string(size(record))', set()),  # the record whole
    ('="category" in record ? record.category : "any"', set()),
    ('="record.category " + vars.x', set()),  # a string literal is text
])
def test_what_a_skill_expression_is_judged_to_read(source: str, judged: set[str]) -> None:
    from baton.definitions.routing import record_fields_read

    assert record_fields_read(source) == judged
