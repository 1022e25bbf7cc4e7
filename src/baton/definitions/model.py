"""Frozen definition objects: what a validated YAML document becomes.

Definitions (``*Definition``) are immutable and shared by every run pinned to the
same version; instances (``Run``, ``StepRun``) live in ``baton.engine``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

FIELD_TYPES = ("string", "text", "int", "decimal", "bool", "date", "datetime", "choice", "ref", "json")
ON_FAILURE = ("fallout", "fail_run", "continue")
DEFAULT_MAX_ITERATIONS = 10
# Work-item priorities, least urgent first: the index is what ``baton_work_items.priority`` stores.
PRIORITIES = ("low", "normal", "high", "urgent")
DEFAULT_PRIORITY = 1  # normal


class AssigneeKind(StrEnum):
    USER = "user"
    GROUP = "group"
    QUEUE = "queue"


@dataclass(frozen=True)
class FieldDefinition:
    """A field of an object type, or of a form, or of an autolaunched trigger's input."""

    name: str
    type: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    object: str | None = None  # target object type of a ``ref`` field
    label: str | None = None
    max_length: int | None = None  # string/text/json: None is the type's default limit
    check: bool = True  # ref: the referenced record must exist (checked in the write's transaction)
    precision: int | None = None  # decimal: most digits in all (None: baton.decimals' default)
    scale: int | None = None  # decimal: digits after the point (None: the default, 2)
    rounding: str | None = None  # decimal: how more places are rounded; None refuses them


@dataclass(frozen=True)
class ObjectTypeDefinition:
    name: str
    fields: tuple[FieldDefinition, ...]
    label: str | None = None

    def field(self, name: str) -> FieldDefinition | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None


@dataclass(frozen=True)
class Condition:
    """``when`` / ``exit_when`` / ``complete_when``: an ``=expression`` or an evaluation flow."""

    expression: str | None = None
    flow: str | None = None


@dataclass(frozen=True)
class Assignment:
    """Who gets a work item. ``value`` is a literal name or an ``=expression``."""

    kind: AssigneeKind
    value: str


@dataclass(frozen=True)
class StepDefinition:
    name: str
    type: str
    flow: str | None = None
    label: str | None = None
    after: tuple[str, ...] = ()
    when: Condition | None = None
    complete_when: Condition | None = None
    assign: Assignment | None = None
    form: tuple[FieldDefinition, ...] = ()
    instructions: str | None = None
    on_failure: str = "fallout"
    # The policies every step may have (retry, timeout, sla, lane, run_as, output) and the
    # options of its step type (``baton.steps``), kept as validated-by-shape plain data.
    options: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    line: int = 0


@dataclass(frozen=True)
class NextRule:
    goto: str  # a stage name or "end"
    when: Condition | None = None


@dataclass(frozen=True)
class StageDefinition:
    name: str
    steps: tuple[StepDefinition, ...]
    exit_when: Condition | None = None
    next: tuple[NextRule, ...] | None = None  # None: continue with the following stage
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    line: int = 0

    def step(self, name: str) -> StepDefinition | None:
        for s in self.steps:
            if s.name == name:
                return s
        return None


@dataclass(frozen=True)
class Trigger:
    type: str  # "record" | "autolaunched" | "schedule"
    object: str | None = None
    on: tuple[str, ...] = ()  # "create", "update"
    when: Condition | None = None
    input: tuple[FieldDefinition, ...] = ()
    cron: str | None = None
    timezone: str | None = None  # a schedule's cron is read in this zone (default UTC)
    misfire: str = "run_once"  # after downtime: "run_once" (one run for the ticks missed) | "skip"


@dataclass(frozen=True)
class OrchestrationDefinition:
    name: str
    trigger: Trigger
    stages: tuple[StageDefinition, ...]
    variables: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    label: str | None = None
    retry: MappingProxyType[str, Any] | None = None  # default retry policy of its steps
    # Business calendars its SLAs name, resolved when a deployed version is loaded
    # (name -> baton.calendars.BusinessCalendar); empty in a definition just parsed.
    calendars: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def stage(self, name: str) -> StageDefinition | None:
        for s in self.stages:
            if s.name == name:
                return s
        return None

    def find_step(self, name: str) -> tuple[StageDefinition, StepDefinition] | None:
        for st in self.stages:
            sd = st.step(name)
            if sd is not None:
                return st, sd
        return None


@dataclass(frozen=True)
class CalendarDefinition:
    """``kind: calendar``: working hours per weekday in a time zone, minus holidays.

    Turned into a :class:`baton.calendars.BusinessCalendar` where business time is counted.
    """

    name: str
    timezone: str
    hours: MappingProxyType[str, tuple[str, ...]]  # "mon" -> ("09:00-12:00", "13:00-17:00")
    holidays: MappingProxyType[str, str] | None = None  # {country, subdivision}
    extra_dates: tuple[str, ...] = ()  # ISO dates that are closed too
    label: str | None = None

    def spec(self) -> dict[str, Any]:
        return {"timezone": self.timezone, "hours": {k: list(v) for k, v in self.hours.items()},
                "holidays": dict(self.holidays or {}), "extra_dates": list(self.extra_dates)}


@dataclass(frozen=True)
class SecretRef:
    """Where a secret's value is found at call time: ``env:NAME`` (an environment variable
    of the worker) or ``file:NAME`` (a key of the secrets file ``baton.toml`` names).

    Only the reference is ever stored; ``baton.connections.secrets`` resolves it."""

    source: str  # "env" | "file"
    name: str

    def __str__(self) -> str:
        return f"{self.source}:{self.name}"


@dataclass(frozen=True)
class ConnectionAuth:
    """``auth:`` of a connection. Which fields apply depends on ``type``:
    ``bearer`` (secret), ``basic`` (username, password_secret), ``api_key`` (secret,
    placement ``in`` header|query, ``name``), ``oauth2_client_credentials`` (token_url,
    client_id, client_secret, scope, audience, client_auth basic|body)."""

    type: str
    secret: SecretRef | None = None
    username: str | None = None
    password_secret: SecretRef | None = None
    placement: str = "header"  # api_key: "header" | "query" (``in:`` in YAML)
    key_name: str | None = None  # api_key: the header or query parameter (``name:``)
    token_url: str | None = None
    client_id: str | None = None
    client_secret: SecretRef | None = None
    scope: str | None = None
    audience: str | None = None
    client_auth: str = "basic"  # oauth2: client credentials in a Basic header or the body


@dataclass(frozen=True)
class CallbackAuth:
    """``callback:`` of a connection: callbacks must carry an HMAC-SHA256 signature of
    ``timestamp + "." + body`` keyed by ``hmac_secret``, with a timestamp in the window."""

    hmac_secret: SecretRef
    header: str = "X-Signature"
    timestamp_header: str = "X-Timestamp"
    replay_window_ms: int = 300_000


@dataclass(frozen=True)
class ConnectionDefinition:
    """``kind: connection``: a named external system (DESIGN §2.6). Holds secret
    *references* only; nothing here is a secret."""

    name: str
    type: str  # "http" | "mcp"
    label: str | None = None
    base_url: str | None = None  # http
    headers: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    auth: ConnectionAuth | None = None
    connect_timeout_ms: int = 5_000
    read_timeout_ms: int = 30_000
    tls_verify: bool = True
    ca_file: str | None = None  # relative to the project folder
    rate_limit: float | None = None  # requests per second, per worker process
    max_in_flight: int = 50  # concurrent requests per worker process
    idempotency_header: str = "Idempotency-Key"
    callback: CallbackAuth | None = None
    redact: tuple[str, ...] = ()  # body fields shown as "***" in audited summaries
    transport: str | None = None  # mcp: "stdio" | "http"
    command: str | None = None  # mcp stdio
    args: tuple[str, ...] = ()
    env: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    url: str | None = None  # mcp http

    def secret_refs(self) -> tuple[SecretRef, ...]:
        """Every secret this connection may resolve (for checks and scans)."""
        refs: list[SecretRef | None] = []
        if self.auth is not None:
            refs += [self.auth.secret, self.auth.password_secret, self.auth.client_secret]
        if self.callback is not None:
            refs.append(self.callback.hmac_secret)
        refs += [parse_secret_ref(v) for v in self.env.values()]
        return tuple(r for r in refs if r is not None)


SECRET_SOURCES = ("env", "file")


def parse_secret_ref(text: object) -> SecretRef | None:
    """``env:NAME`` / ``file:NAME`` -> a reference; anything else -> None."""
    if not isinstance(text, str) or ":" not in text:
        return None
    source, _, name = text.partition(":")
    if source not in SECRET_SOURCES or not name.strip() or name != name.strip():
        return None
    return SecretRef(source, name)


Definition = (ObjectTypeDefinition | OrchestrationDefinition | CalendarDefinition
              | ConnectionDefinition)


@dataclass(frozen=True)
class LoadedDefinition:
    """One document as loaded from a file: the frozen object plus where it came from."""

    kind: str  # "object" | "orchestration" | "calendar" | "connection"
    name: str
    definition: Definition
    source: str  # the YAML text of this document (what gets versioned)
    file: str
    line: int
