"""A Baton project is a folder: ``baton.toml``, ``definitions/`` and flow modules (DESIGN §4)."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.errors import ConfigError

DEFAULT_DATABASE = "sqlite:///baton.db"
SETTING_KEYS = ("isolation", "flow_memory_mb", "ai", "intake")  # read into Settings (the environment beats them)
TABLES_KEYS = {"secrets": ("file",), "server": ("public_url",)}
TABLES = tuple(TABLES_KEYS)


@dataclass(frozen=True)
class Project:
    root: Path
    database: str
    flows: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    """What ``baton.toml`` sets of :class:`baton.settings.Settings` besides the database
    (``isolation``, ``flow_memory_mb``, ``secrets_file``, ``public_url``); the environment
    beats it."""

    @property
    def definitions_dir(self) -> Path:
        return self.root / "definitions"

    def database_url(self, override: str | None = None) -> str:
        """``override`` (``Settings.database``: ``--db``, else ``BATON_DB``) beats
        ``baton.toml``. A relative SQLite path is resolved against the current folder when
        it came from the command line or the environment, else against the project folder."""
        url = override or self.database
        if "://" not in url:
            url = f"sqlite:///{url}"
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rel = url[len("sqlite:///"):]
            base = Path.cwd() if override else self.root
            url = f"sqlite:///{(base / rel).resolve()}"
        return url

    def import_flows(self) -> None:
        """Import the flow modules so their ``@flow`` registrations take effect.

        A module that is missing, or fails while it is imported (a syntax error, an
        exception at its top level, an import of its own that fails), is a
        :class:`ConfigError` naming the module and where it failed (``flows.py:44``)."""
        root = self.root.resolve()
        for module in self.flows:
            try:
                _import_from(root, module)
            except Exception as exc:  # whatever the user's module raised (re-raised, located)
                raise ConfigError(f"{self.root / 'baton.toml'}: cannot import flow module "
                                  f"{module!r}: {_import_failure(exc, root)}") from exc


def find_project_root(start: Path) -> Path | None:
    """The nearest folder from ``start`` upward that has a ``baton.toml``, or None."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / "baton.toml").is_file():
            return folder
    return None


def load_project(folder: str | Path | None = None) -> Project:
    """Read ``baton.toml`` in ``folder`` (default: the current folder).

    A folder without ``baton.toml`` is still a project with the defaults, so
    ``baton --db x.db runs list`` works anywhere.
    """
    root = Path(folder or ".").resolve()
    if folder is not None and not root.is_dir():
        raise ConfigError(f"project folder {root} does not exist")
    path = root / "baton.toml"
    if not path.exists():
        return Project(root, DEFAULT_DATABASE, ())
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    unknown = set(data) - {"database", "flows", *SETTING_KEYS, *TABLES}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))} "
                          f"(known: database, flows, {', '.join(SETTING_KEYS + TABLES)})")
    database = data.get("database", DEFAULT_DATABASE)
    flows = data.get("flows", [])
    if not isinstance(database, str):
        raise ConfigError(f"{path}: database must be a string URL such as {DEFAULT_DATABASE!r}")
    if not isinstance(flows, list) or not all(isinstance(f, str) for f in flows):
        raise ConfigError(f'{path}: flows must be a list of module names, e.g. flows = ["flows"]')
    settings = {k: data[k] for k in SETTING_KEYS if k in data}
    settings.update(_tables(path, root, data))
    ai = settings.get("ai")
    encoder = ai.get("encoder") if isinstance(ai, dict) else None
    if isinstance(ai, dict) and isinstance(encoder, str) and encoder.strip() \
            and encoder.strip().lower() not in ("auto", "off"):
        # A model folder of one's own, like [secrets] file: relative to the project folder
        # (BATON_AI_ENCODER, from the environment, stays relative to the current one).
        settings["ai"] = {**ai, "encoder": str((root / encoder.strip()).resolve())}
    return Project(root, database, tuple(flows), settings)


def _tables(path: Path, root: Path, data: dict[str, Any]) -> dict[str, Any]:
    """``[secrets] file`` (resolved against the project folder) and ``[server] public_url``,
    as the :class:`baton.settings.Settings` fields they set."""
    out: dict[str, Any] = {}
    for table, keys in TABLES_KEYS.items():
        value = data.get(table, {})
        if not isinstance(value, dict) or set(value) - set(keys):
            raise ConfigError(f"{path}: [{table}] takes only {', '.join(keys)}")
        for key in keys:
            if key in value and not isinstance(value[key], str):
                raise ConfigError(f"{path}: [{table}] {key} must be a string")
    secrets = data.get("secrets", {}).get("file")
    if secrets:
        out["secrets_file"] = str((root / secrets).resolve())
    public = data.get("server", {}).get("public_url")
    if public:
        out["public_url"] = public.rstrip("/")
    return out


def _import_from(root: Path, module: str) -> None:
    """Import ``module`` from the project folder under a name unique to that folder.

    Two projects may both have a ``flows.py``; importing by plain name would give
    the second project the first one's module.
    """
    rel = Path(*module.split("."))
    file = root / rel.with_suffix(".py")
    package = root / rel / "__init__.py"
    path = file if file.exists() else package
    if not path.exists():
        raise _NoModuleFile(f"neither {file} nor {package} exists")
    digest = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    name = f"baton_project_{digest}.{module}"
    if name in sys.modules:
        return
    search = [str(path.parent)] if path.name == "__init__.py" else None
    spec = importlib.util.spec_from_file_location(name, path, submodule_search_locations=search)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        del sys.modules[name]
        raise


class _NoModuleFile(FileNotFoundError):
    """A flow module named in ``baton.toml`` has no file (not an error its code raised)."""


def _import_failure(exc: Exception, root: Path) -> str:
    """What went wrong importing a flow module, on one line, located in the user's code:
    ``flows.py:44: invalid syntax`` for a syntax error, else the exception's type and
    message at the innermost line of the project's own files that it passed through."""
    if isinstance(exc, _NoModuleFile):
        return str(exc)
    if isinstance(exc, SyntaxError):
        where = _located(exc.filename, exc.lineno, root)
        return f"{where}: {exc.msg}" if where else f"{exc.msg}"
    where = ""
    tb = exc.__traceback__
    while tb is not None:  # outermost to innermost: the last of the project's frames wins
        found = _located(tb.tb_frame.f_code.co_filename, tb.tb_lineno, root)
        where = found or where
        tb = tb.tb_next
    text = str(exc).strip().splitlines()
    what = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return f"{where}: {what}" if where else what


def _located(filename: str | None, line: int | None, root: Path) -> str:
    """``file:line`` relative to the project folder, or "" when the file is not the
    project's own (the standard library, an installed package, a virtualenv inside it)."""
    if not filename:
        return ""
    try:
        rel = Path(filename).resolve().relative_to(root)
    except (ValueError, OSError):
        return ""
    if any(part in ("site-packages", "dist-packages") for part in rel.parts):
        return ""
    return f"{rel}:{line}" if line else str(rel)
