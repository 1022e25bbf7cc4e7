"""Creating and editing records on the Records pages (brief "recordsui"), in Chromium
against the session's ``baton serve`` (examples/case_triage, its workers running):

* an operator opens "New Case" from the records list, sends it with the required subject
  missing (said next to the field, what was typed kept), then completes it: the record's
  page says it was created and links the case_triage run its trigger started;
* "Edit" on a record's page: the form filled in; a changed field is saved (only it: the
  timeline's change names it alone), a reload of the page after it posts nothing;
* an edit from a page drawn before someone else's change: not saved, says who changed
  what, keeps what was typed; saved when sent again.

The edited cases come from inside the company (origin Internal): no run is started on
them, so nothing but the test changes them while it edits.
"""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Server, login, shot


def _internal_case(server: Server, subject: str) -> str:
    with server.command_engine() as engine:
        return str(engine.create_record("Case", {"subject": subject, "origin": "Internal"},
                                        actor="cli")["id"])


def _updates(server: Server, record_id: str) -> list[dict[str, Any]]:
    with server.command_engine() as engine:
        return [e for e in engine.timeline(record_id) if e["type"] == "record_updated"]


def test_new_case_refused_then_created_starts_its_run(server: Server, new_page: Any) -> None:
    page = new_page()
    login(page, "olga", next_path="/records")
    page.get_by_role("link", name="New Case").click()
    expect(page.get_by_role("heading", name="New Case")).to_be_visible()
    page.get_by_label("Level").fill("3")
    page.get_by_label("Phone", exact=True).check()
    page.get_by_role("button", name="Create").click()

    expect(page.get_by_role("heading", name="New Case")).to_be_visible()
    subject = page.get_by_label("Subject")
    expect(subject).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-subject-err")).to_contain_text("is required")
    expect(page.get_by_label("Level")).to_have_value("3")  # what was typed, kept
    expect(page.get_by_label("Phone", exact=True)).to_be_checked()
    shot(page, "recordsui-new-case-refused")

    subject.fill("Battery does not charge (from the records page)")
    page.get_by_role("button", name="Create").click()
    saved = page.locator(".record-saved")
    expect(saved).to_contain_text("Created Case rec_")
    expect(page).to_have_url(re.compile(r"/records/rec_\w+\?done=created&v=1&runs=run_\w+$"))
    record_id = re.search(r"/records/(rec_\w+)", page.url)[1]  # type: ignore[index]
    with server.command_engine() as engine:
        record = engine.get_record(record_id)
        (run,) = engine.list_runs(record_id=record_id)
    assert record["subject"] == "Battery does not charge (from the records page)"
    assert (record["origin"], record["level"]) == ("Phone", 3)
    assert run.orchestration == "case_triage"
    expect(saved.get_by_role("link", name=run.id)).to_be_visible()
    shot(page, "recordsui-new-case-created")
    saved.get_by_role("link", name=run.id).click()
    expect(page).to_have_url(re.compile(f"/runs/{run.id}$"))
    expect(page.get_by_role("heading", name=f"Run {run.id}")).to_be_visible()


def test_edit_saves_the_changed_field_and_a_reload_posts_nothing(server: Server,
                                                                 new_page: Any) -> None:
    record_id = _internal_case(server, "Mounting bracket missing")
    page = new_page()
    login(page, "olga", next_path=f"/records/{record_id}")
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name=f"Edit Case {record_id}")).to_be_visible()
    expect(page.get_by_label("Subject")).to_have_value("Mounting bracket missing")
    expect(page.get_by_label("Internal", exact=True)).to_be_checked()
    page.get_by_label("Triaged", exact=True).check()
    page.get_by_role("button", name="Save").click()

    expect(page.locator(".record-saved")).to_contain_text("Saved: version 2.")
    expect(page.locator(".record-saved")).to_contain_text("It started no run.")
    expect(page.get_by_role("table", name="Fields")).to_contain_text("Triaged")
    (update,) = _updates(server, record_id)
    assert update["actor"] == "olga" and update["data"]["changes"] == {
        "status": ["New", "Triaged"]}
    page.reload()  # (Post/Redirect/Get: the page, not the form sent again)
    expect(page.locator(".record-saved")).to_contain_text("Saved: version 2.")
    assert len(_updates(server, record_id)) == 1
    shot(page, "recordsui-edit-saved")


def test_a_stale_edit_says_who_changed_it_and_keeps_what_was_typed(server: Server,
                                                                   new_page: Any) -> None:
    record_id = _internal_case(server, "Invoice 88 charged twice")
    mine, theirs = new_page(), new_page()
    login(mine, "olga", next_path=f"/records/{record_id}/edit")
    login(theirs, "olga", next_path=f"/records/{record_id}/edit")
    expect(mine.get_by_label("Subject")).to_have_value("Invoice 88 charged twice")

    theirs.get_by_label("Priority").fill("3")
    theirs.get_by_label("Subject").fill("Invoice 88 charged twice (refund sent)")
    theirs.get_by_role("button", name="Save").click()
    expect(theirs.locator(".record-saved")).to_contain_text("Saved: version 2.")

    mine.get_by_label("Agent").fill("bob")
    mine.get_by_label("Subject").fill("Invoice 88: charged twice in May")
    mine.get_by_role("button", name="Save").click()
    conflict = mine.locator(".record-conflict")
    expect(conflict).to_contain_text("someone changed this record since you opened it (olga")
    expect(conflict).to_contain_text("it was at version 1, it is at version 2 now")
    changed = mine.get_by_role("table", name="Changed since you opened it")
    expect(changed.locator("tr[data-field='subject']")).to_contain_text("(you changed it too)")
    expect(changed.locator("tr[data-field='priority'] td").nth(1)).to_have_text("3")
    # what was typed, kept; what the other one changed, shown as it is now
    expect(mine.get_by_label("Subject")).to_have_value("Invoice 88: charged twice in May")
    expect(mine.get_by_label("Agent")).to_have_value("bob")
    expect(mine.get_by_label("Priority")).to_have_value("3")
    shot(mine, "recordsui-stale-edit")
    with server.command_engine() as engine:
        record = engine.get_record(record_id)
    assert record["version"] == 2 and record.get("agent") is None

    mine.get_by_role("button", name="Save").click()
    expect(mine.locator(".record-saved")).to_contain_text("Saved: version 3.")
    with server.command_engine() as engine:
        record = engine.get_record(record_id)
    assert (record["subject"], record["agent"], record["priority"]) == (
        "Invoice 88: charged twice in May", "bob", 3)


def test_the_record_forms_have_no_wcag21_aa_violation(server: Server, browser: Any) -> None:
    """axe-core (as tests/browser/test_accessibility.py runs it) on the new pages: the
    records list with its New buttons, the empty, refused and conflicting forms, and the
    record's page after a save."""
    from tests.browser.test_accessibility import AXE, described, violations

    context = browser.new_context(base_url=server.url, bypass_csp=True,
                                  viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    context.add_init_script(path=str(AXE))
    try:
        page = context.new_page()
        problems: list[str] = []

        def check(where: str) -> None:
            found = violations(page)
            if found:
                problems.append(described(where, found))

        record_id = _internal_case(server, "Cable gland leaking")
        login(page, "olga", next_path="/records")
        check("/records")
        page.goto("/records/new/Case")
        check("/records/new/Case")
        page.get_by_role("button", name="Create").click()
        expect(page.locator("#f-subject-err")).to_be_visible()
        check("/records/new/Case (refused)")
        page.goto(f"/records/{record_id}/edit")
        with server.command_engine() as engine:
            engine.update_record(record_id, {"priority": 2}, actor="cli")
        page.get_by_label("Agent").fill("ann")
        page.get_by_role("button", name="Save").click()
        expect(page.locator(".record-conflict")).to_be_visible()
        check("/records/RECORD/edit (someone changed it)")
        page.get_by_role("button", name="Save").click()
        expect(page.locator(".record-saved")).to_be_visible()
        check("/records/RECORD (saved)")
        assert not problems, "\n".join(problems)
    finally:
        context.close()
