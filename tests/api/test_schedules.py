"""A schedule's next tick where people look: the API's definition detail and the
Definitions page (issue 16, schedule triggers)."""

from __future__ import annotations

from datetime import timedelta

from tests.api.conftest import Api

NIGHTLY = """
kind: orchestration
name: nightly
trigger: {type: schedule, cron: "30 6 * * *", timezone: Europe/Paris}
stages:
  - name: work
    steps: [{name: sweep, type: background, flow: api_tests.ok}]
"""


def test_the_next_tick_is_shown_and_moves_on_after_firing(api: Api) -> None:
    r = api.post("dee", "/api/definitions/deploy", {"files": {"nightly.yaml": NIGHTLY}})
    assert r.status_code == 200, r.text
    detail = api.get("opal", "/api/definitions/orchestration/nightly").json()
    # The clock starts on 2026-01-05 09:00 UTC; 06:30 in Paris (UTC+1 in January) has passed.
    assert detail["schedule"] == {"cron": "30 6 * * *", "timezone": "Europe/Paris", "version": 1,
                                  "next_at": detail["schedule"]["next_at"], "last_at": None,
                                  "last_run_id": None}, detail
    assert detail["schedule"]["next_at"].startswith("2026-01-06T05:30:00"), detail
    page = api.get("opal", "/definitions/orchestration/nightly")
    assert page.status_code == 200 and "next run" in page.text and "30 6 * * *" in page.text

    api.clock.advance(timedelta(days=1))
    api.work()
    sch = api.get("opal", "/api/definitions/orchestration/nightly").json()["schedule"]
    assert sch["last_at"].startswith("2026-01-06T05:30:00"), sch
    assert sch["next_at"].startswith("2026-01-07T05:30:00"), sch
    run = api.get("opal", f"/api/runs/{sch['last_run_id']}").json()
    assert run["orchestration"] == "nightly" and run["status"] == "completed", run
    assert sch["last_run_id"] in api.get("opal", "/definitions/orchestration/nightly").text

    api.post("dee", "/api/definitions/orchestration/nightly/deactivate")
    sch = api.get("opal", "/api/definitions/orchestration/nightly").json()["schedule"]
    assert sch["next_at"] is None, sch
    assert "not armed" in api.get("opal", "/definitions/orchestration/nightly").text
