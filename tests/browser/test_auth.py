"""Logging in and out, roles on pages, and CSRF protection of session-cookie forms."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import PASSWORDS, Server, login, shot


def test_wrong_password_shows_an_error(server: Server, new_page: Any) -> None:
    page = new_page()
    page.goto("/login")
    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill("not-" + PASSWORDS["alice"])
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("Wrong user name or password")
    expect(page.get_by_label("User name")).to_have_value("alice")
    shot(page, "login-error")
    page.goto("/work")
    expect(page).to_have_url(re.compile(r"/login\?next="))  # still not logged in


def test_login_goes_back_to_the_page_asked_for_but_never_off_site(server: Server,
                                                                   new_page: Any) -> None:
    page = new_page()
    page.goto("/runs?status=completed")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fruns%3Fstatus%3Dcompleted$"))
    login(page, "olga", go=False)
    expect(page).to_have_url(re.compile(r"/runs\?status=completed$"))

    other = new_page()
    login(other, "olga", next_path="//evil.example/steal")
    expect(other).to_have_url(re.compile(rf"^{re.escape(server.url)}/work$"))


def test_agent_gets_403_on_the_monitor(server: Server, new_page: Any) -> None:
    page = new_page()
    login(page, "bob")
    response = page.goto("/runs")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="403 Forbidden")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("runs:read")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()  # inside the layout
    shot(page, "forbidden")


def test_logout_ends_the_session(server: Server, new_page: Any) -> None:
    page = new_page()
    login(page, "bob", next_path="/work")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("status")).to_contain_text("You are logged out")
    shot(page, "logged-out")
    page.goto("/work")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fwork$"))


def test_form_post_without_csrf_token_is_refused(server: Server, new_page: Any) -> None:
    page = new_page()
    login(page, "alice", next_path="/work")
    page.locator('form[action="/logout"] input[name="csrf_token"]').evaluate("e => e.remove()")
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="403 CSRF token missing or wrong")).to_be_visible()
    shot(page, "csrf-refused")
    page.goto("/work")  # the session was not ended
    expect(page.get_by_role("heading", name="Work Guide")).to_be_visible()
