"""``bench/idle.py`` end to end: real ``baton worker`` and ``baton serve`` processes, idle.

A smoke test: it checks that the script starts both, measures them and reports, never how
little they use (no thresholds: the figures depend on the machine and its load).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="bench/idle.py reads /proc")
def test_idle_reports_cpu_and_wakeups_of_worker_and_serve(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_DB", "BATON_FAULT")}
    env["PYTHONPATH"] = str(REPO / "src")
    p = subprocess.run([sys.executable, str(REPO / "bench" / "idle.py"), "--seconds", "1",
                        "--settle", "0.5", "--json"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout)
    assert r["idle"]["database"] == "sqlite"
    for name in ("worker", "serve"):
        m = r["idle"][name]
        assert m["seconds"] >= 1.0 and m["cpu_s"] >= 0 and m["wakeups_per_s"] > 0, m
        assert m["cpu_percent_of_a_core"] == pytest.approx(100 * m["cpu_s"] / m["seconds"],
                                                           abs=0.01)
    assert "latency" not in r
    assert list(tmp_path.iterdir()) == []  # its databases and logs are gone
