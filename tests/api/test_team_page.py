"""The Team page sorts people by whether routing may give them work: agents (active, with the
work permission, in a queue or group) editable in place; people with the permission but in
no queue or group, editable, apart; those whose roles cannot take work (a designer, even one
put in a queue) listed apart without a form; deactivated users marked inactive, never shown
as available, without a form, with how an administrator reactivates them."""

from __future__ import annotations

import re
from html import unescape

from tests.api.conftest import Api


def tables(page: str) -> dict[str, list[str]]:
    """Each table's rows (their text, tags dropped), by the table's label."""
    out: dict[str, list[str]] = {}
    for label, body in re.findall(r'<table aria-label="([^"]+)">(.*?)</table>', page, re.DOTALL):
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.DOTALL)[1:]  # (not the heading)
        out[label] = [" ".join(unescape(re.sub(r"<[^>]+>", " ", r)).split()) for r in rows]
    return out


def row_of(rows: list[str], name: str) -> str:
    (row,) = [r for r in rows if f"({name})" in r]
    return row


def test_people_are_listed_by_whether_routing_may_give_them_work(sqlite_api: Api) -> None:
    api = sqlite_api
    eng = api.engine
    # cyd: an agent with a profile, then deactivated (still "available" in the profile)
    assert api.patch("opal", "/api/users/cyd/routing",
                     {"availability": "available", "capacity": 3,
                      "add_skills": {"brand:ford": 3}}).status_code == 200
    eng.directory.update_user("cyd", active=False)
    eng.directory.add_user("dan", roles=["designer"], queues=["tier1"])  # in a queue, no work

    r = api.get("opal", "/team")
    assert r.status_code == 200, r.text
    page = r.text
    t = tables(page)
    assert set(t) - {"Queues"} == {"Agents", "Not in a queue or group", "Cannot take work",
                                   "Inactive"}

    agents = t["Agents"]
    assert {n for n in ("ann", "bob", "cyd", "dan", "dee", "root", "opal")
            if any(f"({n})" in r for r in agents)} == {"ann", "bob"}
    assert "tier1" in row_of(agents, "ann") and 'aria-label="Change ann"' in page

    unpooled = t["Not in a queue or group"]  # the admin and the operator may work items
    assert {r.split("(")[1].split(")")[0] for r in unpooled} == {"root", "opal"}
    assert 'aria-label="Change root"' in page and "--queue" in page

    no_work = t["Cannot take work"]
    assert "designer" in row_of(no_work, "dee") and "none" in row_of(no_work, "dee")
    assert "tier1 (routing skips them)" in row_of(no_work, "dan")
    for name in ("dee", "dan", "cyd"):
        assert f'aria-label="Change {name}"' not in page, f"{name} is not edited here"

    inactive = row_of(t["Inactive"], "cyd")
    assert "inactive" in inactive and "available" not in inactive
    assert "3; brand:ford=3" in inactive  # (capacity; skills: kept for their return)
    assert "baton users update NAME --active" in page


def test_a_refused_change_to_someone_without_a_form_is_said_at_the_top(sqlite_api: Api) -> None:
    api = sqlite_api
    r = api.post("opal", "/team", data={"name": "nobody", "availability": "away"})
    assert r.status_code == 404, r.text
    assert re.search(r'role="alert">Not saved \(nobody\): name: [^<]*nobody', r.text), r.text
    r = api.post("opal", "/team", data={"name": "dee", "capacity": "lots"})
    assert r.status_code == 422, r.text
    assert re.search(r'role="alert">Not saved \(dee\): capacity lots: expected a number',
                     r.text), r.text
    # a refused change to an agent is shown in their row, as before
    r = api.post("opal", "/team", data={"name": "ann", "capacity": "lots"})
    assert r.status_code == 422 and "Not saved (ann)" not in r.text
    assert re.search(r'id="capacity-a\d+" name="capacity"[^>]*value="lots"[^>]*aria-invalid',
                     r.text), r.text
