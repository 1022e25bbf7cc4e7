#!/usr/bin/env bash
# usage: pairs.sh OUTDIR ROUNDS AFTER_TREE -- alternates before (/tmp/before-tworker4) and after
set -u
out=$1; rounds=${2:-3}; after=$3; mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for side in before after; do
    if [ $side = before ]; then P=/tmp/before-tworker4; else P=$after; fi
    echo "$(date +%T) round $r $side load $(cut -d' ' -f1 /proc/loadavg)"
    PYTHONPATH=$P/src /work/wt-tworker4/.venv/bin/python -m baton.cli.main bench triage --examples $P/examples \
      --runs 2000 --repeat 3 --json > "$out/triage-$side-$r.json" 2> "$out/triage-$side-$r.err"
  done
done
echo "$(date +%T) done load $(cut -d' ' -f1 /proc/loadavg)"
