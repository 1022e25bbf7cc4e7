"""``steps.<template>`` in a fulfillment's step templates (brief H10): what it names in each
generated step (the same line's, its bundle's, its group's, its own), and the readings that
name several steps, refused by validation with file, line and path."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from baton.definitions.loader import check_definitions, load_text
from baton.definitions.model import FieldDefinition, ObjectTypeDefinition
from baton.errors import DefinitionError
from baton.expressions import compile_expression, evaluate
from baton.plans.decompose import OrderLine, decompose
from baton.plans.generate import generate, rename_step_reads

OBJECTS = {"Order": ObjectTypeDefinition("Order", (FieldDefinition("number", "string"),)),
           "OrderLine": ObjectTypeDefinition("OrderLine", (
               FieldDefinition("order", "ref", object="Order"),))}

CATALOG = """
kind: catalog
products:
  - {code: KIT, family: Bundle, children: [PC, NET]}
  - {code: PC, family: Computer}
  - {code: NET, family: Net, attributes: [site]}
"""

GOOD = """
kind: fulfillment
name: f
trigger: {type: record, object: Order, on: [update]}
lines: {object: OrderLine}
scenarios:
  - name: all
    when: '=true'
    steps:
      - {name: start, type: background, flow: x.f, scope: plan}
      - {name: finish, type: background, flow: x.f, scope: plan, after: [ship],
         input: {started: '=steps.start.status'}}
      - {name: kit, type: background, flow: x.f, scope: bundle}
      - {name: kit_check, type: background, flow: x.f, scope: bundle, after: [kit],
         input: {kit: '=steps.kit.output.id'}}
      - {name: reserve, type: background, flow: x.f, after: [start],
         input: {started: '=steps.start.output.id'}}
      - {name: ship, type: background, flow: x.f, after: [reserve, kit, site],
         when: '=has(steps.reserve) && steps["reserve"].status == "completed"',
         input: {serial: '=steps.reserve.output.serial', kit: '=steps.kit.output.id',
                 site: '=steps.site.output.id', text: 'steps.reserve', quoted: '="steps.reserve"',
                 in_kit: '=has(steps.kit)'},
         rollback: {type: background, flow: x.f, input: {serial: '=steps.ship.output.serial'}}}
  - name: net
    when: '=line.product.family == "Net"'
    steps:
      - {name: site, type: background, flow: x.f, scope: {group_by: '=line.attributes.site'}}
      - {name: site_check, type: background, flow: x.f, scope: {group_by: '=line.attributes.site'},
         input: {site: '=steps.site.output.id'}}
"""

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _steps(fulfillment: str, lines: list[OrderLine]) -> tuple[dict[str, Any], dict[str, Any]]:
    cat = load_text(CATALOG)[0].definition
    ful = load_text(fulfillment, deployed_objects=OBJECTS)[0].definition
    graph = generate(ful, decompose(cat, lines, {}), {}, "Order", "plan:o", NOW)
    return ({s["name"]: s for s in graph["definition"]["stages"][0]["steps"]},
            {f["name"]: f for f in graph["steps"]})


def test_a_line_step_reads_its_own_lines_bundles_and_groups_steps() -> None:
    steps, facts = _steps(GOOD, [
        OrderLine("kit", "KIT"), OrderLine("pc", "PC", bundle_id="kit"),
        OrderLine("net", "NET", attributes={"site": "PA\"RIS"}, bundle_id="kit"),
        OrderLine("pc2", "PC")])
    # (lines: L1 the kit, L2 its PC, L3 its NET at site PA"RIS, L4 a PC outside any bundle)
    assert steps["ship[L3]"]["input"] == {
        "serial": '=steps["reserve[L3]"].output.serial',
        "kit": '=steps["kit[L1]"].output.id',
        "site": '=steps["site[PA\\"RIS]"].output.id',
        "text": "steps.reserve", "quoted": '="steps.reserve"', "in_kit": "=true",
        "plan": {"scope": "line_item", "instance": "L3", "lines": ["L3"]}}
    # (a run has all its steps from the start: has() of one is known when planned)
    assert steps["ship[L3]"]["when"] == '=true && steps["reserve[L3]"].status == "completed"'
    # its rollback reads its own step; a step reading a plan step reads it as it is
    assert facts["ship[L3]"]["rollback"]["input"] == {"serial": '=steps["ship[L3]"].output.serial'}
    assert steps["reserve[L4]"]["input"]["started"] == "=steps.start.output.id"
    assert steps["finish"]["input"]["started"] == "=steps.start.status"
    # a bundle reads its own bundle's, a group its own group's
    assert steps["kit_check[L1]"]["input"]["kit"] == '=steps["kit[L1]"].output.id'
    assert steps["site_check[PA\"RIS]"]["input"]["site"] == '=steps["site[PA\\"RIS]"].output.id'
    # a line in no bundle, of no site: no step is named kit or site, reading it is missing
    assert steps["ship[L4]"]["input"]["kit"] == "=steps.kit.output.id"
    assert steps["ship[L4]"]["input"]["site"] == "=steps.site.output.id"
    assert steps["ship[L4]"]["input"]["in_kit"] == "=false"
    assert steps["ship[L4]"]["input"]["serial"] == '=steps["reserve[L4]"].output.serial'
    assert steps["ship[L2]"]["input"]["kit"] == '=steps["kit[L1]"].output.id'
    assert steps["ship[L2]"]["input"]["site"] == "=steps.site.output.id"
    for s in steps.values():  # every rewritten expression compiles, and reads what it names
        for v in (s.get("input") or {}).values():
            if isinstance(v, str) and v.startswith("="):
                compile_expression(v)
    seen = {"site[PA\"RIS]": {"output": {"id": 7}}}
    assert evaluate(steps["ship[L3]"]["input"]["site"], {"steps": seen}) == 7


def test_renaming_leaves_strings_and_other_names_alone() -> None:
    names = {"reserve": ("reserve[L1]", True), "kit": (None, False)}
    assert rename_step_reads("=steps.reserves.x + record.steps.reserve + steps.other.y",
                             names) == "=steps.reserves.x + record.steps.reserve + steps.other.y"
    assert rename_step_reads("=steps . reserve . output + steps['reserve'].x", names) == \
        '=steps["reserve[L1]"] . output + steps["reserve[L1]"].x'
    assert rename_step_reads("='a \"steps.reserve\"' + steps.reserve.o", names) == \
        "='a \"steps.reserve\"' + steps[\"reserve[L1]\"].o"
    assert rename_step_reads("=has(steps.kit) || has(steps.kit.output) || steps.kit.x",
                             names) == "=false || has(steps.kit.output) || steps.kit.x"
    assert rename_step_reads("=has( steps.reserve ) && has(steps.reserve.output)", names) == \
        '=true && has(steps["reserve[L1]"].output)'


def _issues(tmp_path: Path, fulfillment: str) -> list[tuple[str, int, str, str]]:
    objects = """
kind: object
name: Order
fields: {number: {type: string}}
---
kind: object
name: OrderLine
fields: {order: {type: ref, object: Order}}
---"""
    path = tmp_path / "f.yaml"
    path.write_text(objects + fulfillment)
    _loaded, issues = check_definitions([path], known_flows=None)
    return [(Path(i.file).name, i.line, i.path, i.message) for i in issues]


def test_good_readings_deploy(tmp_path: Path) -> None:
    assert _issues(tmp_path, GOOD) == []


BAD = """
kind: fulfillment
name: f
trigger: {type: record, object: Order, on: [update]}
lines: {object: OrderLine}
scenarios:
  - name: all
    when: '=true'
    steps:
      - {name: ship, type: background, flow: x.f}
      - name: billing
        type: background
        flow: x.f
        scope: plan
        after: [ship]
        input:
          tracking: '=steps.ship.output.tracking'
      - {name: kit, type: background, flow: x.f, scope: bundle,
         when: '=steps["ship"].status == "completed"'}
      - {name: by_site, type: background, flow: x.f, scope: {group_by: '=line.attributes.site'}}
      - {name: by_city, type: background, flow: x.f, scope: {group_by: '=line.attributes.city'},
         input: {site: '=steps.by_site.output.id'},
         not_before: '=steps.ship.output.date'}
      - {name: wire, type: background, flow: x.f, scope: plan,
         rollback: {type: background, flow: x.f, input: {ok: '=has(steps.by_site)'}}}
"""


def test_a_reading_that_names_several_steps_is_refused_located(tmp_path: Path) -> None:
    issues = _issues(tmp_path, BAD)
    by_path = {p: (f, line, m) for f, line, p, m in issues}
    assert len(issues) == 5, issues
    f, line, msg = by_path["scenarios[0].steps[1].input.tracking"]
    assert (f, line) == ("f.yaml", 25)
    assert msg == ("steps.ship is ambiguous in step 'billing' (scope plan): 'ship' has scope "
                   "line_item, one step per line: ship[L1], ship[L2]..., and an expression "
                   "cannot read a list of a template's steps. Read steps.ship in a step of "
                   "scope line_item, where it is the same line's ship; here, wait for all of "
                   "them with after: [ship]")
    assert "in step 'kit' (scope bundle): 'ship' has scope line_item" in \
        by_path["scenarios[0].steps[2].when"][2]
    assert by_path["scenarios[0].steps[4].input.site"][2].startswith(
        "steps.by_site is ambiguous in step 'by_city': 'by_site' groups its lines by another "
        "group_by (one step per value of its group_by: by_site[<value>]...)")
    assert by_path["scenarios[0].steps[4].not_before"][2] == (
        "not_before is worked out when the plan is made, before any step has run: it reads "
        "line and record, not steps (steps.ship)")
    assert "where it is the line's group's by_site" in \
        by_path["scenarios[0].steps[5].rollback.input.ok"][2]
    with pytest.raises(DefinitionError, match="steps.ship is ambiguous"):
        load_text(BAD, deployed_objects=OBJECTS)
