"""tworker3: the worker's per-job bookkeeping, old code path vs new, in one process (PYTHONPATH picks the version)."""
import timeit

from baton import logs
from baton.runtime import metrics

new = hasattr(metrics, "BatchTally")
ctx = {"job_id": "j", "job_kind": "step", "run_id": "r", "step": "s"}
if new:
    t = metrics.BatchTally()
    def per_batch():  # 300 steps: what _begin and done() do now, and one flush
        for _ in range(300):
            t.job("step")
            if not logs.binds_context():
                pass
            t.step("background", 0.0003, False)
        t.flush()
else:
    def per_batch():
        for _ in range(300):
            metrics.job_counter("step").inc()
            with logs.job_context(**ctx):
                pass
            def finish():
                with logs.job_context(**ctx):
                    return 1
            finish()
            metrics.observe_step("background", 0.0003, False)
ref = lambda: sum(range(50))
for _ in range(3):
    a = min(timeit.repeat(per_batch, number=20, repeat=5)) / 20 / 300
    r = min(timeit.repeat(ref, number=20000, repeat=5)) / 20000
    print(f"{'new' if new else 'old'}: {a*1e6:.2f} us per step (reference sum(range(50)): {r*1e6:.2f} us)")
