"""Keyset pagination of the long lists (runs, work items, records), over the REST API, the
Monitor and Work Guide pages, on both databases.

Following ``next`` gives every row once, in the documented order, with no gap and no
duplicate, while rows are added between pages; a cursor that is not one (or comes from
another list or order) is a 422 naming ``query.after``; counts beyond a thousand say they
are estimated.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from baton.store.sql import keyset, pages
from baton.store.sql.keyset import encode_cursor
from tests.api.conftest import CASE_TRIAGE, Api, assert_problem


def _cases(api: Api, n: int, tag: str) -> list[dict[str, Any]]:
    """``n`` Cases in one transaction (their runs start with them; same instant: the
    order's tie-break, the id, decides), then the workers bring each to its work item."""
    made = api.engine.create_records("Case", [{"subject": f"{tag} {i}"} for i in range(n)],
                                     actor="test")
    api.work()
    return made


def _follow(api: Api, who: str, url: str, params: dict[str, Any],
            between: Any = None) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    page = api.get(who, url, params=params).json()
    while True:
        assert len(page["items"]) <= params["limit"]
        seen += page["items"]
        if page["next"] is None:
            return seen
        if between is not None:
            between()
        r = api.get(who, url, params={**params, "after": page["next"]})
        assert r.status_code == 200, r.text
        page = r.json()


def test_runs_pages_have_no_gap_or_duplicate_while_runs_are_added(api: Api) -> None:
    _cases(api, 13, "first")
    everything = api.get("opal", "/api/runs", params={"limit": 500}).json()["items"]
    assert len(everything) == 13
    expected = sorted(everything, key=lambda r: (r["created_at"], r["id"]), reverse=True)
    assert [r["id"] for r in everything] == [r["id"] for r in expected]  # newest first

    api.clock.advance(timedelta(minutes=1))
    added: list[str] = []
    seen = _follow(api, "opal", "/api/runs", {"limit": 4},
                   between=lambda: added.extend(c["id"] for c in _cases(api, 2, "later")))
    assert [r["id"] for r in seen] == [r["id"] for r in expected]  # the newer ones come first,
    assert len(added) == 6  # before the cursor: a later page never shows them

    # a filter with an index (status) and one without (version), each page by page
    for params in ({"status": "in_progress"}, {"version": 1},
                   {"orchestration": "case_triage", "stage": "triage", "version": 1}):
        paged = _follow(api, "dee", "/api/runs", {"limit": 3, **params})
        whole = api.get("dee", "/api/runs", params={"limit": 500, **params}).json()["items"]
        assert [r["id"] for r in paged] == [r["id"] for r in whole] and len(whole) == 19, params


def test_a_short_page_still_leads_to_every_match(api: Api,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A filter no index holds (version) reads a bounded number of runs per page: with the
    budget at 3, pages are short (some empty), and following ``next`` finds every match."""
    _cases(api, 5, "v1")
    source = (CASE_TRIAGE / "definitions" / "case_triage.yaml").read_text()
    api.engine.deploy(texts={"case_triage.yaml": source + "\n# version 2\n"}, actor="test")
    api.clock.advance(timedelta(minutes=1))
    _cases(api, 5, "v2")  # the newest: a page of version 1 reads these first
    monkeypatch.setattr(keyset, "SCAN_BUDGET", 3)
    pages = []
    page = api.get("opal", "/api/runs", params={"limit": 2, "version": 1}).json()
    while True:
        pages.append(page)
        if page["next"] is None:
            break
        page = api.get("opal", "/api/runs",
                       params={"limit": 2, "version": 1, "after": page["next"]}).json()
    assert pages[0]["items"] == [] and pages[0]["next"]  # three v2 runs read, none kept
    ids = [r["id"] for p in pages for r in p["items"]]
    assert len(ids) == len(set(ids)) == 5
    assert all(r["version"] == 1 for p in pages for r in p["items"])
    v2 = api.get("opal", "/api/runs", params={"version": 2, "limit": 50}).json()["items"]
    assert len(v2) == 5


@pytest.mark.parametrize("order", ["created", "due", "priority"])
def test_work_pages_follow_each_order(api: Api, order: str) -> None:
    _cases(api, 9, "w")
    api.engine.reassign(api.engine.list_work()[0]["id"], "queue:tier2", actor="test")
    whole = api.get("opal", "/api/work", params={"order": order, "limit": 500}).json()["items"]
    assert len(whole) == 9
    added: list[str] = []
    seen = _follow(api, "opal", "/api/work", {"order": order, "limit": 2},
                   between=lambda: added.extend(c["id"] for c in _cases(api, 1, "more")))
    ids = [i["id"] for i in seen]
    assert len(ids) == len(set(ids))  # no duplicate
    assert [i for i in ids if i in {w["id"] for w in whole}] == [w["id"] for w in whole]
    # an agent's scope (ann: queue tier1, group billing): the tier2 item is not theirs
    mine = _follow(api, "ann", "/api/work", {"order": order, "limit": 3})
    assert {i["assignee"] for i in mine} == {"tier1"} and len(mine) == len(seen) - 1


def test_first_pages_share_one_statement_per_shape_and_read_what_the_plain_read_does(
        api: Api) -> None:
    _cases(api, 7, "hot")
    for item in api.engine.list_work()[:3]:
        api.engine.reassign(item["id"], "queue:tier2", actor="test")
    store = api.engine.store
    filter_sets: list[dict[str, Any]] = [
        {"statuses": ["open"]},
        {"statuses": ["open", "claimed"], "assignee_kind": "queue", "assignee": "tier1"},
        {"statuses": ["open", "claimed"], "assignee_kind": "queue", "assignee": "tier2"},
        {"statuses": ["open"], "assignee_kind": "queue", "assignee": "tier2"},
    ]
    for key in [k for k in store._hot if k[0] == "keyset.first"]:  # (the lists above)
        del store._hot[key]
    with store.read() as tx:
        for order in ("created", "due", "priority"):
            for filters in filter_sets:
                for limit in (2, 50):
                    hot = tx.page_work_items_txn(filters, order, None, 0, limit)
                    probes, residual = pages.work_probes(filters, order)
                    plain = keyset.read_page(tx.conn, pages._WORK_COLS,
                                             pages.WORK_ORDERS[order], probes, residual,
                                             None, 0, limit)
                    assert hot == plain, (order, filters, limit)
                    assert hot.rows, (order, filters)  # (a test that can fail)
            runs = tx.page_runs_txn({"status": "in_progress"}, None, 0, 3)
            assert [r["id"] for r in runs.rows] == [
                r["id"] for r in keyset.read_page(
                    tx.conn, pages._RUN_COLS, pages.RUNS_ORDER,
                    *pages.run_probes({"status": "in_progress"}), None, 0, 3).rows]
    # tier1 and tier2 share a statement, and so do both page sizes: three per order, and
    # one for the runs by status
    assert len([k for k in store._hot if k[0] == "keyset.first"]) == 3 * 3 + 1


def test_records_pages_with_and_without_a_type(api: Api) -> None:
    api.engine.create_records("Account", [{"name": f"A{i}"} for i in range(7)], actor="t")
    _cases(api, 3, "r")
    for params, n in (({}, 10), ({"object_type": "Account"}, 7), ({"object_type": "Case"}, 3)):
        paged = _follow(api, "opal", "/api/records", {"limit": 3, **params})
        whole = api.get("opal", "/api/records", params={"limit": 500, **params}).json()
        assert [r["id"] for r in paged] == [r["id"] for r in whole["items"]]
        assert whole["total"] == n and whole["total_estimated"] is False, params


def test_bad_cursors_are_refused_naming_after(api: Api) -> None:
    _cases(api, 3, "c")
    runs_next = api.get("opal", "/api/runs", params={"limit": 1}).json()["next"]
    work_next = api.get("opal", "/api/work", params={"limit": 1, "order": "due"}).json()["next"]
    for url, params in [("/api/runs", {"after": "nope"}),
                        ("/api/runs", {"after": "W10"}),  # base64 of a list, not a cursor
                        ("/api/records", {"after": runs_next}),  # another list's cursor
                        ("/api/work", {"after": work_next, "order": "created"}),  # other order
                        ("/api/runs", {"after": runs_next, "offset": 2}),
                        # well-formed cursors of the list carrying keys of the wrong type, or
                        # integers no database column holds
                        ("/api/records", {"after": encode_cursor("records", ["x", 10 ** 30])}),
                        ("/api/runs", {"after": encode_cursor("runs", ["x", 7])}),
                        ("/api/work", {"after": encode_cursor("work.created", ["x", 10 ** 19]),
                                       "order": "created"}),
                        ("/api/work", {"after": encode_cursor("work.due", ["x", "y", "z", "w"]),
                                       "order": "due"}),
                        ("/api/work", {"after": encode_cursor("work.priority",
                                                              [2 ** 63, "y", "z", "w"]),
                                       "order": "priority"})]:
        field = "query.offset" if "offset" in params else "query.after"
        body = assert_problem(api.get("opal", url, params=params), 422, field)
        assert "next" in body["detail"] or "not both" in body["detail"], body
    assert_problem(api.get("opal", "/api/runs", params={"offset": 1001}), 422, "query.offset")


def test_counts_beyond_a_thousand_say_they_are_estimated(api: Api) -> None:
    api.engine.create_records("Account", [{"name": f"A{i}"} for i in range(1005)], actor="t")
    page = api.get("opal", "/api/records", params={"object_type": "Account"}).json()
    assert page["total_estimated"] is True and page["next"] is not None
    if api.backend == "sqlite":
        assert page["total"] == 1000  # a lower bound: more than a thousand
    else:
        assert page["total"] >= 1001  # the planner's estimate, never below what was counted
    small = api.get("opal", "/api/records", params={"object_type": "Case"}).json()
    assert small["total"] == 0 and small["total_estimated"] is False


def test_monitor_and_work_guide_pages_link_the_next_page(api: Api) -> None:
    _cases(api, 30, "ui")  # more than a page (25)
    headers = api.auth("opal")
    for path in ("/runs", "/work?show=all&order=created", "/records"):
        first = api.client.get(path, headers=headers)
        assert first.status_code == 200, first.text
        assert 'rel="next"' in first.text and "30 in all" in first.text.replace(",", "")
        href = first.text.split('rel="next" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        second = api.client.get(href, headers=headers)
        assert second.status_code == 200 and 'rel="first"' in second.text
        assert 'rel="next"' not in second.text
    for path, after in (("/runs", "garbage"), ("/runs", encode_cursor("runs", ["x", 10 ** 30])),
                        ("/records", encode_cursor("records", ["x", 10 ** 30]))):
        bad = api.client.get(path, params={"after": after}, headers=headers)
        assert bad.status_code == 422 and "not a cursor" in bad.text, (path, after)
