"""``bench/pg_scale.py``: its model on made-up demands (the arithmetic), and a tiny run end to
end on PostgreSQL (a smoke test: what it reports, never how fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.pg_scale import model

from ..conftest import PG_URL

REPO = Path(__file__).resolve().parents[2]


def _point(k: int, *, driver: float = 1.0, workers: float = 2.0, server: float = 1.0,
           notify: float = 0.0, rt_d: float = 0.0, rt_w: float = 0.0) -> dict[str, Any]:
    return {"workers": k, "runs_per_s": 100.0, "load_before": [0.0],
            "cpu_ms_per_run": {"driver": driver, "workers": workers, "server_backends": server,
                               "server_for_driver": server / 2, "server_for_workers": server / 2,
                               "server_background": 0.0, "total": driver + workers + server},
            "round_trips_per_run": {"driver": rt_d, "workers": rt_w}, "ping_ms": 0.1,
            "notify_lock_held_ms_per_run": notify, "lock_wait_ms_per_run": 0.0}


def test_the_model_is_cpu_bound_until_the_one_driver_or_the_serial_section_binds() -> None:
    m = model([_point(1), _point(2), _point(4)], 2)
    proj = {p["cores"]: p for p in m["projection"]}
    # 4 ms of CPU per run: P cores give P * 250 runs/s while nothing else binds.
    assert proj[1]["drivers_scale"]["runs_per_s"] == 250.0
    assert proj[8]["drivers_scale"]["runs_per_s"] == 2000.0
    assert proj[8]["drivers_scale"]["bound_by"] == "cpu"
    # One driver: 1 ms of its own + 0.5 ms of the server's work it waits for.
    assert proj[8]["one_driver"]["runs_per_s"] == pytest.approx(666.7)
    assert proj[8]["one_driver"]["bound_by"] == "one_driver"
    # A serial section of 0.5 ms per run caps everything at 2,000 runs/s.
    serial = model([_point(1, notify=0.5), _point(2, notify=0.5)], 2)
    assert {p["cores"]: p["drivers_scale"]["runs_per_s"] for p in serial["projection"]}[16] == 2000.0
    assert serial["projection"][-1]["drivers_scale"]["bound_by"] == "serial"
    # Worker CPU per run growing with the worker count is extrapolated: 2 + 0.5 K ms.
    growing = model([_point(1, workers=2.5), _point(2, workers=3.0), _point(4, workers=4.0)], 2)
    assert growing["inputs"]["worker_cpu_ms_fit"] == [2.0, 0.5]
    assert {p["cores"]: p["drivers_scale"]["runs_per_s"]
            for p in growing["projection"]}[4] == pytest.approx(4000 / (1 + 4 + 1), abs=0.1)


def test_pg_scale_runs_end_to_end(tmp_path: Path, pg_template: str) -> None:
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    p = subprocess.run([sys.executable, str(REPO / "bench" / "pg_scale.py"), "--db", PG_URL,
                        "--runs", "20", "--workers", "1,2", "--interval", "0.02", "--json", str(out)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(out.read_text())
    assert [q["workers"] for q in r["points"]] == [1, 2]
    for q in r["points"]:
        assert q["verified"] and q["runs"] == 20
        assert q["round_trips_per_run"]["workers"] > 0 and q["round_trips_per_run"]["driver"] > 0
        assert q["cpu_ms_per_run"]["server_backends"] > 0
        assert q["table_lock_statements"] == [] and q["strong_lock_samples"] == {}
    assert [x["cores"] for x in r["model"]["projection"]] == [1, 2, 4, 8, 16]
    assert r["table_lock_statements"] == []
