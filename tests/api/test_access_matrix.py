"""Who may call what: every route of the app (API operations, pages and their forms, the
operations endpoints) classified here, and each one called as every role and as nobody.

``ROUTES`` is the access table, one line per route, written out by hand from README's
roles table; ``ROLE_GRANTS`` is that roles table. The test walks the routes the app really
serves and fails on a route the table does not classify (a new route must be given its
line here, so the matrix cannot go stale) and on a line no route answers any more. Then
each route is called with a real API token (API) or a real browser session with its CSRF
token (pages), as each role and anonymously, and its answer must be what the table says:
the caller lacking the permission is refused (403, nothing done), nobody is asked to
authenticate (401; a page sends to ``/login``), and the caller holding it is not refused.

The calls change nothing when allowed: a mutating call names an id that does not exist or
sends a body that fails validation (FastAPI checks the permission first: a dependency), so
an allowed caller gets 404 or 422 and a refused one 403. Work items are also checked for
the other half of access, scope: an agent of another queue gets 404 from every route on an
item that is not theirs, API and pages alike, and the item is unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from baton.auth.roles import GRANTS, Permission
from baton.auth.roles import Permission as P
from tests.api.conftest import Api

# README "Users and roles", as permissions (roles.py must grant exactly this).
ROLE_GRANTS: dict[str, frozenset[Permission]] = {
    "admin": frozenset(P),
    "designer": frozenset({P.DEFINITIONS_READ, P.DEFINITIONS_WRITE, P.RUNS_READ,
                           P.RECORDS_READ}),
    "operator": frozenset({P.DEFINITIONS_READ, P.RECORDS_READ, P.RECORDS_WRITE, P.RUNS_READ,
                           P.RUNS_WRITE, P.FALLOUT, P.WORK, P.WORK_ALL, P.TEAM}),
    "agent": frozenset({P.WORK}),
}
# Who calls: one user per role (tests/api/conftest.PEOPLE), bob an agent of another queue
# than the item's, and nobody.
CALLERS = {"root": "admin", "dee": "designer", "opal": "operator", "ann": "agent",
           "bob": "agent", None: None}
PASSWORD = "pw-access-matrix-1"


@dataclass(frozen=True)
class Rule:
    """Who may call a route.

    ``kind``: ``public`` (anyone, without credentials), ``signed_in`` (any user; the
    route itself checks what is theirs), ``perm`` (the users holding ``perm``), or ``own``
    (anyone for what is theirs; someone else's needs ``perm``, asked for by ``other``).
    ``query``/``body``: what the call sends (default: nothing for GET, ``{}`` otherwise).
    ``expect``: a public route's status for every caller."""

    kind: str
    perm: Permission | None = None
    query: str = ""
    body: Any = None
    other: Callable[[str], tuple[str, str, Any]] | None = None
    expect: int | None = None
    scoped: bool = False  # acts on one work item: an agent outside its scope gets 404


def perm(p: Permission, **kw: Any) -> Rule:
    return Rule("perm", p, **kw)


def public(expect: int | None = None, **kw: Any) -> Rule:
    return Rule("public", expect=expect, **kw)


SIGNED_IN = Rule("signed_in")
WORK = perm(P.WORK, scoped=True)

# Every route: "METHOD /path" -> who may call it. API operations as in /openapi.json, pages
# as the UI router declares them; GET twins of POST-only page URLs are derived (below).
ROUTES: dict[str, Rule] = {
    # ---- people
    "GET /api/me": SIGNED_IN,
    "PATCH /api/me": SIGNED_IN,  # own delegate only: roles, active... are refused (422)
    "GET /api/users": perm(P.USERS),
    "POST /api/users": perm(P.USERS),
    "GET /api/users/{name}": perm(P.USERS),
    "PATCH /api/users/{name}": perm(P.USERS),
    "POST /api/users/{name}/unlock": perm(P.USERS),
    "POST /api/addresses/{address}/unlock": perm(P.USERS),
    "POST /api/tokens": Rule("own", P.USERS, body={"label": "mine"},
                             other=lambda me: ("POST", "/api/tokens", {"user": "cyd"})),
    "GET /api/tokens": Rule("own", P.USERS,
                            other=lambda me: ("GET", "/api/tokens?user=cyd", None)),
    "DELETE /api/tokens/{token_id}": SIGNED_IN,  # someone else's token: 404, as a missing one
    # ---- team
    "GET /api/team": perm(P.TEAM),
    "GET /api/users/{name}/routing": Rule(
        "own", P.TEAM, other=lambda me: ("GET", "/api/users/cyd/routing", None)),
    "PATCH /api/users/{name}/routing": Rule(
        "own", P.TEAM, body={},
        other=lambda me: ("PATCH", "/api/users/cyd/routing", {"availability": "away"})),
    # ---- definitions
    "GET /api/definitions": perm(P.DEFINITIONS_READ),
    "POST /api/definitions/validate": perm(P.DEFINITIONS_WRITE),
    "POST /api/definitions/deploy": perm(P.DEFINITIONS_WRITE),
    "GET /api/definitions/{kind}/{name}": perm(P.DEFINITIONS_READ),
    "GET /api/definitions/{kind}/{name}/versions/{version}": perm(P.DEFINITIONS_READ),
    "GET /api/definitions/{kind}/{name}/diff": perm(P.DEFINITIONS_READ, query="from=1&to=1"),
    "POST /api/definitions/{kind}/{name}/activate": perm(P.DEFINITIONS_WRITE),
    "POST /api/definitions/{kind}/{name}/deactivate": perm(P.DEFINITIONS_WRITE),
    # (a bundle with people needs `users` too: tests/api/test_bundle_bundleapi_followups.py)
    "GET /api/bundle": perm(P.DEFINITIONS_READ),
    "POST /api/bundle/import": perm(P.DEFINITIONS_WRITE),  # ({}: 415, a bundle is gzip)
    # ---- records and intake
    "POST /api/objects/{object_type}/records": perm(P.RECORDS_WRITE),
    "GET /api/records": perm(P.RECORDS_READ),
    "GET /api/records/{record_id}": perm(P.RECORDS_READ),
    "PATCH /api/records/{record_id}": perm(P.RECORDS_WRITE),
    "DELETE /api/records/{record_id}": perm(P.RECORDS_WRITE),
    "GET /api/records/{record_id}/timeline": perm(P.RECORDS_READ),
    "POST /api/intake/{target}": perm(P.RECORDS_WRITE),
    "GET /api/intake/refused": perm(P.RECORDS_READ),
    "GET /api/records/{record_id}/messages": perm(P.RECORDS_READ),
    "GET /api/records/{record_id}/attachments": perm(P.RECORDS_READ),
    "GET /api/attachments/{attachment_id}": perm(P.RECORDS_READ),
    # ---- runs and plans
    "POST /api/runs": perm(P.RUNS_WRITE),
    "GET /api/runs": perm(P.RUNS_READ),
    "GET /api/runs/{run_id}": perm(P.RUNS_READ),
    "GET /api/runs/{run_id}/events": perm(P.RUNS_READ),
    "POST /api/runs/{run_id}/cancel": perm(P.RUNS_WRITE),
    "POST /api/runs/{run_id}/resume": perm(P.RUNS_WRITE),
    "POST /api/runs/{run_id}/signal": perm(P.RUNS_WRITE),
    "GET /api/plans/{order_id}": perm(P.RUNS_READ),
    "POST /api/plans/{order_id}/cancel": perm(P.RUNS_WRITE),
    "POST /api/plans/{order_id}/amend": perm(P.RUNS_WRITE),
    # ---- work
    "GET /api/work": perm(P.WORK),  # an agent's list is their scope (checked below)
    "POST /api/work/next": perm(P.WORK, query="queue=no_such_queue"),
    "GET /api/work/{item_id}": WORK,
    "POST /api/work/{item_id}/claim": WORK,
    "POST /api/work/{item_id}/release": WORK,
    "POST /api/work/{item_id}/accept": WORK,
    "POST /api/work/{item_id}/decline": WORK,
    "POST /api/work/{item_id}/complete": WORK,
    # the submitter or runs:write, checked by the work service (404 outside one's scope)
    "POST /api/work/{item_id}/recall": Rule("signed_in", scoped=True),
    "POST /api/work/{item_id}/reassign": perm(P.WORK_ALL, scoped=True),
    # ---- fallout and incidents
    "GET /api/fallout": perm(P.FALLOUT),
    "POST /api/fallout/{fallout_id}/retry": perm(P.FALLOUT),
    "POST /api/fallout/{fallout_id}/complete": perm(P.FALLOUT),
    "POST /api/fallout/{fallout_id}/skip": perm(P.FALLOUT),
    "GET /api/incidents": perm(P.FALLOUT),
    "GET /api/incidents/{incident_id}": perm(P.FALLOUT),
    "POST /api/incidents/{incident_id}/retry": perm(P.FALLOUT),
    "POST /api/incidents/{incident_id}/dismiss": perm(P.FALLOUT),
    # ---- callbacks: the token is the credential (unknown: 404)
    "POST /api/callbacks/{token}": public(404),
    # ---- operations and docs
    "GET /healthz": public(200),
    "GET /readyz": public(),  # 200 or 503 (no worker heartbeating): never asks who
    "GET /metrics": perm(P.RUNS_READ),
    "GET /openapi.json": public(200),
    "GET /docs": public(200),
    # ---- pages
    "GET /": SIGNED_IN,
    "GET /login": public(),  # the form; signed in: on to `next` (303)
    "POST /login": public(401),  # (a wrong password, with the form's CSRF token)
    "POST /logout": SIGNED_IN,
    "GET /settings": SIGNED_IN,
    "POST /settings": SIGNED_IN,  # one's own delegate only
    "GET /work": perm(P.WORK),
    "GET /work/live": perm(P.WORK),
    "POST /work/next": perm(P.WORK, body={"queue": "no_such_queue"}),
    "GET /work/{item_id}": WORK,
    "POST /work/{item_id}": WORK,
    "POST /work/{item_id}/claim": WORK,
    "POST /work/{item_id}/release": WORK,
    "POST /work/{item_id}/accept": WORK,
    "POST /work/{item_id}/decline": WORK,
    "POST /work/{item_id}/reassign": Rule("perm", P.WORK, scoped=True),  # then work:all
    "GET /runs": perm(P.RUNS_READ),
    "GET /runs/{run_id}": perm(P.RUNS_READ),
    "GET /runs/{run_id}/live": perm(P.RUNS_READ),
    "POST /runs/{run_id}/cancel": perm(P.RUNS_WRITE),
    "POST /runs/{run_id}/resume": perm(P.RUNS_WRITE),
    "POST /runs/{run_id}/steps/{step}/resolve": perm(P.FALLOUT),
    "GET /records": perm(P.RECORDS_READ),
    "GET /records/{record_id}": perm(P.RECORDS_READ),
    "GET /records/new/{object_type}": perm(P.RECORDS_WRITE),
    "POST /records/new/{object_type}": perm(P.RECORDS_WRITE),
    "GET /records/{record_id}/edit": perm(P.RECORDS_WRITE),
    "POST /records/{record_id}/edit": perm(P.RECORDS_WRITE),
    "GET /definitions": perm(P.DEFINITIONS_READ),
    "GET /definitions/{kind}/{name}": perm(P.DEFINITIONS_READ),
    "POST /definitions/{kind}/{name}/activate": perm(P.DEFINITIONS_WRITE),
    "POST /definitions/{kind}/{name}/deactivate": perm(P.DEFINITIONS_WRITE),
    "GET /fallout": perm(P.FALLOUT),
    "POST /fallout": perm(P.FALLOUT),
    "POST /fallout/incidents": perm(P.FALLOUT),
    "POST /fallout/group": perm(P.FALLOUT),
    "GET /team": perm(P.TEAM),
    "POST /team": perm(P.TEAM),
    "GET /forms/{name}": public(404),  # a public intake form (none of that name here)
    "POST /forms/{name}": public(404),
}
TWINS_MODULE = "baton.web.ui.get_twins"  # GET twins of POST-only page URLs: redirects


def served_routes(api: Api) -> dict[str, str]:
    """``METHOD /path`` -> the module of its endpoint, for every route the app serves
    (the app's included routers walked; HEAD, which answers as GET, left out)."""
    found: dict[str, str] = {}

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            inner = getattr(route, "original_router", None)
            if inner is not None:
                walk(list(inner.routes), prefix + route.include_context.prefix)
            elif isinstance(route, APIRoute | Route) and not isinstance(route, Mount):
                for method in sorted((route.methods or set()) - {"HEAD"}):
                    found[f"{method} {prefix}{route.path}"] = route.endpoint.__module__
    walk(list(api.app.router.routes), "")
    return found


def test_the_roles_table_is_what_roles_py_grants() -> None:
    assert {role: GRANTS[role] for role in ROLE_GRANTS} == ROLE_GRANTS
    assert set(GRANTS) == set(ROLE_GRANTS), "a role README's table does not have"


def test_every_route_is_classified(sqlite_api: Api) -> None:
    served = served_routes(sqlite_api)
    derived = {k for k, module in served.items() if module == TWINS_MODULE}
    unclassified = sorted(set(served) - derived - set(ROUTES))
    assert not unclassified, (
        f"routes nobody said who may call: {unclassified}; add each to ROUTES in "
        "tests/api/test_access_matrix.py (from README's roles table)")
    gone = sorted(set(ROUTES) - set(served))
    assert not gone, f"ROUTES lists routes the app no longer serves: {gone}"
    for twin in derived:  # each twin is the GET of a classified POST
        assert "POST " + twin.removeprefix("GET ") in ROUTES, twin
    spec = sqlite_api.client.get("/openapi.json").json()
    documented = {f"{m.upper()} {p}" for p, ops in spec["paths"].items() for m in ops}
    assert documented <= set(ROUTES), sorted(documented - set(ROUTES))


# ---- calling every route as everyone ---------------------------------------------------------
@dataclass
class World:
    api: Api
    real: dict[str, str]  # path parameter -> an id that exists (GETs read real things)
    missing: dict[str, str]  # -> one that does not (writes change nothing)
    pages: dict[str | None, TestClient] = field(default_factory=dict)
    csrf: dict[str | None, str] = field(default_factory=dict)


def _browser(api: Api, who: str | None) -> tuple[TestClient, str]:
    """A browser of its own (cookie jar) signed in as ``who`` (None: nobody), and its
    CSRF token."""
    browser = TestClient(api.app)
    if who is None:
        return browser, ""
    form = browser.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, form[:300]
    r = browser.post("/login", data={"username": who, "password": PASSWORD,
                                     "csrf_token": token[1]}, follow_redirects=False)
    assert r.status_code == 303, (who, r.status_code, r.text[:300])
    page = browser.get("/settings").text
    csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', page)
    assert csrf, page[:300]
    return browser, csrf[1]


@pytest.fixture
def world(sqlite_api: Api) -> Iterator[World]:
    api = sqlite_api
    case = api.new_case("Access matrix")  # -> its triage item waits in queue tier1 (ann's)
    item = api.item_of(case["id"])
    real = {"item_id": item["id"], "record_id": case["id"], "run_id": item["run_id"],
            "kind": "orchestration", "name": "case_triage", "version": "1",
            "object_type": "Case", "step": "triage"}
    missing = {"item_id": "wi_missing", "record_id": "rec_missing", "run_id": "run_missing",
               "kind": "orchestration", "name": "no_such_name", "version": "99",
               "object_type": "NoSuchType", "step": "no_step", "token_id": "tok_missing",
               "address": "192.0.2.1", "target": "no_such_box",
               "attachment_id": "att_missing", "order_id": "ord_missing",
               "fallout_id": "run_missing:no_step", "incident_id": "inc_missing",
               "token": "not.a-token"}
    for name in [who for who in CALLERS if who is not None]:
        api.engine.directory.update_user(name, password=PASSWORD)
    w = World(api, {**missing, **real}, missing)
    for who in CALLERS:
        w.pages[who], w.csrf[who] = _browser(api, who)
    yield w
    for browser in w.pages.values():
        browser.close()


def _fill(path: str, ids: dict[str, str], who: str | None) -> str:
    def value(m: re.Match[str]) -> str:
        if m[1] == "name" and path.startswith("/api/users/"):
            return who or "root"  # (own, for a rule of kind "own"; a USERS route: a user)
        return quote(ids[m[1]], safe="")
    return re.sub(r"{(\w+)}", value, path)


def _call(w: World, who: str | None, method: str, url: str, body: Any) -> Any:
    """One call as ``who``: the API with their token, a page with their browser (and the
    session's CSRF token on a form)."""
    if url.startswith("/api/") or url == "/metrics":
        headers = {"Authorization": f"Bearer {w.api.tokens[who]}"} if who else {}
        return w.api.client.request(method, url, json=body if method != "GET" else None,
                                    headers=headers, follow_redirects=False)
    browser = w.pages[who]
    if method == "GET":
        return browser.get(url, follow_redirects=False)
    if url == "/login":  # a wrong password, with the login form's own token (double submit)
        with TestClient(w.api.app) as fresh:
            token = re.search(r'name="csrf_token" value="([^"]+)"', fresh.get(url).text)
            assert token
            return fresh.post(url, data={"username": f"nobody-{who}", "password": "wrong-pw",
                                         "csrf_token": token[1]}, follow_redirects=False)
    if url == "/logout" and who is not None:  # (a browser of its own: this one stays in)
        other, csrf = _browser(w.api, who)
        with other:
            return other.post(url, data={"csrf_token": csrf}, follow_redirects=False)
    data = {"csrf_token": w.csrf[who], **(body or {})}
    return browser.post(url, data=data, follow_redirects=False)


def _to_login(r: Any) -> bool:
    return r.status_code in (303, 204) and (
        r.headers.get("location", "") + r.headers.get("HX-Redirect", "")).startswith(
        "/login?next=")


def _check(key: str, who: str | None, allowed: bool, r: Any, rule: Rule) -> None:
    said = (key, who, r.status_code, r.text[:200])
    _check_headers(key, who, r)
    if rule.kind == "public":
        if rule.expect is not None:
            assert r.status_code == rule.expect, said
        else:
            assert r.status_code not in (401, 403) and not _to_login(r), said
        return
    page = not key.split(" ", 1)[1].startswith(("/api/", "/metrics"))
    if who is None:
        if page:
            assert _to_login(r), said
        else:
            assert r.status_code == 401, said
            assert r.headers["www-authenticate"].startswith("Bearer"), said
    elif not allowed:
        assert r.status_code == 403, said
    else:
        assert r.status_code not in (401, 403) and not _to_login(r), said
        assert r.status_code < 500, said


def _check_headers(key: str, who: str | None, r: Any) -> None:
    """What every answer carries: never sniffed, never framed; HTML under the pages' CSP;
    nothing kept by a cache of what a signed-in caller was told."""
    h = r.headers
    said = (key, who, r.status_code, dict(h))
    assert h.get("x-content-type-options") == "nosniff", said
    assert h.get("x-frame-options") == "DENY", said
    if h.get("content-type", "").startswith("text/html"):
        assert "frame-ancestors 'none'" in h.get("content-security-policy", ""), said
    if who is not None and key != "POST /login":  # (/login: a fresh browser, nobody's)
        assert h.get("cache-control") == "no-store", said


def _may(who: str | None, p: Permission | None) -> bool:
    role = CALLERS[who]
    return role is not None and (p is None or p in ROLE_GRANTS[role])


def test_every_route_as_every_role(world: World) -> None:
    w = world
    before = w.api.engine.get_work_item(w.real["item_id"])
    for key, rule in ROUTES.items():
        method, path = key.split(" ", 1)
        ids = w.real if method == "GET" else w.missing
        for who in CALLERS:
            url = _fill(path, ids, who) + (f"?{rule.query}" if rule.query else "")
            body = rule.body if rule.body is not None else ({} if method != "GET" else None)
            r = _call(w, who, method, url, body)
            _check(key, who, _may(who, rule.perm if rule.kind == "perm" else None), r, rule)
            if rule.kind == "own" and who is not None:
                assert rule.other is not None
                o_method, o_url, o_body = rule.other(who)
                r = _call(w, who, o_method, o_url, o_body)
                _check(key + " (someone else's)", who, _may(who, rule.perm), r, rule)
    # a GET twin of a POST-only page URL sends a signed-in browser to its form's page and
    # nobody to the login page; it does nothing else
    for key, module in served_routes(w.api).items():
        if module != TWINS_MODULE:
            continue
        url = _fill(key.removeprefix("GET "), w.real, None)
        for who in CALLERS:
            r = w.pages[who].get(url, follow_redirects=False)
            assert r.status_code == 303, (key, who, r.status_code)
            assert _to_login(r) == (who is None), (key, who, r.headers["location"])
    after = w.api.engine.get_work_item(w.real["item_id"])
    assert (after["status"], after["claimed_by"], after["version"]) == \
        (before["status"], before["claimed_by"], before["version"])


def test_an_agent_outside_an_items_scope_gets_404_everywhere(world: World) -> None:
    """bob (queue tier2) and the triage item of queue tier1: every route on one work item,
    API and pages, answers as if it did not exist (403 where the route needs work:all,
    which an agent never has), and the item is unchanged. ann (tier1) sees it."""
    w = world
    item_id = w.real["item_id"]
    before = w.api.engine.get_work_item(item_id)
    scoped = [k for k, rule in ROUTES.items() if rule.scoped]
    assert len(scoped) >= 15, scoped
    for key in scoped:
        method, path = key.split(" ", 1)
        url = _fill(path, w.real, "bob")
        body: Any = {"data": {"resolution": "close"}} if path.endswith("/complete") else {}
        if key.endswith("/reassign"):
            body = {"to": "queue:tier2"}
        if not path.startswith("/api/"):
            body = {"resolution": "close", "to": "queue:tier2"}
        r = _call(w, "bob", method, url, body)
        want = 403 if key == "POST /api/work/{item_id}/reassign" else 404
        assert r.status_code == want, (key, r.status_code, r.text[:200])
        assert "Access matrix" not in r.text, key  # nothing of the item in the answer
    after = w.api.engine.get_work_item(item_id)
    assert (after["status"], after["claimed_by"], after["version"], after["assignee"]) == \
        (before["status"], before["claimed_by"], before["version"], before["assignee"])
    assert _call(w, "ann", "GET", f"/api/work/{item_id}", None).status_code == 200
    assert _call(w, "ann", "GET", f"/work/{item_id}", None).status_code == 200
    # and the lists: nothing of it, whatever the filter
    for query in ("", "?queue=tier1", f"?record_id={w.real['record_id']}", "?tab=all",
                  "?q=Access", "?status=open&status=claimed&status=completed"):
        listed = _call(w, "bob", "GET", "/api/work" + query, None).json()
        assert listed["items"] == [] and listed["total"] == 0, (query, listed)
    for query in ("", "?queue=tier1", "?q=Access", "?tab=unclaimed"):
        page = _call(w, "bob", "GET", "/work" + query, None)
        assert page.status_code == 200 and item_id not in page.text, query
    assert _call(w, "bob", "POST", "/api/work/next?queue=tier1", None).status_code == 204


# ---- sessions, input, headers: what the probing found -----------------------------------------
def _signed_in(api: Api, who: str) -> tuple[TestClient, str]:
    api.engine.directory.update_user(who, password=PASSWORD)
    return _browser(api, who)


def test_a_login_ends_the_session_the_browser_had_and_logout_ends_its_own(
        sqlite_api: Api) -> None:
    """Logging in from a browser that has a session (a shared computer: ann leaves, bob
    signs in) ends ann's session on the server too, not only in that cookie jar; logging
    out ends the session on the server (its cookie, replayed, is nobody's)."""
    api = sqlite_api
    api.engine.directory.update_user("bob", password=PASSWORD)
    browser, _ = _signed_in(api, "ann")
    with browser:
        ann_cookie = browser.cookies["baton_session"]
        form = browser.get("/logout", follow_redirects=False)  # (a GET ends nothing)
        assert form.status_code == 303 and browser.get("/api/me").json()["name"] == "ann"
        browser.cookies.set("baton_login_csrf", "t0ken-1", path="/login")
        r = browser.post("/login", data={"username": "bob", "password": PASSWORD,
                                         "csrf_token": "t0ken-1"}, follow_redirects=False)
        assert r.status_code == 303
        assert browser.get("/api/me").json()["name"] == "bob"
        bob_cookie = browser.cookies["baton_session"]
        assert bob_cookie != ann_cookie
        csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', browser.get("/settings").text)
        assert csrf
        assert browser.post("/logout", data={"csrf_token": csrf[1]},
                            follow_redirects=False).headers["location"] == "/login?logged_out=1"
    for cookie in (ann_cookie, bob_cookie):
        with TestClient(api.app, cookies={"baton_session": cookie}) as replay:
            assert replay.get("/api/me").status_code == 401
            assert _to_login(replay.get("/work", follow_redirects=False))


def test_pages_refuse_text_no_database_keeps(api: Api) -> None:
    """A NUL in a page's form, query or path (the login form's user name, a Work Guide
    search, an item id) is a 422 page naming it, before any query: PostgreSQL refuses NUL
    in text, which was a 500 (a login form anyone can post to among them)."""
    with TestClient(api.app) as anonymous:
        token = re.search(r'name="csrf_token" value="([^"]+)"', anonymous.get("/login").text)
        assert token
        r = anonymous.post("/login", data={"username": "ann\x00", "password": "x",
                                           "csrf_token": token[1]})
        assert r.status_code == 422 and "form.username: must not contain NUL" in r.text
        assert "text/html" in r.headers["content-type"]
    browser, csrf = _signed_in(api, "ann")
    with browser:
        for url in ("/work?q=a%00b", "/work?queue=%00", "/work/wi_%00", "/work/live?tab=%00"):
            r = browser.get(url)
            assert r.status_code == 422 and "must not contain NUL" in r.text, (url, r.text)
        r = browser.post("/settings", data={"csrf_token": csrf, "delegate": "b\x00b"})
        assert r.status_code == 422 and "form.delegate" in r.text
        r = browser.post("/work/next", data={"csrf_token": csrf, "queue": "q\x00"})
        assert r.status_code == 422
        assert browser.get("/work?q=fine").status_code == 200


def test_static_files_stay_cacheable_for_a_signed_in_browser(sqlite_api: Api) -> None:
    browser, _ = _signed_in(sqlite_api, "ann")
    with browser:
        r = browser.get("/static/baton.css")
        assert r.status_code == 200 and "cache-control" not in r.headers
        assert r.headers["x-content-type-options"] == "nosniff"
        assert browser.get("/work").headers["cache-control"] == "no-store"


def test_numbers_past_what_a_column_holds_are_not_a_500(sqlite_api: Api) -> None:
    browser, csrf = _signed_in(sqlite_api, "root")
    with browser:
        assert browser.get("/runs?version=99999999999999999999").status_code == 200
        r = browser.post("/definitions/orchestration/case_triage/activate",
                         data={"csrf_token": csrf, "version": "99999999999999999999"})
        assert r.status_code == 422 and "version" in r.text, r.text
    rows = sqlite_api.engine.definitions.list_versions("orchestration", "case_triage")
    assert [r.active for r in rows] == [True]


def test_the_run_page_says_only_what_an_action_did(sqlite_api: Api) -> None:
    """``?done=`` is where an action's form sends the browser; any other text a link puts
    there ("Done: your session expired, call …") is not shown on a page of this site."""
    api = sqlite_api
    case = api.new_case("Done notes")
    run_id = api.item_of(case["id"])["run_id"]
    browser, _ = _signed_in(api, "opal")
    with browser:
        def note(done: str, page: str = f"/runs/{run_id}") -> str | None:
            found = re.search(r'class="alert alert-ok" role="status">Done: (.*?)\.</div>',
                              browser.get(page, params={"done": done}).text)
            return found[1] if found else None

        assert note("run canceled") == "run canceled"
        assert note("skip triage") == "skip triage"  # an action on a step of this run
        assert note("Your session expired, call 555-0100") is None
        assert note("skip no_such_step") is None
        assert note("retried 3 steps", "/fallout") == "retried 3 steps"
        assert note("retried 3 steps. Call 555-0100", "/fallout") is None


def test_an_attachment_name_on_two_lines_is_refused(sqlite_api: Api) -> None:
    """A file name cannot hold a line break (it goes into an e-mail header): 422 naming
    it, not the 500 of a header Python's e-mail package would not write."""
    api = sqlite_api
    box = "kind: mailbox\nname: support\nobject: Case\nfields: {subject: subject}\n"
    assert api.post("root", "/api/definitions/deploy",
                    {"files": {"box.yaml": box}}).status_code == 200
    def message(filename: str) -> dict[str, Any]:
        return {"subject": "Invoice", "sender": "ana@example.com",
                "attachments": [{"filename": filename, "content_type": "text/plain",
                                 "content_base64": "aGk="}]}

    r = api.post("opal", "/api/intake/support", message("a\r\nX-Evil: 1.txt"))
    assert r.status_code == 422, r.text
    assert "body.attachments.0.filename" in {e["field"] for e in r.json()["errors"]}
    assert api.post("opal", "/api/intake/support", message("résumé 2.txt")).status_code == 200
