"""The engine's outputs for bench/decide_cost.py's triage runs, hashed: every decide()'s
commands (repr: type and every field) and the run's stored document (orjson bytes).
Run with PYTHONPATH=TREE/src for the before and after trees: the two digests must match.

    PYTHONPATH=/tmp/tengine-before/src python bench/results/tengine5/same_outputs.py 300
"""

import hashlib
import sys
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/
import decide_cost

h = hashlib.sha256()
n = [0]
_decide = decide_cost.decide


def recorded(*args, **kw):  # type: ignore[no-untyped-def]
    d = _decide(*args, **kw)
    h.update(repr(d.commands).encode())
    h.update(orjson.dumps(d.run.to_json(copy=False)))
    h.update(orjson.dumps(d.run.to_json()))
    n[0] += 1
    return d


decide_cost.decide = recorded
runs = int(sys.argv[1]) if len(sys.argv) > 1 else 300
decide_cost.drive(decide_cost.load(Path("examples")), runs, None, None)
print(n[0], h.hexdigest())
