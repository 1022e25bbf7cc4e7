#!/bin/sh
# Callgrind counts for a frozen tree ($1) labelled $2, into bench/results/tengine5/.
# worker steady, driver, and decide (N=300 less N=0), run from /work/wt-tengine (same bench scripts)
T=$1; L=$2; R=/work/wt-tengine/bench/results/tengine5
PY=/work/main/.venv/bin/python
export PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=/tmp/pyc-tengine
cd /work/wt-tengine
# a first run compiles the tree into the pycache prefix: discarded
PYTHONPATH=$T/src $PY bench/decide_cost.py --plain --runs 0 > /dev/null
for n in 0 300; do
  PYTHONHASHSEED=0 PYTHONPATH=$T/src valgrind --tool=callgrind --callgrind-out-file=/dev/null $PY bench/decide_cost.py --plain --runs $n 2>&1 | grep -o "Collected : [0-9]*" | sed "s/^/runs=$n /" >> $R/decide-$L.txt
done
PYTHONPATH=$T/src $PY bench/worker_ir.py --runs 300 --steady > $R/wsteady-$L.json 2> $R/wsteady-$L.err
PYTHONPATH=$T/src $PY bench/driver_ir.py --runs 300 > $R/driver-$L.json 2> $R/driver-$L.err
echo done > $R/done-$L
