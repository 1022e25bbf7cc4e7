"""Medians (min-max) of the triage JSON files a sitting wrote: summ.py DIR."""

import glob
import json
import os
import statistics
import sys


def main(d: str) -> None:
    for side in ("before", "after"):
        reps = []
        for f in sorted(glob.glob(os.path.join(d, f"triage-{side}-*.json"))):
            with open(f) as fh:
                j = json.load(fh)
            reps += j.get("repetitions", [j])
        if not reps:
            continue

        def med(values: list[float]) -> str:
            return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"

        print(side, len(reps),
              "runs/s", med([r["runs_per_s"] for r in reps]),
              "cpu ms/run", med([r["cpu_ms_per_run"] for r in reps]),
              "driver", med([r["cpu_s_driver"] for r in reps]),
              "workers", med([sum(r["cpu_s_workers"]) for r in reps]))


if __name__ == "__main__":
    main(sys.argv[1])
