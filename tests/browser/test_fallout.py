"""The Fallout page: an operator skips one failed step and completes another by hand."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Server, eventually, login, shot


def _start(server: Server) -> str:
    run = json.loads(server.cli("start", "fragile_sync", "--json"))
    return str(run["id"])


def test_operator_resolves_fallout_from_the_page(server: Server, new_page: Any) -> None:
    skipped_run, completed_run = _start(server), _start(server)
    page = new_page()
    login(page, "olga", next_path="/fallout")

    def both_listed() -> bool:
        page.goto("/fallout")
        return page.locator("section.fallout").count() >= 2
    eventually(both_listed, timeout=90, what="both runs' push_to_crm in fallout")
    expect(page.locator("section.fallout").first).to_contain_text("CRM answered 503")
    shot(page, "fallout-entries")

    def resolve(run_id: str, action: str, reason: str, output: str = "") -> None:
        form = page.get_by_role("form", name=f"Resolve push_to_crm of {run_id}")
        form.get_by_role("radio", name=action).check()
        form.get_by_label(re.compile("^Reason")).fill(reason)
        if output:
            form.get_by_label(re.compile("^Output")).fill(output)
        form.get_by_role("button", name="Apply").click()
        page.wait_for_load_state()

    # A reason is required: nothing happens without one.
    resolve(skipped_run, "skip", "")
    expect(page.get_by_role("alert").first).to_contain_text("Reason")
    expect(page.get_by_role("form", name=f"Resolve push_to_crm of {skipped_run}")).to_be_visible()

    resolve(skipped_run, "skip", "CRM sync done by hand in the CRM itself")
    expect(page.get_by_role("status")).to_contain_text("Done")
    resolve(completed_run, "complete", "pushed with the CRM's import tool",
            '{"crm_id": "C-1001"}')
    expect(page.get_by_role("status")).to_contain_text("Done")
    shot(page, "fallout-resolved")

    # Both runs go on to the next step and complete; the Monitor shows how.
    for run_id, status in ((skipped_run, "skipped"), (completed_run, "completed")):
        def finished(run_id: str = run_id) -> bool:
            page.goto(f"/runs/{run_id}")
            return "completed" in (page.locator("dl").first.text_content() or "")
        eventually(finished, timeout=90, what=f"run {run_id} to complete")
        step = page.get_by_role("row", name=re.compile("push_to_crm"))
        expect(step.locator(f".st-{status}")).to_have_count(1)
        expect(page.get_by_role("row", name=re.compile("confirm")).locator(".st-completed")).to_have_count(1)
    shot(page, "run-after-fallout")
    page.goto("/fallout")
    expect(page.get_by_text("No steps in fallout.")).to_be_visible()
