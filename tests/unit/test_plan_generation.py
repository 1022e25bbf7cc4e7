"""Plan generation, pure (issue 13): decomposition by code, family and through bundles with
quantities and attribute mappings; one test per scope and cross-scope ``after`` rule; line
action in scenario conditions; ``not_before`` on a given clock; defaults per step type."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from baton.definitions.loader import load_text
from baton.definitions.model import FieldDefinition, ObjectTypeDefinition
from baton.plans.decompose import OrderLine, PlanningError, decompose
from baton.plans.generate import generate

CATALOG = """
kind: catalog
lookups: {regions: {PARIS: north}}
products:
  - {code: KIT, family: Bundle, children: [PC, MOUSE]}
  - {code: PC, family: Computer, attributes: [color], decomposes_to: [{product: PROV, qty: '=line.qty * 2', attributes: {color: '=line.attributes.color'}}]}
  - {code: MOUSE, family: Accessory}
  - {code: NET, family: Net, attributes: [site]}
  - {code: PROV, family: Provisioning, attributes: [color]}
  - {code: ACCESS, family: Access, attributes: [site, region]}
rules:
  - family: Net
    decomposes_to: [{product: ACCESS, attributes: {site: '=line.attributes.site', region: {lookup: regions, key: '=line.attributes.site', default: other}}}]
"""

FULFILLMENT = """
kind: fulfillment
name: f
trigger: {type: record, object: Order, on: [update]}
lines: {object: OrderLine}
lanes: [a, b]
defaults:
  background: {retry: {max: 4}, sla: {duration: 4h, jeopardy: 1h}, on_failure: continue}
scenarios:
  - name: all
    when: '=true'
    steps:
      - {name: start, type: background, flow: x.f, scope: plan}
      - {name: finish, type: background, flow: x.f, scope: plan, after: [per_line, per_bundle, per_site]}
  - name: lines
    when: '=line.action != "no_change"'
    steps:
      - {name: per_line, type: background, flow: x.f, after: [start, per_bundle, per_site], retry: {max: 1},
         on_failure: fallout, sla: {duration: 2h}}
      - {name: check, type: background, flow: x.f, after: [per_line]}
      - {name: per_bundle, type: background, flow: x.f, scope: bundle}
      - {name: per_site, type: background, flow: x.f, scope: {group_by: '=line.attributes.site'},
         not_before: '=line.start_date'}
"""


OBJECTS = {"Order": ObjectTypeDefinition("Order", (FieldDefinition("status", "string"),)),
           "OrderLine": ObjectTypeDefinition("OrderLine", (
               FieldDefinition("order", "ref", object="Order"),))}


def _defs() -> tuple[Any, Any]:
    cat = load_text(CATALOG)[0].definition
    ful = load_text(FULFILLMENT, deployed_objects=OBJECTS)[0].definition
    return cat, ful


NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _plan(lines: list[OrderLine]) -> dict[str, Any]:
    cat, ful = _defs()
    graph = generate(ful, decompose(cat, lines, {}), {}, "Order", "plan:o", NOW)
    steps = graph["definition"]["stages"][0]["steps"]
    return {"steps": {s["name"]: s for s in steps}, "lines": graph["lines"], "facts": graph["steps"]}


def test_decomposition_by_code_family_and_bundle_with_quantities_and_mappings() -> None:
    cat, _ = _defs()
    lines = decompose(cat, [OrderLine("k", "KIT", 3),
                            OrderLine("n", "NET", 1, attributes={"site": "PARIS"})], {})
    # the kit decomposes through the catalog's children with its quantity; PC by code
    # (qty doubled), MOUSE fulfills itself; NET by family rule with a lookup enrichment.
    assert [(ln.key, ln.product.code, ln.qty, ln.bundle) for ln in lines] == [
        ("L1.1.1", "PROV", 6, "L1"), ("L1.2", "MOUSE", 3, "L1"), ("L2.1", "ACCESS", 1, None)]
    assert dict(lines[2].attributes) == {"site": "PARIS", "region": "north"}


def test_unknown_product_on_an_order_is_a_planning_error() -> None:
    cat, _ = _defs()
    with pytest.raises(PlanningError, match="line L1: unknown product 'TV'"):
        decompose(cat, [OrderLine("t", "TV")], {})


ORDER = [OrderLine("k", "KIT", 1),
         OrderLine("pc", "PC", 1, bundle_id="k", attributes={"color": "red"}),
         OrderLine("n1", "NET", attributes={"site": "PARIS"}),
         OrderLine("n2", "NET", attributes={"site": "LYON"}),
         OrderLine("n3", "NET", attributes={"site": "PARIS"})]
# Fulfillment lines: L2.1 (PROV, from the PC line in bundle L1: the kit's children are the
# order's own lines), L3.1, L4.1, L5.1 (ACCESS at PARIS, LYON, PARIS).


def _names(prefix: str) -> list[str]:
    return [n for n in _plan(ORDER)["steps"] if n.split("[")[0] == prefix]


def test_scope_plan_makes_one_step() -> None:
    assert _names("start") == ["start"] and _names("finish") == ["finish"]


def test_scope_bundle_makes_one_step_per_bundle() -> None:
    assert _names("per_bundle") == ["per_bundle[L1]"]


def test_scope_line_item_makes_one_step_per_fulfillment_line() -> None:
    assert _names("per_line") == ["per_line[L2.1]", "per_line[L3.1]", "per_line[L4.1]",
                                  "per_line[L5.1]"]


def test_scope_group_by_makes_one_step_per_value() -> None:
    # (a line without a site is in no group)
    assert _names("per_site") == ["per_site[PARIS]", "per_site[LYON]"]


def test_after_line_to_line_is_the_same_line() -> None:
    s = _plan(ORDER)["steps"]
    assert all(s[f"check[{k}]"]["after"] == [f"per_line[{k}]"]
               for k in ("L2.1", "L3.1", "L4.1", "L5.1"))


def test_after_line_to_plan_is_the_single_instance() -> None:
    s = _plan(ORDER)["steps"]
    assert all(s[n]["after"][0] == "start" for n in _names("per_line"))


def test_after_line_to_bundle_is_its_bundle_and_to_group_its_group() -> None:
    s = _plan(ORDER)["steps"]
    assert s["per_line[L2.1]"]["after"] == ["start", "per_bundle[L1]"]
    assert s["per_line[L3.1]"]["after"] == ["start", "per_site[PARIS]"]
    assert s["per_line[L4.1]"]["after"] == ["start", "per_site[LYON]"]
    assert s["per_line[L5.1]"]["after"] == ["start", "per_site[PARIS]"]


def test_after_plan_to_line_scoped_is_every_instance() -> None:
    after = _plan(ORDER)["steps"]["finish"]["after"]
    assert after == [*_names("per_line"), "per_bundle[L1]", "per_site[PARIS]",
                     "per_site[LYON]"]


ACTIONS = """
kind: fulfillment
name: g
trigger: {type: record, object: Order, on: [update]}
lines: {object: OrderLine}
scenarios:
""" + "".join(f"""  - name: {a}
    when: '=line.action == "{a}"'
    steps: [{{name: on_{a}, type: background, flow: x.f}}]
""" for a in ("add", "amend", "renew", "no_change", "cancel"))


@pytest.mark.parametrize("action", ["add", "amend", "renew", "no_change", "cancel"])
def test_each_line_action_in_a_scenario_condition(action: str) -> None:
    cat, _ = _defs()
    ful = load_text(ACTIONS, deployed_objects=OBJECTS)[0].definition
    lines = [OrderLine("n1", "NET", action=action, attributes={"site": "PARIS"}),
             OrderLine("n2", "MOUSE")]  # (action add, the default)
    graph = generate(ful, decompose(cat, lines, {}), {}, "Order", "plan:o", NOW)
    names = [st["name"] for st in graph["definition"]["stages"][0]["steps"]]
    assert sorted(names) == sorted([f"on_{action}[L1.1]", "on_add[L2]"])


DISCONNECT = """
kind: fulfillment
name: f
trigger: {type: record, object: Order, on: [update]}
lines: {object: OrderLine}
scenarios:
  - name: all
    when: '=true'
    steps: [{name: start, type: background, flow: x.f, scope: plan}]
  - name: delivered
    when: '=line.product.family == "Access" && line.action != "no_change"'
    steps: [{name: install, type: background, flow: x.f, after: [start]}]
  - name: disconnect
    when: '=line.action == "cancel"'
    steps:
      - {name: deprovision, type: background, flow: x.f}
      - {name: collect, type: interactive, assign: {queue: field},
         scope: {group_by: '=line.attributes.site'},
         after: [deprovision]}
"""


def test_a_canceled_line_is_planned_only_by_scenarios_that_select_canceled_lines() -> None:
    # A disconnect (DRO's MACD): the canceled line gets the disconnect scenario's steps and
    # none of the scenarios that hold whatever the action (`true`, a product test with
    # `!= "no_change"`); a line of the same product added beside it is not its kind.
    cat, _ = _defs()
    ful = load_text(DISCONNECT, deployed_objects=OBJECTS)[0].definition
    lines = decompose(cat, [OrderLine("n1", "NET", action="cancel", attributes={"site": "PARIS"}),
                            OrderLine("n2", "NET", attributes={"site": "LYON"})], {})
    assert [(ln.key, ln.action) for ln in lines] == [("L1.1", "cancel"), ("L2.1", "add")]
    graph = generate(ful, lines, {}, "Order", "plan:o", NOW)
    steps = {st["name"]: st for st in graph["definition"]["stages"][0]["steps"]}
    assert sorted(steps) == ["collect[PARIS]", "deprovision[L1.1]", "install[L2.1]", "start"]
    assert steps["collect[PARIS]"]["after"] == ["deprovision[L1.1]"]
    assert [ln["action"] for ln in graph["lines"]] == ["cancel", "add"]


def test_an_order_of_canceled_lines_only_plans_the_disconnect() -> None:
    cat, _ = _defs()
    ful = load_text(DISCONNECT, deployed_objects=OBJECTS)[0].definition
    kit = [OrderLine("k", "KIT", 2, action="cancel")]  # its children inherit the action
    graph = generate(ful, decompose(cat, kit, {}), {}, "Order", "plan:o", NOW)
    assert [st["name"] for st in graph["definition"]["stages"][0]["steps"]] == [
        "deprovision[L1.1.1]", "deprovision[L1.2]"]


def test_line_action_no_change_leaves_a_line_out_of_its_scenario() -> None:
    p = _plan([OrderLine("n1", "NET", action="no_change", attributes={"site": "PARIS"}),
               OrderLine("n2", "NET", action="amend", attributes={"site": "LYON"})])
    assert [n for n in p["steps"] if n.startswith("per_line")] == ["per_line[L2.1]"]


def test_not_before_waits_until_the_line_start_date() -> None:
    p = _plan([OrderLine("n1", "NET", attributes={"site": "PARIS"}, start_date="2026-06-03")])
    wait = p["steps"]["wait_per_site[PARIS]"]
    assert wait["type"] == "pause" and wait["for"] == f"{2 * 86_400_000}ms"
    assert p["steps"]["per_site[PARIS]"]["after"] == ["wait_per_site[PARIS]"]


def test_defaults_per_step_type_and_override() -> None:
    p = _plan([OrderLine("n1", "NET", attributes={"site": "PARIS"})])
    assert p["steps"]["start"]["retry"] == {"max": 4}
    assert p["steps"]["start"]["sla"] == {"duration": "4h", "jeopardy": "1h"}
    assert p["steps"]["start"]["on_failure"] == "continue"  # the jeopardy and fallout rules
    line = p["steps"]["per_line[L1.1]"]
    assert line["retry"] == {"max": 1} and line["on_failure"] == "fallout"  # overridden
    assert line["sla"] == {"duration": "2h"}  # a step's own SLA replaces the default's whole


def test_plan_is_deterministic() -> None:
    lines = [OrderLine("n1", "NET", attributes={"site": "PARIS"}), OrderLine("k", "KIT")]
    assert _plan(lines) == _plan(lines)


def test_a_line_item_step_names_its_line_and_the_engine_gets_its_view() -> None:
    """The graph stores each line's view once (``lines``); a line-item step names its line
    by key, and the definition the engine runs has the view back in the step's input (a
    graph of format 1, views in the steps, is read as it is)."""
    import json

    from baton.plans.generate import GRAPH_FORMAT, with_line_views
    from baton.plans.service import build_definition

    cat, ful = _defs()
    graph = generate(ful, decompose(cat, [OrderLine("k", "KIT", 1),
                                          OrderLine("n", "NET", 1, attributes={"site": "P"})],
                                    {}), {}, "Order", "plan:o", NOW)
    assert graph["format"] == GRAPH_FORMAT == 2
    stored = {s["name"]: s["input"]["plan"] for s in graph["definition"]["stages"][0]["steps"]}
    views = {v["key"]: v for v in graph["lines"]}
    line_steps = {n: p for n, p in stored.items() if p["scope"] == "line_item"}
    assert line_steps and all(p["lines"] == [n[n.index("[") + 1:-1]]
                              for n, p in line_steps.items())
    # every line's view is in the stored graph once
    assert json.dumps(graph).count('"source_product"') == len(graph["lines"])
    run_steps = {s["name"]: s for s in with_line_views(graph)["stages"][0]["steps"]}
    defn = build_definition(graph)
    for name, plan in stored.items():
        got = run_steps[name]["input"]["plan"]["lines"]
        found = defn.find_step(name)
        assert found is not None
        assert found[1].options["input"]["plan"]["lines"] == got
        if plan["scope"] == "line_item":
            assert got == [views[k] for k in plan["lines"]]
        else:  # the others name their lines by key, as before
            assert got == plan["lines"]
    old = {**graph, "format": 1, "definition": with_line_views(graph)}
    assert with_line_views(old) == old["definition"]
    broken = json.loads(json.dumps(graph))
    broken["lines"] = broken["lines"][1:]
    with pytest.raises(PlanningError, match="is not among the plan's lines"):
        with_line_views(broken)


def test_a_timeout_default_for_a_step_type_that_never_times_out_is_refused() -> None:
    """``defaults`` fill a template step's policies: a ``timeout`` for interactive steps
    (which only an sla bounds) would be copied into every such step and do nothing."""
    from baton.errors import DefinitionError

    text = FULFILLMENT.replace(
        "defaults:\n", "defaults:\n  interactive: {timeout: 2d}\n", 1)
    with pytest.raises(DefinitionError) as exc:
        load_text(text, deployed_objects=OBJECTS)
    (issue,) = exc.value.issues
    assert issue.path == "defaults.interactive.timeout", issue
    assert "sla" in issue.message, issue
    ok = FULFILLMENT.replace("defaults:\n", "defaults:\n  callout: {timeout: 2d}\n", 1)
    assert load_text(ok, deployed_objects=OBJECTS)
