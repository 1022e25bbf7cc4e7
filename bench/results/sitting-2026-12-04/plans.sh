#!/usr/bin/env bash
# usage: plans.sh OUTDIR ROUNDS -- alternates before (/tmp/sit-before) and after (/work/main):
# plan_rate beside triage in each invocation, the plans' callouts real (HTTP on loopback) and
# as flows (--callouts-as-flows: the engine's own cost per plan step).
set -u
out=$1; rounds=${2:-3}; mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for mode in http flows; do
    for side in before after; do
      if [ $side = before ]; then P=/tmp/sit-before; else P=/work/main; fi
      extra=(); [ $mode = flows ] && extra=(--callouts-as-flows)
      echo "$(date +%T) round $r $mode $side load $(cut -d' ' -f1 /proc/loadavg)"
      (cd /work/main && PYTHONPATH=$P/src /work/main/.venv/bin/python bench/plan_rate.py \
        --orders 100 --big-run-lines 1500 --triage 1000 "${extra[@]}" --json \
        > "$out/plan-$mode-$side-$r.json" 2> "$out/plan-$mode-$side-$r.err")
    done
  done
done
