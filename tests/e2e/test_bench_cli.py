"""``bench/cli.py`` end to end: a fresh project, each read command run and measured.

A smoke test: it checks that the script measures every read command and reports CPU
seconds, never how few (no thresholds: the figures depend on the machine and its load)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMANDS = {"--help", "--version", "runs list", "runs show", "work list", "records list", "records show",
            "definitions list", "definitions show", "fallout list", "incidents list"}


def _cwd(tmp_path: Path) -> Path:
    """An empty folder to run the script in (db_url's SQLite file is in tmp_path)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return cwd


@pytest.mark.pg_slow  # eleven timed subprocesses: PostgreSQL's in CI
def test_cli_bench_measures_every_read_command(tmp_path: Path, db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env["PYTHONPATH"] = str(REPO / "src")
    # SQLite: the project's own file (what the script does by default); PostgreSQL: --db.
    db = ["--db", db_url] if db_url.startswith("postgresql") else []
    cwd = _cwd(tmp_path)
    # One record (the fewest the script takes): the show commands have a run and a record.
    p = subprocess.run([sys.executable, str(REPO / "bench" / "cli.py"), "--repeat", "1",
                        "--records", "1", "--json", *db], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=900, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout)
    assert r["database"] == ("postgresql" if db else "sqlite")
    assert set(r["commands"]) == COMMANDS
    for label, m in r["commands"].items():
        assert len(m["samples_cpu_s"]) == 1 and m["median_cpu_s"] > 0, (label, m)
    assert r["target_cpu_s"] == 0.3 and r["src"] == str(REPO / "src")
    assert list(cwd.iterdir()) == []  # its project and bytecode were temporary


WRITES = {"validate", "deploy", "records create", "worker --until-idle"}


@pytest.mark.pg_slow  # eight timed subprocesses: PostgreSQL's in CI
def test_cli_bench_measures_every_write_command(tmp_path: Path, db_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env["PYTHONPATH"] = str(REPO / "src")
    db = ["--db", db_url] if db_url.startswith("postgresql") else []
    cwd = _cwd(tmp_path)
    p = subprocess.run([sys.executable, str(REPO / "bench" / "cli.py"), "--write", "--repeat",
                        "1", "--records", "1", "--json", *db], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=900, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout)
    assert set(r["commands"]) == WRITES
    for label, m in r["commands"].items():
        assert len(m["samples_cpu_s"]) == 1 and m["median_cpu_s"] > 0, (label, m)
    assert list(cwd.iterdir()) == []


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="--ir counts with valgrind")
def test_cli_bench_counts_instructions_with_valgrind(tmp_path: Path) -> None:
    """``--ir``: callgrind's count of one command's instructions (``--version``, the
    cheapest, so that the test stays short under valgrind)."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from cli import Baton  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(REPO / "bench"))
    project = tmp_path / "p"
    project.mkdir()
    b = Baton(REPO / "src", project, None, tmp_path / "pycache", ir=True)
    b.run("--version")  # bytecode cached, as the script does before it counts
    first, second = b.sample("--version"), b.sample("--version")
    assert first > 1_000_000 and isinstance(first, float)
    assert abs(first - second) / first < 0.02  # deterministic, near enough to compare
