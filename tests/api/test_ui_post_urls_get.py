"""Every POST-only page URL answers GET (never 405): a refused form leaves that URL in the
address bar. The GET goes (303) to the page the form is on, does nothing of what the POST
does, and without a session goes to the login page as every page does. The run page's
refresh sends the actions back when they changed (an out-of-band part) and goes on while
the page shows actions that no longer apply."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from fastapi import APIRouter
from fastapi.responses import Response
from fastapi.routing import APIRoute

from baton.engine.status import RunStatus
from baton.errors import ConfigError
from baton.web import ui
from baton.web.ui import PAGE_ROUTERS
from baton.web.ui.get_twins import get_twins, page_of
from tests.api.conftest import FLAKY, Api
from tests.api.test_run_page_actions import login


def _page_routes(api: Api) -> list[APIRoute]:
    """The UI's routes as the app serves them: its router's included routers, walked from
    the one that includes the pages (``baton.web.ui.router``)."""
    found: list[APIRoute] = []

    def walk(routes: list[object], inside: bool) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(list(inner.routes), inside or inner is ui.router)
            elif inside and isinstance(route, APIRoute):
                found.append(route)
    walk(list(api.app.router.routes), False)
    return found


def _ids(api: Api) -> dict[str, str]:
    api.post("root", "/api/definitions/deploy", {"files": {"flaky.yaml": FLAKY}})
    run_id = api.post("opal", "/api/runs", {"orchestration": "flaky_job",
                                            "input": {"n": 1}}).json()["id"]
    case = api.new_case("Every POST URL answers GET")
    api.work()
    return {"run_id": run_id, "step": "boom", "item_id": api.item_of(case["id"])["id"],
            "kind": "orchestration", "name": "flaky_job", "object_type": "Case",
            "record_id": case["id"]}


def _fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"{(\w+)}", lambda m: quote(ids[m[1]], safe=""), path)


def test_every_post_url_of_the_pages_answers_get(sqlite_api: Api) -> None:
    api = sqlite_api
    ids = _ids(api)
    routes = _page_routes(api)
    posts = sorted({r.path for r in routes if "POST" in r.methods})
    assert "/runs/{run_id}/steps/{step}/resolve" in posts and "/logout" in posts, posts
    public = {"/login", "/forms/{name}"}
    api.client.cookies.clear()
    for path in posts:  # signed out
        url = _fill(path, ids)
        r = api.client.get(url, follow_redirects=False)
        assert r.status_code != 405, url
        if path not in public:
            assert r.status_code == 303, (url, r.status_code)
            assert r.headers["location"] == "/login?next=" + quote(url, safe=""), url
    r = api.client.get(_fill("/runs/{run_id}/cancel", ids), headers={"HX-Request": "true"})
    assert r.status_code == 204 and r.headers["HX-Redirect"].startswith("/login?next=")

    login(api, "root")
    expected = {"/logout": "/", "/work/next": "/work", "/fallout/group": "/fallout",
                "/fallout/incidents": "/fallout",
                "/runs/{run_id}/steps/{step}/resolve": "/runs/{run_id}",
                "/runs/{run_id}/cancel": "/runs/{run_id}",
                "/work/{item_id}/reassign": "/work/{item_id}",
                "/definitions/{kind}/{name}/activate": "/definitions/{kind}/{name}"}
    for path in posts:  # signed in: POST-only ones go to their page, which answers
        url = _fill(path, ids)
        r = api.client.get(url, follow_redirects=False)
        if path in expected or r.status_code == 303:
            assert r.status_code == 303, (url, r.status_code)
            if path in expected:
                assert r.headers["location"] == _fill(expected[path], ids), url
            page = api.client.get(r.headers["location"])
            assert page.status_code == 200, (url, r.headers["location"], page.status_code)
        else:  # a page at the same URL (/work/{item_id}, /team, /fallout, /settings, ...)
            want = 404 if path == "/forms/{name}" else 200  # (no intake form of that name)
            assert r.status_code == want, (url, r.status_code)

    # a GET twin only redirects: the run is not canceled, the session not ended
    run = api.engine.get_run(ids["run_id"])
    assert run.status is RunStatus.IN_PROGRESS
    assert api.client.get("/runs").status_code == 200


def test_a_refused_post_keeps_what_was_typed_and_its_url_answers_get(sqlite_api: Api) -> None:
    api = sqlite_api
    ids = _ids(api)
    csrf = login(api, "opal")
    url = f"/runs/{ids['run_id']}/cancel"
    r = api.client.post(url, data={"reason": "  ", "csrf_token": csrf})
    assert r.status_code == 422
    form = r.text[r.text.index(f'action="{url}"'):]
    form = form[:form.index("</form>")]
    assert "a reason is required" in form and 'value="  "' in form, form  # next to it, kept
    r = api.client.get(url, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, f"/runs/{ids['run_id']}")

    # a conflict keeps the reason too; said above the actions when its form is gone
    api.engine.cancel_run(ids["run_id"], "by someone else", actor="root")
    r = api.client.post(url, data={"reason": "mine", "csrf_token": csrf})
    assert r.status_code == 409 and 'role="alert">Cancel:' in r.text
    assert f'action="{url}"' not in r.text


def test_the_refresh_sends_the_actions_again_when_they_changed(sqlite_api: Api) -> None:
    api = sqlite_api
    ids = _ids(api)
    login(api, "opal")
    run_id = ids["run_id"]
    page = api.client.get(f"/runs/{run_id}").text
    key = re.search(r'id="run-actions-key" name="actions" value="([^"]*)"', page)
    assert key and key[1] == "cancel,resolve:boom", page
    same = api.client.get(f"/runs/{run_id}/live", params={"actions": key[1]}).text
    assert "hx-swap-oob" not in same and "actions-changed" not in same
    assert 'hx-trigger="every 2s"' in same

    api.engine.cancel_run(run_id, "no longer needed", actor="root")
    changed = api.client.get(f"/runs/{run_id}/live", params={"actions": key[1]}).text
    assert 'id="run-actions" data-keep-input hx-swap-oob="true"' in changed
    assert 'name="actions" value=""' in changed and "Cancel run" not in changed
    assert 'data-if-kept="run-actions"' in changed  # the note, if the page keeps its form
    assert 'hx-trigger="every 2s"' in changed, "the page still shows the old actions: go on"
    settled = api.client.get(f"/runs/{run_id}/live", params={"actions": ""}).text
    assert "hx-trigger" not in settled and "hx-swap-oob" not in settled


def _endpoint() -> Response:
    return Response()


def test_twins_go_to_the_nearest_page_and_never_take_a_pages_url() -> None:
    pages = {"/", "/runs/{run_id}", "/work", "/work/{item_id}"}
    assert page_of("/runs/{run_id}/steps/{step}/resolve", pages) == "/runs/{run_id}"
    assert page_of("/work/next", pages) == "/work"
    assert page_of("/logout", pages) == "/"
    assert page_of("/elsewhere/x", pages) == "/"

    clash = APIRouter()
    clash.add_api_route("/x/new", _endpoint, methods=["GET"])
    clash.add_api_route("/x/{id}", _endpoint, methods=["POST"])
    with pytest.raises(ConfigError, match="/x/new"):
        get_twins([clash])
    same = APIRouter()  # a page at the same URLs: no twin
    same.add_api_route("/x/{other}", _endpoint, methods=["GET"])
    same.add_api_route("/x/{id}", _endpoint, methods=["POST"])
    assert get_twins([same]).routes == []
    assert {r.path for r in get_twins(PAGE_ROUTERS).routes} >= {"/work/next", "/logout"}
