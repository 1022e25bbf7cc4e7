"""The garbage collector of a long-running Baton process (a worker, the web server).

CPython's default thresholds start a young collection every 700 new container objects. A
worker's batch makes tens of thousands of short-lived dicts and lists (run states, rows,
expression data) that live exactly as long as the batch: with the default they survive a
few young collections, are promoted, and the older generations are then walked again and
again, over every module, class and function object loaded at start as well. Measured on
the triage benchmark that was 10-17 % of a worker's CPU.

:func:`settle` runs once per process when it starts serving: one full collection, then
``gc.freeze()`` moves everything alive (what imports and set-up made) out of the
collector's view for good, and the young generation is made large enough that a batch's
objects die in it. Cycles are still collected; only the objects that existed before
``settle`` are never examined again (they live as long as the process anyway).
"""

from __future__ import annotations

import gc
import threading

YOUNG_THRESHOLD = 50_000  # new container objects between young collections (default 700)

_lock = threading.Lock()
_settled = False


def settle() -> bool:
    """Freeze what exists and enlarge the young generation, once per process; True the
    first time (later calls do nothing)."""
    global _settled
    with _lock:
        if _settled:
            return False
        _settled = True
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, gen1, gen2)
    return True
