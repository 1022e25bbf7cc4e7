"""``bench/offers.py``: it runs, every answer it gives takes effect (the last third of the
offers and the declined items' second offers expire), and nobody ends above capacity (no
time thresholds: the figures depend on the machine)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_offers_bench_runs_and_checks_capacity(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_DB", "BATON_FAULT")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "offers.py"), "--items", "60",
                           "--agents", "6", "--capacity", "15", "--json"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["offered"] == 60 and result["capacity_ok"], result
    assert (result["decline"]["n"], result["accept"]["n"], result["expired"]) == (20, 20, 40)
