"""The package passes ``mypy --strict`` (the version pinned in the test extra, with
pyproject's settings): type errors fail the suite like lint errors do."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_strict_finds_nothing() -> None:
    done = subprocess.run([sys.executable, "-m", "mypy", "--strict", "src"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"mypy --strict src:\n{done.stdout}{done.stderr}"
