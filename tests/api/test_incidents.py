"""Incidents over the REST API: listed, retried and dismissed by operators only."""

from __future__ import annotations

from tests.api.conftest import Api, assert_problem
from tests.costly import GADGETS


def _incident(api: Api) -> tuple[str, str]:
    r = api.post("dee", "/api/definitions/deploy", {"files": {"gadgets.yaml": GADGETS}})
    assert r.status_code in (200, 201), r.text
    r = api.post("opal", "/api/objects/Gadget/records", {"data": {"label": "g1"}})
    assert r.status_code == 201, r.text  # the record is saved whatever its trigger does
    record_id = r.json()["id"]
    listed = api.get("opal", "/api/incidents").json()
    assert listed["total"] == 1
    (inc,) = listed["items"]
    assert (inc["kind"], inc["status"], inc["record_id"], inc["orchestration"]) == (
        "trigger_failed", "open", record_id, "gadget_check")
    assert "too costly" in inc["error"] and inc["expression"].startswith("=record.broken")
    return inc["id"], record_id


def test_operators_retry_an_incident_once_the_record_is_fixed(api: Api) -> None:
    inc_id, record_id = _incident(api)
    r = api.post("opal", f"/api/incidents/{inc_id}/retry", {"reason": "still broken?"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["attempts"]) == ("open", 2)
    r = api.patch("opal", f"/api/records/{record_id}", {"data": {"broken": False}})
    assert r.status_code == 200, r.text
    r = api.post("opal", f"/api/incidents/{inc_id}/retry", {"reason": "fixed the flag"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "resolved" and body["resolved_by"] == "opal" and body["run_id"]
    assert api.get("opal", f"/api/runs/{body['run_id']}").json()["orchestration"] == "gadget_check"
    assert api.get("opal", "/api/incidents").json()["total"] == 0
    assert api.get("opal", "/api/incidents?status=resolved").json()["total"] == 1
    assert_problem(api.post("opal", f"/api/incidents/{inc_id}/retry", {"reason": "x"}), 409)
    events = api.get("opal", f"/api/records/{record_id}/timeline?limit=500").json()["items"]
    kinds = [e["type"] for e in events]
    assert "trigger_failed" in kinds and kinds.count("incident_retried") == 2


def test_operators_dismiss_an_incident_with_a_reason(api: Api) -> None:
    inc_id, record_id = _incident(api)
    assert_problem(api.post("opal", f"/api/incidents/{inc_id}/dismiss", {}), 422, "reason")
    r = api.post("opal", f"/api/incidents/{inc_id}/dismiss", {"reason": "test gadget"})
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["reason"]) == ("dismissed", "test gadget")
    assert api.get("opal", f"/api/incidents/{inc_id}").json()["status"] == "dismissed"
    assert_problem(api.post("opal", f"/api/incidents/{inc_id}/dismiss", {"reason": "x"}), 409)
    assert_problem(api.post("opal", "/api/incidents/inc_missing/dismiss", {"reason": "x"}), 404)
    assert_problem(api.get("opal", "/api/incidents?status=lost"), 422)
    events = api.get("opal", f"/api/records/{record_id}/timeline?limit=500").json()["items"]
    (dismissed,) = [e for e in events if e["type"] == "incident_dismissed"]
    assert dismissed["actor"] == "opal" and dismissed["data"]["reason"] == "test gadget"


def test_agents_and_designers_may_not_see_or_act_on_incidents(api: Api) -> None:
    inc_id, _ = _incident(api)
    for who in ("ann", "dee"):
        assert_problem(api.get(who, "/api/incidents"), 403)
        assert_problem(api.get(who, f"/api/incidents/{inc_id}"), 403)
        for action in ("retry", "dismiss"):
            assert_problem(api.post(who, f"/api/incidents/{inc_id}/{action}", {"reason": "x"}), 403)
    assert api.get("opal", f"/api/incidents/{inc_id}").json()["status"] == "open"
    assert api.get("root", "/api/incidents").json()["total"] == 1


def test_the_fallout_page_lists_incidents_with_csrf_protected_retry_and_dismiss(sqlite_api: Api) -> None:
    api = sqlite_api
    inc_id, record_id = _incident(api)
    cookie, csrf = api.engine.directory.create_session("opal")
    api.client.cookies.set("baton_session", cookie)
    try:
        page = api.client.get("/fallout")
        assert page.status_code == 200
        assert inc_id in page.text and record_id in page.text and "too costly" in page.text
        form = {"id": inc_id, "action": "dismiss", "reason": "a test gadget"}
        assert api.client.post("/fallout/incidents", data=form).status_code == 403  # no CSRF token
        r = api.client.post("/fallout/incidents", data={**form, "reason": "", "csrf_token": csrf})
        assert r.status_code == 422 and "Reason is required" in r.text
        assert api.engine.get_incident(inc_id)["status"] == "open"
        r = api.client.post("/fallout/incidents", data={**form, "csrf_token": csrf},
                            follow_redirects=False)
        assert r.status_code == 303, r.text
        assert "No open incidents." in api.client.get(r.headers["location"]).text
        done = api.engine.get_incident(inc_id)
        assert (done["status"], done["resolved_by"], done["reason"]) == (
            "dismissed", "opal", "a test gadget")
        r = api.client.post("/fallout/incidents", data={**form, "csrf_token": csrf})
        assert r.status_code == 409 and "dismissed" in r.text
    finally:
        api.client.cookies.clear()
    cookie, _ = api.engine.directory.create_session("ann")
    api.client.cookies.set("baton_session", cookie)
    try:
        assert api.client.get("/fallout").status_code == 403
    finally:
        api.client.cookies.clear()
