#!/usr/bin/env bash
# usage: sitting.sh OUTDIR ROUNDS  -- alternates before (/tmp/sit-before) and after (/work/main)
set -u
out=$1; rounds=${2:-3}; mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for side in before after; do
    if [ $side = before ]; then P=/tmp/sit-before; else P=/work/main; fi
    echo "$(date +%T) round $r $side load $(cut -d' ' -f1 /proc/loadavg)"
    PYTHONPATH=$P/src /work/main/.venv/bin/python -m baton.cli.main bench triage --examples $P/examples \
      --runs 2000 --repeat 3 --json > "$out/triage-$side-$r.json" 2> "$out/triage-$side-$r.err"
  done
done
