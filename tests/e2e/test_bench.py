"""``baton bench triage`` end to end: a real subprocess, worker processes, a fresh database.

Smoke tests only: they check that the benchmark runs, verifies and reports, never how fast
(no time thresholds: the figures depend on the machine and its load).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.triage import expected_steps, percentiles, resolution
from tests.needs import need

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"

KEYS = {
    "benchmark", "engine", "version", "database", "durability", "runs", "steps", "workers",
    "batch", "rate", "repeat", "verified", "seconds", "runs_per_s", "steps_per_s",
    "latency_first_step_ms", "latency_complete_ms", "peak_rss_mib", "peak_rss_driver_mib",
    "peak_rss_workers_mib", "peak_rss_total_mib", "db_bytes", "spread", "repetitions", "host",
    "compare", "ratio_vs_spiffworkflow_memory", "ratio_vs_spiffworkflow_durable_batched",
    "ratio_vs_spiffworkflow_durable_per_step", "cpu_ratio_vs_spiffworkflow_memory",
    "cpu_ratio_vs_spiffworkflow_durable_batched", "cpu_ratio_vs_spiffworkflow_durable_per_step",
    "cpu_s", "cpu_ms_per_run", "cpus_pinned", "noise",
}
SPIFF_MODES = ("memory", "durable-batched", "durable-per-step")


def _bench_cmd() -> list[str]:
    """``baton bench`` once main.py registers it; until then the sub-app on its own."""
    from baton.cli import main

    if any(g.name == "bench" for g in main.app.registered_groups):
        return [sys.executable, "-m", "baton.cli.main", "bench"]
    return [sys.executable, "-c",
            "from baton.cli.bench import bench_app; bench_app(prog_name='baton bench')"]


def bench(*args: str | int | Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("BATON_DB", "BATON_FAULT", "BATON_SQLITE_SYNCHRONOUS")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env["COLUMNS"] = "300"
    with subprocess.Popen([*_bench_cmd(), "triage", *map(str, args)], cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    p = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    p.pid = proc.pid  # type: ignore[attr-defined]  # names its PostgreSQL databases
    return p


def ok_json(p: subprocess.CompletedProcess[str]) -> Any:
    assert p.returncode == 0, f"{p.args} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert "Traceback" not in p.stderr, p.stderr
    return json.loads(p.stdout)


def check_result(r: dict[str, Any], n: int, workers: int = 1, repeat: int = 1) -> None:
    assert KEYS <= set(r), KEYS - set(r)
    assert r["verified"] is True
    assert (r["runs"], r["steps"], r["workers"], r["repeat"], r["batch"]) == (
        n, sum(expected_steps(i) for i in range(1, n + 1)), workers, repeat, 256)
    assert r["runs_per_s"] > 0 and r["steps_per_s"] > r["runs_per_s"]
    for key in ("latency_first_step_ms", "latency_complete_ms"):
        lat = r[key]
        assert set(lat) == {"p50", "p95", "p99"}
        assert 0 <= lat["p50"] <= lat["p95"] <= lat["p99"], lat
    assert r["latency_first_step_ms"]["p50"] <= r["latency_complete_ms"]["p50"]
    assert r["peak_rss_mib"] > 0 and r["db_bytes"] > 0
    if repeat == 1:
        assert r["peak_rss_mib"] == max(r["peak_rss_driver_mib"], r["peak_rss_workers_mib"])
    assert r["durability"]["durable"] is True
    assert len(r["repetitions"]) == repeat
    for rep in r["repetitions"]:
        assert rep["steps"] == r["steps"] and rep["escalated"] == n // 5
        assert rep["triage_items_completed"] == n + n // 5
        assert len(rep["peak_rss_workers_mib"]) == workers
        assert sum(s["steps_completed"] for s in rep["worker_stats"]) == (
            4 * n + 3 * (n // 5))  # background steps, raise_level included
        # CPU per run: the driver's and every worker's CPU, summed
        assert len(rep["cpu_s_workers"]) == workers and rep["cpu_s_driver"] > 0
        assert rep["cpu_s"] == pytest.approx(rep["cpu_s_driver"] + sum(rep["cpu_s_workers"]),
                                             abs=0.02)
        assert rep["cpu_ms_per_run"] * n / 1000 == pytest.approx(rep["cpu_s"], abs=0.006)
    s = r["spread"]["runs_per_s"]
    assert s["min"] <= s["median"] <= s["max"]
    assert r["compare"] == {} or "spiffworkflow_memory" in r["compare"]


def test_workload_rules() -> None:
    assert [resolution(i, 1) for i in range(1, 11)].count("escalate") == 2
    assert resolution(5, 2) == "close"
    assert sum(expected_steps(i) for i in range(1, 1001)) == 5600
    assert percentiles([1.0, 2.0, 3.0, 4.0, 5.0]) == {"p50": 3.0, "p95": 4.8, "p99": 5.0}
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}


def test_outside_a_checkout_bench_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from baton.cli import bench as cli_bench
    from baton.errors import ConfigError

    assert cli_bench.checkout_root() == REPO
    monkeypatch.setattr(cli_bench, "checkout_root", lambda: None)
    with pytest.raises(ConfigError, match="needs a checkout of the Baton repository"):
        cli_bench.load_triage()


def test_triage_on_sqlite_json(tmp_path: Path) -> None:
    folder = tmp_path / "dbs"
    folder.mkdir()
    existing = folder / "bench.db"
    existing.write_bytes(b"not to be touched")
    r = ok_json(bench("--runs", 40, "--db", f"sqlite:///{existing}", "--json", cwd=tmp_path))
    check_result(r, 40)
    assert r["steps"] == 224
    assert r["database"] == "sqlite" and r["durability"]["synchronous"] == "FULL"
    assert r["durability"]["journal_mode"] == "WAL"
    assert r["ratio_vs_spiffworkflow_durable_batched"] is None
    assert r["cpu_ratio_vs_spiffworkflow_memory"] is None
    assert r["cpus_pinned"] is None and r["noise"] is None
    # Fresh files per repetition, removed afterwards; an existing file is never reused.
    assert sorted(p.name for p in folder.iterdir()) == ["bench.db"]
    assert existing.read_bytes() == b"not to be touched"


def test_triage_two_workers_two_repetitions(tmp_path: Path) -> None:
    r = ok_json(bench("--runs", 20, "--workers", 2, "--repeat", 2, "--json", cwd=tmp_path))
    check_result(r, 20, workers=2, repeat=2)
    assert r["steps"] == 112
    assert [rep["rep"] for rep in r["repetitions"]] == [1, 2]


def test_triage_table_and_rate(tmp_path: Path) -> None:
    p = bench("--runs", 10, "--rate", 50, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Case triage, N=10 (56 steps)" in p.stdout
    assert "Baton" in p.stdout and "synchronous=FULL" in p.stdout
    assert "Verified" in p.stdout


def test_triage_fails_loudly_when_a_run_misses_steps(tmp_path: Path) -> None:
    proj = tmp_path / "case_triage"
    shutil.copytree(EXAMPLES / "case_triage", proj,
                    ignore=shutil.ignore_patterns("__pycache__", "*.db", "*.db-*"))
    defn = proj / "definitions" / "case_triage.yaml"
    text = defn.read_text()
    survey = "      - {name: send_survey, type: background, flow: cases.send_survey, after: [close_case]}\n"
    assert survey in text
    defn.write_text(text.replace(survey, ""))  # every run completes one step short
    p = bench("--runs", 10, "--examples", proj, "--json", cwd=tmp_path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stdout == ""
    assert "verification FAILED" in p.stderr and "expected 5" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr


def test_bad_options_are_one_clear_error(tmp_path: Path) -> None:
    p = bench("--runs", 10, "--examples", tmp_path, cwd=tmp_path)
    assert p.returncode == 1 and "cannot find examples/case_triage" in p.stderr, p.stderr
    p = bench("--runs", 10, "--db", "mysql://x/y", cwd=tmp_path)
    assert p.returncode == 1 and "sqlite:///PATH or postgresql://" in p.stderr, p.stderr


def test_triage_compared_with_spiffworkflow(tmp_path: Path) -> None:
    need("SpiffWorkflow")
    r = ok_json(bench("--runs", 20, "--compare", "spiffworkflow", "--json", cwd=tmp_path))
    check_result(r, 20)
    assert set(r["compare"]) == {"spiffworkflow_memory", "spiffworkflow_durable_batched",
                                 "spiffworkflow_durable_per_step"}
    for mode in SPIFF_MODES:
        key = mode.replace("-", "_")
        c = r["compare"][f"spiffworkflow_{key}"]
        assert c["mode"] == mode and c["runs_per_s"] > 0 and c["peak_rss_mib"] > 0
        assert c["durable"] is (mode != "memory")
        assert c["repetitions"][0]["runs"] == 20 and c["repetitions"][0]["steps"] == 112
        assert c["cpu_ms_per_run"] > 0
        assert r[f"ratio_vs_spiffworkflow_{key}"] == pytest.approx(
            r["runs_per_s"] / c["runs_per_s"], rel=0.02)
        assert r[f"cpu_ratio_vs_spiffworkflow_{key}"] == pytest.approx(
            r["cpu_ms_per_run"] / c["cpu_ms_per_run"], rel=0.02)
    batched = r["compare"]["spiffworkflow_durable_batched"]["repetitions"][0]
    assert batched["batches"] == {"create": 100, "engine": 256, "complete": 250}
    assert batched["db_bytes"] > 0


def test_spiffworkflow_batched_stores_many_cases_per_transaction(tmp_path: Path) -> None:
    """durable-batched commits far fewer transactions than durable-per-step, and every
    case's final state is in its database (read back from the file, not assumed).

    The files are on a RAM file system (/dev/shm) when there is one: durable-per-step's
    ~1,700 commits each wait for an fsync, seconds of disk wait on a busy machine; the
    commits counted and the files read back are the same."""
    need("SpiffWorkflow")
    import sqlite3
    import tempfile

    from bench import spiffworkflow_triage as spiff

    shm = Path("/dev/shm")
    folder = (Path(tempfile.mkdtemp(prefix="baton-spiff-", dir=shm))
              if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path)
    counts: dict[str, int] = {}
    try:
        for mode in ("durable-batched", "durable-per-step"):
            db = folder / f"{mode}.sqlite"
            commits = 0
            real_save, real_many = spiff.StateStore.save, spiff.StateStore.save_many

            def save(self: Any, *a: Any, _real: Any = real_save) -> None:
                nonlocal commits
                commits += 1
                _real(self, *a)

            def save_many(self: Any, rows: Any, _real: Any = real_many) -> None:
                nonlocal commits
                commits += 1
                _real(self, rows)

            spiff.StateStore.save, spiff.StateStore.save_many = save, save_many  # type: ignore[method-assign]
            try:
                r = spiff.run(300, mode, str(db))
            finally:
                spiff.StateStore.save, spiff.StateStore.save_many = real_save, real_many  # type: ignore[method-assign]
            assert (r["runs"], r["steps"], r["mode"]) == (300, 1680, mode)
            with sqlite3.connect(db) as conn:
                assert conn.execute("SELECT count(*), sum(completed) FROM workflow_state").fetchone() == (300, 300)
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            counts[mode] = commits
    finally:
        if folder != tmp_path:
            shutil.rmtree(folder, ignore_errors=True)
    # 3 chunks of 100 created, their engine batches (256 each), the triage chunks of 250
    # and the engine batches that follow them: a handful of transactions, not thousands.
    assert counts["durable-batched"] <= 20, counts
    assert counts["durable-per-step"] >= 300 * 5, counts


def test_triage_pinned_to_one_cpu_with_noise(tmp_path: Path) -> None:
    need("SpiffWorkflow")
    first = min(os.sched_getaffinity(0))
    r = ok_json(bench("--runs", 20, "--cpus", 1, "--noise", "--compare", "spiffworkflow",
                      "--json", cwd=tmp_path))
    check_result(r, 20)
    assert r["cpus_pinned"] == [first]
    for rep in r["repetitions"]:  # the workers ran on that CPU alone
        assert all(s["cpus"] == [first] for s in rep["worker_stats"])
    for c in r["compare"].values():  # and so did SpiffWorkflow
        assert c["repetitions"][0]["cpus"] == [first]
    # One busy neighbour ran during each measured run (its CPU is its own, not theirs).
    assert set(r["noise"]["cpu_s"]) == {"baton", *SPIFF_MODES}
    assert all(x > 0 for xs in r["noise"]["cpu_s"].values() for x in xs)
    p = bench("--runs", 10, "--cpus", 999, cwd=tmp_path)
    assert p.returncode == 1 and "--cpus must be between 1 and" in p.stderr, p.stderr


def test_triage_on_postgres(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    p = bench("--runs", 40, "--db", pg_url, "--json", cwd=tmp_path)
    r = ok_json(p)
    check_result(r, 40)
    assert r["database"] == "postgresql"
    assert r["durability"]["synchronous_commit"] == "on"
    dsn = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:  # its databases are dropped again
        left = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                            [f"baton_bench_{p.pid}_%"]).fetchall()  # type: ignore[attr-defined]
    assert left == []
