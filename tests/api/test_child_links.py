"""Parent and child runs link both ways (issue 12 item 5): in ``GET /api/runs/{id}``, in
``baton runs show`` (text and ``--json``, a real subprocess) and on the run page."""

from __future__ import annotations

import json
from pathlib import Path

from tests.api.conftest import Api
from tests.api.test_run_page_actions import login
from tests.e2e.test_cli import baton, ok

DEFS = """
kind: orchestration
name: link_child
trigger:
  type: autolaunched
  input: {n: {type: int, required: true}}
variables: {doubled: 0}
stages:
  - name: s
    steps:
      - {name: hold, type: pause, signal: go}
---
kind: orchestration
name: link_parent
trigger: {type: autolaunched}
stages:
  - name: s
    steps:
      - {name: fan_out, type: orchestration, orchestration: link_child, for_each: '=[10, 20]',
         input: {n: '=item'}}
"""


def _start(api: Api) -> tuple[str, list[str]]:
    r = api.post("root", "/api/definitions/deploy", {"files": {"links.yaml": DEFS}})
    assert r.status_code in (200, 201), r.text
    parent = api.post("opal", "/api/runs", {"orchestration": "link_parent"}).json()
    body = api.get("opal", f"/api/runs/{parent['id']}").json()
    return parent["id"], [c["id"] for c in body["children"]]


def test_the_api_links_parent_and_children(api: Api) -> None:
    parent_id, kids = _start(api)
    body = api.get("opal", f"/api/runs/{parent_id}").json()
    assert body["parent"] is None
    assert [(c["orchestration"], c["status"], c["step"]) for c in body["children"]] == [
        ("link_child", "in_progress", "fan_out")] * 2
    [step] = [s for s in body["steps"] if s["name"] == "fan_out"]
    assert [(c["index"], c["run_id"], c["input"]) for c in step["children"]] == [
        (0, kids[0], {"n": 10}), (1, kids[1], {"n": 20})]
    for i, kid in enumerate(kids):
        child = api.get("opal", f"/api/runs/{kid}").json()
        assert child["parent"] == {"run_id": parent_id, "step": "fan_out", "iteration": 1,
                                   "index": i, "depth": 1}
        assert child["children"] == [] and child["input"] == {"n": 10 * (i + 1)}
    for kid in kids:
        assert api.post("opal", f"/api/runs/{kid}/signal", {"name": "go"}).status_code == 200
    api.work()
    body = api.get("opal", f"/api/runs/{parent_id}").json()
    assert body["status"] == "completed"
    assert [c["status"] for c in body["children"]] == ["completed", "completed"]
    [step] = [s for s in body["steps"] if s["name"] == "fan_out"]
    assert [c["run_id"] for c in step["output"]["children"]] == kids


def test_the_run_page_links_both_ways(api: Api) -> None:
    parent_id, kids = _start(api)
    login(api, "opal")
    page = api.client.get(f"/runs/{parent_id}").text
    for kid in kids:
        assert f'<a href="/runs/{kid}">{kid}</a>' in page
    assert "Child runs (2)" in page
    assert "step fan_out: 2 child runs of link_child v1" in page  # the timeline
    child_page = api.client.get(f"/runs/{kids[1]}").text
    assert f'<a href="/runs/{parent_id}">{parent_id}</a> step fan_out' in child_page
    assert "element 1" in child_page
    live = api.client.get(f"/runs/{parent_id}/live").text  # the refreshing part too
    assert f'href="/runs/{kids[0]}"' in live


def test_baton_runs_show_links_both_ways(api: Api, tmp_path: Path) -> None:
    parent_id, kids = _start(api)
    (tmp_path / "baton.toml").write_text("flows = []\n")
    shown = ok(baton("--db", api.db_url, "runs", "show", parent_id, cwd=tmp_path)).stdout
    assert "Child runs" in shown and all(k in shown for k in kids)
    shown = ok(baton("--db", api.db_url, "runs", "show", kids[0], cwd=tmp_path)).stdout
    assert f"child of run {parent_id} step fan_out #1 (element 0)" in shown
    printed = json.loads(ok(baton("--db", api.db_url, "runs", "show", kids[1], "--json",
                                  cwd=tmp_path)).stdout)
    assert printed["parent"]["run_id"] == parent_id and printed["parent"]["index"] == 1
    printed = json.loads(ok(baton("--db", api.db_url, "runs", "show", parent_id, "--json",
                                  cwd=tmp_path)).stdout)
    assert [c["id"] for c in printed["children"]] == kids
