"""GC probe for tworker3 (not part of the repo): GCPROBE=1 saves every cyclic garbage
object found after heap.settle() and prints the types at exit; YOUNG=N sets the threshold;
GCSTATS=1 prints collections per generation and their CPU time."""
import atexit
import gc
import os
import sys
import time
from collections import Counter

if os.environ.get("YOUNG") or os.environ.get("GCPROBE") or os.environ.get("GCSTATS"):
    stats = {0: [0, 0.0], 1: [0, 0.0], 2: [0, 0.0]}
    t0 = [0.0]
    settled = [False]
    def _cb(phase, info):
        if not settled[0]:
            return
        if phase == "start":
            t0[0] = time.process_time()
        else:
            s = stats[info["generation"]]; s[0] += 1; s[1] += time.process_time() - t0[0]
    gc.callbacks.append(_cb)
    import baton.runtime.heap as _heap
    if os.environ.get("YOUNG"):
        _heap.YOUNG_THRESHOLD = int(os.environ["YOUNG"])
    _orig = _heap.settle
    def settle():
        r = _orig()
        settled[0] = True
        if os.environ.get("GCPROBE"):
            gc.set_debug(gc.DEBUG_SAVEALL)
        return r
    _heap.settle = settle
    def _report():
        if not settled[0]:
            return
        import resource
        out = [f"GC pid={os.getpid()} {sys.argv[:2]} after settle:",
               str({g: (n, round(t, 3)) for g, (n, t) in stats.items()}),
               f"cpu {time.process_time():.2f} maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024:.1f} MiB"]
        if os.environ.get("GCPROBE"):
            gc.collect()
            c = Counter(type(o).__qualname__ + ("" if not hasattr(o, "__qualname__") or not callable(o) else ":" + str(getattr(o, "__qualname__", ""))) for o in gc.garbage)
            out.append(f"garbage objects: {len(gc.garbage)}")
            out += [f"  {n:8d} {k}" for k, n in c.most_common(40)]
        print("\n".join(out), file=sys.stderr)
    atexit.register(_report)
