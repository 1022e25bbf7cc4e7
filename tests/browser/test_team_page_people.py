"""The Team page in a browser: a deactivated agent is marked inactive (not available) and
cannot be edited, a designer is listed apart as someone who cannot take work; once an
administrator reactivates the agent, the supervisor edits their profile again."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Server, login, shot


def test_inactive_people_and_those_who_cannot_work_are_apart_from_the_agents(
        server: Server, new_page: Any) -> None:
    server.cli("users", "add", "ivy", "--role", "agent", "--queue", "tier1")
    server.cli("users", "update", "ivy", "--skill", "lang:pt=4", "--availability", "available")
    server.cli("users", "update", "ivy", "--inactive")

    page = new_page()
    login(page, "olga", next_path="/team")
    agents = page.get_by_role("table", name="Agents")
    expect(agents).to_contain_text("(alice)")
    expect(agents).not_to_contain_text("(ivy)")
    expect(agents).not_to_contain_text("(dana)")
    inactive = page.get_by_role("table", name="Inactive")
    ivy = inactive.get_by_role("row").filter(has_text="(ivy)")
    expect(ivy).to_contain_text("inactive")
    expect(ivy).to_contain_text("lang:pt=4")
    expect(ivy).not_to_contain_text("available")
    expect(page.get_by_role("form", name="Change ivy")).to_have_count(0)
    expect(page.get_by_text("baton users update NAME --active")).to_be_visible()
    no_work = page.get_by_role("table", name="Cannot take work")
    expect(no_work.get_by_role("row").filter(has_text="(dana)")).to_contain_text("designer")
    expect(page.get_by_role("form", name="Change dana")).to_have_count(0)
    # the operator may work items, but is in no queue: apart, still editable
    expect(page.get_by_role("table", name="Not in a queue or group")).to_contain_text("(olga)")
    shot(page, "team-inactive-apart")

    server.cli("users", "update", "ivy", "--active")
    page.reload()
    expect(page.get_by_role("table", name="Inactive").filter(has_text="(ivy)")).to_have_count(0)
    form = page.get_by_role("form", name="Change ivy")
    expect(page.get_by_role("table", name="Agents")).to_contain_text("(ivy)")
    form.get_by_label("Skills of ivy").fill("lang:pt=4, brand:ford=2")
    form.get_by_role("button", name="Save ivy").click()
    page.wait_for_load_state()
    expect(page.get_by_role("status")).to_contain_text("Saved: ivy")
    expect(page.get_by_role("form", name="Change ivy").get_by_label("Skills of ivy")).to_have_value(
        "brand:ford=2, lang:pt=4")
    shot(page, "team-reactivated")

