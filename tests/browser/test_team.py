"""The Team page: a supervisor (the operator role) sets an agent available, and the item
waiting for routing in the agent's queue is assigned to them at once."""

from __future__ import annotations

import json
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Server, eventually, login, shot

ROUTED_YAML = """\
kind: routing
name: ui_desk
from: {queue: desk}
required_skills: [lang:pt]
---
kind: orchestration
name: ui_routed
trigger: {type: autolaunched}
stages:
  - name: s
    steps:
      - {name: answer, type: interactive, assign: {routing: ui_desk},
         form: [{name: notes, type: text}]}
"""


def _item(server: Server, run_id: str) -> dict[str, Any] | None:
    from baton.runtime.engine import Engine

    engine = Engine(server.db, migrate=False)
    try:
        items = engine.list_work(run_id=run_id, statuses=["open", "claimed"])
        return items[0] if items else None
    finally:
        engine.close()


def test_a_supervisor_sets_an_agent_available_and_the_waiting_item_is_assigned(
        server: Server, new_page: Any) -> None:
    path = server.project / "definitions" / "ui_routed.yaml"
    path.write_text(ROUTED_YAML)
    server.cli("deploy", str(path))
    server.cli("users", "add", "rita", "--role", "agent", "--queue", "desk")
    server.cli("users", "update", "rita", "--skill", "lang:pt=4", "--capacity", "2",
               "--availability", "offline")
    run_id = str(json.loads(server.cli("start", "ui_routed", "--json"))["id"])
    waiting = eventually(lambda: _item(server, run_id), timeout=90,
                         what="the routed item of the run")
    assert waiting["routing_status"] == "waiting" and waiting["assignee"] == "desk"

    page = new_page()
    login(page, "olga", next_path="/team")
    expect(page.get_by_role("heading", name="Team")).to_be_visible()
    expect(page.get_by_role("table", name="Queues")).to_contain_text("queue:desk")
    row = page.locator("#person-rita")
    expect(row).to_contain_text("0 / 2")
    shot(page, "team-before")
    form = page.get_by_role("form", name="Change rita")
    form.get_by_label("Availability of rita").select_option("available")
    form.get_by_role("button", name="Save rita").click()
    page.wait_for_load_state()
    expect(page.get_by_role("status")).to_contain_text("Saved: rita")
    expect(page.locator("#person-rita")).to_contain_text("1 / 2")
    shot(page, "team-after")

    item = _item(server, run_id)
    assert item is not None and item["assignee"] == "rita" and item["routing_status"] == "routed"


def test_an_agent_cannot_open_the_team_page(server: Server, new_page: Any) -> None:
    page = new_page()
    login(page, "alice", next_path="/work")
    response = page.goto("/team")
    assert response is not None and response.status == 403
