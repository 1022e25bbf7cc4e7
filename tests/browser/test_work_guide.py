"""An agent works a triage item in the Work Guide; the operator sees the run move on."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Server, login, shot


def test_agent_claims_and_completes_triage_and_monitor_shows_next_stage(
        server: Server, new_page: Any) -> None:
    record_id = server.create_case("Inverter shows error 42 after the storm")
    item = server.work_item_for(record_id)
    item_id = item["id"]

    alice = new_page()
    alice.goto("/work")
    expect(alice).to_have_url(re.compile(r"/login\?next=%2Fwork$"))
    shot(alice, "login")
    login(alice, "alice", go=False)  # (on the login page it was sent to)
    expect(alice).to_have_url(re.compile(r"/work$"))
    row = alice.locator(f"#item-{item_id}")
    expect(row).to_contain_text("queue: tier1")
    expect(row).to_contain_text("on track")  # the step's SLA
    nav = alice.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Work Guide")).to_be_visible()
    expect(nav.get_by_role("link", name="Monitor")).to_have_count(0)  # agents: work only
    alice.get_by_role("link", name="priority").click()
    expect(alice).to_have_url(re.compile(r"order=priority"))
    shot(alice, "work-guide")

    row = alice.locator(f"#item-{item_id}")
    row.get_by_role("button", name=re.compile("Claim")).click()  # htmx swaps the row
    expect(row).to_contain_text("claimed")
    expect(row).to_contain_text("by alice")
    shot(alice, "work-guide-claimed")

    row.get_by_role("link", name=re.compile("Open")).click()
    expect(alice).to_have_url(re.compile(f"/work/{item_id}$"))
    expect(alice.get_by_role("heading", name="Instructions")).to_be_visible()
    expect(alice.get_by_role("table", name="Record details")).to_contain_text(
        "Inverter shows error 42")
    shot(alice, "work-item")

    # Missing the required resolution: the field's error shows, the notes are kept.
    alice.get_by_label("Notes").fill("Customer reset the inverter <b>twice</b>")
    alice.get_by_role("button", name="Complete").click()
    expect(alice.locator("#f-resolution-err")).to_have_text("Resolution is required")
    expect(alice.get_by_label("Notes")).to_have_value("Customer reset the inverter <b>twice</b>")
    shot(alice, "work-item-error")

    alice.get_by_label("close").check()
    alice.get_by_role("button", name="Complete").click()
    expect(alice.get_by_role("heading", name="What happened next")).to_be_visible()
    expect(alice.locator(".decision")).to_contain_text("go to close")
    # (a page of its own, read after the POST: the server's workers may have ended the
    # run by then; the steps shown are then those of the stage the decision went to)
    expect(alice.locator(".run-now")).to_contain_text(re.compile(r"stage close|completed"))
    expect(alice.get_by_role("table", name=re.compile(
        r"Steps of (the current stage|stage close)"))).to_contain_text("close_case")
    shot(alice, "work-done")

    # The operator's Monitor: the run is in stage close, or already completed.
    olga = new_page()
    login(olga, "olga")
    expect(olga).to_have_url(re.compile(r"/work$"))  # operators may work too: first page
    olga.get_by_role("navigation", name="Main").get_by_role("link", name="Monitor").click()
    olga.get_by_label("Record").fill(record_id)
    olga.get_by_role("button", name="Filter").click()
    runs = olga.get_by_role("table", name="Runs")
    expect(runs.get_by_role("row")).to_have_count(2)  # header + this record's run
    expect(runs).to_contain_text(re.compile(r"close|completed"))
    shot(olga, "monitor")

    runs.get_by_role("link", name=re.compile("^run_")).click()
    triage = olga.locator('tr.step[data-step="triage"]')
    expect(triage).to_have_class(re.compile(r"\bst-completed\b"))
    expect(triage).to_contain_text("completed")  # a text label, not color alone
    # The page polls while the run is in progress; the close stage finishes on its own.
    expect(olga.locator("#run-live")).to_have_attribute("data-run-status", "completed",
                                                        timeout=60_000)
    for step in ("classify", "find_agent", "close_case", "send_survey"):
        expect(olga.locator(f'tr.step[data-step="{step}"]')).to_have_class(
            re.compile(r"\bst-completed\b"))
    expect(olga.locator('li.stage[data-stage="escalate"]')).to_have_class(
        re.compile(r"\bst-not-started\b"))
    expect(olga.locator('tr.step[data-step="raise_level"]')).to_contain_text("not started")
    expect(olga.locator(".decisions")).to_contain_text("triage")
    expect(olga.get_by_role("heading", name="Record timeline")).to_be_visible()
    expect(olga.locator("#run-live")).not_to_have_attribute("hx-trigger", re.compile("every"))
    shot(olga, "run")


def test_user_assigned_item_is_invisible_to_another_agent(server: Server, new_page: Any) -> None:
    record_id = server.create_case("Billing question about invoice 7731")
    item_id = server.work_item_for(record_id)["id"]
    server.cli("work", "reassign", item_id, "--to", "user:alice")

    bob = new_page()
    login(bob, "bob", next_path="/work")
    expect(bob.get_by_role("heading", name="Work Guide")).to_be_visible()
    expect(bob.locator(f"#item-{item_id}")).to_have_count(0)
    response = bob.goto(f"/work/{item_id}")
    assert response is not None and response.status == 404
    expect(bob.get_by_role("heading", name="404 Not found")).to_be_visible()
    expect(bob.get_by_role("alert")).not_to_contain_text("Billing question")
    shot(bob, "work-item-404")

    alice = new_page()
    login(alice, "alice", next_path="/work")
    expect(alice.locator(f"#item-{item_id}")).to_contain_text("user: alice")
