#!/bin/sh
# decide_cost under callgrind: Ir of --runs N minus --runs 0, for a tree ($1) into $2
T=$1; OUT=$2
for n in 0 300; do
  cd $T && PYTHONDONTWRITEBYTECODE= PYTHONHASHSEED=0 PYTHONPATH=$T/src valgrind --tool=callgrind --callgrind-out-file=/dev/null /work/main/.venv/bin/python bench/decide_cost.py --plain --runs $n 2>&1 | grep -o "Collected : [0-9]*" | sed "s/^/runs=$n /" >> $OUT
done
