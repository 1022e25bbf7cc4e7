"""The web pages' timelines say what ``baton records timeline`` says (one description of
an event, :mod:`baton.runtime.describe`): a failure with its error's type and whole message
(it was cut at 200 characters), the lines the page lacked (e-mails, SLA, jobs...), and a
huge detail shown by its start with the whole of it behind "Show all", never dropped."""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from typing import Any

from baton import flow
from baton.cli.render import describe_event as cli_line
from baton.errors import StepFailure
from baton.flows import FlowContext
from baton.web.ui.events import describe_event as page_line
from tests.api.conftest import Api

# several lines, and far longer than the 200 characters the page kept
LONG = ("the ledger refused the posting:\n  account 4411 is frozen since the audit; "
        + " ".join(f"entry-{i}" for i in range(60)) + " END-OF-THE-MESSAGE")
HUGE = "the export failed: " + "".join(f"row{i:05d}=rejected;" for i in range(400)) + "LAST-ROW"

GADGETS = """
kind: object
name: Gadget
fields:
  name: {type: string}
  size: {type: string}
---
kind: orchestration
name: gadget_probe
trigger: {type: record, object: Gadget, on: [create]}
stages:
  - name: check
    steps:
      - {name: probe, type: background, flow: faces_tests.probe}
"""


@flow("faces_tests.probe")
def _probe(ctx: FlowContext) -> dict[str, Any]:
    raise StepFailure(HUGE if ctx.record["size"] == "huge" else LONG, retryable=False)


def text_of(page: str) -> str:
    """The page's text as a reader sees it (tags dropped, spaces collapsed)."""
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", page)).split())


def failed_gadget(api: Api, tmp_path: Path, size: str) -> tuple[str, str]:
    path = tmp_path / "gadgets.yaml"
    path.write_text(GADGETS)
    api.engine.deploy([path], actor="setup")
    r = api.post("opal", "/api/objects/Gadget/records", {"data": {"name": "g1", "size": size}})
    assert r.status_code == 201, r.text
    api.work()
    (run,) = api.engine.list_runs(record_id=r.json()["id"])
    return r.json()["id"], run.id


def test_a_long_failure_is_shown_whole_on_the_record_and_run_pages(sqlite_api: Api,
                                                                     tmp_path: Path) -> None:
    record_id, run_id = failed_gadget(sqlite_api, tmp_path, "long")
    failed = [e for e in sqlite_api.engine.timeline(record_id) if e["type"] == "step_attempt_failed"]
    assert failed, [e["type"] for e in sqlite_api.engine.timeline(record_id)]
    whole = " ".join(LONG.split())  # (its lines joined: one line of the timeline)
    line = page_line(failed[-1])
    assert line == f"check / probe (iteration 1) StepFailure: {whole}", line
    assert cli_line(failed[-1]) == f"check.probe #1 StepFailure: {whole}"  # the same words
    for url in (f"/records/{record_id}", f"/runs/{run_id}"):
        r = sqlite_api.get("opal", url)
        assert r.status_code == 200, r.text
        assert f"StepFailure: {whole}" in text_of(r.text), url
        assert "Show all" not in r.text  # (not long enough to fold)
    # the record's creation is described too (it was a JSON dump cut short)
    created = next(e for e in sqlite_api.engine.timeline(record_id)
               if e["type"] == "record_created")
    assert page_line(created) == "name=g1, size=long"


def test_a_huge_detail_shows_its_start_and_the_whole_of_it_behind_show_all(
        sqlite_api: Api, tmp_path: Path) -> None:
    record_id, _run_id = failed_gadget(sqlite_api, tmp_path, "huge")
    page = sqlite_api.get("opal", f"/records/{record_id}").text
    rows = re.findall(r'<td class="detail">((?:(?!</td>).)*LAST-ROW(?:(?!</td>).)*)</td>', page,
                      re.DOTALL)
    assert rows, "the failure's row is on the page"
    cell = rows[0]
    start, _, folded = cell.partition("<details")
    assert "StepFailure: the export failed: row00000=rejected;" in unescape(start)
    assert "LAST-ROW" not in start and unescape(start).rstrip().endswith("…")
    assert len(unescape(start).strip()) == 2000  # (its first 1999 characters, and "…")
    summary = re.search(r"<summary>Show all \((\d+) characters\)</summary>", folded)
    assert summary is not None, folded[:300]
    assert f"StepFailure: {HUGE}" in unescape(folded)  # the whole of it, nothing dropped
    assert int(summary.group(1)) == len(f"check / probe (iteration 1) StepFailure: {HUGE}")
