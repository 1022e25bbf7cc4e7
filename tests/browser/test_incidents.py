"""Incidents on the Fallout page: an operator dismisses one and retries another after the
record was fixed (the retry starts the run the failed trigger did not)."""

from __future__ import annotations

import json
import re
import textwrap
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Server, login, shot
from tests.costly import GADGETS


def test_operator_dismisses_and_retries_incidents_from_the_fallout_page(
        server: Server, new_page: Any) -> None:
    (server.project / "definitions" / "gadgets.yaml").write_text(textwrap.dedent(GADGETS))
    server.cli("deploy")
    kept, fixed = (server.cli_json("records", "create", "Gadget", "--data",
                                   json.dumps({"label": label}))["id"] for label in ("g1", "g2"))
    incidents = {i["record_id"]: i["id"] for i in server.cli_json("incidents", "list")}
    page = new_page()
    login(page, "olga", next_path="/fallout")
    page.goto("/fallout")
    for record_id in (kept, fixed):
        form = page.get_by_role("form", name=f"Act on incident {incidents[record_id]}")
        expect(form).to_be_visible()
    expect(page.locator("section.incident").first).to_contain_text("too costly")
    shot(page, "incidents-listed")

    def act(record_id: str, action: str, reason: str) -> None:
        form = page.get_by_role("form", name=f"Act on incident {incidents[record_id]}")
        form.get_by_role("radio", name=action).check()
        form.get_by_label(re.compile("^Reason")).fill(reason)
        form.get_by_role("button", name="Apply").click()
        page.wait_for_load_state()

    act(kept, "dismiss", "")  # a reason is required
    expect(page.get_by_role("alert").first).to_contain_text("Reason")
    act(kept, "dismiss", "a test gadget from the workshop")
    expect(page.get_by_role("status")).to_contain_text("incident dismiss")

    server.cli("records", "update", fixed, "--data", '{"broken": false}')
    act(fixed, "retry", "broken flag cleared by hand")
    expect(page.get_by_role("status")).to_contain_text("incident retry")
    expect(page.get_by_text("No open incidents.")).to_be_visible()
    shot(page, "incidents-resolved")
    (run,) = server.cli_json("runs", "list", "--record", fixed)
    assert run["orchestration"] == "gadget_check"
    page.goto(f"/records/{fixed}")
    expect(page.get_by_role("row", name=re.compile("incident retried.*started, reason: broken flag"))).to_be_visible()
