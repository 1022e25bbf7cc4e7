"""The Fallout list read from ``baton_fallout`` (migration 31), on both databases.

The table is kept by the run writer and a trigger on ``baton_runs``; these tests follow it
through every way a step enters and leaves fallout (a failure, a retry that fails again, a
complete, a skip, the run canceled), compare it each time with the truth read from the
runs' states, and check that the three faces (the API, the page's totals, groups and
pages, "Retry all N") read it as they read every run before.
"""

from __future__ import annotations

import html
import re
from typing import Any

from sqlalchemy import delete, select

from baton.engine.state import Run
from baton.store import schema
from baton.store.sql import SqlStore
from tests.api.conftest import Api
from tests.api.test_run_page_actions import login

TWO = """
kind: orchestration
name: two_booms
trigger:
  type: autolaunched
  input: {n: {type: int, required: true}}
stages:
  - name: only
    steps:
      - {name: zeta, type: background, flow: api_tests.boom, retry: {max: 1}}
      - {name: alpha, type: background, flow: api_tests.boom, retry: {max: 1}}
      - {name: done, type: background, flow: api_tests.ok, after: [zeta, alpha]}
"""


def _table(api: Api) -> list[tuple[str, str, int, str, str]]:
    """baton_fallout as stored: (run_id, step, pos, orchestration, message), sorted."""
    f = schema.fallout
    with api.engine.store.read() as tx:
        rows = tx.conn.execute(select(f.c.run_id, f.c.step, f.c.pos, f.c.orchestration,
                                      f.c.message)).all()
    return sorted(tuple(r) for r in rows)  # type: ignore[misc]


def _truth(api: Api) -> list[tuple[str, str, int, str, str]]:
    """The steps in fallout of the runs in progress, from every run's state."""
    out = []
    with api.engine.store.read() as tx:
        ids = [r[0] for r in tx.conn.execute(select(schema.runs.c.id)).all()]
        rows = tx.get_runs_txn(ids)
    for row in rows.values():
        run = Run.from_json(row["state"])
        if run.status.value != "in_progress":
            continue
        for pos, sr in enumerate(run.steps.values()):
            if sr.status.value == "fallout":
                out.append((run.id, sr.name, pos, run.orchestration,
                            (sr.error or {}).get("message") or str(sr.error)))
    return sorted(out)


def _start(api: Api, n: int) -> list[str]:
    out = []
    for i in range(n):
        r = api.post("opal", "/api/runs", {"orchestration": "two_booms", "input": {"n": i}})
        assert r.status_code == 201, r.text
        out.append(r.json()["id"])
    return out


def _act(api: Api, fallout_id: str, action: str, **body: Any) -> None:
    r = api.post("opal", f"/api/fallout/{fallout_id}/{action}", {"reason": "ops", **body})
    assert r.status_code == 200, r.text


def test_the_fallout_rows_follow_every_way_in_and_out(api: Api) -> None:
    api.post("root", "/api/definitions/deploy", {"files": {"two.yaml": TWO}})
    a, b, c = _start(api, 3)
    api.work()
    assert len(_table(api)) == 6 and _table(api) == _truth(api)
    # the steps keep their place in their run's order (zeta first): the API lists them so
    listed = api.get("opal", "/api/fallout", params={"limit": 50}).json()
    assert [i["id"] for i in listed["items"]] == [f"{r}:{s}" for r in (a, b, c)
                                                  for s in ("zeta", "alpha")]
    _act(api, f"{a}:zeta", "retry")  # retried: it fails again, back in fallout
    assert (a, "zeta") not in {(r[0], r[1]) for r in _table(api)}
    assert _table(api) == _truth(api)
    api.work()
    assert (a, "zeta") in {(r[0], r[1]) for r in _table(api)} and _table(api) == _truth(api)
    _act(api, f"{a}:zeta", "complete", data={"ok": 1})
    _act(api, f"{b}:alpha", "skip")
    assert _table(api) == _truth(api) and len(_table(api)) == 4
    _act(api, f"{a}:alpha", "skip")  # a's last step in fallout: its rows go (the trigger)
    api.work()
    assert a not in {r[0] for r in _table(api)} and _table(api) == _truth(api)
    r = api.post("opal", f"/api/runs/{c}/cancel", {"reason": "not needed"})
    assert r.status_code == 200, r.text
    assert _table(api) == _truth(api) == [(b, "zeta", 0, "two_booms",
                                           "the billing system said no")]
    page = api.get("opal", "/api/fallout").json()
    assert page["total"] == 1 and [i["id"] for i in page["items"]] == [f"{b}:zeta"]


def test_the_api_pages_by_position_and_the_page_by_cursor_with_true_totals(api: Api) -> None:
    api.post("root", "/api/definitions/deploy", {"files": {"two.yaml": TWO}})
    runs = _start(api, 6)
    api.work()
    every = [f"{r}:{s}" for r in runs for s in ("zeta", "alpha")]
    seen, after = [], None
    while True:
        r = api.get("opal", "/api/fallout", params={"limit": 5, **({"after": after} if after else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == 12
        seen += [i["id"] for i in body["items"]]
        after = body["next"]
        if after is None:
            break
    assert seen == every
    assert api.engine.page_fallout(limit=3, offset=10) == (12, api.engine.list_fallout(limit=50)[10:])
    # the page: by run id and step, 50 a page, its cursor the last one shown
    login(api, "opal")
    text = api.client.get("/fallout").text
    assert "12 steps in fallout" in text
    assert re.search(r"Retry all 6\b", text)  # two groups (zeta, alpha), one error each
    by_step = sorted(every, key=lambda i: tuple(i.split(":")))
    shown = re.findall(r'name="id" value="([^"]+)"', text)
    assert shown == by_step
    after_third = api.client.get("/fallout", params={"after": by_step[2]}).text
    assert re.findall(r'name="id" value="([^"]+)"', after_third) == by_step[3:]


def test_retry_all_acts_on_the_count_it_showed_or_none(api: Api) -> None:
    api.post("root", "/api/definitions/deploy", {"files": {"two.yaml": TWO}})
    runs = _start(api, 3)
    api.work()
    csrf = login(api, "opal")
    text = api.client.get("/fallout").text
    keys = [html.unescape(k) for k in re.findall(r'name="key" value="([^"]+)"', text)]
    alpha = next(k for k in keys if "\x1falpha\x1f" in k)
    _start(api, 1)  # one more alpha in fallout meanwhile: the group holds 4, not 3
    api.work()
    r = api.client.post("/fallout/group", data={"key": alpha, "count": "3", "reason": "back",
                                                "csrf_token": csrf})
    assert r.status_code == 409 and "holds 4 steps now, not 3" in r.text, r.text[-800:]
    assert len(_table(api)) == 8  # nothing retried
    r = api.client.post("/fallout/group", data={"key": alpha, "count": "4", "reason": "back",
                                                "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and "retried%204%20steps" in r.headers["location"]
    assert {row[1] for row in _table(api)} == {"zeta"} and _table(api) == _truth(api)
    for run_id in runs:
        assert [e["data"]["step"] for e in api.engine.run_events(run_id)
                if e["type"] == "fallout_retried"] == ["alpha"]


def test_migration_31_fills_the_table_from_the_runs_states(api: Api) -> None:
    api.post("root", "/api/definitions/deploy", {"files": {"two.yaml": TWO}})
    _start(api, 3)
    api.work()
    before = _table(api)
    assert len(before) == 6
    with api.engine.store.write() as tx:
        tx.conn.execute(delete(schema.fallout))
        tx.conn.execute(delete(schema.schema_migrations)
                        .where(schema.schema_migrations.c.version == 31))
    assert _table(api) == []
    store = SqlStore(api.db_url)
    try:
        assert [m.split(" ", 1)[0] for m in store.migrate()] == ["031"]
    finally:
        store.close()
    assert _table(api) == before == _truth(api)
