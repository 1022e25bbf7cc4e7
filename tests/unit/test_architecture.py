"""Dependencies point inward: the engine core and definitions import no I/O code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "baton"
FORBIDDEN = ("sqlalchemy", "baton.store", "baton.runtime", "baton.cli", "typer", "rich",
             "socket", "sqlite3", "subprocess", "fastapi", "httpx")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
    return out


@pytest.mark.parametrize("package", ["engine", "definitions", "expressions"])
def test_pure_packages_import_no_io(package: str) -> None:
    bad = []
    for file in sorted((SRC / package).rglob("*.py")):
        for name in _imports(file):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                bad.append(f"{file.relative_to(SRC)} imports {name}")
        if "os.environ" in file.read_text() or "getenv(" in file.read_text():
            bad.append(f"{file.relative_to(SRC)} reads the environment")
    assert not bad, "\n".join(bad)


def test_only_clock_reads_the_time() -> None:
    offenders = [
        str(f.relative_to(SRC))
        for f in SRC.rglob("*.py")
        if f.name != "clock.py" and ("datetime.now(" in f.read_text() or "time.time()" in f.read_text())
        and f.name != "ids.py"  # ids embed wall-clock milliseconds for ordering, not for logic
    ]
    assert offenders == []
