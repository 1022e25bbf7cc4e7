"""A queue's routing rule (``kind: routing`` with ``for_queue: true``; issue 15 item 6): work
an interactive step assigns to that queue is routed by the rule, as ``assign: {routing:
NAME}`` routes it; a queue without one behaves as before. The rule may be deployed,
changed or deactivated after the orchestration: the next step start uses what is active.
Both backends, virtual time."""

from __future__ import annotations

from typing import Any

import pytest

from baton.errors import DefinitionError, TransitionConflict
from baton.runtime import definitions
from baton.runtime.engine import Engine
from baton.work.team import ProfileChange

# The orchestration assigns to a tier queue by expression, as examples/case_triage does;
# it names no routing rule.
ORCH = """
kind: object
name: Ticket
fields:
  subject: {type: string, required: true}
  level:   {type: int, default: 1}
  product: {type: string, default: billing}
  target:  {type: string, default: "queue:tier1"}
---
kind: orchestration
name: tickets
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: s
    steps:
      - name: handle
        type: interactive
        assign: {queue: '="tier" + string(record.level)'}
        form: [{name: done, type: bool}]
"""

RULE = """
kind: routing
name: tier1_agents
from: {queue: tier1}
for_queue: true
required_skills: ['="product:" + record.product']
strategy: STRATEGY
"""


def agents(h: Any, **people: dict[str, Any]) -> None:
    for name, profile in people.items():
        h.engine.directory.add_user(name, roles=["agent"], queues=["tier1", "tier2"])
        h.engine.team.update(name, ProfileChange(**profile), "admin")


def ticket(h: Any, **fields: Any) -> tuple[str, dict[str, Any]]:
    rec = h.engine.create_record("Ticket", {"subject": "s", **fields})
    (item,) = h.engine.list_work(record_id=rec["id"], statuses=["open", "claimed"])
    return rec["id"], item


def events(h: Any, record_id: str, kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in h.engine.timeline(record_id) if e["type"] == kind]


BILLING = {"product:billing": 2}


def test_a_bound_queue_is_routed_and_an_unbound_one_is_not(harness: Any) -> None:
    harness.deploy_text(ORCH)
    harness.deploy_text(RULE.replace("STRATEGY", "least_loaded"), "routing.yaml")
    agents(harness, ann={"add_skills": BILLING}, bob={"add_skills": {"product:tech": 2}})
    rec, item = ticket(harness)
    assert (item["assignee_kind"], item["assignee"], item["routing_status"]) \
        == ("user", "ann", "routed")
    (ev,) = events(harness, rec, "routed")
    assert ev["rule"] == "tier1_agents" and ev["winner"] == "ann"
    assert ev["excluded"] == [{"user": "bob", "reason": "skill missing: product:billing"}]
    assert harness.engine.team.get("ann").load == 1
    # tier2 has no rule: the item sits in the queue as before, for anyone in it to claim
    rec2, item2 = ticket(harness, level=2)
    assert (item2["assignee_kind"], item2["assignee"]) == ("queue", "tier2")
    assert not item2.get("routing_status") and not item2.get("routing")
    assert events(harness, rec2, "routed") == [] \
        and events(harness, rec2, "waiting_for_routing") == []
    harness.engine.claim(item2["id"], "bob")
    harness.engine.complete(item2["id"], "bob", {"done": True})


def test_a_bound_queue_waits_for_routing_until_someone_is_eligible(harness: Any) -> None:
    harness.deploy_text(ORCH)
    harness.deploy_text(RULE.replace("STRATEGY", "least_loaded"), "routing.yaml")
    agents(harness, ann={"add_skills": BILLING, "availability": "offline"})
    rec, item = ticket(harness)
    assert (item["assignee"], item["routing_status"]) == ("tier1", "waiting")
    (wait,) = events(harness, rec, "waiting_for_routing")
    assert wait["rule"] == "tier1_agents" and wait["excluded"] == [
        {"user": "ann", "reason": "offline"}]
    harness.engine.team.update("ann", ProfileChange(availability="available"), "ann")
    (now,) = harness.engine.list_work(record_id=rec, statuses=["open"])
    assert (now["assignee"], now["routing_status"]) == ("ann", "routed")


def test_a_resource_giving_the_queue_is_routed_too(harness: Any) -> None:
    harness.deploy_text(ORCH.replace("assign: {queue: '=\"tier\" + string(record.level)'}",
                                     "assign: {resource: '=record.target'}"))
    harness.deploy_text(RULE.replace("STRATEGY", "least_loaded"), "routing.yaml")
    agents(harness, ann={"add_skills": BILLING})
    assert ticket(harness)[1]["assignee"] == "ann"
    assert ticket(harness, target="queue:tier2")[1]["assignee"] == "tier2"


def test_a_rule_deployed_changed_or_deactivated_later_applies_at_the_next_item(
        harness: Any) -> None:
    harness.deploy_text(ORCH)
    agents(harness, ann={"add_skills": BILLING}, bob={"add_skills": BILLING})
    before = ticket(harness)[1]  # the orchestration's steps have started already: cached
    assert (before["assignee_kind"], before["assignee"]) == ("queue", "tier1")
    harness.deploy_text(RULE.replace("STRATEGY", "least_loaded"), "routing.yaml")
    assert ticket(harness)[1]["assignee"] == "ann"
    # the rule changed: round robin, and only who has product:tech
    harness.engine.team.update("bob", ProfileChange(add_skills={"product:tech": 1}), "admin")
    harness.deploy_text(RULE.replace("STRATEGY", "round_robin"), "routing.yaml")
    rec, item = ticket(harness, product="tech")
    assert item["assignee"] == "bob"
    assert events(harness, rec, "routed")[0]["strategy"] == "round_robin"
    # deactivated: the queue is a plain queue again
    harness.engine.definitions.set_active("routing", "tier1_agents", None, "admin")
    after = ticket(harness)[1]
    assert (after["assignee_kind"], after["assignee"]) == ("queue", "tier1")
    assert not after.get("routing_status")
    # the item that was waiting in the queue before the rule came stays as it was
    (still,) = harness.engine.list_work(record_id=before["record_id"], statuses=["open"])
    assert still["assignee"] == "tier1"


def test_a_rule_deployed_by_another_process_applies_once_it_is_seen(
        harness: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Another process deploys or deactivates the rule: this one's parsed orchestration is
    parsed again when its definitions index notices (at most a second later; no wait here)."""
    monkeypatch.setattr(definitions, "REFRESH_INTERVAL_S", 0.0)
    harness.deploy_text(ORCH)
    agents(harness, ann={"add_skills": BILLING})
    assert ticket(harness)[1]["assignee"] == "tier1"  # parsed and cached, no rule
    other = Engine(harness.db_url, clock=harness.clock)
    try:
        (tmp_path / "routing.yaml").write_text(RULE.replace("STRATEGY", "least_loaded"))
        other.deploy([tmp_path / "routing.yaml"], known_flows=None)
        assert ticket(harness)[1]["assignee"] == "ann"
        other.definitions.set_active("routing", "tier1_agents", None, "admin")
        assert ticket(harness)[1]["assignee"] == "tier1"
    finally:
        other.close()


def test_a_skill_that_cannot_be_evaluated_fails_the_step(harness: Any) -> None:
    harness.deploy_text(ORCH)
    harness.deploy_text(RULE.replace("STRATEGY", "least_loaded")
                        .replace("record.product", "record.nothing"), "routing.yaml")
    rec = harness.engine.create_record("Ticket", {"subject": "s"})
    (run,) = harness.engine.list_runs(orchestration="tickets")
    step = harness.engine.get_run(run.id).steps["handle"]
    assert step.status.value == "fallout", step.status
    assert "tier1_agents.required_skills[0]" in str(step.error)
    assert harness.engine.list_work(record_id=rec["id"]) == []


def test_one_rule_per_queue_at_deploy_and_at_activation(harness: Any) -> None:
    harness.deploy_text(ORCH)
    harness.deploy_text(RULE.replace("STRATEGY", "least_loaded"), "routing.yaml")
    other = "kind: routing\nname: tier1_rr\nfrom: {queue: tier1}\nstrategy: round_robin\n" \
            "for_queue: true\n"
    with pytest.raises(DefinitionError) as err:
        harness.deploy_text(other, "other.yaml")
    (issue,) = err.value.issues
    assert (issue.file.endswith("other.yaml"), issue.line, issue.path) == (True, 5, "for_queue")
    assert "queue 'tier1' already has a routing rule: 'tier1_agents'" in issue.message
    # the same rule without for_queue deploys; binding it needs the other one let go
    harness.deploy_text(other.replace("for_queue: true\n", ""), "other.yaml")
    # redeploying the bound rule itself (changed) is no conflict with itself
    harness.deploy_text(RULE.replace("STRATEGY", "round_robin"), "routing.yaml")
    # activating an older bound version of another rule while tier1_agents holds the queue
    harness.engine.definitions.set_active("routing", "tier1_agents", None, "admin")
    harness.deploy_text(other, "other.yaml")  # tier1_rr v2, bound: the queue was free
    with pytest.raises(TransitionConflict, match="bound to queue 'tier1'"):
        harness.engine.definitions.set_active("routing", "tier1_agents", 2, "admin")


def test_a_plan_step_on_a_bound_queue_is_routed_too(harness: Any,
                                                   request: pytest.FixtureRequest) -> None:
    """examples/order_fulfillment: a plan's install steps go to queue installers; with a rule
    bound to it (deployed after an order was planned), the next order's are routed."""
    from baton.cli.demo_carrier import DemoCarrier, pointed_at
    from tests.integration.test_plans import EXAMPLE, _order, _work  # (its flows too)

    carrier = DemoCarrier().start()
    request.addfinalizer(carrier.stop)
    harness.setenv(CARRIER_TOKEN=carrier.token)
    harness.engine.deploy(texts=pointed_at(EXAMPLE, carrier.url), known_flows=None)
    harness.engine.directory.add_user("ines", roles=["agent"], queues=["installers"])
    harness.engine.directory.add_user("ivo", roles=["agent"], queues=["installers"])
    harness.engine.team.update("ines", ProfileChange(capacity=1), "admin")
    harness.engine.team.update("ivo", ProfileChange(availability="away"), "admin")
    first = _order(harness)
    _work(harness)
    before = harness.engine.list_work(queue="installers")
    assert len(before) == 2 and all(not i.get("routing_status") for i in before)
    harness.deploy_text("kind: routing\nname: installers\nfrom: {queue: installers}\n"
                        "for_queue: true\n", "installers.yaml")
    second = _order(harness)
    _work(harness)
    routed = [i for i in harness.engine.list_work(statuses=["open"])
              if i["step"].startswith("install[") and i["record_id"] != first]
    assert sorted((i["assignee"], i["routing_status"]) for i in routed) == [
        ("ines", "routed"), ("installers", "waiting")], routed
    (wait,) = [e for r in {i["record_id"] for i in routed}
               for e in events(harness, r, "waiting_for_routing")]
    assert wait["rule"] == "installers"
    assert {e["user"]: e["reason"] for e in wait["excluded"]} == {
        "ines": "at capacity", "ivo": "away"}
    assert second


def test_an_operator_reassigning_to_a_bound_queue_routes_the_item(harness: Any) -> None:
    """``baton work reassign ITEM --to queue:tier1`` (and the API's): the queue's rule routes
    the item as it routes work assigned there at a step's start — skills of the item's
    record, capacity, the same events — the operator named as who moved it."""
    harness.deploy_text(ORCH)
    harness.deploy_text(RULE.replace("STRATEGY", "least_loaded"), "routing.yaml")
    agents(harness, ann={"add_skills": BILLING}, bob={"add_skills": {"product:tech": 2}})
    rec, item = ticket(harness, level=2)  # tier2: no rule, sits in the queue
    assert (item["assignee_kind"], item["assignee"]) == ("queue", "tier2")
    harness.engine.claim(item["id"], "bob")
    moved = harness.engine.reassign(item["id"], "queue:tier1", actor="user:olga")
    assert (moved["status"], moved["assignee_kind"], moved["assignee"],
            moved["routing_status"], moved["claimed_by"]) == ("open", "user", "ann", "routed", None)
    (ev,) = events(harness, rec, "work_item_reassigned")
    assert (ev["from"], ev["to"], ev["rule"]) == ("queue:tier2", "queue:tier1", "tier1_agents")
    (who,) = [e for e in harness.engine.timeline(rec) if e["type"] == "work_item_reassigned"]
    assert who["actor"] == "user:olga"
    (routed,) = events(harness, rec, "routed")
    assert routed["winner"] == "ann" and routed["reason"] == "reassigned"
    assert routed["excluded"] == [{"user": "bob", "reason": "skill missing: product:billing"}]
    assert harness.engine.team.get("ann").load == 1
    # a queue without a rule, a user, a group: plain reassignments, as before
    plain = harness.engine.reassign(item["id"], "queue:tier2", actor="user:olga")
    assert (plain["assignee_kind"], plain["assignee"]) == ("queue", "tier2")
    assert not plain.get("routing_status")
    assert harness.engine.team.get("ann").load == 0


def test_an_operator_reassigning_where_the_rule_cannot_evaluate_is_refused(
        harness: Any) -> None:
    from baton.errors import ValidationError

    harness.deploy_text(ORCH)
    harness.deploy_text(RULE.replace("STRATEGY", "least_loaded")
                        .replace("record.product", "record.nothing"), "routing.yaml")
    rec, item = ticket(harness, level=2)
    with pytest.raises(ValidationError) as err:
        harness.engine.reassign(item["id"], "queue:tier1", actor="user:olga")
    assert "queue:tier1 routes its work by rule 'tier1_agents'" in str(err.value)
    assert "required_skills[0]" in str(err.value)
    (still,) = harness.engine.list_work(record_id=rec, statuses=["open"])
    assert (still["assignee"], still["version"]) == ("tier2", item["version"])


def test_an_sla_reassigning_to_a_bound_queue_routes_the_item(harness: Any) -> None:
    """``on_jeopardy: {reassign: queue:tier1}``: the bound rule routes it, reason
    ``jeopardy``; to a queue without a rule it is a plain reassignment, as before."""
    from datetime import timedelta

    sla = ("        sla: {duration: 4h, jeopardy: 1h, "
           "on_jeopardy: {reassign: 'queue:TARGET'}}\n")
    text = ORCH.replace("        form: [{name: done, type: bool}]\n",
                        sla + "        form: [{name: done, type: bool}]\n")
    harness.deploy_text(text.replace("TARGET", "tier1").replace("string(record.level)", '"2"'))
    harness.deploy_text(RULE.replace("STRATEGY", "least_loaded"), "routing.yaml")
    agents(harness, ann={"add_skills": BILLING})
    rec, item = ticket(harness)
    assert item["assignee"] == "tier2"
    harness.clock.advance(timedelta(hours=3))
    harness.work()
    (now,) = harness.engine.list_work(record_id=rec, statuses=["open"])
    assert (now["assignee"], now["routing_status"]) == ("ann", "routed")
    (routed,) = events(harness, rec, "routed")
    assert routed["rule"] == "tier1_agents" and routed["reason"] == "sla in_jeopardy"


def test_two_deploys_at_once_cannot_both_bind_one_queue(
        harness: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two processes deploy a rule bound to queue tier1 at the same moment: the check runs
    in each deploy's transaction under the definitions lock, so the second sees the first
    and is refused (checked before the transaction, both passed and both were bound)."""
    import threading
    import time

    from baton.store.sql.queries import DefinitionsSql

    insert = DefinitionsSql.insert_definition_txn

    def slow_insert(self: Any, row: dict[str, Any]) -> int:
        time.sleep(0.4)  # the first deploy is inside its transaction when the second begins
        return insert(self, row)

    monkeypatch.setattr(DefinitionsSql, "insert_definition_txn", slow_insert)
    engines = [Engine(harness.db_url, clock=harness.clock) for _ in range(2)]
    outcomes: dict[str, str] = {}

    def deploy(engine: Engine, name: str) -> None:
        text = RULE.replace("STRATEGY", "least_loaded").replace("tier1_agents", name)
        try:
            engine.deploy(texts={f"{name}.yaml": text}, known_flows=None)
            outcomes[name] = "deployed"
        except DefinitionError as exc:
            outcomes[name] = str(exc)

    try:
        threads = [threading.Thread(target=deploy, args=(e, n))
                   for e, n in zip(engines, ("rule_a", "rule_b"), strict=True)]
        for t in threads:
            t.start()
            time.sleep(0.1)
        for t in threads:
            t.join(30)
    finally:
        for e in engines:
            e.close()
    assert outcomes["rule_a"] == "deployed", outcomes
    assert "queue 'tier1' already has a routing rule: 'rule_a'" in outcomes["rule_b"], outcomes
    bound = [r.name for r in harness.engine.definitions.list_versions("routing") if r.active]
    assert bound == ["rule_a"]
