"""Follow-ups of a click-through audit of the daily pages (brief "ui"):

* a work item's form sent again after it was completed (Back and "resend", a second tab)
  or after someone else completed it showed a bare "409 Conflict" page, whose advice to
  reload posted it again: now the item's page says what became of it and keeps what was
  sent;
* a run page's step table showed an ended step's last SLA state ("on track, due ...") as
  if it still held, for a completed or canceled step, unlike the diagram and the API;
* an item's submitted values showed a date-time as the UTC text stored (not the viewer's
  time it was typed in), a checkbox as ``False`` and a text without its line breaks;
* a Work Guide row without a due time read "no due time none".

The first two on the session's server (examples/case_triage); the others on a server of
their own whose form has a date-time, a checkbox and a text, and no SLA.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import EXAMPLE, PASSWORDS, Server, _answers, login, shot
from tests.net import free_port
from tests.procs import eventually


def _fill_triage(page: Any, notes: str) -> None:
    page.get_by_label("close").check()
    page.get_by_label("Notes").fill(notes)


def test_a_form_sent_again_shows_the_item_not_an_error(server: Server, new_page: Any) -> None:
    record_id = server.create_case("Panel cracked by hail (sent twice)")
    item_id = server.work_item_for(record_id)["id"]
    first, second = new_page(), new_page()
    login(first, "alice", next_path=f"/work/{item_id}")
    expect(first).to_have_url(re.compile(f"/work/{item_id}$"))
    # (the same person in a second tab: the same session)
    second = first.context.new_page()
    second.goto(f"/work/{item_id}")
    _fill_triage(first, "replaced the panel")
    _fill_triage(second, "sent a second time")
    first.get_by_role("button", name="Complete").click()
    expect(first.get_by_role("heading", name="What happened next")).to_be_visible()

    second.get_by_role("button", name="Complete").click()
    expect(second).to_have_url(re.compile(f"/work/{item_id}$"))
    expect(second.get_by_role("heading", name="409 Conflict")).to_have_count(0)
    note = second.locator(".wi-not-taken")
    expect(note).to_contain_text("You had already completed this item")
    expect(note).to_contain_text("not taken")
    submitted = second.get_by_role("table", name="Submitted values")
    expect(submitted).to_contain_text("replaced the panel")  # the first time's values
    expect(submitted).not_to_contain_text("sent a second time")
    shot(second, "ui-followups-sent-twice")

    # Someone else was first: what this person typed is on the page, marked not taken.
    record_id = server.create_case("Inverter fan noise (bob was first)")
    item_id = server.work_item_for(record_id)["id"]
    bob = new_page()
    login(bob, "bob", next_path=f"/work/{item_id}")
    first.goto(f"/work/{item_id}")
    _fill_triage(first, "alice's careful notes")
    _fill_triage(bob, "bob's notes")
    bob.get_by_role("button", name="Complete").click()
    expect(bob.get_by_role("heading", name="What happened next")).to_be_visible()
    first.get_by_role("button", name="Complete").click()
    note = first.locator(".wi-not-taken")
    expect(note).to_contain_text("Not completed:")
    expect(note).to_contain_text("completed")
    expect(first.locator(".wi-sent")).to_contain_text("alice's careful notes")
    expect(first.get_by_role("table", name="Submitted values")).to_contain_text("bob's notes")


def test_an_ended_step_shows_no_live_sla_on_the_run_page(server: Server,
                                                         new_page: Any) -> None:
    record_id = server.create_case("Battery not charging (SLA shown while open)")
    item = server.work_item_for(record_id)
    olga = new_page()
    login(olga, "olga", next_path=f"/runs/{item['run_id']}")
    row = olga.locator("#step-triage")
    expect(row).to_have_attribute("data-status", "waiting_for_person")
    expect(row.locator("td").nth(3)).to_contain_text("on track")  # open: its SLA holds

    server.cli("work", "claim", item["id"], "--user", "alice")
    server.cli("work", "complete", item["id"], "--user", "alice", "--data",
               '{"resolution": "close"}')
    olga.reload()
    row = olga.locator("#step-triage")
    expect(row).to_have_attribute("data-status", "completed")
    expect(row.locator("td").nth(3)).to_have_text("")  # not "on track, due ..." any more
    shot(olga, "ui-followups-ended-step-sla")


PROBE_OBJECT = """\
kind: object
name: Visit
title_field: title
fields:
  title: {type: string, required: true}
"""

PROBE_FLOW = """\
kind: orchestration
name: visit_report
trigger: {type: record, object: Visit, on: [create]}
stages:
  - name: report
    steps:
      - name: report
        type: interactive
        assign: {queue: tier1}
        form:
          - {name: visited_at, type: datetime, required: true, label: Visited at}
          - {name: fixed, type: bool, label: Fixed}
          - {name: notes, type: text, label: Notes}
"""


@pytest.fixture(scope="module")
def probe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("ui-followups")
    project = base / "case_triage"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("*.db*", "__pycache__"))
    (project / "definitions" / "visit.yaml").write_text(PROBE_OBJECT)
    (project / "definitions" / "visit_report.yaml").write_text(PROBE_FLOW)
    port = free_port()
    srv = Server(f"http://127.0.0.1:{port}", project, f"sqlite:///{base / 'baton.db'}",
                 base / "serve.log")
    srv.cli("deploy")
    srv.cli("users", "add", "alice", "--role", "agent", "--queue", "tier1", "--email",
            "alice@example.com", "--password-stdin", input=PASSWORDS["alice"] + "\n")
    with srv.log.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from baton.cli.main import main; main()", "--project",
             str(project), "--db", srv.db, "serve", "--port", str(port)],
            cwd=project, stdout=log, stderr=subprocess.STDOUT)
        try:
            eventually(lambda: _answers(srv.url), timeout=60, what="baton serve")
            yield srv
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _visit_item(srv: Server, title: str) -> str:
    record = srv.cli_json("records", "create", "Visit", "--data", f'{{"title": "{title}"}}')

    def probe() -> str | None:
        items = srv.cli_json("work", "list", "--queue", "tier1")
        found = [i for i in items if i.get("record_id") == record["id"]]
        return found[0]["id"] if found else None
    return eventually(probe, timeout=60, what="the visit's work item")


def test_submitted_values_read_as_they_were_typed(probe_server: Server, browser: Any) -> None:
    item_id = _visit_item(probe_server, "Roof array inspection")
    context = browser.new_context(base_url=probe_server.url, timezone_id="America/New_York",
                                  locale="en-US")
    try:
        page = context.new_page()
        login(page, "alice", next_path="/work")
        row = page.locator(f"#item-{item_id}")
        due = row.locator("td.wi-due")
        expect(due).to_contain_text("no due time")
        expect(due).not_to_contain_text("none")  # (no "no due time none")

        page.goto(f"/work/{item_id}")
        page.get_by_role("textbox", name=re.compile("Visited at")).fill("2026-03-02T10:30")
        page.get_by_label("Notes").fill("first line\nsecond line")
        page.get_by_role("button", name="Complete").click()
        expect(page.get_by_role("heading", name="What happened next")).to_be_visible()
        stored = probe_server.cli_json("work", "show", item_id)["data"]
        assert stored["visited_at"] == "2026-03-02T15:30:00Z"  # EST is UTC-5

        page.goto(f"/work/{item_id}")
        table = page.get_by_role("table", name="Submitted values")
        visited = table.locator("tr[data-field='visited_at'] td")
        expect(visited).to_contain_text("10:30")  # the viewer's time, as typed
        expect(visited).not_to_contain_text("15:30")
        expect(table.locator("tr[data-field='fixed'] td")).to_have_text("no")
        assert table.locator("tr[data-field='notes'] td").inner_text() == \
            "first line\nsecond line"
        shot(page, "ui-followups-submitted-values")
    finally:
        context.close()
