"""Accessibility (WCAG 2.1 A/AA) of the web UI, as a public-sector customer's check would do it.

axe-core (vendored, test-only: ``tests/browser/vendor/axe-core``) runs on every page an
administrator sees, and on the Work Guide as an agent: no violation. The pages' CSP allows
no injected script, so these browser contexts bypass it (the test's own context only).
Then an agent works an item with the keyboard alone: Tab, Shift+Tab, Enter and Space
open the Work Guide, the item, claim it, fill its form and complete it; after each htmx
swap on that path the focus is on a control, never lost to ``<body>``.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORDS, Server, eventually, login, shot

AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
WCAG_21_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
# axe's "best practice" rules on a page's structure (not WCAG success criteria themselves,
# but what a screen reader user navigates by): checked too
STRUCTURE = ["heading-order", "landmark-one-main", "landmark-unique", "page-has-heading-one",
             "region", "skip-link", "aria-allowed-role", "empty-heading", "empty-table-header"]
PASSWORDS.setdefault("ada", "ada-secret-1")  # an administrator, added here

FORM = """
kind: object
name: A11yFeedback
fields:
  subject: {type: string, required: true}
  message: {type: text, required: true}
  rating: {type: choice, choices: [good, fair, poor]}
  visited: {type: date}
---
kind: intake_form
name: a11y_feedback
object: A11yFeedback
label: Tell us how we did
description: Your feedback goes to the service team.
fields:
  - subject
  - {field: message, label: Your feedback, help: "What went well, what did not."}
  - rating
  - visited
rate_limit: 50
thanks: Thank you for your feedback.
"""

# One axe run: every rule with one of the WCAG tags, and the structure rules besides (axe's
# documented way to add rules to a tag selection; the same rules, run once, as two runs
# of the tags and of the rules would)
AXE_RUN = """async ([tags, rules]) => {
  const found = await axe.run(document, {
    resultTypes: ["violations"], runOnly: {type: "tag", values: tags},
    rules: Object.fromEntries(rules.map((id) => [id, {enabled: true}]))});
  return found.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + ": " +
                                       (n.failureSummary || "").replace(/\\s+/g, " "))}));
}"""


def violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA (and structure) violations of the page as it is now (axe is
    in every page of an ``a11y_page(axe=True)`` context already)."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = page.evaluate(AXE_RUN, [WCAG_21_AA, STRUCTURE])
    return found


def described(where: str, found: list[dict[str, Any]]) -> str:
    return "\n".join(f"{where}: {v['id']} ({v['impact']}): {v['help']}\n    "
                     + "\n    ".join(v["nodes"]) for v in found)


@pytest.fixture
def a11y_page(browser: Any, server: Server) -> Iterator[Callable[..., Any]]:
    """Pages whose context bypasses the pages' CSP, so that axe-core can be injected;
    ``axe=True``: the browser itself runs axe-core in each page the context loads (before
    the page's own scripts, as an extension would), rather than it being sent to each page."""
    contexts: list[Any] = []

    def make(width: int = 1280, height: int = 900, axe: bool = False, **options: Any) -> Any:
        context = browser.new_context(base_url=server.url, bypass_csp=True,
                                      viewport={"width": width, "height": height}, **options)
        context.set_default_timeout(20_000)
        if axe:
            context.add_init_script(path=str(AXE))
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def fragile(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """What the page sweep and the reflow test both look at, set up once: the administrator
    ada, the public form deployed, and a run headed for fallout (its id). Neither test
    changes them (the sweep's cancel of that run is refused); the run is cancelled after."""
    server.cli("users", "add", "ada", "--role", "admin", "--email", "ada@example.com",
               "--password-stdin", input=PASSWORDS["ada"] + "\n")
    form = tmp_path_factory.mktemp("a11y") / "a11y_feedback.yaml"
    form.write_text(FORM)
    server.cli("deploy", str(form))
    run_id = str(json.loads(server.cli("start", "fragile_sync", "--json"))["id"])
    yield run_id
    server.cancel_run(run_id, "accessibility test done")


def test_every_page_has_no_wcag21_aa_violation(server: Server,
                                               a11y_page: Callable[..., Any],
                                               fragile: str) -> None:
    record_id = server.create_case("Accessibility check: the inverter beeps")
    item = server.work_item_for(record_id)
    problems: list[str] = []

    def check(page: Any, where: str) -> None:
        page.wait_for_load_state()
        found = violations(page)
        if found:
            problems.append(described(where, found))
        shot(page, f"a11y-{where.strip('/').replace('/', '-').replace('?', '-') or 'root'}")

    visitor = a11y_page(axe=True)
    visitor.goto("/login")
    check(visitor, "/login")
    visitor.get_by_label("User name").fill("nobody")
    visitor.get_by_label("Password").fill("wrong-password")
    visitor.get_by_role("button", name="Log in").click()
    check(visitor, "/login (refused)")
    visitor.goto("/forms/a11y_feedback")
    check(visitor, "/forms/a11y_feedback")
    # a field's help is said with it, and so is its error once there is one
    feedback = visitor.get_by_label("Your feedback")
    expect(feedback).to_have_accessible_description("What went well, what did not.")
    visitor.get_by_role("button", name="Send").click()
    expect(visitor.get_by_text("Subject is required")).to_be_visible()
    expect(feedback).to_have_accessible_description(
        "Your feedback is required What went well, what did not.")
    expect(visitor.get_by_label("Subject")).to_be_focused()  # the first field to correct
    check(visitor, "/forms/a11y_feedback (errors)")
    visitor.get_by_label("Subject").fill("Quick and kind")
    visitor.get_by_label("Your feedback").fill("All good.")
    visitor.get_by_role("button", name="Send").click()
    expect(visitor.get_by_role("status")).to_contain_text("Thank you")
    check(visitor, "/forms/a11y_feedback (thanks)")

    agent = a11y_page(axe=True)
    login(agent, "alice", next_path="/work")
    check(agent, "/work (agent)")
    agent.goto("/work?tab=unclaimed")
    check(agent, "/work?tab=unclaimed (agent)")
    agent.goto(f"/work/{item['id']}")
    check(agent, "/work/ITEM (agent)")
    agent.get_by_role("button", name="Complete").click()
    expect(agent.locator("#f-resolution-err")).to_be_visible()
    check(agent, "/work/ITEM (errors, agent)")
    agent.goto("/work")
    row = agent.locator(f"#item-{item['id']}")
    row.get_by_role("button", name="Claim").click()  # the row swapped by htmx
    expect(row).to_have_attribute("data-status", "claimed")
    check(agent, "/work (a row claimed, agent)")
    phone = a11y_page(width=390, axe=True)
    login(phone, "bob", next_path="/work")
    check(phone, "/work (390 px wide, agent)")
    agent.goto("/settings")
    check(agent, "/settings (agent)")

    admin = a11y_page(axe=True)
    login(admin, "ada", next_path="/work")
    eventually(lambda: fragile in (admin.goto("/fallout") and admin.content()), timeout=90,
               what=f"run {fragile} in fallout")
    for path in ("/work", "/work?tab=all", f"/work/{item['id']}", "/runs",
                 "/runs?attention=true", f"/runs/{item['run_id']}", f"/runs/{fragile}",
                 "/fallout", "/records", f"/records/{record_id}", "/definitions",
                 "/definitions/orchestration/case_triage",
                 "/definitions/orchestration/case_triage?a=1&b=1", "/definitions/object/Case",
                 "/team", "/settings", "/runs/run_nope"):
        admin.goto(path)
        check(admin, path.replace(item["id"], "ITEM").replace(record_id, "RECORD")
              .replace(item["run_id"], "RUN").replace(fragile, "FALLOUT_RUN"))
    # a refused operator action, said in its form
    admin.goto(f"/runs/{fragile}")
    admin.get_by_role("button", name="Cancel run").click()
    check(admin, "/runs/FALLOUT_RUN (refused)")
    # (nothing left in other tests' queues; the fallout run: by the fixture)
    server.cancel_run(item["run_id"], "accessibility test done")

    assert not problems, "\n".join(problems)


FOCUSED = """() => {
  const e = document.activeElement;
  if (!e || e === document.body || e === document.documentElement) { return null; }
  return {tag: e.tagName, name: (e.getAttribute("aria-label") || e.textContent || "").trim(),
          href: e.getAttribute("href"), type: e.getAttribute("type"), id: e.id,
          value: e.getAttribute("value")};
}"""


def press(page: Any, key: str) -> dict[str, Any]:
    """Press one key; the focus must then be on an element, never left on <body>. A key
    that redraws part of the page (htmx) replaces the focused control: until the answer
    comes the focus is still on the pressed control, and between the swap and its settling
    (htmx's 20 ms) it is on <body> until keep-state.js moves it. So what is checked is where
    it is once no htmx request, swap or settling is under way (a few seconds at most on a
    slow, loaded machine), not that instant."""
    page.keyboard.press(key)
    with contextlib.suppress(PlaywrightTimeout):  # (reported below with the page's address)
        # (a function, not an expression: an expression is run by eval(), which the
        # pages' Content-Security-Policy forbids)
        settled = page.wait_for_function(f"""() => {{
          if (document.querySelector(".htmx-request, .htmx-swapping, .htmx-settling")) {{
            return null;
          }}
          return ({FOCUSED})();
        }}""", timeout=5000)
        got: dict[str, Any] = settled.json_value()
        return got
    now: dict[str, Any] | None = page.evaluate(FOCUSED)
    assert now is not None, f"after {key} on {page.url} the focus is on <body>"
    raise AssertionError(f"after {key} on {page.url} an htmx request or swap is still under way")


def follow(page: Any, key: str = "Enter") -> None:
    """Press a key that loads another page (a link followed, a form sent)."""
    with page.expect_navigation():
        page.keyboard.press(key)


def tab_to(page: Any, wanted: Callable[[dict[str, Any]], bool], what: str,
           key: str = "Tab", limit: int = 150) -> dict[str, Any]:
    """Press Tab (or Shift+Tab) until the focused element is the one wanted."""
    seen = []
    for _ in range(limit):
        now = press(page, key)
        if wanted(now):
            return now
        seen.append(f"{now['tag']} {now['name'][:40]!r}")
    raise AssertionError(f"{what}: not reached with {key} on {page.url}; went through {seen}")


# The Work Guide's list polls (htmx ``every 10s``, a setTimeout in the page): with the page's
# clock installed (``page.clock.install()`` before it loads; its time still flows as usual)
# the test moves that clock past the poll rather than waiting it out.
WORK_POLL_MS = 10_000


def refresh_now(page: Any, part: str) -> None:
    """Make the part refresh itself now (the page's clock past its poll interval, which fires
    the htmx poll) and wait for that refresh to swap and settle."""
    page.evaluate("""(id) => {
      window.__refreshed = false;
      document.addEventListener("htmx:afterSettle", function seen() {
        if (document.getElementById(id)) {
          window.__refreshed = true; document.removeEventListener("htmx:afterSettle", seen);
        }
      });
    }""", part)
    page.clock.fast_forward(WORK_POLL_MS)
    page.wait_for_function("() => window.__refreshed === true", timeout=40_000)


def test_an_agent_works_an_item_with_the_keyboard_alone(server: Server,
                                                        new_page: Callable[..., Any]) -> None:
    subject = "Keyboard only: the display stays dark"
    record_id = server.create_case(subject)
    item_id = server.work_item_for(record_id)["id"]
    page = new_page()
    page.clock.install()  # (the list's own refresh: made to come, see refresh_now)

    # log in: the user name field has the focus; type, Tab, type, Enter
    page.goto("/login?next=/work")
    expect(page.get_by_label("User name")).to_be_focused()
    page.keyboard.type("alice")
    press(page, "Tab")
    page.keyboard.type(PASSWORDS["alice"])
    follow(page)
    expect(page).to_have_url(re.compile(r"/work$"))

    # the first Tab reaches the skip link, which takes the focus past the navigation
    assert press(page, "Tab")["name"] == "Skip to content"
    press(page, "Enter")
    expect(page.locator("main")).to_be_focused()

    # claim in the list (an htmx swap of the row): the focus goes to the row's Open link
    row = page.locator(f"#item-{item_id}")
    tab_to(page, lambda e: e["name"] == f"Claim {subject} ({item_id})", "the Claim button")
    press(page, "Space")
    expect(row).to_have_attribute("data-status", "claimed")
    expect(row.get_by_role("link", name=f"Open {subject} ({item_id})")).to_be_focused()
    expect(page.locator("#announce")).to_have_text(f"You claimed {subject}.")
    shot(page, "a11y-keyboard-claimed")

    # the list refreshes itself: the focus stays where it is, the exact times are local again
    refresh_now(page, "work-live")
    expect(row.get_by_role("link", name=f"Open {subject} ({item_id})")).to_be_focused()
    expect(row.locator("time.exact").first).to_have_attribute("data-localised", "true")

    # release it again (another swap): the focus goes to the row's Claim button
    assert press(page, "Tab")["name"] == f"Release {subject} ({item_id})"
    press(page, "Space")
    expect(row).to_have_attribute("data-status", "open")
    expect(row.get_by_role("button", name=f"Claim {subject} ({item_id})")).to_be_focused()
    expect(page.locator("#announce")).to_have_text(f"You released {subject}: it is open again.")

    # open the item: back to the row's link, Enter
    tab_to(page, lambda e: e["tag"] == "A" and e["href"] == f"/work/{item_id}", "the item's link",
           key="Shift+Tab")
    follow(page)
    expect(page).to_have_url(re.compile(f"/work/{item_id}$"))
    expect(page.get_by_role("heading", level=1)).to_have_text(subject)

    # claim it on its page (the page loads anew): the focus goes to the form's first field,
    # and the live region says what happened
    close = page.get_by_role("radio", name="close")
    tab_to(page, lambda e: e["tag"] == "BUTTON" and e["name"] == "Claim", "the Claim button")
    follow(page)
    expect(page.locator(".facts")).to_contain_text("claimed by alice")
    expect(close).to_be_focused()
    expect(page.locator("#announce")).to_have_text(f"You claimed {subject}.")
    shot(page, "a11y-keyboard-claimed-on-page")
    # release it there: the focus goes to the Claim button; claim it again
    tab_to(page, lambda e: e["tag"] == "BUTTON" and e["name"] == "Release", "the Release button",
           key="Shift+Tab")
    follow(page)
    expect(page.locator(".facts .status")).to_have_text("open")
    claim = page.get_by_role("button", name="Claim", exact=True)
    expect(claim).to_be_focused()
    expect(page.locator("#announce")).to_have_text(f"You released {subject}: it is open again.")
    follow(page)  # (Enter on the Claim button)
    expect(close).to_be_focused()
    expect(page.locator("#announce")).to_have_text(f"You claimed {subject}.")

    # fill in the form; Complete without a resolution first
    tab_to(page, lambda e: e["id"] == "f-notes", "the Notes field")
    page.keyboard.type("Reset the display by keyboard")
    assert press(page, "Tab")["name"] == "Complete"
    follow(page)
    expect(page.locator("#f-resolution-err")).to_have_text("Resolution is required")
    # the page comes back with the focus on the field to correct
    expect(close).to_be_focused()
    press(page, "Space")
    expect(close).to_be_checked()
    assert press(page, "Tab")["id"] == "f-notes"
    expect(page.get_by_label("Notes")).to_have_value("Reset the display by keyboard")
    assert press(page, "Tab")["name"] == "Complete"
    follow(page)
    expect(page.get_by_role("heading", name="What happened next")).to_be_visible()
    expect(page.locator(".decision")).to_contain_text("go to close")
    shot(page, "a11y-keyboard-completed")


def test_the_work_guide_updates_can_be_paused(server: Server,
                                              new_page: Callable[..., Any]) -> None:
    """WCAG 2.2.2: a part that updates itself has a control that stops it (and starts it)."""
    page = new_page()
    page.clock.install()  # (the polls: made to come, see refresh_now)
    login(page, "bob", next_path="/work")
    polls: list[str] = []
    page.on("request", lambda r: polls.append(r.url) if "/work/live" in r.url else None)
    pause = page.get_by_role("button", name="Pause updates")
    expect(pause).to_have_attribute("aria-pressed", "false")
    pause.focus()
    page.keyboard.press("Space")
    expect(pause).to_have_attribute("aria-pressed", "true")
    sent_before = len(polls)
    # the next poll comes and is held back: no request
    page.evaluate("""() => {
      document.addEventListener("htmx:beforeRequest", function seen(ev) {
        if (ev.detail.elt && ev.detail.elt.id === "work-live") {
          document.removeEventListener("htmx:beforeRequest", seen);
          window.__held = ev.defaultPrevented;
        }
      });
    }""")
    page.clock.fast_forward(WORK_POLL_MS)
    page.wait_for_function("() => window.__held !== undefined", timeout=40_000)
    assert page.evaluate("() => window.__held") is True
    assert len(polls) == sent_before
    page.keyboard.press("Space")  # (the button still has the focus)
    expect(pause).to_have_attribute("aria-pressed", "false")
    refresh_now(page, "work-live")
    assert len(polls) > sent_before


def test_exact_times_are_text_not_only_a_tooltip(server: Server,
                                                 a11y_page: Callable[..., Any]) -> None:
    """WCAG 1.3.1/2.1.1 (and touch): the exact due and created times of a Work Guide row are
    visible text beside the relative ones, in the viewer's own time zone, on a desktop and
    on a phone; a screen reader reads them in the cell."""
    subject = "Exact times: the meter reads zero"
    item = server.work_item_for(server.create_case(subject))
    due = datetime.fromisoformat(item["due_at"]).astimezone(ZoneInfo("Asia/Kolkata"))
    created = datetime.fromisoformat(item["created_at"]).astimezone(ZoneInfo("Asia/Kolkata"))
    for width in (1280, 390):
        page = a11y_page(width=width, timezone_id="Asia/Kolkata", locale="en-GB")
        login(page, "alice", next_path="/work?tab=unclaimed&order=created")
        row = page.locator(f"#item-{item['id']}")
        for cell, at, relative in (("td.wi-due", due, r"due in [34] h"),
                                   ("td.wi-created", created, r"(just now|\d+ (s|min) ago)")):
            exact = row.locator(f"{cell} time.exact")
            expect(exact).to_have_attribute("data-localised", "true")
            expect(exact).to_be_visible()
            # "Fri 31 Jan, 19:35 GMT+5:30" in en-GB: the local clock time and the zone
            expect(exact).to_contain_text(at.strftime("%H:%M"))
            expect(exact).to_contain_text(re.compile(r"GMT\+5:30|IST"))
            expect(exact).to_contain_text(f"{at.day} {at.strftime('%b')}")
            text = row.locator(cell).inner_text()
            assert re.search(relative, text), f"{cell} at {width} px: {text!r}"
            box = exact.bounding_box()
            assert box and box["height"] >= 10 and box["x"] + box["width"] <= width, (cell, box)
        assert page.evaluate(FITS) is True, f"/work at {width} px scrolls sideways"
        shot(page, f"a11y-exact-times-{width}")
    server.cancel_run(item["run_id"], "accessibility test done")


# The page never scrolls sideways (WCAG 1.4.10): what is wider than the screen is inside
# its own scrolling box (a table, a code block, a diagram), so scrolling is that box's.
FITS = "() => document.documentElement.scrollWidth <= window.innerWidth"
OVERFLOWING = """() => {
  const width = window.innerWidth, found = [];
  const scrolls = (e) => ["auto", "scroll"].includes(getComputedStyle(e).overflowX);
  for (const e of document.body.querySelectorAll("*")) {
    const box = e.getBoundingClientRect();
    if (box.right <= width + 0.5 || box.width === 0) { continue; }
    let up = e.parentElement, inside = false;
    while (up && up !== document.body) { if (scrolls(up)) { inside = true; break; } up = up.parentElement; }
    if (inside) { continue; }
    found.push(e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
               (e.className && typeof e.className === "string" ? "." + e.className.trim().split(/\\s+/).join(".") : "") +
               " right=" + Math.round(box.right));
  }
  return found.slice(0, 8);
}"""


def test_pages_reflow_at_400_percent_and_200_percent_zoom(server: Server,
                                                           a11y_page: Callable[..., Any],
                                                           fragile: str) -> None:
    """WCAG 1.4.10: at 320 CSS px wide (1280 px at 400 %) and at 640 px with twice the pixels
    (200 %), no page scrolls sideways; wide tables and code scroll inside their own box."""
    record_id = server.create_case("Reflow check: a very long subject line that has to wrap "
                                   "somewhere_without_spaces_in_it_at_all_0123456789")
    item = server.work_item_for(record_id)
    problems: list[str] = []
    sessions: dict[str, Any] = {}  # a user's cookies from the first width's login

    def signed_in(name: str, **size: Any) -> Any:
        if name in sessions:
            return a11y_page(storage_state=sessions[name], **size)
        page = a11y_page(**size)
        login(page, name, next_path="/work")
        sessions[name] = page.context.storage_state()
        return page

    try:
        for width, scale in ((640, 2), (320, 1)):
            size = {"width": width, "height": 800, "device_scale_factor": scale}
            visitor = a11y_page(**size)
            agent = signed_in("alice", **size)
            admin = signed_in("ada", **size)
            if width == 640:
                eventually(lambda page=admin: fragile in (page.goto("/fallout") and page.content()),
                           timeout=90, what=f"run {fragile} in fallout")
            pages = [(visitor, "/login"), (visitor, "/forms/a11y_feedback"),
                     (agent, "/work"), (agent, f"/work/{item['id']}"), (agent, "/settings")]
            pages += [(admin, path) for path in (
                "/work?tab=all", f"/work/{item['id']}", "/runs", "/runs?attention=true",
                f"/runs/{item['run_id']}", f"/runs/{fragile}", "/fallout", "/records",
                f"/records/{record_id}", "/definitions", "/definitions/orchestration/case_triage",
                "/definitions/orchestration/case_triage?a=1&b=1", "/definitions/object/Case",
                "/team", "/settings", "/runs/run_nope")]
            for page, path in pages:
                page.goto(path)
                page.wait_for_load_state()
                if not page.evaluate(FITS):
                    where = (path.replace(item["id"], "ITEM").replace(record_id, "RECORD")
                             .replace(item["run_id"], "RUN").replace(fragile, "FALLOUT_RUN"))
                    wide = page.evaluate("() => document.documentElement.scrollWidth")
                    problems.append(f"{where} at {width} px (x{scale}): the page is {wide} px "
                                    f"wide; past the edge: {page.evaluate(OVERFLOWING)}")
                    shot(page, f"a11y-reflow-{width}-" + where.strip("/").replace("/", "-")
                         .replace("?", "-"))
            agent.goto(f"/work/{item['id']}")
            shot(agent, f"a11y-reflow-{width}-work-item")
    finally:  # (the fallout run: by the fixture)
        server.cancel_run(item["run_id"], "accessibility test done")
    assert not problems, "\n".join(problems)
