"""Reloads in the browser (brief G), against the real ``baton serve``: reloading a public
form's thanks page files nothing again, and reloading "What happened next" after
completing a work item shows it again, not a "409 Conflict"."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Server, login, shot

FORM = """
kind: object
name: CallbackRequest
fields:
  subject: {type: string, required: true}
  phone: {type: string, required: true}
---
kind: intake_form
name: call_me
object: CallbackRequest
label: Ask for a call back
fields: [subject, {field: phone, label: Your phone number}]
rate_limit: 2
thanks: We will call you back.
"""


def _records(server: Server, subject: str) -> list[dict[str, Any]]:
    with server.command_engine() as engine:
        return [r for r in engine.list_records("CallbackRequest", limit=500)
                if r["subject"] == subject]


def test_reloading_the_thanks_page_files_nothing_again(
        server: Server, new_page: Callable[..., Any], tmp_path: Any) -> None:
    path = tmp_path / "call_me.yaml"
    path.write_text(FORM)
    server.cli("deploy", str(path))
    page = new_page()
    page.goto("/forms/call_me")
    # two typos first: more than the form's rate (2 a minute), and not held against it
    for _ in range(2):
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_text("Subject is required")).to_be_visible()
    page.get_by_label("Subject").fill("Reload me")
    page.get_by_label("Your phone number").fill("+43 1 234 5678")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_role("status")).to_contain_text("We will call you back.")
    expect(page).to_have_url(re.compile(r"/forms/call_me\?sent=rec_\w+&check="))
    ref = page.locator(".ref").inner_text()
    for _ in range(2):
        page.reload()
        expect(page.get_by_role("status")).to_contain_text("We will call you back.")
        expect(page.locator(".ref")).to_have_text(ref)
    shot(page, "intake-form-thanks-reloaded")
    (record,) = _records(server, "Reload me")
    assert record["id"] == ref

    # the thanks address in another browser shows no reference
    other = new_page()
    other.goto(page.url)
    expect(other.get_by_role("heading", name="Ask for a call back")).to_be_visible()
    expect(other.locator(".ref")).to_have_count(0)
    assert ref not in other.content()


def test_reloading_what_happened_next_shows_it_again(
        server: Server, new_page: Callable[..., Any]) -> None:
    record_id = server.create_case("Reload after completing")
    item_id = server.work_item_for(record_id)["id"]
    alice = new_page()
    login(alice, "alice", next_path=f"/work/{item_id}")
    expect(alice).to_have_url(re.compile(f"/work/{item_id}$"))
    alice.get_by_label("close").check()
    alice.get_by_role("button", name="Complete").click()
    expect(alice.get_by_role("heading", name="What happened next")).to_be_visible()
    expect(alice).to_have_url(re.compile(f"/work/{item_id}\\?done=completed$"))
    expect(alice.locator(".decision")).to_contain_text("go to close")
    for _ in range(2):
        alice.reload()
        expect(alice.get_by_role("heading", name="What happened next")).to_be_visible()
        expect(alice.get_by_role("status")).to_contain_text(f"({item_id}) was submitted")
        expect(alice.locator(".decision")).to_contain_text("go to close")
        expect(alice.get_by_text("Conflict")).to_have_count(0)
    shot(alice, "work-done-reloaded")
