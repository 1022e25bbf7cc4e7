"""Benchmarks: the reference "case triage" workload (``baton bench triage``).

The workload itself is described in WORKLOAD.md (shared with the other engines' runs);
:mod:`bench.triage` drives it on Baton and, for comparison, on SpiffWorkflow. This folder
is part of the repository, not of the installed package: ``baton bench`` finds it beside
the package's source in a checkout (see :mod:`baton.cli.bench`).
"""

from bench.triage import BenchConfig, BenchError, run_benchmark

__all__ = ["BenchConfig", "BenchError", "run_benchmark"]
