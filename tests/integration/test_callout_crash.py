"""A worker SIGKILLed after its callout was answered and before the result was committed
(``BATON_FAULT=after_flow@1``): the next worker calls again with the same idempotency key,
the other system makes it effective once, and the step completes once. Real
``baton worker`` processes, on both databases."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from baton.runtime.engine import Engine
from tests.bank import bank_server

# A long durability test: CI runs it; ./scripts/test locally leaves it out (README).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _baton(project: Path, db_url: str, *args: str, fault: str | None = None
           ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_FAULT", "BATON_DB")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env["BANK_TOKEN"] = "crash-token-6"
    if fault is not None:
        env["BATON_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "baton.cli.main", "--project", str(project),
                           "--db", db_url, *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=project, check=False)


def test_a_worker_killed_before_the_commit_calls_again_with_the_same_key(
        tmp_path: Path, db_url: str) -> None:
    with bank_server() as bank:
        project = tmp_path / "project"
        (project / "definitions").mkdir(parents=True)
        (project / "baton.toml").write_text('flows = []\n')
        (project / "definitions" / "send.yaml").write_text(textwrap.dedent(f"""\
            kind: object
            name: Address
            fields:
              customer: {{type: string, required: true}}
            ---
            kind: connection
            name: bank
            type: http
            base_url: {bank.url}
            auth: {{type: bearer, secret: env:BANK_TOKEN}}
            ---
            kind: orchestration
            name: send
            trigger: {{type: record, object: Address}}
            stages:
              - name: only
                steps:
                  - {{name: send, type: callout, connection: bank, method: POST,
                     path: /addresses, body: {{customer: =record.customer}},
                     output: {{ack: =response.body.ackId, status: =response.status}}}}
            """))
        deployed = _baton(project, db_url, "deploy")
        assert deployed.returncode == 0, deployed.stderr
        engine = Engine(db_url)
        try:
            rec = engine.create_record("Address", {"customer": "c1"})
            (run,) = engine.list_runs(record_id=rec["id"])
            died = _baton(project, db_url, "worker", "--until-idle", fault="after_flow@1")
            assert died.returncode == -9, (died.returncode, died.stderr[-2000:])
            assert len(bank.requests) == 1  # the call was made and answered
            assert engine.get_run(run.id).steps["send"].status.value == "running"

            again = _baton(project, db_url, "worker", "--until-idle")
            assert again.returncode == 0, again.stderr[-2000:]
            sr = engine.get_run(run.id).steps["send"]
            assert sr.status.value == "completed", sr.error
            assert sr.output == {"ack": "ack-1", "status": 200}
            keys = [r.headers["idempotency-key"] for r in bank.requests]
            assert keys == [f"{run.id}:send:1"] * 2
            assert len(bank.effective) == 1  # effective once
            with engine.store.read() as tx:
                events: list[Any] = tx.events_txn(run_id=run.id)
            done = [e for e in events if e["type"] == "step_completed"
                    and e["data"]["step"] == "send"]
            assert len(done) == 1
            calls = [e for e in events if e["type"] == "http_call"]
            assert len(calls) == 1  # the first call's audit died with its worker
            assert "crash-token-6" not in str(events)
        finally:
            engine.close()
