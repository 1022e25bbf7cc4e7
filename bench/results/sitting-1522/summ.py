import json, statistics, sys, glob, os
d = sys.argv[1]
for side in ("before", "after"):
    reps = []
    for f in sorted(glob.glob(os.path.join(d, f"triage-{side}-*.json"))):
        try:
            j = json.load(open(f))
        except Exception as e:
            print(f, "unreadable", e); continue
        reps += j.get("repetitions", [j])
    if not reps:
        continue
    def med(k):
        v = [r[k] for r in reps]
        return statistics.median(v), min(v), max(v)
    w = [sum(r["cpu_s_workers"]) for r in reps]
    print(side, len(reps), "runs/s %.1f (%.1f-%.1f)" % med("runs_per_s"),
          "cpu ms/run %.3f (%.3f-%.3f)" % med("cpu_ms_per_run"),
          "driver %.2f (%.2f-%.2f)" % med("cpu_s_driver"),
          "workers %.2f (%.2f-%.2f)" % (statistics.median(w), min(w), max(w)))
