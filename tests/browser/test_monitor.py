"""The Monitor's runs list at 1280 px: the record's title, the duration, a marker (icon and
words) on a run with a step in fallout, and the "Needs attention" chip that keeps only such
runs; the run's header says what needs attention."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Server, eventually, login, shot


def test_monitor_marks_runs_that_need_attention_and_filters_them(server: Server,
                                                                 new_page: Any) -> None:
    stuck = str(json.loads(server.cli("start", "fragile_sync", "--json"))["id"])
    record_id = server.create_case("Monitor: inverter shows E21")
    page = new_page()
    login(page, "olga", next_path="/runs")
    expect(page).to_have_url(re.compile(r"/runs$"))

    def marked() -> bool:
        page.goto("/runs")
        return page.locator(f"#run-{stuck} .marker-fallout").count() == 1
    eventually(marked, timeout=90, what=f"run {stuck} marked as in fallout")
    runs = page.get_by_role("table", name="Runs")
    stuck_row = runs.locator(f"#run-{stuck}")
    expect(stuck_row).to_contain_text("Step in fallout")  # words, not colour alone
    expect(stuck_row.locator(".marker-fallout [aria-hidden=true]")).to_have_text("⚠")
    expect(stuck_row).to_contain_text("fragile_sync")
    expect(stuck_row).to_contain_text("in progress")
    expect(stuck_row.locator("td.duration")).to_contain_text(re.compile(r"\d"))
    case_row = runs.get_by_role("row", name=re.compile("Monitor: inverter shows E21"))
    expect(case_row).to_have_count(1)
    expect(case_row.get_by_role("link", name="Monitor: inverter shows E21")).to_have_attribute(
        "href", f"/records/{record_id}")
    expect(case_row.locator(".marker")).to_have_count(0)
    shot(page, "monitor-markers")

    page.get_by_role("link", name=re.compile("Needs attention")).click()
    expect(page).to_have_url(re.compile(r"/runs\?attention=true$"))
    chip = page.get_by_role("link", name=re.compile("Needs attention"))
    expect(chip).to_have_attribute("aria-current", "true")
    runs = page.get_by_role("table", name="Runs")
    expect(runs.locator(f"#run-{stuck}")).to_be_visible()
    expect(runs.get_by_role("row", name=re.compile("Monitor: inverter shows E21"))).to_have_count(0)
    # every row the filter shows carries a marker
    rows = runs.locator("tbody tr")
    expect(rows.first).to_be_visible()
    assert rows.count() == runs.locator("tbody tr.needs-attention").count()
    shot(page, "monitor-needs-attention")

    # the run's header says why it needs attention
    runs.get_by_role("link", name=stuck).click()
    expect(page.locator(".run-status")).to_contain_text(
        re.compile(r"in progress\s*— 1 step in fallout"))
    shot(page, "monitor-run-in-fallout")

    # the chip again: every run
    page.goto("/runs?attention=true")
    page.get_by_role("link", name=re.compile("Needs attention")).click()
    expect(page).to_have_url(re.compile(r"/runs$"))
    expect(page.get_by_role("row", name=re.compile("Monitor: inverter shows E21"))).to_have_count(1)

    # leave no fallout behind for the other tests of this server
    server.cli("runs", "cancel", stuck, "--reason", "test done")
