"""The guard that keeps the CLI fast: importing ``baton.cli.main`` (what every ``baton``
command does first) loads neither the web stack, nor CEL, nor the worker, nor the
Engine's database layer; the commands that need them import them themselves.

Checked in a fresh interpreter (``sys.modules`` after the import), since this test
process has long imported everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

NOT_AT_IMPORT = (
    "fastapi", "uvicorn", "starlette", "pydantic", "jinja2",  # the web stack (and Typer's coercion)
    "cel_expr_python", "google.protobuf", "baton.expressions.cel",  # CEL
    "baton.runtime.worker", "baton.runtime.flowpool",  # the worker
    "baton.runtime.engine", "sqlalchemy",  # the Engine and its database layer
    "structlog", "prometheus_client", "baton.logs", "baton.runtime.metrics",
    "yaml", "holidays", "croniter", "pwdlib",  # definitions, calendars, schedules, passwords
    "rich.table", "rich.progress",  # printed by the commands that print them
)


def _modules_after(code: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env["PYTHONPATH"] = str(REPO / "src")
    p = subprocess.run([sys.executable, "-c", code + "\nimport json, sys\n"
                        "print(json.dumps(sorted(sys.modules)))"],
                       env=env, capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(p.stdout.splitlines()[-1]))


def test_importing_the_cli_loads_no_heavy_module() -> None:
    loaded = _modules_after("import baton.cli.commands")
    assert "baton.cli.commands" in loaded and "typer" in loaded
    heavy = sorted(m for m in NOT_AT_IMPORT if m in loaded)
    assert heavy == [], f"`import baton.cli.commands` loads {heavy}: import them in the commands"


def test_the_entry_point_loads_nothing_but_itself() -> None:
    """``from baton.cli.main import main`` (the console script) loads neither Typer nor
    Rich: the lean read path answers before either is needed (``baton.cli.reads``)."""
    loaded = _modules_after("from baton.cli.main import main")
    heavy = sorted(m for m in ("typer", "rich", "baton.cli.commands", *NOT_AT_IMPORT)
                   if m in loaded)
    assert heavy == [], f"`from baton.cli.main import main` loads {heavy}"


def test_the_lean_reader_knows_every_migration() -> None:
    """The lean read path reads only a database at the schema this code writes."""
    from baton.store.lean import SCHEMA_VERSIONS
    from baton.store.migrations import MIGRATIONS

    assert {m.version for m in MIGRATIONS} == SCHEMA_VERSIONS


def test_help_loads_no_heavy_module() -> None:
    loaded = _modules_after("import sys\nfrom baton.cli.main import app\n"
                            "try:\n    app(['runs', 'list', '--help'])\n"
                            "except SystemExit:\n    pass")
    heavy = sorted(m for m in NOT_AT_IMPORT if m in loaded and not m.startswith("rich."))
    assert heavy == [], f"`baton runs list --help` loads {heavy}"


def test_the_engine_loads_no_step_type_dependencies() -> None:
    """A read command builds an Engine: the HTTP client, mail intake and the step types'
    own modules (AI provider, MCP SDK, callouts) load when first used, not with it."""
    loaded = _modules_after("import baton.runtime.engine")
    later = ("httpx2", "baton.connections.http", "baton.connections.wire", "mcp",
             "baton.steps.ai", "baton.steps.mcp", "baton.steps.callout",
             "baton.intake.service", "baton.runtime.callbacks")
    heavy = sorted(m for m in later if m in loaded)
    assert heavy == [], f"`import baton.runtime.engine` loads {heavy}"
