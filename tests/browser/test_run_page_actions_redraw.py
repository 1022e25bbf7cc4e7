"""The run page's operator actions follow the run: its refresh (every 2 s) redraws them when
they change, unless the operator is using one of the shown forms (it holds the focus, or
something typed): then the form stays as it is, with a note that the run has changed, until
it is sent or emptied. Without JavaScript the page shows the actions of when it was drawn,
and a reload the current ones."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Server, login, shot
from tests.procs import eventually

ASK = """
kind: orchestration
name: redraw_actions
trigger: {type: autolaunched}
stages:
  - name: ask
    steps:
      - name: fill
        type: interactive
        assign: {queue: tier1}
        form:
          - {name: count, type: int, required: true}
"""


# The run page's refresh (htmx ``every 2s``: a setTimeout in the page), where a test waits for
# it: its page's clock is installed before it loads (its time flows as usual) and moved past
# the poll.
RUN_POLL_MS = 2_000


@pytest.fixture(scope="module")
def deployed(server: Server, tmp_path_factory: pytest.TempPathFactory) -> None:
    """redraw_actions deployed, once for the tests here (each starts its own run of it)."""
    path = tmp_path_factory.mktemp("redraw") / "redraw_actions.yaml"
    path.write_text(ASK)
    server.cli("deploy", str(path))


def _start(server: Server) -> tuple[str, str]:
    """A run waiting for a person: (its id, its work item's id)."""
    run_id = str(server.cli_json("start", "redraw_actions")["id"])
    from baton.runtime.engine import Engine

    engine = Engine(server.db, migrate=False)
    try:
        item = eventually(lambda: next(iter(engine.list_work(run_id=run_id)), None),
                          timeout=90, what=f"the work item of {run_id}")
    finally:
        engine.close()
    return run_id, str(item["id"])


def _finish(server: Server, item_id: str) -> None:
    """Someone else completes the run's work item: the run completes, cancel no longer
    applies."""
    server.cli("work", "complete", item_id, "--user", "alice", "--data", json.dumps({"count": 1}))


def _polling(page: Any) -> int:
    return int(page.locator("#run-live[hx-trigger]").count())


def test_the_actions_are_redrawn_when_the_run_changes(
        server: Server, new_page: Callable[..., Any], deployed: None) -> None:
    run_id, item_id = _start(server)
    page = new_page(width=375, height=800)
    login(page, "olga", next_path=f"/runs/{run_id}")
    expect(page.get_by_role("button", name="Cancel run")).to_be_visible()
    page.locator("details.run-data > summary").click()  # (a section the reader opened)
    page.evaluate("window.sameDocument = true")
    _finish(server, item_id)
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0, timeout=30_000)
    expect(page.locator("#run-actions [role=status]")).to_have_text(
        "No operator action applies now: the run is completed.")
    expect(page.locator(".actions-changed")).to_have_count(0)
    expect(page.locator(".run-status")).to_contain_text("completed")
    expect(page.locator("details.run-data")).to_have_attribute("open", "")
    assert page.evaluate("window.sameDocument") is True  # redrawn in place, not reloaded
    assert page.evaluate("document.documentElement.scrollWidth") <= 376
    shot(page, "run-actions-redrawn")
    eventually(lambda: _polling(page) == 0, timeout=30, what="the refresh to stop")


def test_a_form_in_use_is_kept_with_the_note_until_it_is_emptied(
        server: Server, new_page: Callable[..., Any], deployed: None) -> None:
    run_id, item_id = _start(server)
    page = new_page(width=375, height=800)
    page.clock.install()  # (refreshes below: made to come)
    login(page, "olga", next_path=f"/runs/{run_id}")
    reason = page.get_by_label(re.compile("^Reason to cancel"))
    reason.fill("the customer withdrew")  # (the focus stays in it)
    _finish(server, item_id)
    note = page.locator(".actions-changed")
    expect(note).to_contain_text("reload it", timeout=30_000)
    expect(reason).to_have_value("the customer withdrew")
    expect(reason).to_be_focused()
    assert page.evaluate("document.documentElement.scrollWidth") <= 376
    shot(page, "run-actions-kept")

    page.locator("h1").click()  # the focus elsewhere: what is typed still keeps the form
    for _ in range(2):
        with page.expect_response(lambda r: "/live?" in r.url):
            page.clock.fast_forward(RUN_POLL_MS)
    page.wait_for_load_state()
    expect(reason).to_have_value("the customer withdrew")
    expect(note).to_be_visible()
    assert _polling(page) == 1, "the run ended, but the page still shows its old actions"

    reason.fill("")  # emptied and left: the next refresh redraws the actions
    page.locator("h1").click()
    page.clock.fast_forward(RUN_POLL_MS)
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0, timeout=30_000)
    expect(note).to_have_count(0)
    eventually(lambda: _polling(page) == 0, timeout=30, what="the refresh to stop")


def test_a_kept_choice_in_a_fallout_form_is_sent_and_refused_next_to_the_page(
        server: Server, new_page: Callable[..., Any]) -> None:
    run_id = str(json.loads(server.cli("start", "fragile_sync", "--json"))["id"])
    page = new_page()
    login(page, "olga", next_path=f"/runs/{run_id}")

    def in_fallout() -> bool:
        page.goto(f"/runs/{run_id}")
        return page.get_by_role("form", name="Resolve step push_to_crm").count() == 1
    eventually(in_fallout, timeout=90, what=f"{run_id}'s push_to_crm in fallout")
    form = page.get_by_role("form", name="Resolve step push_to_crm")
    form.get_by_role("radio", name="skip").check()  # only a choice changed
    page.locator("h1").click()
    server.cli("fallout", "skip", f"{run_id}:push_to_crm", "--reason", "done in the CRM")
    expect(page.locator(".actions-changed")).to_be_visible(timeout=30_000)
    expect(form.get_by_role("radio", name="skip")).to_be_checked()
    expect(page.get_by_role("form", name="Cancel run")).to_be_visible()  # (the old section)

    form.get_by_label(re.compile("^Reason")).fill("skipping it here too")
    form.get_by_role("button", name="Apply to push_to_crm").click()
    page.wait_for_load_state()
    # refused (409): said above the actions, which are those of the run now (redrawn
    # again if it was still finishing: the refusal stays said)
    expect(page.get_by_role("alert")).to_contain_text("push_to_crm:")
    expect(page.get_by_role("form", name="Resolve step push_to_crm")).to_have_count(0)
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0, timeout=30_000)
    expect(page.get_by_role("alert")).to_contain_text("push_to_crm:")


def test_without_javascript_a_reload_shows_the_actions_that_apply(
        server: Server, browser: Any, deployed: None) -> None:
    run_id, item_id = _start(server)
    context = browser.new_context(base_url=server.url, java_script_enabled=False,
                                  viewport={"width": 375, "height": 800})
    try:
        page = context.new_page()
        login(page, "olga", next_path=f"/runs/{run_id}")
        form = page.get_by_role("form", name="Cancel run")
        form.get_by_role("button", name="Cancel run").click()  # no reason: refused
        page.wait_for_load_state()
        expect(form.get_by_role("alert")).to_contain_text("a reason is required")
        _finish(server, item_id)

        def redrawn() -> bool:
            page.goto(f"/runs/{run_id}")
            return "completed" in (page.locator(".run-status").text_content() or "")
        eventually(redrawn, timeout=90, what=f"run {run_id} to complete")
        expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)
        assert page.evaluate("document.documentElement.scrollWidth") <= 376
    finally:
        context.close()
