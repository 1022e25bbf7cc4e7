"""Summarise py-spy raw (collapsed) stacks under Worker.run: inclusive and self shares."""
import collections
import re
import sys

path = sys.argv[1]; root = sys.argv[2] if len(sys.argv) > 2 else "run (baton/runtime/worker.py"
top = int(sys.argv[3]) if len(sys.argv) > 3 else 60
incl = collections.Counter(); selfc = collections.Counter(); total = 0
with open(path) as fh:
    lines = fh.readlines()
for line in lines:
    stack, _, n = line.rstrip().rpartition(" ")
    n = int(n)
    frames = stack.split(";")
    idx = next((i for i, f in enumerate(frames) if root in f), None)
    if idx is None: continue
    frames = frames[idx:]
    total += n
    names = [re.sub(r":\d+\)$", ")", f).replace("/work/wt-tworker4/src/", "").replace("/work/wt-tworker4/.venv/lib/python3.11/site-packages/","") for f in frames]
    for f in set(names): incl[f] += n
    selfc[names[-1]] += n
print("total samples", total)
print("--- inclusive")
for f, n in incl.most_common(top): print(f"{100*n/total:6.2f}% {f}")
print("--- self")
for f, n in selfc.most_common(top): print(f"{100*n/total:6.2f}% {f}")
