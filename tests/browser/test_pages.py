"""The operator's other pages: records with timelines, definitions, fallout."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Server, login, shot


def test_records_definitions_and_fallout_pages(server: Server, new_page: Any) -> None:
    record_id = server.create_case("Panel output dropped by half")
    page = new_page()
    login(page, "olga", next_path="/records")
    page.get_by_label("Object type").select_option("Case")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"type=Case"))
    records = page.get_by_role("table", name="Records")
    records.get_by_role("link", name=record_id).click()
    expect(page.get_by_role("heading", name=f"Case {record_id}")).to_be_visible()
    expect(page.get_by_role("table", name="Fields")).to_contain_text("Panel output dropped")
    expect(page.get_by_role("heading", name="Timeline")).to_be_visible()
    expect(page.locator("table.timeline")).to_contain_text("record created")
    page.get_by_role("link", name="Records", exact=True).first.click()
    shot(page, "records")
    page.goto(f"/records/{record_id}")
    shot(page, "record")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Definitions").click()
    definitions = page.get_by_role("table", name="Definitions")
    expect(definitions).to_contain_text("case_triage")
    shot(page, "definitions")
    definitions.get_by_role("link", name="case_triage").click()
    expect(page.get_by_role("status")).to_contain_text("Valid: no problems found")
    expect(page.locator("pre.yaml")).to_contain_text("kind: orchestration")
    expect(page.get_by_role("button", name=re.compile("Activate|Deactivate"))).to_have_count(0)
    page.get_by_role("button", name="Show diff").click()
    expect(page.get_by_text("The two versions are identical.")).to_be_visible()
    shot(page, "definition")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Fallout").click()
    expect(page.get_by_role("heading", name="Fallout")).to_be_visible()
    expect(page.get_by_text("No steps in fallout.")).to_be_visible()
    shot(page, "fallout")


def test_designer_deactivates_and_activates_an_orchestration(server: Server,
                                                             new_page: Any) -> None:
    page = new_page()
    login(page, "dana")
    expect(page).to_have_url(re.compile(r"/runs$"))  # designers: no Work Guide
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Fallout")).to_have_count(0)
    page.goto("/definitions/orchestration/case_triage")
    page.get_by_role("button", name="Deactivate case_triage").click()
    expect(page.get_by_role("status").filter(has_text="No version is active")).to_be_visible()
    shot(page, "definition-deactivated")
    page.get_by_role("button", name="Activate v1").click()
    expect(page.get_by_role("table", name="Versions")).to_contain_text("active")
    expect(page.get_by_role("button", name="Deactivate case_triage")).to_be_visible()
