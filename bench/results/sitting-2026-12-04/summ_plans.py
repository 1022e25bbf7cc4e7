"""Medians of the sitting's plan_rate JSON files: python summ.py OUTDIR."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1])
KEYS = [("triage", "worker_cpu_ms_per_step"), ("triage", "steps_per_s"),
        ("plans", "worker_cpu_ms_per_step"), ("plans", "steps_per_s"),
        ("plans", "planning_cpu_ms_per_order"),
        ("big_plan", "worker_cpu_ms_per_step"), ("big_plan", "steps_per_s")]
for mode in ("http", "flows"):
    for side in ("before", "after"):
        runs = [json.loads(p.read_text())["median"] for p in sorted(out.glob(f"plan-{mode}-{side}-*.json"))]
        cells = []
        for part, key in KEYS:
            vals = [r[part][key] for r in runs]
            cells.append(f"{part}.{key}={statistics.median(vals)} ({min(vals)}-{max(vals)})")
        ratio = [r["big_plan"]["worker_cpu_ms_per_step"] / r["triage"]["worker_cpu_ms_per_step"] for r in runs]
        print(f"{mode} {side} n={len(runs)}")
        for c in cells:
            print("   ", c)
        print("    big/triage worker per step:", [round(x, 2) for x in ratio])
