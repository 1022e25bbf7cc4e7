"""The REST API over a real Engine (SQLite file or PostgreSQL), with real users and tokens.

``api`` deploys examples/case_triage, adds one user per role (plus agents in different
queues and groups) and gives each a real API token. Requests go through
``fastapi.testclient.TestClient`` into the whole ASGI app (``create_app``), so
authentication, CSRF, problem documents and the OpenAPI models are all on the path.
Workers move runs with ``api.work()`` (until idle, on virtual time); nothing sleeps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from baton import flow
from baton.clock import VirtualClock
from baton.errors import StepFailure
from baton.flows import FlowContext
from baton.project import Project
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.web.app import create_app
from tests.conftest import EXAMPLES

CASE_TRIAGE = EXAMPLES / "case_triage"
Project(CASE_TRIAGE, "", ("flows",)).import_flows()  # registers cases.* flows



@flow("api_tests.boom")
def _boom(ctx: FlowContext) -> dict[str, Any]:
    raise StepFailure("the billing system said no", retryable=False)


@flow("api_tests.ok")
def _ok(ctx: FlowContext) -> dict[str, Any]:
    return {"ok": True}


# name -> (roles, groups, queues)
PEOPLE: dict[str, tuple[list[str], list[str], list[str]]] = {
    "root": (["admin"], [], []),
    "dee": (["designer"], [], []),
    "opal": (["operator"], [], []),
    "ann": (["agent"], ["billing"], ["tier1"]),
    "bob": (["agent"], [], ["tier2"]),
    "cyd": (["agent"], ["billing"], []),
}


FLAKY = """
kind: orchestration
name: flaky_job
trigger:
  type: autolaunched
  input: {n: {type: int, required: true}}
stages:
  - name: only
    steps:
      - {name: boom, type: background, flow: api_tests.boom, retry: {max: 1}}
      - {name: after_boom, type: background, flow: api_tests.ok, after: [boom]}
"""


class Api:
    """An app over one Engine, a token per person, and helpers the tests keep needing."""

    def __init__(self, db_url: str, clock: VirtualClock) -> None:
        self.db_url = db_url
        self.backend = "postgres" if db_url.startswith("postgres") else "sqlite"
        self.clock = clock
        self.engine = Engine(db_url, clock=clock)
        self.worker = Worker(self.engine)
        self.engine.deploy([CASE_TRIAGE / "definitions"], actor="setup")
        self.tokens: dict[str, str] = {}
        for name, (roles, groups, queues) in PEOPLE.items():
            self.engine.directory.add_user(name, roles=roles, groups=groups, queues=queues,
                                           email=f"{name}@example.com")
            self.tokens[name] = self.engine.directory.create_token(name, "tests")[1]
        self.app = create_app(self.engine)
        self.client = TestClient(self.app)

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, who: str, url: str, **kw: Any) -> Any:
        return self.client.get(url, headers=self.auth(who) | kw.pop("headers", {}), **kw)

    def post(self, who: str, url: str, json: Any = None, **kw: Any) -> Any:
        return self.client.post(url, json=json, headers=self.auth(who) | kw.pop("headers", {}),
                                **kw)

    def patch(self, who: str, url: str, json: Any = None, **kw: Any) -> Any:
        return self.client.patch(url, json=json, headers=self.auth(who) | kw.pop("headers", {}),
                                 **kw)

    def delete(self, who: str, url: str, **kw: Any) -> Any:
        return self.client.delete(url, headers=self.auth(who) | kw.pop("headers", {}), **kw)

    def work(self) -> int:
        before = self.worker.stats.jobs
        self.worker.run(until_idle=True)
        return self.worker.stats.jobs - before

    def new_case(self, subject: str = "Invoice 7 is wrong", **fields: Any) -> dict[str, Any]:
        """Create a Case over the API (as the operator) and let the workers run its triage
        up to the work item; returns the record."""
        r = self.post("opal", "/api/objects/Case/records", {"data": {"subject": subject, **fields}})
        assert r.status_code == 201, r.text
        self.work()
        return r.json()  # type: ignore[no-any-return]

    def item_of(self, record_id: str) -> dict[str, Any]:
        """The open triage work item of a record (read through the engine)."""
        items = self.engine.list_work(record_id=record_id)
        assert len(items) == 1, items
        return items[0]

    def close(self) -> None:
        self.client.close()
        self.engine.close()


@pytest.fixture
def api(db_url: str, clock: VirtualClock) -> Iterator[Api]:
    a = Api(db_url, clock)
    yield a
    a.close()


@pytest.fixture
def sqlite_api(tmp_path: Path, clock: VirtualClock) -> Iterator[Api]:
    """SQLite only: for the checks that do not depend on the backend."""
    a = Api(f"sqlite:///{tmp_path / 'baton.db'}", clock)
    yield a
    a.close()


def assert_problem(r: Any, status: int, *fields: str) -> dict[str, Any]:
    """An RFC 9457 problem document with this status, naming these fields (if any)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == status
    assert body["title"] and isinstance(body["detail"], str)
    if fields:
        named = {e["field"] for e in body.get("errors") or []}
        assert set(fields) <= named, (fields, body)
    return body  # type: ignore[no-any-return]


_STARTED = time.time()


def pytest_sessionfinish(session: Any) -> None:
    """Under pytest-xdist the fuzzing runs in a worker process: it writes its summary file
    when its session ends, for the controller's terminal summary below to print."""
    from tests.api import fuzzing

    fuzzing.write_summary()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the schemathesis summary lines (one per backend that was fuzzed), also written
    to test-output/schemathesis-summary.txt with the failures."""
    from tests.api import fuzzing

    lines = fuzzing.write_summary()
    if not lines and fuzzing.OUT.exists() and fuzzing.OUT.stat().st_mtime >= _STARTED:
        lines = [line for line in fuzzing.OUT.read_text().splitlines()
                 if line.startswith("schemathesis [")]
    if lines:
        terminalreporter.write_sep("-", "schemathesis summary")
        for line in lines:
            terminalreporter.write_line(line)
