import glob
import json
import statistics as st
import sys

folder = sys.argv[1]
for side in ("before", "after"):
    drv, wrk, cpr, rps = [], [], [], []
    for f in sorted(glob.glob(f"{folder}/triage-{side}-*.json")):
        with open(f) as fh:
            d = json.load(fh)
        for r in d["repetitions"]:
            drv.append(r["cpu_s_driver"]); wrk.append(sum(r["cpu_s_workers"])); cpr.append(r["cpu_ms_per_run"]); rps.append(r["runs_per_s"])
    m = lambda xs: f"{st.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"
    print(side, len(drv), "driver", m(drv), "worker", m(wrk), "cpu/run", m(cpr), "runs/s", m(rps))
    print("  driver per rep:", drv)
