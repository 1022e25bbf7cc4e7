"""The code passes ruff (the version pinned in the test extra, with pyproject's settings)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing() -> None:
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise",
                           "src", "tests", "bench"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, f"ruff check src tests bench:\n{done.stdout}{done.stderr}"
