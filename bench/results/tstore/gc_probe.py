"""``baton`` with every garbage collection of each of its processes timed (``gc.callbacks``,
CPU time), printed per process at exit as ``GC driver: {generation: (collections, seconds)}``
(the label is the same in the spawned workers). ``SETTLE=1``: the main process (the bench
driver) settles its heap as ``baton serve`` does; ``YOUNG=N``: every process's young
generation threshold after settling (``baton.runtime.heap.YOUNG_THRESHOLD``).

    SETTLE=1 YOUNG=1000000 python bench/results/tstore/gc_probe.py bench triage --runs 2000 --repeat 3 --json
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import time
from typing import Any

stats = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
t0 = [0.0]


def _cb(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        t0[0] = time.process_time()
    else:
        s = stats[info["generation"]]
        s[0] += 1
        s[1] += time.process_time() - t0[0]


gc.callbacks.append(_cb)
pid = os.getpid()
if os.environ.get("YOUNG"):
    import baton.runtime.heap as _heap

    _heap.YOUNG_THRESHOLD = int(os.environ["YOUNG"])


def _report() -> None:
    if os.getpid() == pid:
        print("GC driver:", {g: (n, round(t, 3)) for g, (n, t) in stats.items()},
              "cpu", round(time.process_time(), 2), file=sys.stderr)


atexit.register(_report)
if __name__ == "__main__":
    sys.argv = ["baton", *sys.argv[1:]]
    from baton.cli.main import main
    from baton.runtime import heap

    if os.environ.get("SETTLE"):
        heap.settle()
    main()
