"""Fulfillment-plan loose ends: an amendment that cancels every line of an order cancels
the order (its point of no return kept, its rollbacks run), as an operator of an order
orchestrator expects of a supplemental order that cancels every item; ``plans show
--json`` (and the API's plan) gives an ended step no live SLA state; a group step's flow
reading a group template of another ``group_by`` is refused (AmbiguousStep), and its
``after`` waits for the groups of its lines, not a group that merely has its value; a
child-run rollback is told what it undoes (``input.plan.undo``) as other rollbacks are; a
cancel routed from a plan's run cancels that plan only. Real Engine and Worker on SQLite
and PostgreSQL, virtual time, the example's ``ship`` callouts to ``baton demo``'s carrier
on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from baton import flow
from baton.cli.demo_carrier import DemoCarrier, pointed_at
from baton.cli.plans import _sla
from baton.errors import DefinitionError, TransitionConflict
from baton.flows import AmbiguousStep, FlowContext
from baton.plans.service import cancels_every_line, step_sla
from tests.conftest import Harness

# the example's flows, as recorders (CALLS): registered once, by that module
from tests.integration.test_plans import CALLS, EXAMPLE, _work


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    SEEN.clear()


@pytest.fixture
def carrier() -> Iterator[DemoCarrier]:
    c = DemoCarrier(busy_first=False).start()
    yield c
    c.stop()


def _deploy(h: Harness, carrier: DemoCarrier) -> None:
    h.setenv(CARRIER_TOKEN=carrier.token)
    h.engine.deploy(texts=pointed_at(EXAMPLE, carrier.url), known_flows=None)


def _order(h: Harness, lines: list[dict[str, Any]], number: str = "F-1") -> str:
    rec = h.engine.create_record("Order", {"number": number, "status": "Submitted"},
                                 children={"OrderLine": lines})
    _work(h)
    return str(rec["id"])


def _steps(h: Harness, order: str) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in h.engine.plans.show(order)["steps"]}


def _lines_of(h: Harness, order: str) -> list[dict[str, Any]]:
    return [r for r in h.engine.list_records("OrderLine", limit=50) if r["order"] == order]


RED = {"product": "LAPTOP-PRO", "attributes": {"color": "red"}}
PARIS = {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}}
LYON = {"product": "BROADBAND", "attributes": {"site": "LYON", "speed": "1G"}}


# ---- 1. every line canceled: the order is canceled ------------------------------------

def test_an_amendment_canceling_every_line_cancels_the_order(harness: Harness,
                                                             carrier: DemoCarrier) -> None:
    h = harness
    _deploy(h, carrier)
    order = _order(h, [RED, PARIS])
    before = _steps(h, order)
    assert before["ship[L1.1]"]["status"] == "completed"
    assert before["billing"]["ponr"] and before["billing"]["status"] == "not_started"
    plan_run = h.engine.plans.show(order)["run_id"]
    for r in _lines_of(h, order):
        h.engine.update_record(r["id"], {"action": "cancel"})
    # the difference says so: every plan step leaves, the cancel's rollbacks run (not a
    # plan of the disconnect step alone, without its point of no return)
    diff = h.engine.plans.diff(order, refuse=True)
    assert diff["cancels_order"] is True
    assert diff["added"] == [] and "billing" in diff["removed"]
    assert diff["compensate"] == ["reserve[L1.1]", "ship[L1.1]"]
    assert diff["rollbacks"] == ["rollback_reserve[L1.1]", "rollback_ship[L1.1]"]
    out = h.engine.plans.amend(order, "ops")
    assert out["applied"] is True and out["cancels_order"] is True
    assert out["rollbacks"] == diff["rollbacks"]
    assert out["compensation_run_id"]
    CALLS.clear()
    _work(h)
    assert sorted(CALLS) == ["recall:L1.1", "release:L1.1"], CALLS  # no cease, no bill
    plan = h.engine.plans.show(order)
    assert plan["run_id"] == plan_run and plan["status"] == "canceled"
    assert plan["compensation"]["run_id"] == out["compensation_run_id"]
    assert plan["compensation"]["status"] == "completed"
    assert h.engine.list_work(queue="installers") == []  # the install's task canceled
    canceled = [e for e in h.engine.timeline(order) if e["type"] == "plan_canceled"]
    assert canceled[-1]["data"]["amendment"] is True
    assert "cancels every line" in canceled[-1]["data"]["reason"]
    # canceled once: amending it again is refused as amending a canceled plan is
    with pytest.raises(TransitionConflict, match="only a plan in progress"):
        h.engine.plans.amend(order, "ops")


def test_canceling_every_line_past_the_point_of_no_return_is_refused(
        harness: Harness, carrier: DemoCarrier) -> None:
    h = harness
    _deploy(h, carrier)
    order = _order(h, [PARIS])
    for it in h.engine.list_work(queue="installers"):
        h.engine.complete(it["id"], "tech", {})
    _work(h)
    assert _steps(h, order)["billing"]["status"] == "completed"
    for r in _lines_of(h, order):
        h.engine.update_record(r["id"], {"action": "cancel"})
    for attempt in (lambda: h.engine.plans.amend(order, "ops"),
                    lambda: h.engine.plans.diff(order, refuse=True)):
        with pytest.raises(TransitionConflict, match="no longer be amended: step 'billing'"):
            attempt()
    assert h.engine.plans.show(order)["compensation"] is None


def test_a_partial_cancel_and_an_order_of_disconnects_are_amendments() -> None:
    add = {"lines": [{"key": "L1.1", "action": "add"}, {"key": "L2.1", "action": "add"}]}
    one = {"lines": [{"key": "L1.1", "action": "cancel"}, {"key": "L2.1", "action": "add"}]}
    every = {"lines": [{"key": "L1.1", "action": "cancel"}, {"key": "L2.1", "action": "cancel"}]}
    assert not cancels_every_line(add, one)
    assert cancels_every_line(add, every) and cancels_every_line(one, every)
    assert not cancels_every_line(every, every)  # disconnects from the first plan
    assert not cancels_every_line(add, {"lines": []})  # (refused apart: no lines left)


# ---- 2. no live SLA state on an ended step ---------------------------------------------

def test_plans_show_gives_ended_steps_no_live_sla_state(harness: Harness,
                                                       carrier: DemoCarrier) -> None:
    h = harness
    _deploy(h, carrier)
    order = _order(h, [RED, PARIS, LYON])
    steps = _steps(h, order)
    assert steps["ship[L1.1]"]["status"] == "completed"
    assert steps["ship[L1.1]"]["sla"]["status"] == "met"
    assert steps["install[PARIS]"]["sla"]["status"] == "on_track"
    h.clock.advance(timedelta(hours=73))  # past both installs' 72 h
    h.work()
    steps = _steps(h, order)
    assert steps["install[PARIS]"]["sla"]["status"] == "overdue"  # open: as it stands
    paris = next(it for it in h.engine.list_work(queue="installers")
                 if "PARIS" in str(it.get("step")))
    h.engine.complete(paris["id"], "tech", {})
    _work(h)
    h.engine.plans.cancel(order, "customer withdrew", "ops")
    steps = _steps(h, order)
    done, gone = steps["install[PARIS]"], steps["install[LYON]"]
    assert (done["status"], gone["status"]) == ("completed", "canceled")
    assert done["sla"]["status"] == "missed" and done["sla"]["due_at"]
    assert gone["sla"]["status"] is None and gone["sla"]["due_at"]
    # the text view says the same
    assert _sla(done["sla"], "completed", None).startswith("missed (due ")
    assert _sla(gone["sla"], "canceled", None) == ""
    assert _sla(steps["ship[L1.1]"]["sla"], "completed", None) == "met"


def test_step_sla_of_each_status() -> None:
    sla = {"status": "in_jeopardy", "due_at": "2030-01-01T10:00:00+00:00",
           "jeopardy_at": "2030-01-01T08:00:00+00:00"}
    assert step_sla(sla, "running", None) == sla
    assert step_sla(sla, "fallout", None) == sla
    assert step_sla(sla, "completed", "2030-01-01T09:59:59+00:00")["status"] == "met"
    assert step_sla(sla, "completed", "2030-01-01T10:00:01+00:00")["status"] == "missed"
    for ended in ("skipped", "canceled", "failed"):
        view = step_sla(sla, ended, "2030-01-01T11:00:00+00:00")
        assert view == {**sla, "status": None}
    assert step_sla(None, "completed", None) is None
    assert sla["status"] == "in_jeopardy"  # (not changed in place)


# ---- 3. a group step reading a group template keyed otherwise ----------------------------

SEEN: list[Any] = []


@flow("followups.note")
def _note(ctx: FlowContext) -> dict[str, Any]:
    return {"instance": ctx.input["plan"]["instance"]}


@flow("followups.install")
def _install(ctx: FlowContext) -> dict[str, Any]:
    survey = ctx.steps["survey"]  # grouped by site as install is: the same site's
    try:
        region: Any = ctx.steps["region_check"].name
    except AmbiguousStep as exc:
        region = str(exc)
    SEEN.append((ctx.input["plan"]["instance"], survey.name, region))
    return {}


GROUPS = """
kind: object
name: Job
fields:
  number: {type: string, required: true}
  status: {type: choice, choices: [Draft, Submitted], default: Draft}
---
kind: object
name: JobLine
fields:
  order: {type: ref, object: Job, required: true}
  product: {type: string, required: true}
  attributes: {type: json}
---
kind: catalog
name: sites
products:
  - {code: SITE, family: Site, attributes: [site, region]}
---
kind: fulfillment
name: sites
catalog: sites
trigger: {type: record, object: Job, on: [create, update], when: '=record.status == "Submitted"', changed_to_meet: true}
lines: {object: JobLine}
scenarios:
  - name: every_site
    when: '=true'
    steps:
      - {name: region_check, type: background, scope: {group_by: '=line.attributes.region'},
         flow: followups.note}
      - {name: survey, type: background, scope: {group_by: '=line.attributes.site'},
         flow: followups.note}
      - {name: install, type: background, scope: {group_by: '=line.attributes.site'},
         flow: followups.install, after: [survey, region_check]}
"""
# Sites and regions share values: site A is in region B and site B in region A.
SITES = [{"product": "SITE", "attributes": {"site": "A", "region": "B"}},
         {"product": "SITE", "attributes": {"site": "B", "region": "A"}}]


def test_a_group_step_reads_a_group_template_keyed_otherwise_as_several(
        harness: Harness) -> None:
    h = harness
    h.deploy_text(GROUPS, "sites.yaml")
    job = str(h.engine.create_record("Job", {"number": "J-1", "status": "Submitted"},
                                     children={"JobLine": SITES})["id"])
    steps = {s["name"]: s for s in h.engine.plans.show(job)["steps"]}
    # install[A] (site A's line) waits for its line's region, B: not region_check[A],
    # the region that only shares the site's name
    assert steps["install[A]"]["after"] == ["survey[A]", "region_check[B]"]
    assert steps["install[B]"]["after"] == ["survey[B]", "region_check[A]"]
    h.work()
    assert h.engine.plans.show(job)["status"] == "completed"
    by_site = {site: (survey, region) for site, survey, region in SEEN}
    assert by_site["A"][0] == "survey[A]"  # grouped alike: the same group's
    refused = by_site["A"][1]
    assert "names several steps" in refused and "another group_by" in refused, refused
    assert "region_check[B]" in refused and "region_check[A]" not in refused, refused
    # an expression cannot read it either: refused when deployed
    bad = GROUPS.replace("flow: followups.install,",
                         "flow: followups.install, input: {r: '=steps.region_check.output'},")
    with pytest.raises(DefinitionError, match="groups its lines by another group_by"):
        h.deploy_text(bad, "sites.yaml")


# ---- 4. a child-run rollback is told what it undoes --------------------------------------

@flow("followups.prepare")
def _prepare(ctx: FlowContext) -> dict[str, Any]:
    return {"prepared": True}


@flow("followups.undo")
def _undo(ctx: FlowContext) -> dict[str, Any]:
    SEEN.append(dict(ctx.input))
    return {}


CHILD_ROLLBACK = """
kind: orchestration
name: unprepare
trigger:
  type: autolaunched
  input: {order: {type: string}, undo: {type: json}, booking: {type: string}}
stages:
  - name: s
    steps:
      - {name: undo, type: background, flow: followups.undo}
---
kind: object
name: Job
fields:
  number: {type: string, required: true}
  status: {type: choice, choices: [Draft, Submitted], default: Draft}
---
kind: object
name: JobLine
fields:
  order: {type: ref, object: Job, required: true}
  product: {type: string, required: true}
---
kind: catalog
name: jobs
products:
  - {code: SITE, family: Site}
---
kind: fulfillment
name: jobs
catalog: jobs
trigger: {type: record, object: Job, on: [create, update], when: '=record.status == "Submitted"', changed_to_meet: true}
lines: {object: JobLine}
scenarios:
  - name: every_job
    when: '=true'
    steps:
      - {name: prepare, type: background, flow: followups.prepare,
         rollback: {type: orchestration, orchestration: unprepare,
                    input: {order: '=record.number', undo: '=input.plan.undo',
                            booking: '="booking " + input.plan.undo.idempotency_key'}}}
      - {name: survey, type: interactive, assign: {queue: surveyors}, after: [prepare]}
"""


def test_a_child_run_rollback_is_told_what_it_undoes(harness: Harness) -> None:
    h = harness
    h.deploy_text(CHILD_ROLLBACK, "jobs.yaml")
    job = str(h.engine.create_record("Job", {"number": "J-7", "status": "Submitted"},
                                     children={"JobLine": [{"product": "SITE"}]})["id"])
    h.work()
    plan = h.engine.plans.show(job)
    assert {s["name"]: s["status"] for s in plan["steps"]}["prepare[L1]"] == "completed"
    out = h.engine.plans.cancel(job, "withdrawn", "ops")
    assert out["rollbacks"] == ["rollback_prepare[L1]"]
    h.work()
    comp = h.engine.plans.show(job)["compensation"]
    assert comp["status"] == "completed"
    key = f"{plan['run_id']}:prepare[L1]:1"
    assert SEEN == [{"order": "J-7", "booking": f"booking {key}", "undo": {
        "step": "prepare[L1]", "status": "completed", "attempts": 1,
        "idempotency_key": key, "uncertain": False}}], SEEN


# ---- 5. a run's cancel routed to its plan cancels that plan only --------------------------

def test_a_cancel_naming_a_plans_run_does_not_cancel_the_orders_next_plan(
        harness: Harness, carrier: DemoCarrier) -> None:
    h = harness
    _deploy(h, carrier)
    order = _order(h, [PARIS])
    first = h.engine.plans.show(order)["run_id"]
    h.engine.plans.cancel(order, "withdrawn", "ops")
    h.engine.update_record(order, {"status": "Draft"})
    h.engine.update_record(order, {"status": "Submitted"})  # planned again
    second = h.engine.plans.show(order)
    assert second["run_id"] != first and second["status"] == "in_progress"
    # the cancel a run's cancel makes, written after the order was planned again
    with pytest.raises(TransitionConflict, match=f"run {first} is no longer the plan"):
        h.engine.plans.cancel(order, "the first plan, as read", "ops", run_id=first)
    again = h.engine.plans.show(order)
    assert (again["run_id"], again["status"]) == (second["run_id"], "in_progress")
    assert again["compensation"] is None
    # naming the plan's run as it is now cancels it
    out = h.engine.plans.cancel(order, "withdrawn again", "ops", run_id=second["run_id"])
    assert out["run_id"] == second["run_id"]
    assert h.engine.plans.show(order)["status"] == "canceled"


def test_a_runs_cancel_read_before_the_order_was_planned_again_cancels_nothing(
        harness: Harness, carrier: DemoCarrier, monkeypatch: pytest.MonkeyPatch) -> None:
    """``runs cancel`` of a plan's run reads its plan, then writes the plan's cancel: an
    order canceled and planned again in between (here, right after the read) keeps its new
    plan; the cancel is refused, nothing written."""
    h = harness
    _deploy(h, carrier)
    order = _order(h, [PARIS])
    first = h.engine.plans.show(order)["run_id"]
    real = h.engine.run_plan
    raced: list[str] = []

    def read_then_replanned(run: Any, *, ponr: bool = True) -> Any:
        found = real(run, ponr=ponr)
        if not raced:  # (another operator, between the read and the write)
            raced.append(h.engine.plans.cancel(order, "withdrawn", "ops")["run_id"])
            h.engine.update_record(order, {"status": "Draft"})
            h.engine.update_record(order, {"status": "Submitted"})
        return found

    monkeypatch.setattr(h.engine, "run_plan", read_then_replanned)
    with pytest.raises(TransitionConflict, match=f"run {first} is no longer the plan"):
        h.engine.cancel_run(first, "the first plan", actor="ops")
    assert raced == [first]
    now = h.engine.plans.show(order)
    assert now["run_id"] != first and now["status"] == "in_progress"
    assert now["compensation"] is None
