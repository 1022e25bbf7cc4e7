"""``baton work show ID`` prints the item's ``input`` (what the step was given: how a
rejection's comments reach the rework step), text as it is, within the terminal; a real
``baton`` process on a real SQLite project (brief "time"; needs /tmp/diffs/time-render.diff)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import baton, ok, ok_json

COMMENTS = "Too cheap [x]: raise the price by ten per cent and ask the customer again"
DEFS = """
kind: object
name: Quote
title_field: note
fields:
  note: {type: string}
  lines: {type: int}
---
kind: orchestration
name: rework
trigger: {type: record, object: Quote, on: [create]}
stages:
  - name: prepare
    steps:
      - name: prepare
        type: interactive
        assign: {queue: sales}
        input: {comments: '=record.note', lines: '=record.lines', tags: '=["a", "b"]'}
        form: [{name: price, type: int, required: true}]
"""


def test_work_show_prints_the_items_input(tmp_path: Path) -> None:
    root = tmp_path
    (root / "baton.toml").write_text('database = "sqlite:///baton.db"\n')
    (root / "definitions").mkdir()
    (root / "definitions" / "q.yaml").write_text(DEFS)
    ok(baton("deploy", cwd=root))
    ok(baton("records", "create", "Quote", "--data",
             json.dumps({"note": COMMENTS, "lines": 3}), cwd=root))
    ok(baton("worker", "--until-idle", cwd=root))
    (item,) = ok_json(baton("work", "list", "--json", cwd=root))
    for columns in ("80", "40"):
        out = ok(baton("work", "show", item["id"], cwd=root, columns=columns)).stdout
        assert all(len(line) <= int(columns) for line in out.splitlines()), out
        words = " ".join(out.split())
        assert "Input" in out and "comments" in out and "tags" in out, out
        assert " ".join(COMMENTS.split()) in words or COMMENTS.replace(" ", "") in "".join(
            out.split()), out  # whole, "[x]" as it is (text, not markup)
        assert '["a", "b"]' in words, out
