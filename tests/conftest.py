"""Shared fixtures: an Engine on a fresh database of each backend, deploying YAML as text.

PostgreSQL tests read ``BATON_TEST_PG_URL`` (default: the local server). Each test gets
its own database cloned from a template migrated once per session. Without a server the
PostgreSQL variants skip with the reason; in CI (``CI=true``) that is a failure instead.
"""

from __future__ import annotations

import itertools
import os
import queue
import shutil
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# This machine's environment sets PYTHONDONTWRITEBYTECODE=1, so every CLI, worker and server
# process a test starts compiled Baton's modules again: about a quarter of a CLI test's CPU.
# The suite's processes cache their bytecode in one folder outside the repository instead
# (checked against each source's mtime, so a stale entry is never used).
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
    _PYCACHE = os.environ.setdefault(
        "PYTHONPYCACHEPREFIX", os.path.join(tempfile.gettempdir(), "baton-tests-pycache"))
    sys.dont_write_bytecode, sys.pycache_prefix = False, _PYCACHE

from baton.clock import VirtualClock
from baton.engine import sla
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.settings import Settings
from baton.store.sql import runsteps

# Writes of a split run's changed steps alone, and its step index's answers (fallout, SLA),
# are checked against a pass over all its steps (a sample: runsteps.VERIFY_EVERY,
# sla.VERIFY_EVERY): a change made in place that no one marked fails the test that makes it.
runsteps.VERIFY_CHANGED = True
sla.VERIFY_INDEX = True

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


PG_URL = os.environ.get("BATON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgres"]


def _pg_admin() -> object:
    import psycopg

    return psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)


def _pg_url_for(dbname: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(PG_URL).set(database=dbname).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A database migrated once per session; every test's database is cloned from it."""
    try:
        admin = _pg_admin()
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server"
        reason = f"PostgreSQL not reachable at {PG_URL} ({str(exc).splitlines()[0]})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must have it running", pytrace=False)
        pytest.skip(reason)
    name = f"baton_tpl_{os.getpid()}"
    with admin:  # type: ignore[attr-defined]
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[attr-defined]
        admin.execute(f"CREATE DATABASE {name}")  # type: ignore[attr-defined]
    from baton.store.sql import SqlStore

    store = SqlStore(_pg_url_for(name))
    store.migrate()
    store.close()
    yield name
    with _pg_admin() as admin:  # type: ignore[attr-defined]
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


_db_counter = itertools.count(1)


class _Dropper:
    """Drops the tests' databases in a thread of its own: a test does not wait for its
    database's ``DROP DATABASE`` (a checkpoint and file removal, 0.05 s on a quiet host and
    seconds under load). Every one is dropped before the session ends (:meth:`close`)."""

    def __init__(self) -> None:
        self.names: queue.Queue[str | None] = queue.Queue()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._drop, name="pg-dropper", daemon=True)
        self.thread.start()

    def _drop(self) -> None:
        while (name := self.names.get()) is not None:
            for attempt in range(5):  # (a loaded host may not answer a connect in time)
                try:
                    with _pg_admin() as admin:  # type: ignore[attr-defined]
                        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                    break
                except Exception as exc:  # noqa: BLE001 - said at the session's end
                    if attempt == 4:
                        self.errors.append(f"{name}: {exc}")
                    else:
                        time.sleep(1.0 + attempt)

    def close(self) -> None:
        self.names.put(None)
        self.thread.join(600)
        assert not self.errors, f"test databases not dropped: {self.errors}"


@pytest.fixture(scope="session")
def _pg_dropper() -> Iterator[_Dropper]:
    dropper = _Dropper()
    yield dropper
    dropper.close()


@pytest.fixture
def pg_url(pg_template: str, _pg_dropper: _Dropper) -> Iterator[str]:
    name = f"baton_t_{os.getpid()}_{next(_db_counter)}"
    with _pg_admin() as admin:  # type: ignore[attr-defined]
        admin.execute(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    yield _pg_url_for(name)
    _pg_dropper.names.put(name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session (closed: its WAL checkpointed into it); each
    test's file is a copy, as each PostgreSQL test's database is a clone of
    :func:`pg_template`. (Migrating a new file costs ~25 ms; a copy ~2 ms. The tests that are
    about migrating a new or old file make their own.)"""
    from baton.store.sql import SqlStore

    path = tmp_path_factory.mktemp("sqlite-template") / "baton.db"
    store = SqlStore(f"sqlite:///{path}")
    store.migrate()
    store.close()
    return path


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, migrated database of each backend."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    path = tmp_path / "baton.db"
    shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
    return f"sqlite:///{path}"


class Harness:
    """An Engine on a fresh database with helpers tests keep needing."""

    def __init__(self, tmp: Path, clock: VirtualClock, db_url: str) -> None:
        self.tmp = tmp
        self.clock = clock
        self.db_url = db_url
        self.backend = "postgres" if db_url.startswith("postgres") else "sqlite"
        self.engine = Engine(self.db_url, clock=clock)  # default settings: not this process's
        self.worker = Worker(self.engine)
        self.env: dict[str, str] = {}

    def setenv(self, **variables: str) -> None:
        """As if Baton had been started with these ``BATON_*`` variables as well: the engine
        and its worker run from now on with the settings ``baton`` reads from them. (What a
        process reads once at start, ``Engine(notify_assignments)`` and the worker's plan and
        fault settings, stays as it was made.)"""
        self.env.update(variables)
        settings = Settings.from_environment(self.env)
        self.engine.settings = self.engine.applier.settings = settings

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
def harness(tmp_path: Path, clock: VirtualClock, db_url: str) -> Iterator[Harness]:
    h = Harness(tmp_path, clock, db_url)
    yield h
    h.engine.close()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test marked ``pg_slow`` is a long one on PostgreSQL: its PostgreSQL variant is also
    ``slow`` (CI runs it; a local ``./scripts/test`` runs the SQLite variant only), so the
    local suite stays short while CI still covers both databases. (First, so that ``-m``
    deselects what this marks.)"""
    for it in items:
        params = getattr(getattr(it, "callspec", None), "params", {})
        if it.get_closest_marker("pg_slow") is not None and "postgres" in params.values():
            it.add_marker(pytest.mark.slow)
