"""A public intake form in the browser (issue 14 item 3): a visitor without an account
opens ``/forms/NAME`` (at phone width too), sees the object type's fields with their
labels and help, gets each mistake next to its field, and once it is right the record
exists with the reference the thanks page shows."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Server, shot

FORM = """
kind: object
name: Feedback
fields:
  subject: {type: string, required: true}
  message: {type: text, required: true}
  rating: {type: choice, choices: [good, fair, poor]}
  email: {type: string}
---
kind: intake_form
name: feedback
object: Feedback
label: Tell us how we did
description: Your feedback goes to the service team.
fields:
  - subject
  - {field: message, label: Your feedback, help: "What went well, what did not."}
  - rating
  - {field: email, label: Your e-mail address (optional)}
rate_limit: 50
thanks: Thank you for your feedback.
"""


def test_a_visitor_sends_the_public_form(server: Server, new_page: Callable[..., Any],
                                         tmp_path: Any) -> None:
    path = tmp_path / "feedback.yaml"
    path.write_text(FORM)
    server.cli("deploy", str(path))
    for width in (1280, 390):
        page = new_page(width=width)
        page.goto("/forms/feedback")
        expect(page.get_by_role("heading", name="Tell us how we did")).to_be_visible()
        expect(page.get_by_text("What went well, what did not.")).to_be_visible()
        # nothing filled in: each required field says so, next to it
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_text("Subject is required")).to_be_visible()
        expect(page.get_by_text("Your feedback is required")).to_be_visible()
        page.get_by_label("Subject").fill(f"Fast install ({width} px)")
        page.get_by_label("Your feedback").fill("The installer came on time.\nThanks!")
        page.get_by_label("good").check()
        shot(page, f"intake-form-{width}")
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_role("status")).to_contain_text("Thank you for your feedback.")
        ref = page.locator(".ref").inner_text()
        assert re.fullmatch(r"rec_\w+", ref), ref
        record = server.cli_json("records", "show", ref)
        assert record["subject"] == f"Fast install ({width} px)", record
        assert record["message"] == "The installer came on time.\nThanks!"
        assert record["rating"] == "good"
        # the page fits a phone: no sideways scrolling
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
