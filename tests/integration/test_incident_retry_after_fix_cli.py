"""The auditor's commands (brief O), as a shell runs them: ``baton incidents retry`` after
the ``baton records update`` that fixed the record and started the run starts no second
run; it says the incident was superseded by that write and names the run."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import baton, ok, ok_json
from tests.integration.test_incident_retry_after_fix import triage


def test_the_cli_retry_after_the_fixing_update_starts_no_second_run(
        tmp_path: Path, db_url: str) -> None:
    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "defs.yaml").write_text(triage())
    (tmp_path / "baton.toml").write_text(f"database = {json.dumps(db_url)}\n")
    ok(baton("deploy", cwd=tmp_path))
    rec = ok_json(baton("records", "create", "Case", "--data",
                        '{"subject":"inc","category":"abc","origin":"Internal"}', "--json",
                        cwd=tmp_path))
    (inc,) = ok_json(baton("incidents", "list", "--json", cwd=tmp_path))
    assert (inc["record_id"], inc["kind"]) == (rec["id"], "trigger_failed")
    ok(baton("records", "update", rec["id"], "--data", '{"category":"9"}', cwd=tmp_path))
    (run_a,) = ok_json(baton("runs", "list", "--json", cwd=tmp_path))

    done = ok_json(baton("incidents", "retry", inc["id"], "--reason", "fixed", "--json",
                         cwd=tmp_path))
    assert (done["status"], done["run_id"]) == ("resolved", run_a["id"])
    assert done["note"].startswith("superseded by the record's later write at ")
    assert done["note"].endswith(f"which started run {run_a['id']}")
    assert [r["id"] for r in ok_json(baton("runs", "list", "--json", cwd=tmp_path))] == [
        run_a["id"]]
    timeline = ok_json(baton("records", "timeline", rec["id"], "--json", cwd=tmp_path))
    (retried,) = [e for e in timeline if e["type"] == "incident_retried"]
    assert retried["data"]["outcome"] == "superseded"
    assert retried["data"]["superseded_by"]["note"] == done["note"]
