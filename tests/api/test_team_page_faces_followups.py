"""POST /team (the Team page's form) changes only the people the page shows a form for:
active people whose roles let them work items. A change for someone inactive or a designer
(a request made by hand, or a page open since they changed) is refused with why, nothing
saved."""

from __future__ import annotations

import re

from tests.api.conftest import Api


def profile(api: Api, name: str) -> dict[str, object]:
    r = api.get("opal", f"/api/users/{name}/routing")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_change_for_someone_without_a_form_is_refused(sqlite_api: Api) -> None:
    api = sqlite_api
    api.engine.directory.update_user("cyd", active=False)
    before = {n: profile(api, n) for n in ("cyd", "dee")}
    sent = {"availability": "available", "capacity": "4", "skills": "brand:ford=3"}
    r = api.post("opal", "/team", data={"name": "cyd", **sent})
    assert r.status_code == 409, r.text
    assert re.search(r'role="alert">Not saved \(cyd\): name: cyd is inactive: an '
                     r"administrator reactivates them first \(baton users update cyd "
                     r"--active\)", r.text), r.text
    r = api.post("opal", "/team", data={"name": "dee", **sent})
    assert r.status_code == 409, r.text
    assert re.search(r'role="alert">Not saved \(dee\): name: dee cannot take work '
                     r"\(designer\)", r.text), r.text
    assert {n: profile(api, n) for n in ("cyd", "dee")} == before  # nothing saved
    # an agent's change is saved as before
    r = api.post("opal", "/team", data={"name": "ann", **sent}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/team?done=ann", r.text
    assert profile(api, "ann")["capacity"] == 4
    # once reactivated, cyd's profile is edited here again
    api.engine.directory.update_user("cyd", active=True)
    r = api.post("opal", "/team", data={"name": "cyd", **sent}, follow_redirects=False)
    assert r.status_code == 303, r.text
    assert profile(api, "cyd")["skills"] == {"brand:ford": 3}
