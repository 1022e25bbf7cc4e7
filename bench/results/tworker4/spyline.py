"""Lines of a function (self samples + samples in callees by line) and callers of a frame."""
import collections
import re
import sys

path, func = sys.argv[1], sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else "lines"
c = collections.Counter(); total = 0
with open(path) as fh:
    lines = fh.readlines()
for line in lines:
    stack, _, n = line.rstrip().rpartition(" ")
    n = int(n); frames = stack.split(";")
    if not any("Worker.run (" in f for f in frames): continue
    total += n
    seen = set()
    for i, f in enumerate(frames):
        if func in f:
            if mode == "lines":
                key = f + (" -> " + re.sub(r"\(.*", "", frames[i+1]) if i + 1 < len(frames) else " [self]")
            else:
                key = frames[i-1]
            if key not in seen:
                seen.add(key); c[key] += n
for k, n in c.most_common(40): print(f"{100*n/total:6.2f}% {k.replace('/work/wt-tworker4/','')}")
