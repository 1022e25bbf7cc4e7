"""Frozen definition objects: what a validated YAML document becomes.

Definitions (``*Definition``) are immutable and shared by every run pinned to the
same version; instances (``Run``, ``StepRun``) live in ``baton.engine``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
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
    # An expression giving "user:NAME", "group:NAME" or "queue:NAME" (a bare name is a user),
    # resolved when the step starts: Salesforce's "resource" assignee.
    RESOURCE = "resource"
    # A routing rule picks the person (``kind: routing`` by name, or one inline).
    ROUTING = "routing"


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
    description: str | None = None  # help text for people filling it in (a form shows it)


# A record field whose value names the record, when the object type says none
# (``title_field``): the first of these it has, else its first required text field.
TITLE_FIELD_GUESSES = ("title", "subject", "name", "summary")


@dataclass(frozen=True)
class ObjectTypeDefinition:
    name: str
    fields: tuple[FieldDefinition, ...]
    label: str | None = None
    # What titles and summarises one of its records where people see it (a work item).
    title_field: str | None = None
    summary_field: str | None = None

    def field(self, name: str) -> FieldDefinition | None:
        for f in self.fields:
            if f.name == name:
                return f
        return None

    def headline_field(self) -> str | None:
        """The field that names a record: ``title_field``, else a guess (a field called
        title, subject, name or summary; else the first required string field)."""
        if self.title_field is not None:
            return self.title_field
        texts = [f for f in self.fields if f.type in ("string", "text", "choice")]
        for guess in TITLE_FIELD_GUESSES:
            if any(f.name == guess for f in texts):
                return guess
        required = [f.name for f in texts if f.required and f.type == "string"]
        return required[0] if required else None


@dataclass(frozen=True)
class Condition:
    """``when`` / ``exit_when`` / ``complete_when``: an ``=expression`` or an evaluation flow.

    An evaluation flow may take ``input`` (name -> literal or ``=expression``, evaluated when
    it is asked); its answer is kept per ``site``, where the condition stands in the
    definition (``stages.triage.exit_when``, ``steps.review.when``, ...), so one flow used
    at two sites with different inputs answers each separately."""

    expression: str | None = None
    flow: str | None = None
    input: MappingProxyType[str, Any] | None = None
    site: str = field(default="", compare=False)  # where it stands, like a line number


@dataclass(frozen=True)
class Assignment:
    """Who gets a work item. ``value`` is a literal name or an ``=expression``."""

    kind: AssigneeKind
    value: str
    rule: RoutingDefinition | None = None  # an inline routing rule


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
    label: str | None = None  # the outcome's name for people ("Approved", "Needs more info")


@dataclass(frozen=True)
class StageDefinition:
    name: str
    steps: tuple[StepDefinition, ...]
    exit_when: Condition | None = None
    next: tuple[NextRule, ...] | None = None  # None: continue with the following stage
    # "all_steps": done when every step is done or exit_when holds; "when_condition": only
    # when exit_when holds, even once every step is done (Salesforce's "conditions met").
    exit: str = "all_steps"
    max_iterations: int = DEFAULT_MAX_ITERATIONS
    line: int = 0

    def step(self, name: str) -> StepDefinition | None:
        return self._by_name.get(name)

    def steps_of(self, types: frozenset[str]) -> tuple[StepDefinition, ...]:
        """Its steps whose type is one of ``types``, in their order (memoised by set)."""
        hit = self._steps_of.get(types)
        if hit is None:
            hit = self._steps_of[types] = tuple(s for s in self.steps if s.type in types)
        return hit

    @cached_property
    def _steps_of(self) -> dict[frozenset[str], tuple[StepDefinition, ...]]:
        return {}

    @cached_property
    def _by_name(self) -> dict[str, StepDefinition]:
        # A plan's one stage has thousands of steps, each ``after`` looked up by name.
        out: dict[str, StepDefinition] = {}
        for s in self.steps:
            out.setdefault(s.name, s)
        return out

    @cached_property
    def conditions_with_flows(self) -> tuple[Condition, ...]:
        """Its conditions that name an evaluation flow (``exit_when``, ``next``, its steps'
        ``when`` and ``complete_when``), in that order: worked out once (the engine reads
        them at every entry into the stage)."""
        conds = [self.exit_when, *(rule.when for rule in self.next or ())]
        conds += [c for step in self.steps for c in (step.when, step.complete_when)]
        return tuple(c for c in conds if c is not None and c.flow is not None)

    @cached_property
    def readiness(self) -> Readiness:
        """What tells which of its steps may have become ready (engine/decide.py reads a
        plan-sized stage through it instead of looking at every step on every pass)."""
        index: dict[str, int] = {}
        for i, s in enumerate(self.steps):
            index.setdefault(s.name, i)
        dependents: dict[str, list[int]] = {}
        for i, s in enumerate(self.steps):
            for a in s.after:
                dependents.setdefault(a, []).append(i)
        return Readiness(index, {k: tuple(v) for k, v in dependents.items()},
                         tuple(i for i, s in enumerate(self.steps) if s.when is not None))


@dataclass
class Readiness:
    """A stage's steps by name (their position), the positions of the steps that wait for
    each step (``after``), and the positions of the steps with a ``when``. ``open_hint``:
    where the engine last found a step not done (it looks there first: only a hint, the
    answer is the same whatever it holds); ``after_hint``: the same, per step of many
    dependencies (its name -> the position in its ``after``)."""

    index: Mapping[str, int]
    dependents: Mapping[str, tuple[int, ...]]
    conditional: tuple[int, ...]
    open_hint: int = 0
    after_hint: dict[str, int] = field(default_factory=dict)


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
    # A record trigger starts a run only when the record changes to meet ``when`` (false before
    # the write, true after; on create, when it holds): Salesforce's "only when a record is
    # updated to meet the condition requirements".
    changed_to_meet: bool = False


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
    # The object type of its trigger's records, resolved when a deployed version is loaded
    # (work items take their title and summary from it); None in a definition just parsed.
    record_type: ObjectTypeDefinition | None = None
    # The routing rules its steps name, resolved when a deployed version is loaded
    # (name -> baton.definitions.routing.RoutingDefinition); empty in one just parsed.
    routings: MappingProxyType[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    def stage(self, name: str) -> StageDefinition | None:
        return self._stage_index.get(name)

    def find_step(self, name: str) -> tuple[StageDefinition, StepDefinition] | None:
        """The first stage with a step of that name, and the step (asked ~2 times per
        result a worker applies: one dict lookup, not a walk of the stages)."""
        return self._step_index.get(name)

    @cached_property
    def _stage_index(self) -> dict[str, StageDefinition]:
        out: dict[str, StageDefinition] = {}
        for st in self.stages:
            out.setdefault(st.name, st)  # the first of a name, as a walk finds it
        return out

    @cached_property
    def _step_index(self) -> dict[str, tuple[StageDefinition, StepDefinition]]:
        out: dict[str, tuple[StageDefinition, StepDefinition]] = {}
        for st in self.stages:
            for name, sd in st._by_name.items():
                out.setdefault(name, (st, sd))
        return out


@dataclass(frozen=True)
class CalendarDefinition:
    """``kind: calendar``: working hours per weekday in a time zone, minus holidays.

    Turned into a :class:`baton.calendars.BusinessCalendar` where business time is counted.
    """

    name: str
    timezone: str
    hours: MappingProxyType[str, tuple[str, ...]]  # "mon" -> ("09:00-12:00", "13:00-17:00")
    # {country, subdivision, except: [ISO dates of the country's holidays that are worked]}
    holidays: MappingProxyType[str, Any] | None = None
    extra_dates: tuple[str, ...] = ()  # ISO dates that are closed too
    label: str | None = None

    def spec(self) -> dict[str, Any]:
        hol = dict(self.holidays or {})
        if "except" in hol:  # ISO text, as extra_dates (a YAML !!timestamp is a date)
            hol["except"] = [str(d) for d in hol["except"] or ()]
        return {"timezone": self.timezone, "hours": {k: list(v) for k, v in self.hours.items()},
                "holidays": hol, "extra_dates": list(self.extra_dates)}


MAILBOX_ROLES = ("subject", "body", "new_text", "sender", "sender_name", "sent_at",
                 "message_id", "last_message", "attachments_text")
"""What of an e-mail a mailbox can put in a record field (``last_message``: a reply's new
text, written to the case the reply belongs to; ``attachments_text``: the text read from
the stored attachments (PDF, plain text, HTML), a reply's appended, for AI steps)."""

ATTACHMENTS_MAX_BYTES = 10_000_000
ATTACHMENTS_ALLOW = ("application/pdf", "image/*", "text/*")


@dataclass(frozen=True)
class AttachmentPolicy:
    """``attachments: {max_bytes, allow}`` of a mailbox: what of a message's attachments is
    stored; the others are listed on the message as refused, with the reason."""

    max_bytes: int = ATTACHMENTS_MAX_BYTES
    allow: tuple[str, ...] = ATTACHMENTS_ALLOW  # MIME types; "image/*" takes every image

    def refusal(self, content_type: str, size: int) -> str | None:
        """Why an attachment is not stored, or None when it is."""
        kind = content_type.lower()
        major = kind.split("/", 1)[0]
        if not any(a in (kind, f"{major}/*", "*/*") for a in self.allow):
            return f"type {kind} is not allowed (allowed: {', '.join(self.allow)})"
        if size > self.max_bytes:
            return f"{size} bytes is over the limit of {self.max_bytes}"
        return None


@dataclass(frozen=True)
class ImapSource:
    """``imap:`` of a mailbox: a folder polled for new mail (``baton serve``/``worker``)."""

    host: str
    username: str
    password_secret: str  # "env:NAME": read from the environment when polling
    port: int = 993
    folder: str = "INBOX"
    ssl: bool = True
    every: int = 60  # seconds between polls

    @property
    def account(self) -> str:
        return f"{self.username}@{self.host}:{self.port}/{self.folder}"


@dataclass(frozen=True)
class MailboxDefinition:
    """``kind: mailbox``: incoming e-mail to one object type's records (DESIGN §2.5)."""

    name: str
    object: str  # the object type a new message becomes
    fields: MappingProxyType[str, str]  # role (MAILBOX_ROLES) -> field of ``object``
    addresses: tuple[str, ...] = ()  # recipients it takes, lower case; () with one mailbox: any
    automatic: str = "ignore"  # auto-replies and bounces: "ignore" (stored, no case) | "create"
    label: str | None = None
    attachments: AttachmentPolicy = AttachmentPolicy()
    imap: ImapSource | None = None



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
    # the largest response body (HTTP, decoded) or tool result (MCP) a call takes, in bytes
    # (``max_response``; baton.definitions.connection.MAX_RESPONSE_DEFAULT)
    max_response: int = 5 * 1024 * 1024

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
# Environment variables of Baton's own settings (the database URL and its password, the
# SMTP password...): no secret reference may name one.
OWN_SETTINGS_PREFIX = "BATON_"


def parse_secret_ref(text: object) -> SecretRef | None:
    """``env:NAME`` / ``file:NAME`` -> a reference; anything else -> None."""
    if not isinstance(text, str) or ":" not in text:
        return None
    source, _, name = text.partition(":")
    if source not in SECRET_SOURCES or not name.strip() or name != name.strip():
        return None
    return SecretRef(source, name)


FILTERS = ("available", "within_hours", "under_capacity")


@dataclass(frozen=True)
class SkillSpec:
    """A skill a rule asks for: a literal name or an ``=expression`` giving one, and the
    lowest level that will do (None: any level, or none)."""

    skill: str
    min_level: int | None = None


@dataclass(frozen=True)
class RoutingDefinition:
    """A routing rule: who may get an item and how one of them is picked."""

    name: str
    pool_kind: str  # queue | group
    pool: str
    required: tuple[SkillSpec, ...] = ()
    preferred: tuple[SkillSpec, ...] = ()
    filters: tuple[str, ...] = FILTERS
    strategy: str = "least_loaded"
    sticky: bool = False
    offer_timeout_ms: int | None = None  # offer mode: how long the offeree has to accept
    label: str | None = None
    # the queue's routing rule: work assigned to queue ``pool`` (``assign: {queue: ...}``)
    # is routed by it, as ``assign: {routing: NAME}`` would route it
    for_queue: bool = False



Definition = (ObjectTypeDefinition | OrchestrationDefinition | CalendarDefinition
              | MailboxDefinition | ConnectionDefinition | RoutingDefinition
              | Any)  # Any: catalog, fulfillment
# (baton.definitions.plans: CatalogDefinition, FulfillmentDefinition; imported there, not
# here, so this module stays the leaf every other definition module imports)


@dataclass(frozen=True)
class LoadedDefinition:
    """One document as loaded from a file: the frozen object plus where it came from."""

    kind: str  # "object" | "orchestration" | "calendar" | "connection"
    name: str
    definition: Definition
    source: str  # the YAML text of this document (what gets versioned)
    file: str
    line: int
