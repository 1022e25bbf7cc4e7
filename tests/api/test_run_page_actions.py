"""The run page for operators (issue 16 point 2): what needs attention in the header, each
step's start, duration and output, earlier iterations, and the actions (cancel, resume,
retry / skip / complete a step in fallout) with reason, CSRF and role checks."""

from __future__ import annotations

import re

from baton.engine.status import RunStatus
from tests.api.conftest import FLAKY, Api


def login(api: Api, name: str, password: str = "pw-secret-123") -> str:
    """A browser session for ``name``; returns its CSRF token."""
    api.engine.directory.update_user(name, password=password)
    client = api.client
    client.cookies.clear()
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    r = client.post("/login", data={"username": name, "password": password,
                                    **({"csrf_token": csrf[1]} if csrf else {})},
                    follow_redirects=False)
    assert r.status_code in (302, 303), r.text
    page = client.get("/runs")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text) or re.search(
        r'csrf-token" content="([^"]+)"', page.text)
    assert token, page.text[:500]
    return token[1]


def test_fallout_step_is_resolved_from_the_run_page(api: Api) -> None:
    api.post("root", "/api/definitions/deploy", {"files": {"flaky.yaml": FLAKY}})
    run_id = api.post("opal", "/api/runs", {"orchestration": "flaky_job", "input": {"n": 1}}).json()["id"]
    api.work()
    csrf = login(api, "opal")
    page = api.client.get(f"/runs/{run_id}")
    assert "1 step in fallout" in page.text and "Operator actions" in page.text
    assert f'action="/runs/{run_id}/steps/boom/resolve"' in page.text

    r = api.client.post(f"/runs/{run_id}/steps/boom/resolve",
                        data={"action": "complete", "reason": "", "output": '{"ok": true}',
                              "csrf_token": csrf})
    assert r.status_code == 422 and "reason is required" in r.text
    # what was typed is kept: the action chosen (not back to retry) and the output
    assert 'value="complete" checked' in r.text and 'value="retry" checked' not in r.text
    assert "{&#34;ok&#34;: true}</textarea>" in r.text
    r = api.client.post(f"/runs/{run_id}/steps/boom/resolve",
                        data={"action": "complete", "reason": "done by hand",
                              "output": '{"ok": true}'}, follow_redirects=False)
    assert r.status_code == 403, "no CSRF token: refused"
    deep = "[" * 100_000 + "]" * 100_000  # (200 KB: under the body limit)
    for output, said in (("{not json", "not valid JSON"), (deep, "nested too deeply")):
        r = api.client.post(f"/runs/{run_id}/steps/boom/resolve",
                            data={"action": "complete", "reason": "by hand", "output": output,
                                  "csrf_token": csrf})
        assert r.status_code == 422 and said in r.text, (said, r.status_code)
        r = api.client.post("/fallout", data={"id": f"{run_id}:boom", "action": "complete",
                                              "reason": "by hand", "output": output,
                                              "csrf_token": csrf})
        assert r.status_code == 422 and said in r.text, (said, r.status_code)
    r = api.client.post(f"/runs/{run_id}/steps/boom/resolve",
                        data={"action": "complete", "reason": "done by hand",
                              "output": '{"ok": true}', "csrf_token": csrf},
                        follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("?done=complete%20boom"), r.text
    api.work()
    run = api.engine.get_run(run_id)
    assert run.status is RunStatus.COMPLETED and run.steps["boom"].output == {"ok": True}
    page = api.client.get(f"/runs/{run_id}?done=complete+boom").text
    assert "Done: complete boom." in page and "in fallout" not in page
    assert "Duration" in page and "output" in page

    r = api.client.post(f"/runs/{run_id}/steps/boom/resolve",
                        data={"action": "retry", "reason": "again", "csrf_token": csrf})
    assert r.status_code == 409, "no longer in fallout: said on the page"


def test_cancel_needs_the_runs_write_role(api: Api) -> None:
    case = api.new_case("Cancel me")
    (run,) = api.engine.list_runs(record_id=case["id"])
    csrf = login(api, "dee")  # a designer reads runs but may not change them
    assert "Cancel run" not in api.client.get(f"/runs/{run.id}").text
    r = api.client.post(f"/runs/{run.id}/cancel", data={"reason": "x", "csrf_token": csrf})
    assert r.status_code == 403
    csrf = login(api, "opal")
    assert "Cancel run" in api.client.get(f"/runs/{run.id}").text
    r = api.client.post(f"/runs/{run.id}/cancel", data={"reason": "duplicate case",
                                                          "csrf_token": csrf},
                        follow_redirects=False)
    assert r.status_code == 303
    assert api.engine.get_run(run.id).status is RunStatus.CANCELED
    events = [e for e in api.engine.run_events(run.id) if e["type"] == "run_canceled"]
    assert events and events[0]["actor"] == "opal", events


def test_fallout_page_groups_by_error_and_retries_a_group(api: Api) -> None:
    api.post("root", "/api/definitions/deploy", {"files": {"flaky.yaml": FLAKY}})
    runs = [api.post("opal", "/api/runs", {"orchestration": "flaky_job", "input": {"n": i}}).json()["id"]
            for i in range(3)]
    api.work()
    csrf = login(api, "opal")
    page = api.client.get("/fallout").text
    assert "Retry all 3" in page, page
    key = re.search(r'name="key" value="([^"]+)"', page)
    assert key
    import html
    r = api.client.post("/fallout/group", data={"key": html.unescape(key[1]), "reason": "",
                                                "csrf_token": csrf})
    assert r.status_code == 422 and "Reason is required" in r.text
    r = api.client.post("/fallout/group", data={"key": html.unescape(key[1]), "count": "3",
                                                "reason": "billing is back", "csrf_token": csrf},
                        follow_redirects=False)
    assert r.status_code == 303 and "retried%203%20steps" in r.headers["location"], r.headers
    for run_id in runs:
        retried = [e for e in api.engine.run_events(run_id) if e["type"] == "fallout_retried"]
        assert len(retried) == 1 and retried[0]["actor"] == "opal", retried
    r = api.client.post("/fallout/group", data={"key": html.unescape(key[1]), "count": "3",
                                                "reason": "again", "csrf_token": csrf})
    assert r.status_code == 409 and "Nothing left in that group" in r.text
