"""The Work Guide as agents work from it (issue 16 point 1), in Chromium at 1280 px and at
390 px: titles and summaries from the case, relative due times localised by the page's
script, tabs, search, claim / release / next item, the record's timeline for the holder,
the list refreshing itself without losing the filters or the scroll position, and cards
instead of the table on a phone (nothing wider than the screen)."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import expect

from tests.browser.conftest import Server, login, shot


def _cases(server: Server, token: str, n: int) -> list[dict[str, Any]]:
    subjects = [f"Inverter {token} fault {i}" for i in range(n)]
    records = [server.create_case(s) for s in subjects]
    return [server.work_item_for(r) for r in records]


def _item_state(server: Server, item_id: str) -> dict[str, Any]:
    from baton.runtime.engine import Engine

    engine = Engine(server.db, migrate=False)
    try:
        return dict(engine.get_work_item(item_id))
    finally:
        engine.close()


def _swaps(page: Any) -> None:
    """Count the list's own refreshes (htmx swaps of what /work/live answered: not a claim's
    swap of a row) from now on."""
    page.evaluate("""() => { window.__swaps = 0; document.addEventListener("htmx:afterSettle",
      (ev) => { if (((ev.detail.xhr || {}).responseURL || "").includes("/work/live")) {
        window.__swaps += 1; } }); }""")


# The list polls (htmx ``every 10s``: a setTimeout in the page). Its page's clock is installed
# before it loads (``page.clock.install()``; its time flows as usual), and the test moves it
# past the poll rather than waiting the poll out.
WORK_POLL_MS = 10_000


def test_agent_works_from_the_guide_at_1280(server: Server, new_page: Any) -> None:
    token = uuid.uuid4().hex[:8]
    first, second = _cases(server, token, 2)
    alice = new_page()
    alice.clock.install()  # (the list's own refresh below: made to come)
    login(alice, "alice", next_path="/work")
    alice.get_by_label("Search").fill(token)
    alice.get_by_role("button", name="Filter").click()
    expect(alice).to_have_url(re.compile(f"q={token}"))
    rows = alice.locator("tr.wi")
    expect(rows).to_have_count(2)
    row = alice.locator(f"#item-{first['id']}")
    expect(row.get_by_role("link", name=f"Inverter {token} fault 0")).to_be_visible()
    expect(row).to_contain_text("Web case, support tier 1")  # the summary
    expect(row).to_contain_text(re.compile(r"due in [34] h"))  # a 4 h SLA
    expect(row).to_contain_text("on track")
    due = row.locator("td.wi-due time.local")
    expect(due).to_have_attribute("data-localised", "true")  # the script ran
    assert not (due.get_attribute("title") or "").endswith("Z")  # local, not UTC
    shot(alice, "work-guide-1280")

    # tabs: nothing of these is alice's yet; both are unclaimed in tier1
    alice.get_by_role("link", name="Mine").click()
    expect(alice).to_have_url(re.compile(r"tab=mine"))
    expect(alice.get_by_label("Search")).to_have_value(token)  # the filter stays
    expect(alice.locator("tr.wi")).to_have_count(0)
    alice.get_by_role("link", name="Unclaimed in my queues").click()
    expect(alice.locator("tr.wi")).to_have_count(2)

    # claim in place (htmx), then release it again
    alice.get_by_role("link", name="All I can see").click()
    row = alice.locator(f"#item-{second['id']}")
    row.get_by_role("button", name=re.compile("^Claim")).click()
    expect(row).to_contain_text("by alice")
    shot(alice, "work-guide-1280-claimed")
    row.get_by_role("button", name=re.compile("^Release")).click()
    expect(row).to_contain_text("released")
    expect(row.get_by_role("button", name=re.compile("^Claim"))).to_be_visible()
    assert _item_state(server, second["id"])["status"] == "open"

    # next item: claims the most urgent item alice may take and opens it
    alice.get_by_role("button", name="Next item").click()
    expect(alice).to_have_url(re.compile(r"/work/wi_\w+$"))
    taken = alice.url.rsplit("/", 1)[1]
    state = _item_state(server, taken)
    assert (state["status"], state["claimed_by"]) == ("claimed", "alice")
    expect(alice.get_by_role("heading", name="Record timeline")).to_be_visible()
    expect(alice.locator("table.timeline")).to_contain_text("work item claimed")
    expect(alice.get_by_role("button", name="Release")).to_be_visible()
    shot(alice, "work-item-1280")
    alice.get_by_role("button", name="Release").click()
    expect(alice.get_by_role("button", name="Claim")).to_be_visible()
    assert _item_state(server, taken)["status"] == "open"

    # the list refreshes itself: a new case shows up without a reload, filters kept
    alice.goto(f"/work?tab=unclaimed&q={token}")
    expect(alice.locator("tr.wi")).to_have_count(2)
    _swaps(alice)
    [third] = _cases(server, token + " later", 1)  # (its work item is there now)
    alice.clock.fast_forward(WORK_POLL_MS)  # the list's next refresh comes
    expect(alice.locator(f"#item-{third['id']}")).to_be_visible(timeout=60_000)
    expect(alice.locator("tr.wi")).to_have_count(3)
    # (the row is in the DOM when htmx swaps it; afterSettle follows a settle delay later)
    alice.wait_for_function("() => window.__swaps >= 1", timeout=10_000)
    expect(alice.get_by_label("Search")).to_have_value(token)
    expect(alice).to_have_url(re.compile(r"tab=unclaimed"))


def test_the_guide_is_cards_at_390_px_and_keeps_the_scroll_when_it_refreshes(
        server: Server, new_page: Any) -> None:
    token = uuid.uuid4().hex[:8]
    items = _cases(server, token, 6)
    bob = new_page(width=390, height=700)
    bob.clock.install()  # (the list's own refresh below: made to come)
    login(bob, "bob", next_path="/work")
    bob.goto(f"/work?q={token}&order=created")
    cards = bob.locator("tr.wi")
    expect(cards).to_have_count(6)
    # nothing wider than the phone: no horizontal scrolling
    assert bob.evaluate("() => document.documentElement.scrollWidth") <= 390
    # a card per item (the table's header row is hidden), its buttons on the screen
    assert bob.evaluate("() => getComputedStyle(document.querySelector('tr.wi')).display") \
        == "block"
    for item in items:
        claim = bob.locator(f"#item-{item['id']}").get_by_role("button", name=re.compile("^Claim"))
        claim.scroll_into_view_if_needed()
        box = claim.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        assert box["height"] >= 44  # a finger's size
    next_button = bob.get_by_role("button", name="Next item")
    box = next_button.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390
    bob.evaluate("() => window.scrollTo(0, 0)")
    shot(bob, "work-guide-390")

    # claim the last card in place, from far down the page
    last = bob.locator(f"#item-{items[-1]['id']}")
    last.get_by_role("button", name=re.compile("^Claim")).click()
    expect(last).to_contain_text("by bob")
    scrolled = bob.evaluate("() => { window.scrollTo(0, 600); return window.scrollY; }")
    assert scrolled > 0
    _swaps(bob)
    bob.clock.fast_forward(WORK_POLL_MS)  # the list's next refresh comes
    bob.wait_for_function("() => window.__swaps >= 1", timeout=60_000)  # its own refresh
    assert bob.evaluate("() => window.scrollY") == scrolled
    expect(bob.get_by_label("Search")).to_have_value(token)
    expect(last).to_contain_text("by bob")
    assert bob.evaluate("() => document.documentElement.scrollWidth") <= 390
    shot(bob, "work-guide-390-scrolled")

    last.get_by_role("link", name=re.compile("^Open")).click()
    expect(bob).to_have_url(re.compile(f"/work/{items[-1]['id']}$"))
    expect(bob.get_by_role("heading", name="Record timeline")).to_be_visible()
    assert bob.evaluate("() => document.documentElement.scrollWidth") <= 390
    for name in ("Release", "Complete"):
        button = bob.get_by_role("button", name=name)
        button.scroll_into_view_if_needed()
        box = button.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390, (name, box)
    bob.evaluate("() => window.scrollTo(0, 0)")
    shot(bob, "work-item-390")
