"""Shared fixtures: an Engine on a fresh SQLite file, deploying YAML given as text."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.clock import VirtualClock
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


class Harness:
    """An Engine on a temporary SQLite file with helpers tests keep needing."""

    def __init__(self, tmp: Path, clock: VirtualClock) -> None:
        self.tmp = tmp
        self.clock = clock
        self.db_url = f"sqlite:///{tmp / 'baton.db'}"
        self.engine = Engine(self.db_url, clock=clock)
        self.worker = Worker(self.engine)

    def deploy_text(self, yaml_text: str, name: str = "defs.yaml") -> None:
        path = self.tmp / name
        path.write_text(textwrap.dedent(yaml_text))
        self.engine.deploy([path], known_flows=None)

    def work(self) -> int:
        """Run the workers until nothing is ready; returns jobs processed."""
        before = self.worker.stats.jobs
        self.worker.run(until_idle=True)
        return self.worker.stats.jobs - before

    def step_status(self, run_id: str) -> dict[str, str]:
        run = self.engine.get_run(run_id)
        return {name: sr.status.value for name, sr in run.steps.items()}


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def harness(tmp_path: Path, clock: VirtualClock) -> Iterator[Harness]:
    h = Harness(tmp_path, clock)
    yield h
    h.engine.close()
