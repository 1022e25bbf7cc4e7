"""Benchmarks: the reference "case triage" workload (``baton bench triage``).

The workload itself is described in WORKLOAD.md (shared with the other engines' runs);
:mod:`baton.bench.triage` drives it on Baton and, for comparison, on SpiffWorkflow.
"""

from baton.bench.triage import BenchConfig, BenchError, run_benchmark

__all__ = ["BenchConfig", "BenchError", "run_benchmark"]
