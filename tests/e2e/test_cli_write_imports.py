"""The guard that keeps the CLI's write commands from paying for modules they never use:
``deploy``, ``validate``, ``records create`` and ``worker --until-idle`` are what the test
suite (and a person setting up a project) starts most, and each paid ~0.1 s of CPU for
pydantic (Typer's Path coercion), structlog (JSON logs only), smtplib and the ``email``
policy machinery (sending mail), ``statistics`` (one supervisor figure), and the worker
for prometheus_client (exposing metrics, which ``worker`` without ``--metrics-port`` never
does).

Checked in the ``baton`` process itself (``sys.modules`` after the command ran, in a fresh
interpreter, as the console script runs it), on a real SQLite project: no timing, so a busy
machine cannot make it flaky. ``bench/cli.py --write`` measures the CPU and instructions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli import _env, baton, ok
from tests.e2e.test_cli_read_imports import PROBE
from tests.e2e.test_cli_truthful import make_project

NOT_ON_A_WRITE = (
    "pydantic",  # Typer's coercion of Path arguments (baton.cli.params converts them)
    "structlog",  # JSON logs only (baton.logs)
    "smtplib", "email.policy", "email.headerregistry",  # sending mail (baton.work.notify)
    "statistics",  # the supervisor's median (baton.work.team)
    "prometheus_client",  # exposing metrics (--metrics-port, serve), not counting them
    "fastapi", "starlette", "uvicorn", "jinja2",  # the web stack
    "sklearn", "rapidfuzz",  # the offline classifier
    "sqlalchemy.dialects.postgresql", "psycopg",  # PostgreSQL, on a SQLite project
    "croniter", "holidays", "pwdlib",  # schedules, calendars, passwords
)

# The worker closes MCP sessions when it stops, only if it ever opened any.
NOT_ON_A_WORKER = ("baton.connections.mcp",)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A deployed project (the write commands below run in it, in this order)."""
    root = tmp_path_factory.mktemp("writes") / "p"
    make_project(root, f"sqlite:///{root / 'baton.db'}")
    ok(baton("deploy", cwd=root))
    return str(root)


WRITES = [
    ["validate"], ["validate", "definitions"], ["deploy"], ["deploy", "definitions"],
    ["records", "create", "Parcel", "--data", '{"ref": "P-9"}', "--json"],
    ["worker", "--until-idle"],
]


@pytest.mark.parametrize("command", WRITES, ids=[" ".join(c[:2]) for c in WRITES])
def test_a_write_command_loads_no_module_it_does_not_use(project: str, command: list[str],
                                                          tmp_path: Path) -> None:
    out = tmp_path / "modules.json"
    p = subprocess.run([sys.executable, "-c", PROBE, str(out), *command], cwd=project,
                       env=_env("200"), capture_output=True, text=True, timeout=180,
                       check=False)
    assert out.exists(), f"baton {' '.join(command)} did not finish:\n{p.stdout}\n{p.stderr}"
    found = json.loads(out.read_text())
    assert found["code"] == 0, f"baton {' '.join(command)} exited {found['code']}:\n{p.stderr}"
    loaded = set(found["modules"])
    assert "sqlalchemy" in loaded  # it did write, through the Engine
    unused = NOT_ON_A_WRITE + (NOT_ON_A_WORKER if command[0] == "worker" else ())
    heavy = sorted(m for m in unused if m in loaded)
    assert heavy == [], f"baton {' '.join(command)} loads {heavy}: import them where used"
