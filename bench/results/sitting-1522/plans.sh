#!/usr/bin/env bash
out=$1; rounds=${2:-3}; mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for side in before after; do
    if [ $side = before ]; then P=/tmp/sit-before; else P=/work/main; fi
    echo "$(date +%T) plan round $r $side load $(cut -d' ' -f1 /proc/loadavg)"
    (cd /work/main && PYTHONPATH=$P/src /work/main/.venv/bin/python bench/plan_rate.py --orders 10 --big-run-lines 1500 --json > "$out/plan-$side-$r.json" 2> "$out/plan-$side-$r.err")
  done
done
