"""Baton's settings: one frozen object, built at the entry points and passed in.

Where a value comes from, the first one set wins: a command-line flag, the environment
(``BATON_*``), ``baton.toml`` (the database, ``isolation``, ``flow_memory_mb``), the default
here. Only the edges build
it: the ``baton`` command (``cli/``) and the benchmark read the environment once, through
:meth:`Settings.from_environment`; an ``Engine`` made without settings (tests, embedding)
gets the defaults, whatever the environment says. So no module below ``cli/`` and ``web/``
reads ``os.environ``, and nothing writes it: a process started with ``BATON_*`` variables
(``baton worker``, ``baton serve``) sees them because its command line read them.

Each field names its environment variable in its metadata (``env``); the README's
configuration tables list exactly those (``tests/unit/test_settings.py`` checks both ways).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, TypeVar

from baton.errors import ConfigError

log = logging.getLogger("baton.settings")

N = TypeVar("N", int, float)

_TRUE = ("1", "true", "yes", "on")
ISOLATIONS = ("thread", "process")
_FALSE = ("0", "false", "no", "off")


def _env(name: str) -> dict[str, str]:
    return {"env": name}


@dataclass(frozen=True)
class SmtpSettings:
    """Where e-mail goes (assignment notices, SLA ``notify``), and the links in it."""

    host: str = field(default="127.0.0.1", metadata=_env("BATON_SMTP_HOST"))
    port: int = field(default=25, metadata=_env("BATON_SMTP_PORT"))
    sender: str = field(default="baton@localhost", metadata=_env("BATON_SMTP_FROM"))
    user: str | None = field(default=None, metadata=_env("BATON_SMTP_USER"))
    password: str | None = field(default=None, repr=False,  # kept out of logs
                                 metadata=_env("BATON_SMTP_PASSWORD"))
    starttls: bool = field(default=False, metadata=_env("BATON_SMTP_STARTTLS"))
    base_url: str | None = field(default=None, metadata=_env("BATON_BASE_URL"))
    """How browsers reach Baton, without a trailing slash; ``baton serve`` uses its own
    address when it is not set."""

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> SmtpSettings:
        return cls(
            host=env.get("BATON_SMTP_HOST") or "127.0.0.1",
            port=_number(env, "BATON_SMTP_PORT", int, 25),
            sender=env.get("BATON_SMTP_FROM") or "baton@localhost",
            user=env.get("BATON_SMTP_USER") or None,
            password=env.get("BATON_SMTP_PASSWORD") or None,
            starttls=(env.get("BATON_SMTP_STARTTLS") or "0").strip().lower() in ("1", "true", "yes"),
            base_url=(env.get("BATON_BASE_URL") or "").rstrip("/") or None,
        )


INTAKE_KEYS = ("max_message_bytes", "pdf_max_pages", "pdf_seconds", "pdf_message_seconds",
               "pdf_memory_mb")
"""What ``[intake]`` of ``baton.toml`` may set (each also ``BATON_INTAKE_<KEY>``)."""
INTAKE_BOUNDS: dict[str, tuple[float, float, str]] = {
    # key: (least, most, unit). The most a message may be: the parser's other bounds assume
    # no more (2,000,000 lines of base64 are 150 MB; parsing takes ~3x the message's size).
    "max_message_bytes": (1024, 128 * 1024 * 1024, "bytes"),
    "pdf_max_pages": (1, 100_000, "pages"),
    "pdf_seconds": (0.1, 3600, "seconds"),
    "pdf_message_seconds": (0.1, 3 * 3600, "seconds"),
    "pdf_memory_mb": (128, 64 * 1024, "MiB"),  # (less: the reader's Python cannot start)
}


@dataclass(frozen=True)
class IntakeSettings:
    """The bounds of e-mail intake an operator may change (``baton.intake``; the README's
    "Limits on input"): ``BATON_INTAKE_*``, else ``baton.toml``'s ``[intake]`` table, else
    these defaults. Each is checked when made: a value outside :data:`INTAKE_BOUNDS` is a
    :class:`ConfigError` naming the setting."""

    max_message_bytes: int = field(default=25 * 1024 * 1024,
                                   metadata=_env("BATON_INTAKE_MAX_MESSAGE_BYTES"))
    """Largest message taken (SMTP unless ``--smtp-max-bytes`` says otherwise, IMAP, ``baton
    intake``, ``POST /api/intake/MAILBOX``); a larger one is refused unread."""
    pdf_max_pages: int = field(default=500, metadata=_env("BATON_INTAKE_PDF_MAX_PAGES"))
    """Pages of a PDF whose text is read (the first ones)."""
    pdf_seconds: float = field(default=30.0, metadata=_env("BATON_INTAKE_PDF_SECONDS"))
    """Wall-clock seconds reading one PDF's text may take (its reader process is killed
    after, and the PDF stored without text)."""
    pdf_message_seconds: float = field(default=120.0,
                                       metadata=_env("BATON_INTAKE_PDF_MESSAGE_SECONDS"))
    """Wall-clock seconds the PDFs of one message may take in all."""
    pdf_memory_mb: int = field(default=1024, metadata=_env("BATON_INTAKE_PDF_MEMORY_MB"))
    """Address space (MiB) the PDF reader's process may use."""

    def __post_init__(self) -> None:
        for key, (least, most, unit) in INTAKE_BOUNDS.items():
            value = getattr(self, key)
            wanted = int if key in _INTAKE_INTS else float
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or (wanted is int and not isinstance(value, int)) \
                    or not math.isfinite(value) or not least <= value <= most:
                raise ConfigError(
                    f"{_intake_name(key)}={value!r} must be a "
                    f"{'whole ' if wanted is int else ''}number of {unit} from {_figure(least)} "
                    f"to {_figure(most)}")

    @classmethod
    def from_environment(cls, env: Mapping[str, str], project: Mapping[str, Any]
                         ) -> IntakeSettings:
        table = project.get("intake") or {}
        if not isinstance(table, Mapping):
            raise ConfigError(f"baton.toml: [intake] must be a table (max_message_bytes = "
                              f"26214400), got {table!r}")
        unknown = sorted(set(table) - set(INTAKE_KEYS))
        if unknown:
            raise ConfigError(f"baton.toml: unknown key(s) in [intake]: {', '.join(unknown)} "
                              f"(known: {', '.join(INTAKE_KEYS)})")
        values: dict[str, Any] = {}
        for key in INTAKE_KEYS:
            name = f"BATON_INTAKE_{key.upper()}"
            raw = (env.get(name) or "").strip()
            if raw:
                kind = int if key in _INTAKE_INTS else float
                try:
                    values[key] = kind(raw)
                except ValueError:
                    raise ConfigError(f"{name}={raw!r} is not a "
                                      f"{'whole ' if kind is int else ''}number") from None
            elif key in table:
                values[key] = table[key]
        return cls(**values)


_INTAKE_INTS = frozenset({"max_message_bytes", "pdf_max_pages", "pdf_memory_mb"})


def _figure(value: float) -> str:
    return f"{int(value):,}" if value == int(value) else f"{value:g}"


def _intake_name(key: str) -> str:
    return f"BATON_INTAKE_{key.upper()} / [intake] {key}"


@dataclass(frozen=True)
class Settings:
    """Everything Baton takes from its surroundings rather than from definitions."""

    database: str | None = field(default=None, metadata=_env("BATON_DB"))
    """The database URL (``--db`` replaces it); None: ``baton.toml``'s, else
    ``sqlite:///baton.db`` (see :meth:`baton.project.Project.database_url`)."""
    clock_offset: float = field(default=0.0, metadata=_env("BATON_CLOCK_OFFSET"))
    """Seconds added to the wall clock: for drills and cross-process tests of timers, where
    a virtual clock cannot be shared. Never in production."""
    sqlite_synchronous: str | None = field(default=None,
                                           metadata=_env("BATON_SQLITE_SYNCHRONOUS"))
    """SQLite's ``PRAGMA synchronous`` (None: ``FULL``); the store checks the value."""
    sqlite_nullpool: bool = field(default=False, metadata=_env("BATON_SQLITE_NULLPOOL"))
    """Open a new SQLite connection for every use instead of pooling them."""
    pg_pool_size: int = field(default=5, metadata=_env("BATON_PG_POOL_SIZE"))
    pg_pool_overflow: int = field(default=5, metadata=_env("BATON_PG_POOL_OVERFLOW"))
    worker_host: str | None = field(default=None, metadata=_env("BATON_WORKER_HOST"))
    """The host name workers report (None: this machine's)."""
    plan_commits: bool = field(default=True, metadata=_env("BATON_PLAN_COMMITS"))
    """Workers plan each batch's commit before taking the write lock, and run the steps a
    batch makes ready in that batch (``BATON_PLAN_COMMITS=0`` turns both off)."""
    fault: str = field(default="", metadata=_env("BATON_FAULT"))
    """Fault injection for durability tests: ``after_claim@N`` / ``after_flow@N`` /
    ``after_commit@N`` SIGKILLs a worker the N-th time it reaches that point."""
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    notify_assignments: bool = field(default=False, metadata=_env("BATON_NOTIFY_ASSIGNMENTS"))
    """E-mail assignees when a work item is created or reassigned (from the environment:
    see :func:`assignments_enabled`)."""
    notify_addresses: dict[str, Any] = field(default_factory=dict,
                                             metadata=_env("BATON_NOTIFY_ADDRESSES"))
    """Notify name -> address or list of addresses (SLA ``notify``)."""
    user_emails: dict[str, Any] = field(default_factory=dict,
                                        metadata=_env("BATON_USER_EMAILS"))
    """User name -> address, for ``notify: assignee`` when the user is not in the directory."""
    intake: IntakeSettings = field(default_factory=IntakeSettings)
    """E-mail intake's bounds (``BATON_INTAKE_*``, ``baton.toml``: ``[intake]``)."""
    max_body_bytes: int = field(default=1024 * 1024, metadata=_env("BATON_MAX_BODY_BYTES"))
    """Largest HTTP request body ``baton serve`` reads; a larger one is answered 413."""
    isolation: str = field(default="thread", metadata=_env("BATON_ISOLATION"))
    """Where workers run flows: ``thread`` (in the worker thread; a step with a ``timeout``
    still runs in a flow process) or ``process`` (every flow in a flow process that is
    killed when it overruns). ``baton.toml``: ``isolation``."""
    flow_memory_mb: int | None = field(default=None, metadata=_env("BATON_FLOW_MEMORY_MB"))
    """Address space a flow process may add to what it was forked with (``RLIMIT_AS``), in
    MiB; None: no limit. ``baton.toml``: ``flow_memory_mb``."""
    trusted_proxies: tuple[str, ...] = field(default=(), metadata=_env("BATON_TRUSTED_PROXIES"))
    """IP addresses or networks (CIDR) of the reverse proxies in front of ``baton serve``:
    only a request from one of them has its ``Forwarded`` / ``X-Forwarded-For`` /
    ``X-Forwarded-Proto`` headers believed (client address for login throttling; https for
    cookies). Empty: no one's."""
    log_format: str = field(default="text", metadata=_env("BATON_LOG_FORMAT"))
    """``text`` (one line a record) or ``json`` (one JSON object a line, with the run, step
    and job ids where there are; the HTTP access log too). ``--log-format`` overrides it."""
    ai_provider: str = field(default="offline", metadata=_env("BATON_AI_PROVIDER"))
    """The provider ``ai`` steps use unless they name one (``provider:``); ``baton.toml``:
    ``[ai] provider``. ``offline`` needs no network (``baton.ai.provider``); ``openai`` (any
    OpenAI-compatible endpoint) and ``anthropic`` call a model over a connection."""
    ai_connection: str | None = field(default=None, metadata=_env("BATON_AI_CONNECTION"))
    """The ``kind: connection`` the ``openai`` / ``anthropic`` providers call, unless a step
    names one (``connection:``); ``baton.toml``: ``[ai] connection``."""
    ai_model: str | None = field(default=None, metadata=_env("BATON_AI_MODEL"))
    """The model those providers ask, unless a step names one (``model:``); ``baton.toml``:
    ``[ai] model``."""
    ai_encoder: str = field(default="auto", metadata=_env("BATON_AI_ENCODER"))
    """The sentence encoder the offline classifier consults on close calls
    (``baton.ai.encoder``): ``auto`` (``baton[encoder]`` if installed), ``off``, or the
    directory of a sentence-transformers model; ``baton.toml``: ``[ai] encoder``. One per
    process: the engine made last sets it."""
    cookie_secure: bool | None = field(default=None, metadata=_env("BATON_COOKIE_SECURE"))
    """Mark the UI's cookies ``Secure``: True, False, or None (``auto``) when the request
    came over https as seen through the trusted proxies."""

    ai_encoder_few: bool = field(default=False, metadata=_env("BATON_AI_ENCODER_FEW"))
    """Whether a classifier of fewer than 2,000 texts (an ai step's own categories and
    examples) also consults the sentence encoder, on every text it classifies: off unless
    asked for (each worker with such a step then loads PyTorch, +0.6 GB; all-MiniLM-L6-v2
    reads English); ``baton.toml``: ``[ai] encoder_few = true``. BANKING77 with 10 examples
    an intent: 0.753 alone, 0.832 with it."""
    secrets_file: str | None = field(default=None, metadata=_env("BATON_SECRETS_FILE"))
    """The secrets file of ``file:NAME`` references (``baton.toml``: ``[secrets] file``,
    relative to the project folder). Used only when its mode is 0600 or stricter."""
    public_url: str | None = field(default=None, metadata=_env("BATON_PUBLIC_URL"))
    """The URL external systems reach ``baton serve`` at, for callback URLs
    (``baton.toml``: ``[server] public_url``); None: http://127.0.0.1:PORT of the server."""
    project_dir: str | None = None
    secrets_env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    """Where ``env:NAME`` secret references of connections are read, at call time: the
    environment the entry point started with (never shown: it holds secrets)."""
    """The project folder (a connection's ``tls.ca_file`` is relative to it), set by the
    entry point; None: the current folder."""

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None,
                         project: Mapping[str, Any] | None = None) -> Settings:
        """The settings a process started with ``env`` (default: this process's environment)
        runs with. A value that cannot be read is a :class:`ConfigError` naming its variable,
        except the JSON objects, which are ignored with a warning, as they always were.

        ``project``: the settings ``baton.toml`` gives (:attr:`baton.project.Project.settings`),
        used where the environment does not set them."""
        e = os.environ if env is None else env
        p = project or {}
        isolation = (e.get("BATON_ISOLATION") or p.get("isolation") or "thread").strip().lower()
        if isolation not in ISOLATIONS:
            raise ConfigError(f"BATON_ISOLATION / isolation={isolation!r} is not one of "
                              f"{', '.join(ISOLATIONS)}")
        memory = _number(e, "BATON_FLOW_MEMORY_MB", int, 0) or p.get("flow_memory_mb") or None
        if memory is not None and (not isinstance(memory, int) or memory <= 0):
            raise ConfigError(f"BATON_FLOW_MEMORY_MB / flow_memory_mb={memory!r} is not a "
                              "positive number of MiB")
        return cls(
            database=e.get("BATON_DB") or None,
            clock_offset=_number(e, "BATON_CLOCK_OFFSET", float, 0.0),
            sqlite_synchronous=e.get("BATON_SQLITE_SYNCHRONOUS") or None,
            sqlite_nullpool=bool(e.get("BATON_SQLITE_NULLPOOL")),
            pg_pool_size=_number(e, "BATON_PG_POOL_SIZE", int, 5),
            pg_pool_overflow=_number(e, "BATON_PG_POOL_OVERFLOW", int, 5),
            worker_host=e.get("BATON_WORKER_HOST") or None,
            plan_commits=e.get("BATON_PLAN_COMMITS", "1") != "0",
            fault=e.get("BATON_FAULT", ""),
            smtp=SmtpSettings.from_environment(e),
            notify_assignments=assignments_enabled(e),
            notify_addresses=_json_object(e, "BATON_NOTIFY_ADDRESSES"),
            user_emails=_json_object(e, "BATON_USER_EMAILS"),
            intake=IntakeSettings.from_environment(e, p),
            max_body_bytes=_number(e, "BATON_MAX_BODY_BYTES", int, 1024 * 1024),
            isolation=isolation,
            flow_memory_mb=memory,
            trusted_proxies=_networks(e, "BATON_TRUSTED_PROXIES"),
            cookie_secure=_auto_bool(e, "BATON_COOKIE_SECURE"),
            ai_provider=_ai_provider(e.get("BATON_AI_PROVIDER") or _ai_table(p).get("provider")
                                     or "offline"),
            ai_connection=_ai_name(e, p, "connection"),
            ai_model=_ai_name(e, p, "model"),
            ai_encoder=_ai_encoder(e.get("BATON_AI_ENCODER") or _ai_table(p).get("encoder")
                                   or "auto"),
            ai_encoder_few=_ai_flag(e, p, "encoder_few"),
            log_format=_log_format(e.get("BATON_LOG_FORMAT") or "text"),
            secrets_file=e.get("BATON_SECRETS_FILE") or p.get("secrets_file") or None,
            public_url=(e.get("BATON_PUBLIC_URL") or p.get("public_url") or "").rstrip("/")
            or None,
            secrets_env=_PicklableEnv(e),
        )

    def store_options(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~baton.store.sql.SqlStore` these settings give."""
        return {"synchronous": self.sqlite_synchronous, "sqlite_nullpool": self.sqlite_nullpool,
                "worker_host": self.worker_host, "pg_pool_size": self.pg_pool_size,
                "pg_pool_overflow": self.pg_pool_overflow}


LOG_FORMATS = ("text", "json")


def _ai_table(project: Mapping[str, Any]) -> Mapping[str, Any]:
    table = project.get("ai") or {}
    if not isinstance(table, Mapping):
        raise ConfigError(f"baton.toml: [ai] must be a table (provider = \"offline\"), got "
                          f"{table!r}")
    unknown = sorted(set(table) - set(AI_KEYS))
    if unknown:
        raise ConfigError(f"baton.toml: unknown key(s) in [ai]: {', '.join(unknown)} "
                          f"(known: {', '.join(AI_KEYS)})")
    return table


AI_KEYS = ("provider", "connection", "model", "encoder", "encoder_few")


def _ai_flag(env: Mapping[str, str], project: Mapping[str, Any], key: str) -> bool:
    """``[ai] KEY = true/false`` (``BATON_AI_KEY=1/0`` first)."""
    name = f"BATON_AI_{key.upper()}"
    raw = env.get(name)
    if raw is not None and raw.strip():
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{name}={raw!r} is not 1 or 0 (true or false)")
    value = _ai_table(project).get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"baton.toml: [ai] {key}={value!r} must be true or false")
    return value


def _ai_encoder(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"BATON_AI_ENCODER / [ai] encoder={value!r} must be auto, off or "
                          "the directory of a sentence-transformers model")
    text = value.strip()
    return text.lower() if text.lower() in ("auto", "off") else text


def _ai_name(env: Mapping[str, str], project: Mapping[str, Any], key: str) -> str | None:
    """``[ai] connection`` / ``model`` (``BATON_AI_CONNECTION`` / ``BATON_AI_MODEL`` first)."""
    value = env.get(f"BATON_AI_{key.upper()}") or _ai_table(project).get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"BATON_AI_{key.upper()} / [ai] {key}={value!r} must be a name")
    return value.strip()


def _ai_provider(value: Any) -> str:
    name = str(value).strip().lower()
    if name == "offline":  # the default, always there: every command reads the settings, and
        return name  # the providers' module costs a read command ~10 % of its CPU
    from baton.ai.provider import PROVIDERS

    if name not in PROVIDERS:
        raise ConfigError(f"BATON_AI_PROVIDER / [ai] provider={value!r} is not one of "
                          f"{', '.join(sorted(PROVIDERS))}")
    return name


def _log_format(value: str) -> str:
    fmt = value.strip().lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"BATON_LOG_FORMAT={value!r} is not one of {', '.join(LOG_FORMATS)}")
    return fmt


def environment_variables() -> list[str]:
    """Every environment variable :class:`Settings` reads, nested settings included."""
    found: list[str] = []

    def walk(obj: Any) -> None:
        for f in fields(obj):
            if "env" in f.metadata:
                found.append(f.metadata["env"])
            value = getattr(obj, f.name)
            if is_dataclass(value):
                walk(value)

    walk(Settings())
    return found


def assignments_enabled(env: Mapping[str, str]) -> bool:
    """Are assignment e-mails on? ``BATON_NOTIFY_ASSIGNMENTS`` if set, else whether
    ``BATON_SMTP_HOST`` is set (no SMTP server configured: no e-mail jobs at all)."""
    raw = (env.get("BATON_NOTIFY_ASSIGNMENTS") or "").strip().lower()
    if raw in _TRUE:
        return True
    if raw and raw not in _FALSE:
        log.warning("BATON_NOTIFY_ASSIGNMENTS=%r is not 0 or 1; ignored", raw)
    if raw in _FALSE:
        return False
    return bool((env.get("BATON_SMTP_HOST") or "").strip())


def _number(env: Mapping[str, str], name: str, kind: Callable[[str], N], default: N) -> N:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or CIDR networks, each checked (normalised)."""
    out: list[str] = []
    for part in (env.get(name) or "").split(","):
        if not part.strip():
            continue
        try:
            out.append(str(ipaddress.ip_network(part.strip(), strict=False)))
        except ValueError:
            raise ConfigError(f"{name}: {part.strip()!r} is not an IP address or network "
                              "(e.g. 10.0.0.5 or 10.0.0.0/8)") from None
    return tuple(out)


def _auto_bool(env: Mapping[str, str], name: str) -> bool | None:
    raw = (env.get(name) or "auto").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    if raw == "auto":
        return None
    raise ConfigError(f"{name}={raw!r} is not auto, 1 or 0")


def _json_object(env: Mapping[str, str], name: str) -> dict[str, Any]:
    raw = (env.get(name) or "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("%s is not valid JSON; ignored", name)
        return {}
    if not isinstance(value, dict):
        log.warning("%s is not a JSON object; ignored", name)
        return {}
    return value


__all__ = ["IntakeSettings", "Settings", "SmtpSettings", "assignments_enabled", "environment_variables"]


class _PicklableEnv(Mapping[str, str]):
    """The process environment as secret references read it: live in this process (a
    variable set later is seen), copied when the settings go to a spawned process
    (``os.environ`` itself cannot be pickled)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def __getitem__(self, key: str) -> str:
        return self._env[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self._env),))
