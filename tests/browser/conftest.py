"""Browser tests: the real ``baton serve`` in a subprocess, driven by Debian's Chromium.

The server runs over a temporary copy of ``examples/case_triage`` on its own SQLite file;
definitions are deployed and users added with the CLI, as an administrator would. The
browser is ``/usr/bin/chromium`` (the Debian package; ``.ci/run`` installs it); it is
never downloaded. Without it the tests skip, except under ``CI=true`` where they fail.

Screenshots of every page visited go to ``test-output/screenshots/<name>.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.net import free_port
from tests.procs import eventually

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "case_triage"
SHOTS = REPO / "test-output" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-1", "olga": "olga-secret-1",
             "dana": "dana-secret-1",
             "otto": "otto-secret-1"}  # (added by tests/browser/test_work_offers.py)


@dataclass
class Server:
    url: str
    project: Path
    db: str
    log: Path

    def cli(self, *args: str, input: str | None = None) -> str:
        """Run ``baton --project P --db D ARGS`` and return its standard output."""
        cmd = [sys.executable, "-c", "from baton.cli.main import main; main()",
               "--project", str(self.project), "--db", self.db, *args]
        done = subprocess.run(cmd, check=False, input=input, capture_output=True, text=True, timeout=120,
                              cwd=self.project)
        if done.returncode != 0:
            raise AssertionError(f"baton {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done.stdout

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json"))

    @contextmanager
    def command_engine(self) -> Iterator[Any]:
        """The Engine a ``baton`` command (no flows) acts through: its project, settings and
        database, in this process rather than in a new Python started for one call."""
        from baton.cli.context import State

        state = State()
        state.project_dir, state.db = str(self.project), self.db
        engine = state.engine(migrate=False)
        try:
            yield engine
        finally:
            engine.close()

    def create_case(self, subject: str) -> str:
        """What ``baton records create Case --data ...`` does (the same call, actor "cli")."""
        with self.command_engine() as engine:
            record = engine.create_record("Case", {"subject": subject, "origin": "Web"},
                                          actor="cli")
        return str(record["id"])

    def cancel_run(self, run_id: str, reason: str) -> None:
        """What ``baton runs cancel RUN --reason ...`` does (the same call, actor "cli")."""
        with self.command_engine() as engine:
            engine.cancel_run(run_id, reason, actor="cli")

    def work_item_for(self, record_id: str) -> dict[str, Any]:
        """The open triage item of a record's run, once the server's workers created it
        (read straight from the database, as a test's oracle)."""
        from baton.runtime.engine import Engine

        engine = Engine(self.db, migrate=False)
        try:
            def probe() -> dict[str, Any] | None:
                items = engine.list_work(record_id=record_id)
                return items[0] if items else None
            return eventually(probe, timeout=90, what=f"the triage work item of {record_id}")
        finally:
            engine.close()


FRAGILE_YAML = """\
kind: orchestration
name: fragile_sync
trigger: {type: autolaunched}
stages:
  - name: sync
    steps:
      - {name: push_to_crm, type: background, flow: fragile.push_to_crm}
      - {name: confirm, type: background, flow: fragile.confirm, after: [push_to_crm]}
"""

FRAGILE_FLOWS = """\
from baton import flow


@flow("fragile.push_to_crm")
def push_to_crm(ctx):
    raise RuntimeError("CRM answered 503 Service Unavailable")


@flow("fragile.confirm")
def confirm(ctx):
    return {"confirmed": True}
"""


def _add_fragile_orchestration(project: Path) -> None:
    """An orchestration whose first step always fails: it lands in fallout (no retry policy)."""
    (project / "definitions" / "fragile.yaml").write_text(FRAGILE_YAML)
    (project / "fragile_flows.py").write_text(FRAGILE_FLOWS)
    toml = project / "baton.toml"
    toml.write_text(toml.read_text().replace('flows = ["flows"]', 'flows = ["flows", "fragile_flows"]'))


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/login", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("ui")
    project = base / "case_triage"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("*.db*", "__pycache__"))
    _add_fragile_orchestration(project)
    port = free_port()
    srv = Server(f"http://127.0.0.1:{port}", project, f"sqlite:///{base / 'baton.db'}",
                 base / "serve.log")
    srv.cli("deploy")
    with srv.log.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from baton.cli.main import main; main()", "--project",
             str(project), "--db", srv.db, "serve", "--port", str(port)],
            cwd=project, stdout=log, stderr=subprocess.STDOUT)
        try:
            # the users are added while the server starts (as to a running server: a login
            # reads them then)
            for name, queue in (("alice", "tier1"), ("bob", "tier1")):
                srv.cli("users", "add", name, "--role", "agent", "--queue", queue, "--email",
                        f"{name}@example.com", "--password-stdin", input=PASSWORDS[name] + "\n")
            for name, role in (("olga", "operator"), ("dana", "designer")):
                srv.cli("users", "add", name, "--role", role, "--email", f"{name}@example.com",
                        "--password-stdin", input=PASSWORDS[name] + "\n")

            def up() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"baton serve exited ({proc.returncode}):\n"
                                         + srv.log.read_text())
                return _answers(srv.url)
            eventually(up, timeout=60, what=f"baton serve to answer at {srv.url}")
            yield srv
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is missing: apt-get install chromium (never `playwright install`)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def new_page(browser: Any, server: Server) -> Iterator[Callable[..., Any]]:
    """Pages in fresh browser contexts (one per user: separate cookie jars), 1280 px wide
    unless ``make(width=390)`` asks for a phone."""
    contexts: list[Any] = []

    def make(width: int = 1280, height: int = 900) -> Any:
        context = browser.new_context(base_url=server.url,
                                      viewport={"width": width, "height": height})
        context.set_default_timeout(20_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def shot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as test-output/screenshots/<name>.png and print its path."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path.relative_to(REPO)}")
    return path


def login(page: Any, name: str, *, next_path: str | None = None, go: bool = True) -> None:
    """Log in through the form (``go=False``: on the login page the browser is on now)."""
    if go:
        page.goto("/login" + (f"?next={next_path}" if next_path else ""))
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORDS[name])
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
