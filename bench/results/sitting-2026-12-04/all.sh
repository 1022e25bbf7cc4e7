#!/usr/bin/env bash
set -u
export PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=/tmp/pyc-lead
cd /work/main
O=/work/sit/out; mkdir -p $O
echo "$(date +%T) start load $(cut -d' ' -f1 /proc/loadavg)"
bash bench/results/sitting-2026-12-04/sitting.sh $O/triage 3
bash bench/results/sitting-2026-12-04/plans.sh $O/plans 3
echo "$(date +%T) compare load $(cut -d' ' -f1 /proc/loadavg)"
.venv/bin/baton bench triage --examples examples --runs 2000 --repeat 3 --compare spiffworkflow --json > $O/compare.json 2> $O/compare.err
echo "$(date +%T) plans10k load $(cut -d' ' -f1 /proc/loadavg)"
for i in 1 2 3; do PYTHONPATH=src .venv/bin/python bench/plans.py --lines 10000 --orders 20 --big-run-lines 300 --json > $O/plans10k-$i.json 2> $O/plans10k-$i.err; done
echo "$(date +%T) open plans load $(cut -d' ' -f1 /proc/loadavg)"
PYTHONPATH=src .venv/bin/python bench/plans.py --lines 0 --open-plans 1000 --batches 3 --json > $O/open-plans.json 2> $O/open-plans.err
echo "$(date +%T) done load $(cut -d' ' -f1 /proc/loadavg)"
