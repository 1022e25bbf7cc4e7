#!/bin/sh
# Instructions (callgrind Ir) of bench/results/planpass/plan_engine.py: --lines N less
# --lines 0, for the src tree given as $1 (e.g. /tmp/before-planpass/src, src).
# Usage: sh bench/results/planpass/plan_engine_ir.sh SRC [LINES]
SRC=$1
LINES=${2:-750}
PY=${PY:-.venv/bin/python}
D=$(mktemp -d)
for n in 0 "$LINES"; do
  PYTHONHASHSEED=0 PYTHONPATH=$SRC valgrind --tool=callgrind --callgrind-out-file="$D/cg.$n" \
    "$PY" bench/results/planpass/plan_engine.py --lines "$n" --plain 2>"$D/err.$n"
  printf '%s lines=%s Ir=%s\n' "$SRC" "$n" "$(grep -o 'Collected : [0-9]*' "$D/err.$n" | grep -o '[0-9]*$')"
done
rm -rf "$D"
