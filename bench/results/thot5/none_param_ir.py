"""sqlite3's cost of a None parameter, with and without an adapter registered for it:
callgrind's Ir of N statements of 5 None parameters each, less N = 0.

    for m in plain get lambda; do for n in 0 20000; do
      valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        python bench/results/thot5/none_param_ir.py $n $m; done; done
"""

from __future__ import annotations

import sqlite3
import sys

n, mode = int(sys.argv[1]), sys.argv[2]
nothing: dict[None, None] = {}
if mode == "get":
    sqlite3.register_adapter(type(None), nothing.get)
elif mode == "lambda":
    sqlite3.register_adapter(type(None), lambda v: v)
db = sqlite3.connect(":memory:")
cur = db.cursor()
params = (None, None, None, None, None)
for _ in range(n):
    cur.execute("select ?, ?, ?, ?, ?", params)
