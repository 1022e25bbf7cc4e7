#!/bin/sh
# bench/plan_rate.py on the code before (a copy of main's src/) and after, alternated,
# 3 times each: PYTHONPATH picks the tree (the worker processes inherit it).
# Usage: sh bench/results/planpass/plan_rate_ab.sh BEFORE_SRC AFTER_SRC OUTDIR
PY=${PY:-.venv/bin/python}
for i in 1 2 3; do
  for side in before after; do
    if [ "$side" = before ]; then SRC=$1; else SRC=$2; fi
    PYTHONPATH=$SRC "$PY" bench/plan_rate.py --orders 10 --big-run-lines 1500 --triage 1000 \
      --json > "$3/plan_rate-$side-$i.json" 2>"$3/plan_rate-$side-$i.err"
    echo "$side $i done $(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg)"
  done
done
