"""Process pictures in the browser (issue 16 point 3): the Definitions page draws the
orchestration with a count of runs per stage; the run page draws it with the run's state."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Server, login, shot


def test_definition_heat_and_run_diagram(server: Server, new_page: Any) -> None:
    records = [server.create_case(f"Diagram case {i}") for i in range(2)]
    item = server.work_item_for(records[0])  # the workers moved it to its triage step

    page = new_page()
    login(page, "olga", next_path="/definitions/orchestration/case_triage")
    diagram = page.locator("svg.diagram")
    expect(diagram).to_be_visible()
    stage = page.locator("svg.diagram g[data-stage]").filter(has=page.locator("g.dg-heat"))
    expect(stage.first).to_be_visible()
    expect(page.locator("g.dg-heat").first).to_contain_text(re.compile(r"\d+ runs? here"))
    box = diagram.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 300, box
    shot(page, "definition-diagram")

    page.goto(f"/runs/{item['run_id']}")
    live = page.locator("#run-diagram svg.diagram")
    expect(live).to_be_visible()
    step = live.locator(f"g[data-step='{item['step']}']")
    expect(step).to_have_attribute("data-status", "waiting_for_person")
    expect(live.locator("g.dg-current")).to_have_count(1)
    expect(live.locator("g.dg-step.st-completed").first).to_be_visible()
    shot(page, "run-diagram")
