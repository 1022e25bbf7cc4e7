"""The guard behind issue 16 item 6's "read commands finish in < 0.3 s of CPU": what a read
command imports, checked in the ``baton`` process itself (no timing, so a busy machine
cannot make it flaky). Each read command runs in a fresh interpreter on a real SQLite
project with a run, a work item and audit events, and must answer without loading the web
stack, CEL, the worker, the AI and MCP clients, or SQLAlchemy's PostgreSQL dialect; the
commands that need those import them themselves (``bench/cli.py`` measures the CPU). On
SQLite they answer through the lean read path (``baton.cli.reads``), so they load neither
SQLAlchemy nor Typer nor the Engine at all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_cli import _env, baton, ok, ok_json
from tests.e2e.test_cli_truthful import make_project

NOT_ON_A_READ = (
    "fastapi", "starlette", "uvicorn", "jinja2", "pydantic",  # the web stack
    "cel_expr_python", "google.protobuf",  # CEL
    "baton.runtime.worker", "baton.runtime.flowpool",  # the worker
    "httpx2", "mcp", "baton.steps.ai", "baton.steps.callout", "baton.steps.mcp",  # callouts, AI, MCP
    "sklearn", "rapidfuzz",  # the offline classifier
    "prometheus_client", "structlog",  # metrics, JSON logs
    "sqlalchemy.dialects.postgresql", "psycopg",  # PostgreSQL, on a SQLite project
    "croniter", "holidays", "pwdlib",  # schedules, calendars, passwords
)

# Runs `baton ARGS` as the console script does, then writes the modules it loaded.
PROBE = """
import json, sys
from baton.cli.main import main
out, sys.argv = sys.argv[1], ["baton", *sys.argv[2:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A project with a run in progress (a step done, a pause ahead), its record and events."""
    root = tmp_path_factory.mktemp("reads") / "p"
    make_project(root, f"sqlite:///{root / 'baton.db'}")
    ok(baton("deploy", cwd=root))
    record = ok_json(baton("records", "create", "Parcel", "--data", '{"ref": "P-1"}', "--json",
                           cwd=root))
    ok(baton("worker", "--until-idle", cwd=root))
    run = ok_json(baton("runs", "list", "--json", cwd=root))[0]
    return {"root": str(root), "record": record["id"], "run": run["id"]}


READS = [
    ["runs", "list"], ["runs", "show", "{run}"], ["work", "list"], ["records", "list"],
    ["records", "show", "{record}"], ["records", "timeline", "{record}"],
    ["definitions", "list"], ["definitions", "show", "deliver"], ["fallout", "list"],
    ["incidents", "list"],
]


@pytest.mark.parametrize("command", READS, ids=[" ".join(c[:2]) for c in READS])
def test_a_read_command_loads_no_heavy_module(project: dict[str, str], command: list[str],
                                               tmp_path: Path) -> None:
    args = [a.format(**project) for a in command]
    out = tmp_path / "modules.json"
    p = subprocess.run([sys.executable, "-c", PROBE, str(out), *args], cwd=project["root"],
                       env=_env("200"), capture_output=True, text=True, timeout=180,
                       check=False)
    assert out.exists(), f"baton {' '.join(args)} did not finish:\n{p.stdout}\n{p.stderr}"
    found = json.loads(out.read_text())
    assert found["code"] == 0, f"baton {' '.join(args)} exited {found['code']}:\n{p.stderr}"
    assert p.stdout.strip(), f"baton {' '.join(args)} printed nothing"
    loaded = set(found["modules"])
    # On SQLite, the lean read path (baton.cli.reads): the stdlib's sqlite3, no Typer.
    lean = sorted(m for m in ("sqlalchemy", "typer", "baton.runtime.engine",
                              "baton.definitions.model", "baton.expressions") if m in loaded)
    assert lean == [], f"baton {' '.join(args)} loads {lean}"
    assert "baton.store.lean" in loaded
    heavy = sorted(m for m in NOT_ON_A_READ if m in loaded)
    assert heavy == [], f"baton {' '.join(args)} loads {heavy}: import them where they are used"
