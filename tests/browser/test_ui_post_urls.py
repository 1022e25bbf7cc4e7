"""A refused form leaves its POST's URL in the address bar (the page is drawn again in the
POST's answer, with what was typed and the errors next to the fields): opening that URL
again (the address bar, history, a bookmark) is a GET, which goes to the form's page, never
a bare 405; signed out, it goes to the login page as every page does, and back after."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import expect

from baton.web.ui import PAGE_ROUTERS
from baton.web.ui.get_twins import twin_targets
from tests.browser.conftest import Server, login, shot


def _get(page: Any, url: str) -> tuple[int, str]:
    """GET ``url`` as the address bar does: (the status the browser ends on, where)."""
    response = page.goto(url)
    assert response is not None, url
    here = urlsplit(page.url)
    return response.status, here.path + (f"?{here.query}" if here.query else "")


def _post_only_urls(values: dict[str, str]) -> dict[str, str]:
    """Every POST-only page URL (its route's parameters filled from ``values``) -> the path
    of the page its GET goes to."""
    def fill(path: str) -> str:
        return re.sub(r"{(\w+)}", lambda m: quote(values[m[1]], safe=""), path)
    return {fill(path): fill(target) for path, target in twin_targets(PAGE_ROUTERS).items()}


@pytest.fixture(scope="module")
def item(server: Server) -> dict[str, Any]:
    """One case's triage item, shared by the tests here: none of them changes it or its run
    (a refused cancel, a refused reassign, GETs), as each of them checks."""
    return server.work_item_for(server.create_case("Post URLs: refused forms"))


def test_a_refused_run_action_opened_again_is_the_run_page(
        server: Server, new_page: Callable[..., Any], item: dict[str, Any]) -> None:
    run_id = str(item["run_id"])
    page = new_page(width=375, height=800)
    login(page, "olga", next_path=f"/runs/{run_id}")
    form = page.get_by_role("form", name="Cancel run")
    form.get_by_label(re.compile("^Reason to cancel")).fill("   ")
    form.get_by_role("button", name="Cancel run").click()  # a blank reason: refused
    page.wait_for_load_state()
    expect(page).to_have_url(re.compile(f"/runs/{run_id}/cancel$"))
    # the errors next to the form, with what was typed
    expect(form.get_by_role("alert")).to_contain_text("a reason is required")
    expect(form.get_by_label(re.compile("^Reason to cancel"))).to_have_value("   ")
    assert page.evaluate("document.documentElement.scrollWidth") <= 376
    shot(page, "post-url-refused-cancel")

    # Reload re-sends the POST (Chromium asks first): refused again, not a 405
    with page.expect_navigation() as nav:
        page.reload()
    assert nav.value is not None and nav.value.status == 422, nav.value
    # ... and the address bar (history, a bookmark) asks it with GET: the run's page
    assert _get(page, page.url) == (200, f"/runs/{run_id}")
    expect(page.get_by_role("form", name="Cancel run")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 376
    assert server.cli_json("runs", "show", run_id)["status"] == "in_progress"  # (only a GET)


def test_a_refused_reassign_opened_again_is_the_item_page(
        server: Server, new_page: Callable[..., Any], item: dict[str, Any]) -> None:
    item_id = str(item["id"])
    page = new_page()
    login(page, "olga", next_path=f"/work/{item_id}")
    page.get_by_label("Reassign to").fill("user:nobody-here")
    page.get_by_role("button", name="Reassign").click()
    page.wait_for_load_state()
    expect(page).to_have_url(re.compile(f"/work/{item_id}/reassign$"))
    expect(page.get_by_role("alert")).to_contain_text("there is no user 'nobody-here'")
    expect(page.get_by_label("Reassign to")).to_have_value("user:nobody-here")
    assert _get(page, page.url) == (200, f"/work/{item_id}")
    expect(page.get_by_label("Reassign to")).to_have_value("")


def test_every_post_only_url_answers_get_with_its_page_or_the_login(
        server: Server, new_page: Callable[..., Any], item: dict[str, Any]) -> None:
    urls = _post_only_urls({"run_id": str(item["run_id"]), "item_id": str(item["id"]),
                            "step": "triage", "kind": "orchestration", "name": "case_triage"})
    assert f"/runs/{item['run_id']}/steps/triage/resolve" in urls and "/work/next" in urls

    page = new_page()
    for url in urls:  # signed out: the login page, coming back to this URL
        assert _get(page, url) == (200, "/login?next=" + quote(url, safe="")), url
        expect(page.get_by_label("User name")).to_be_visible()
    url = f"/runs/{item['run_id']}/cancel"
    page.goto(url)
    login(page, "olga", go=False)
    expect(page).to_have_url(re.compile(f"/runs/{item['run_id']}$"))

    # (signed in by that login)
    for url, target in urls.items():  # signed in: the page the form is on
        if url == "/logout":
            continue
        assert _get(page, url) == (200, target), url
    status, where = _get(page, "/logout")  # the start page; still signed in
    assert status == 200 and where != "/" and not where.startswith("/login"), where
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
