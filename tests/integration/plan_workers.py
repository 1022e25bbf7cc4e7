"""The order-fulfillment example as a project that real ``baton`` processes run, for the
tests that SIGKILL workers in the middle of a plan (``test_plans_crash.py``,
``test_split_runs_crash.py``): trivial flows for every flow step, the ship callouts pointed
at a demo carrier on loopback, and ``baton`` run as a subprocess with a fault point."""

from __future__ import annotations

import subprocess
from pathlib import Path

from baton.cli.demo_carrier import DemoCarrier, pointed_at
from tests.procs import REPO, baton_command, baton_env

EXAMPLE = REPO / "examples" / "order_fulfillment" / "definitions"

FLOWS = '''
from baton import flow

for _n in ("credit_check", "reserve", "release", "ship", "recall", "provision", "bill", "cease",
           "activate", "deactivate"):
    flow(f"orders.{_n}")(lambda ctx, _n=_n: {"done": _n})
'''


def plan_project(root: Path, carrier: DemoCarrier) -> tuple[Path, str]:
    """The example deployed in ``root/proj`` on a SQLite file in ``root``: (project, URL)."""
    db_url = f"sqlite:///{root / 'baton.db'}"
    project = root / "proj"
    (project / "definitions").mkdir(parents=True)
    for name, text in pointed_at(EXAMPLE, carrier.url).items():
        (project / "definitions" / name).write_text(text)
    (project / "baton.toml").write_text('flows = ["flows"]\n')
    (project / "flows.py").write_text(FLOWS)
    deployed = run_baton(project, db_url, "deploy")
    assert deployed.returncode == 0, deployed.stderr
    return project, db_url


def run_baton(project: Path, db_url: str, *args: str, fault: str | None = None,
              carrier: DemoCarrier | None = None, timeout: float = 300
              ) -> subprocess.CompletedProcess[str]:
    """``baton ARGS`` to its end (``fault``: its ``BATON_FAULT``; ``carrier``: the ship
    callouts' token in its environment)."""
    extra = {"CARRIER_TOKEN": carrier.token} if carrier is not None else {}
    if fault is not None:
        extra["BATON_FAULT"] = fault
    return subprocess.run(baton_command(project, db_url, *args), env=baton_env(**extra),
                          capture_output=True, text=True, timeout=timeout, cwd=project,
                          check=False)
