"""``--log-format json`` (issue 16 point 4): one JSON object a line, the run, step and job
ids on the lines written while a job runs, and a warning with the error when an attempt
fails."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import baton, ok

FAILING = '''

@flow("ops.down")
def down(ctx):
    raise ConnectionError("billing system down")
'''

DEFINITION = """kind: orchestration
name: ops_sync
trigger: {type: autolaunched}
stages:
  - name: only
    steps: [{name: push, type: background, flow: ops.down, retry: {max: 2, backoff: fixed, initial: 0s}}]
"""


def test_worker_json_logs_carry_ids_and_the_failure(tmp_path: Path) -> None:
    proj = tmp_path / "p"
    ok(baton("init", proj, cwd=tmp_path))
    with (proj / "flows.py").open("a") as f:
        f.write(FAILING)
    (proj / "definitions" / "ops.yaml").write_text(DEFINITION)
    ok(baton("deploy", cwd=proj))
    out = ok(baton("start", "ops_sync", "--json", cwd=proj)).stdout
    run_id = json.loads(out)["id"]

    p = ok(baton("worker", "--until-idle", "--log-format", "json", cwd=proj))
    lines = [json.loads(line) for line in p.stderr.splitlines() if line.strip()]
    assert lines, p.stderr
    assert all({"event", "level", "at", "logger"} <= set(x) for x in lines), lines
    failed = [x for x in lines if x["level"] == "warning" and "billing system down" in x["event"]]
    assert len(failed) == 3, lines  # the first attempt and two retries, each logged once
    for x in failed:
        assert x["run_id"] == run_id and x["step"] == "push" and x["job_kind"] == "step"
    # A retry is a queued job; a first attempt chained in the batch that made it ready has
    # no job row of its own, so no job id.
    assert any(isinstance(x.get("job_id"), int) for x in failed), failed

    bad = baton("worker", "--until-idle", "--log-format", "xml", cwd=proj)
    assert bad.returncode == 2 and "text, json" in bad.stderr, bad.stderr
