"""What a command runs with: the project, its settings, its Engine (no Typer here, so the
lean read path finds the database exactly as the commands do)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from baton.errors import ConfigError
from baton.project import Project, find_project_root, load_project
from baton.settings import Settings


class State:
    """What this command runs with: the project, its settings (read once), its Engine."""

    project_dir: str | None = None
    db: str | None = None  # --db
    debug: bool = False  # --debug: the full traceback of any error
    _project: Project | None = None
    _settings: Settings | None = None
    _engine: Any = None

    def project(self) -> Project:
        """The project this command acts on: ``--project DIR``, else the nearest folder from
        here upward with a ``baton.toml`` (as git finds its repository). Outside any
        project it is an error (rather than a new ``./baton.db`` made by surprise) unless
        a database is named (``--db`` or ``BATON_DB``): then the folder's defaults apply."""
        if self._project is None:
            found = self.find_project()
            if found is None:
                raise ConfigError(self._no_project_message())
            self._project = found
        return self._project

    def find_project(self) -> Project | None:
        """The project, or None when there is none (and no database is named)."""
        if self._project is not None:
            return self._project
        if self.project_dir is not None:
            given = Path(self.project_dir)
            # (A folder that does not exist: load_project says so.)
            if (given / "baton.toml").is_file() or not given.is_dir() or self._database_named():
                return load_project(given)
            return None
        root = find_project_root(Path.cwd())
        if root is not None:
            return load_project(root)
        return load_project(None) if self._database_named() else None

    def _database_named(self) -> bool:
        return bool(self.db or Settings.from_environment().database)

    def _no_project_message(self) -> str:
        where = (f"{Path(self.project_dir).resolve()} has no baton.toml"
                 if self.project_dir is not None
                 else f"no baton.toml in {Path.cwd()} or any folder above it")
        return (f"not in a Baton project: {where}. Run the command inside a project folder, "
                "name one with --project DIR (or a database with --db URL), or create one "
                "with `baton init DIR`")

    def settings(self) -> Settings:
        """``baton.toml``, the environment (``BATON_*``), then the flags: the one place the
        command reads its surroundings; everything below is given the result."""
        if self._settings is None:
            found = self.find_project()
            settings = Settings.from_environment(project=found.settings if found else {})
            if found is not None:
                settings = dataclasses.replace(settings, project_dir=str(found.root))
            if self.db:
                settings = dataclasses.replace(settings, database=self.db)
            self._settings = settings
        return self._settings

    def configure(self, **changes: Any) -> None:
        """Settings a command works out itself (``serve``'s own address); before the Engine."""
        assert self._engine is None, "settings change after the Engine was made"
        self._settings = dataclasses.replace(self.settings(), **changes)

    def database_url(self) -> str:
        return self.project().database_url(self.settings().database)

    def engine(self, *, flows: bool = False, migrate: bool = True) -> Any:
        from baton.runtime.engine import Engine

        if flows:
            self.project().import_flows()
        if self._engine is None:
            url = self.database_url()
            with opening(url):  # (with ``migrate``, the Engine connects here)
                self._engine = Engine(url, migrate=migrate, settings=self.settings())
        return self._engine


def require_migrated(eng: Any, url: str) -> None:
    """A process started with ``--no-migrate`` applies no migration: on a database that
    lacks some, refuse to start (one line saying to run ``baton db upgrade``) rather than
    fail on every job or request. A database that does not answer yet is not checked here:
    the workers wait for it."""
    from sqlalchemy.exc import DBAPIError

    from baton.cli.failures import database_name
    from baton.store.migrations import MIGRATIONS

    try:
        missing = eng.store.pending_migrations()
    except DBAPIError:
        return
    if not missing:
        return
    where = database_name(url)
    if len(missing) == len(MIGRATIONS):
        raise ConfigError(f"database {where} has no Baton tables: run `baton db upgrade` "
                          "first (--no-migrate applies no migration), or check that --db "
                          "names the right database")
    raise ConfigError(f"database {where} lacks {len(missing)} migration(s) of this version "
                      f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): run "
                      "`baton db upgrade` first (--no-migrate applies no migration)")


@contextmanager
def opening(url: str) -> Iterator[None]:
    """The first connection to the database: one that cannot be opened (not a database, a
    folder, a server that refuses) is a one-line :class:`ConfigError` naming it. Any other
    database error, and every error once a command is under way, goes on as it is; a
    worker started with ``--no-migrate`` first connects later, and waits for a database
    that is down rather than exit."""
    from sqlalchemy.exc import DBAPIError

    from baton.store.sql.dialects import open_failure

    try:
        yield
    except DBAPIError as exc:
        failure = open_failure(exc, url)
        if failure is None:
            raise
        raise failure from exc


state = State()
