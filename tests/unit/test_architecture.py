"""Dependencies point inward: the engine core and definitions import no I/O code; step
types are plug-ins that nothing outside ``steps/`` names."""

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


@pytest.mark.parametrize("package", ["engine", "definitions", "expressions", "steps"])
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


STEP_TYPE_NAMES = ("background", "interactive", "pause", "milestone")


def _string_literals(path: Path) -> list[tuple[int, str]]:
    """String constants of a module, docstrings left out (prose may name a step type)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def test_only_the_steps_package_names_a_step_type() -> None:
    """decide(), the validator, the loader and the worker ask the step-type registry; a
    literal step-type name outside ``steps/`` is a branch that a plug-in cannot extend."""
    bad = [
        f"{file.relative_to(SRC)}:{line} names the step type {value!r}"
        for file in sorted(SRC.rglob("*.py"))
        if "steps" not in file.relative_to(SRC).parts[:1]
        for line, value in _string_literals(file)
        if value in STEP_TYPE_NAMES
    ]
    assert not bad, "\n".join(bad)


def test_the_step_type_check_sees_what_it_looks_for() -> None:
    # The check above must see literals where they are: the built-in types name themselves.
    names = {value for file in (SRC / "steps").glob("*.py") for _, value in _string_literals(file)}
    assert set(STEP_TYPE_NAMES) <= names
