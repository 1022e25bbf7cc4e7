"""What QA found in the browser (2026-12-04): a form's date-time field is the viewer's own
time (shown and sent back in UTC, its default shown), a field's description is its help
text, a JSON mistake does not hide the form's other mistakes, a run page's live refresh
leaves the sections the reader opened open and says when its operator actions no longer
apply, and the Monitor fits a phone without sideways scrolling."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORDS, Server, login, shot
from tests.procs import eventually

FORMS = """
kind: orchestration
name: ui_forms
trigger: {type: autolaunched}
stages:
  - name: ask
    steps:
      - name: fill
        type: interactive
        assign: {queue: tier1}
        form:
          - {name: call_at, type: datetime, default: '2026-06-01T12:00:00Z',
             description: When the customer wants the call}
          - {name: count, type: int, required: true}
          - {name: extra, type: json}
"""


@pytest.fixture(scope="module")
def deployed(server: Server, tmp_path_factory: pytest.TempPathFactory) -> None:
    """ui_forms deployed, once for the tests here (each starts its own run of it)."""
    path = tmp_path_factory.mktemp("ui_forms") / "ui_forms.yaml"
    path.write_text(FORMS)
    server.cli("deploy", str(path))


def _item(server: Server, run_id: str) -> dict[str, Any]:
    from baton.runtime.engine import Engine

    engine = Engine(server.db, migrate=False)
    try:
        return eventually(lambda: next(iter(engine.list_work(run_id=run_id)), None),
                          timeout=90, what=f"the work item of {run_id}")
    finally:
        engine.close()


def _step_output(server: Server, run_id: str) -> dict[str, Any]:
    from baton.runtime.engine import Engine

    engine = Engine(server.db, migrate=False)
    try:
        def done() -> dict[str, Any] | None:
            step = engine.get_run(run_id).steps["fill"]
            return step.output if step.status.value == "completed" else None
        return eventually(done, timeout=90, what=f"{run_id}'s form step completed")
    finally:
        engine.close()


def test_a_form_in_the_viewers_time_its_help_and_every_mistake_at_once(
        server: Server, browser: Any, deployed: None) -> None:
    run_id = server.cli_json("start", "ui_forms")["id"]
    item = _item(server, run_id)
    context = browser.new_context(base_url=server.url, timezone_id="Europe/Berlin",
                                  viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        login(page, "alice")
        page.goto(f"/work/{item['id']}")
        expect(page.get_by_text("When the customer wants the call")).to_be_visible()
        when = page.get_by_label("Call at")
        expect(when).to_have_value("2026-06-01T14:00")  # 12:00 UTC, in Berlin in June
        expect(page.locator("small.tz")).to_contain_text("Europe/Berlin")

        # the live part of the run page: an opened section stays open across refreshes
        watcher = browser.new_context(base_url=server.url)
        run_page = watcher.new_page()
        # (its clock: moved past the refresh's 2 s rather than waiting them out; its time
        # flows as usual)
        run_page.clock.install()
        login(run_page, "olga", next_path=f"/runs/{run_id}")
        run_page.locator("details.run-data > summary").click()
        expect(run_page.locator("details.run-data")).to_have_attribute("open", "")
        run_page.evaluate("""() => document.addEventListener("htmx:afterSettle", (ev) => {
          if (((ev.detail.xhr || {}).responseURL || "").includes("/live")) {
            window.__settled = true; } })""")
        with run_page.expect_response(lambda r: "/live" in r.url):
            run_page.clock.fast_forward(2_000)  # one refresh (every 2 s) ...
        run_page.wait_for_function("() => window.__settled === true")  # ... settled
        expect(run_page.locator("details.run-data")).to_have_attribute("open", "")
        watcher.close()

        page.get_by_label("Extra").fill("{not json")
        page.get_by_role("button", name="Complete").click()
        # both mistakes at once: the JSON one did not hide the missing count
        expect(page.get_by_text("Extra not valid JSON", exact=False)).to_be_visible()
        expect(page.get_by_text("Count is required", exact=False)).to_be_visible()
        shot(page, "form-every-mistake")
        page.get_by_label("Count").fill("3")
        page.get_by_label("Extra").fill('{"n": 1}')
        page.get_by_label("Call at").fill("2026-06-01T09:30")  # Berlin time
        page.get_by_role("button", name="Complete").click()
        expect(page.get_by_role("status").first).to_be_visible()
        out = _step_output(server, run_id)
        assert out["call_at"] == "2026-06-01T07:30:00Z", out  # sent back in UTC
        assert out["count"] == 3 and out["extra"] == {"n": 1}, out
    finally:
        context.close()


def test_the_run_page_says_when_its_actions_no_longer_apply(
        server: Server, new_page: Callable[..., Any], deployed: None) -> None:
    run_id = server.cli_json("start", "ui_forms")["id"]
    item = _item(server, run_id)
    page = new_page()
    login(page, "olga")
    page.goto(f"/runs/{run_id}")
    expect(page.get_by_role("button", name="Cancel run")).to_be_visible()
    expect(page.locator(".actions-changed")).to_have_count(0)
    page.get_by_label("Reason to cancel").fill("typed meanwhile")  # (kept: see the note)
    server.cli("work", "complete", item["id"], "--user", "alice",
               "--data", json.dumps({"count": 1}))
    expect(page.locator(".actions-changed")).to_contain_text("reload it", timeout=30_000)
    page.get_by_role("link", name="reload it").click()
    expect(page.get_by_role("button", name="Cancel run")).to_have_count(0)


def test_monitor_pages_fit_a_phone(server: Server, new_page: Callable[..., Any],
                                   deployed: None) -> None:
    assert "olga" in PASSWORDS
    run_id = server.cli_json("start", "ui_forms")["id"]
    page = new_page(width=375, height=800)
    login(page, "olga")
    for path in ["/runs", "/fallout", "/definitions", "/records", "/team", f"/runs/{run_id}"]:
        page.goto(path)
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 376, (path, wide)
