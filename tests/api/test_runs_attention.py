"""The Monitor's runs list over the API: each run's record title, duration and what needs an
operator (a step in fallout, an open step past its SLA), and the "needs attention" filter.

The flag is the run row's ``attention`` column, written by the run writer with every state
(migration 13): these tests follow it through fallout, retry-by-hand, an SLA breach and the
step that ends it, on both databases, and compare the filter with the column itself.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from baton.store import schema
from tests.api.conftest import FLAKY, Api, assert_problem


def _runs(api: Api, who: str = "opal", **query: Any) -> dict[str, Any]:
    r = api.get(who, "/api/runs", params=query)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def _stored(api: Api) -> dict[str, int | None]:
    """run id -> the attention column, read from the table (not through the list)."""
    with api.engine.store.read() as tx:
        rows = tx.conn.execute(select(schema.runs.c.id, schema.runs.c.attention)).all()
    return {r.id: r.attention for r in rows}


def test_the_runs_list_marks_and_filters_the_runs_that_need_attention(api: Api) -> None:
    api.post("root", "/api/definitions/deploy", {"files": {"flaky.yaml": FLAKY}})
    late = api.new_case("Invoice 7 is wrong")  # its triage SLA is 4 h
    api.clock.advance(timedelta(hours=5))
    api.work()  # the SLA sweep: late's triage step is overdue
    fresh = api.new_case("Inverter shows E21")
    started = api.post("opal", "/api/runs", {"orchestration": "flaky_job", "input": {"n": 1}})
    assert started.status_code == 201, started.text
    flaky = started.json()["id"]
    assert started.json()["attention"] == []
    api.work()  # boom: fallout
    run_of = {rec["id"]: run.id for rec in (late, fresh)
              for run in api.engine.list_runs(record_id=rec["id"])}
    late_run, fresh_run = run_of[late["id"]], run_of[fresh["id"]]

    every = _runs(api)
    by_id = {r["id"]: r for r in every["items"]}
    assert every["total"] == 3
    assert by_id[late_run]["attention"] == ["sla_breached"]
    assert by_id[fresh_run]["attention"] == []
    assert by_id[flaky]["attention"] == ["fallout"]
    # the record's title: Case has no title field, its `subject` reads as one
    assert by_id[late_run]["title"] == "Invoice 7 is wrong"
    assert by_id[fresh_run]["title"] == "Inverter shows E21"
    assert by_id[flaky]["title"] is None  # no record
    assert by_id[late_run]["duration_seconds"] == 5 * 3600  # in progress: until now
    assert by_id[late_run]["current_stage"] == "triage"
    assert _stored(api) == {late_run: 2, fresh_run: None, flaky: 1}

    needs = _runs(api, attention="true")
    assert [r["id"] for r in needs["items"]] == [flaky, late_run]  # newest first
    assert needs["total"] == 2
    only_cases = _runs(api, attention="true", orchestration="case_triage")
    assert [r["id"] for r in only_cases["items"]] == [late_run] and only_cases["total"] == 1
    assert _runs(api, attention="true", status="completed")["items"] == []
    assert len(_runs(api, attention="false")["items"]) == 3  # false: no filter
    # the run itself says so too
    assert api.get("opal", f"/api/runs/{flaky}").json()["attention"] == ["fallout"]

    # the operator completes the step in fallout: the run moves on and needs nothing
    r = api.post("opal", f"/api/fallout/{flaky}:boom/complete",
                 {"reason": "done by hand", "data": {"ok": True}})
    assert r.status_code == 200, r.text
    api.work()
    assert [r["id"] for r in _runs(api, attention="true")["items"]] == [late_run]
    # the late triage is submitted: a breach on a closed step needs no one any more
    item = api.item_of(late["id"])
    api.post("opal", f"/api/work/{item['id']}/claim")
    r = api.post("opal", f"/api/work/{item['id']}/complete", {"data": {"resolution": "close"}})
    assert r.status_code == 200, r.text
    assert r.json()["run"]["attention"] == []
    api.work()
    needs = _runs(api, attention="true")
    assert needs["items"] == [] and needs["total"] == 0
    assert set(_stored(api).values()) == {None}
    done = {r["id"]: r for r in _runs(api)["items"]}
    assert done[flaky]["status"] == "completed"
    assert done[flaky]["duration_seconds"] is not None


def test_the_attention_filter_needs_the_runs_role_and_a_boolean(api: Api) -> None:
    assert_problem(api.get("ann", "/api/runs", params={"attention": "true"}), 403)
    assert_problem(api.get("opal", "/api/runs", params={"attention": "maybe"}), 422,
                   "query.attention")
    assert _runs(api, who="dee", attention="true")["items"] == []  # designers read runs


def test_a_record_without_a_name_like_field_has_its_first_text_as_title(api: Api) -> None:
    """The title: a field named like one (title, subject, name…), else the first string
    field with text; a long one is cut at 120 characters."""
    ticket = """
kind: object
name: Ticket
fields:
  count: {type: int}
  body: {type: string}
  ref: {type: string}
---
kind: orchestration
name: ticket_flow
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: wait
    steps: [{name: hold, type: pause, signal: go}]
"""
    r = api.post("root", "/api/definitions/deploy", {"files": {"ticket.yaml": ticket}})
    assert r.status_code == 200, r.text
    long = "word " * 40
    for data in ({"count": 3, "ref": "T-9"}, {"body": long, "ref": "T-10"}, {"count": 1}):
        assert api.post("opal", "/api/objects/Ticket/records", {"data": data}).status_code == 201
    api.work()
    titles = [r["title"] for r in _runs(api, orchestration="ticket_flow")["items"]]
    assert titles[0] is None  # nothing reads as a title
    assert titles[1] is not None and len(titles[1]) == 120 and titles[1].endswith("…")
    assert titles[2] == "T-9"


def test_migration_13_backfills_attention_from_the_runs_states(api: Api) -> None:
    """A database without migration 13 (no column, no index; the migrations numbered
    after it applied) with a run in fallout, one past its SLA and one on track: migrating
    applies 13 alone and marks the first two from their states."""
    from sqlalchemy import delete

    from baton.store.sql import SqlStore

    api.post("root", "/api/definitions/deploy", {"files": {"flaky.yaml": FLAKY}})
    late = api.new_case("Late")
    api.clock.advance(timedelta(hours=5))
    api.work()
    api.new_case("On track")
    api.post("opal", "/api/runs", {"orchestration": "flaky_job", "input": {"n": 1}})
    api.work()
    before = _stored(api)
    assert sorted(before.values(), key=str) == [1, 2, None]
    with api.engine.store.write() as tx:
        tx.conn.exec_driver_sql("DROP INDEX ix_runs_attention")
        tx.conn.exec_driver_sql("ALTER TABLE baton_runs DROP COLUMN attention")
        tx.conn.execute(delete(schema.schema_migrations)
                        .where(schema.schema_migrations.c.version == 13))
    store = SqlStore(api.db_url)
    try:
        assert [m.split(" ", 1)[0] for m in store.migrate()] == ["013"]
    finally:
        store.close()
    assert _stored(api) == before
    marked = {r["id"]: r["attention"] for r in _runs(api, attention="true")["items"]}
    run_of_late = api.engine.list_runs(record_id=late["id"])[0].id
    assert marked == {run_of_late: ["sla_breached"],
                      **{run: ["fallout"] for run, bits in before.items() if bits == 1}}


def test_the_monitor_page_shows_title_duration_markers_and_the_attention_chip(api: Api) -> None:
    """The /runs page (server-rendered) for an operator: each marker an icon and words (not
    colour alone), the chip keeping the other filters, the filter's empty state."""
    from tests.api.test_run_page_actions import login

    api.post("root", "/api/definitions/deploy", {"files": {"flaky.yaml": FLAKY}})
    late = api.new_case("Invoice 7 is wrong")
    api.clock.advance(timedelta(hours=3, minutes=10))
    api.new_case("Inverter shows E21")
    api.clock.advance(timedelta(hours=1))
    api.work()  # late's triage is past its 4 h SLA
    api.post("opal", "/api/runs", {"orchestration": "flaky_job", "input": {"n": 1}})
    api.work()
    (late_run,) = api.engine.list_runs(record_id=late["id"])
    login(api, "opal")

    page = api.client.get("/runs").text
    row = page[page.index(f'id="run-{late_run.id}"'):]
    row = row[:row.index("</tr>")]
    assert 'class="needs-attention" data-attention="sla_breached"' in row
    assert "SLA breached" in row and "⏰" in row and "Invoice 7 is wrong" in row
    assert "4 h 10 min" in row  # in progress: so far
    assert page.count("Step in fallout") == 1 and page.count("SLA breached") == 1
    assert 'href="/runs?attention=true"' in page and "Needs attention" in page

    page = api.client.get("/runs?attention=true").text
    assert page.count('class="needs-attention"') == 2 and "Inverter shows E21" not in page
    assert 'aria-current="true"' in page and "2 in all" in page
    page = api.client.get("/runs?attention=true&orchestration=case_triage").text
    assert page.count('class="needs-attention"') == 1
    # the chip turns the filter off and keeps the orchestration; so does the pager's form
    assert 'href="/runs?orchestration=case_triage"' in page
    assert '<input type="hidden" name="attention" value="true">' in page
    page = api.client.get("/runs?attention=true&status=completed").text
    assert "No runs need attention among these filters." in page
