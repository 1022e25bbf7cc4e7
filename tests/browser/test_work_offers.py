"""Routing's offer mode in the Work Guide: the offeree sees the offer on the item, accepts
it with the button, and the form opens."""

from __future__ import annotations

import json
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORDS, Server, eventually, login, shot
from tests.browser.test_team import _item

OFFER_YAML = """\
kind: routing
name: ui_offers
from: {queue: offer_desk}
offer: {timeout: 1h}
---
kind: orchestration
name: ui_offered
trigger: {type: autolaunched}
stages:
  - name: s
    steps:
      - {name: answer, type: interactive, assign: {routing: ui_offers},
         form: [{name: notes, type: text}]}
"""


def test_the_offeree_accepts_an_offer_in_the_work_guide(server: Server, new_page: Any) -> None:
    path = server.project / "definitions" / "ui_offered.yaml"
    path.write_text(OFFER_YAML)
    server.cli("deploy", str(path))
    server.cli("users", "add", "otto", "--role", "agent", "--queue", "offer_desk",
               "--password-stdin", input=PASSWORDS["otto"] + "\n")
    run_id = str(json.loads(server.cli("start", "ui_offered", "--json"))["id"])
    offered = eventually(lambda: _item(server, run_id), timeout=90,
                         what="the offered item of the run")
    assert offered["routing_status"] == "offered" and offered["assignee"] == "otto"

    page = new_page()
    login(page, "otto", next_path=f"/work/{offered['id']}")
    offer = page.get_by_role("group", name="Offer")
    expect(offer).to_contain_text("This item is offered to you until")
    expect(page.get_by_role("button", name="Complete")).to_have_count(0)
    shot(page, "work-offer")
    offer.get_by_role("button", name="Accept").click()
    page.wait_for_load_state()
    expect(page.get_by_role("button", name="Complete")).to_be_visible()
    expect(page.get_by_role("group", name="Offer")).to_have_count(0)
    item = _item(server, offered["run_id"])
    assert item is not None and item["routing_status"] == "routed"
