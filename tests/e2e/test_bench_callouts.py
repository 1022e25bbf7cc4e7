"""``bench/callouts.py`` runs, verifies and reports (a smoke test: never how fast — the
figure depends on the machine and its load)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_callout_benchmark_runs_small(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_DB", "BATON_FAULT")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), str(REPO),
                                                    env.get("PYTHONPATH")) if p)
    out = subprocess.run([sys.executable, str(REPO / "bench" / "callouts.py"), "--steps", "40",
                          "--threads", "2", "--batch", "16", "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["verified"] is True
    assert result["steps"] == 40 and result["server_requests"] == 40
    assert result["steps_per_s"] > 0 and result["added_latency_p99_ms"] is not None
    assert set(result) >= {"benchmark", "database", "seconds", "threads", "batch",
                           "added_latency_p50_ms", "server_delay_ms"}
