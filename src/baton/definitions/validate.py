"""Validation rules for parsed definition documents (DESIGN §2, §2.1).

Works on plain YAML data (see :class:`~baton.definitions.checks.ParsedDocument`), so it
can report every problem — including ones that would make building the frozen objects
impossible — before anything is built.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
import zoneinfo
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from baton.definitions import KINDS
from baton.definitions.checks import (
    RESERVED_FIELDS,
    Checker,
    ChildTarget,
    FieldRules,
    ParsedDocument,
    Scope,
    check_condition,
    check_field,
    check_field_name,
    check_keys,
    check_policies,
    check_texts,
    check_value,
    check_values_fit,
    describe,
    expect_identifier,
    expect_int,
    expect_list,
    expect_mapping,
    expect_readable_name,
    expect_str,
    find_cycles,
    item,
    join,
    json_problem,
    suggest,
    unknown,
)
from baton.definitions.connection import check_connection
from baton.definitions.intake_form import check_intake_form
from baton.definitions.model import FIELD_TYPES, MAILBOX_ROLES, ON_FAILURE, ObjectTypeDefinition
from baton.definitions.plans import check_catalog, check_fulfillment
from baton.definitions.routing import (
    assignments,
    check_queue_binding,
    check_routing_document,
    check_rule_names,
)
from baton.errors import Issue
from baton.expressions import is_expression
from baton.expressions.cel import member_chains
from baton.plans.routing import template_assignments
from baton.steps import registry
from baton.steps.base import StepType
from baton.storable import bad_text

CALENDAR_KEYS = ("kind", "name", "label", "description", "timezone", "hours", "holidays",
                 "extra_dates")
HOLIDAY_KEYS = ("country", "subdivision", "except")  # except: holidays that are worked
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
# files of the host's zone folder that zoneinfo reads but that name no IANA zone
HOST_ZONES = frozenset({"localtime", "posixrules"})
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS = re.compile(r"([01]\d|2[0-3]):[0-5]\d-(([01]\d|2[0-3]):[0-5]\d|24:00)\Z")  # 24:00: midnight
OBJECT_KEYS = ("kind", "name", "label", "description", "fields", "title_field", "summary_field")
MAILBOX_KEYS = ("kind", "name", "label", "description", "object", "fields", "addresses",
                "automatic", "attachments", "imap")
MAILBOX_IMAP_KEYS = ("host", "port", "username", "password_secret", "folder", "ssl", "every")
MAILBOX_ATTACHMENT_KEYS = ("max_bytes", "allow")
MAX_ATTACHMENT_BYTES = 100_000_000  # an attachment is a document, not a backup
_MIME = re.compile(r"(\*/\*|[a-z0-9][a-z0-9!#$&^_.+-]*/(\*|[a-z0-9][a-z0-9!#$&^_.+-]*))\Z")
MAILBOX_AUTOMATIC = ("ignore", "create")
_ADDRESS = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+\Z")
ORCHESTRATION_KEYS = (
    "kind", "name", "label", "description", "trigger", "variables", "stages", "retry",
)  # fmt: skip
TRIGGER_KEYS = {
    "record": ("type", "object", "on", "when", "changed_to_meet"),
    "autolaunched": ("type", "input", "object"),
    "schedule": ("type", "cron", "timezone", "misfire"),
}
TRIGGER_REQUIRED = {"record": ("object",), "autolaunched": (), "schedule": ("cron",)}
TRIGGER_EVENTS = ("create", "update")
MISFIRE = ("run_once", "skip")  # a schedule's ticks missed while no worker ran
STAGE_KEYS = ("name", "label", "description", "steps", "exit", "exit_when", "next",
              "max_iterations")
STAGE_EXITS = ("all_steps", "when_condition")
# Keys every step may have; the keys of one step type (its ``keys``) come from the registry
# (``complete_when`` is the interactive and approval steps', ``timeout`` the background,
# callout and mcp steps': no other type acts on them).
STEP_KEYS = (
    "name", "type", "label", "description", "after", "when", "on_failure",
    "retry", "sla", "lane", "run_as", "output",
)  # fmt: skip
END = "end"


Stages = list[tuple[int, dict[str, Any]]]  # (index, stage) for the stages that are mappings


@dataclass(frozen=True)
class Env:
    """What every document of one load may refer to."""

    object_types: Mapping[str, frozenset[str]]  # name -> field names (with the reserved ones)
    known_flows: Collection[str] | None
    connections: Mapping[str, str] | None = None  # name -> type; None: not checkable
    # Object types may be deployed that ``object_types`` does not hold (``baton validate
    # FILE`` outside a project): a name outside it is not an error, its fields not checked.
    unknown_objects: bool = False
    orchestrations: Mapping[str, ChildTarget] | None = None  # None: child runs not checked
    # name -> field -> (type, the object a ref names): what record.account.name follows
    shapes: Mapping[str, Mapping[str, tuple[str, str | None]]] = field(default_factory=dict)
    # name -> its required fields without a default (what every new record must be given)
    required: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # the routing rules a step's assign or SLA action may name; None: not checked here
    routings: frozenset[str] | None = None


@dataclass(frozen=True)
class Orchestration:
    """What the rules for one stage need to know about the whole orchestration."""

    stage_names: list[str]
    step_stages: Mapping[str, str]  # step name -> name of its stage
    scope: Scope


def validate_documents(
    docs: Sequence[ParsedDocument],
    *,
    known_flows: Collection[str] | None = None,
    deployed_objects: Mapping[str, ObjectTypeDefinition] | None = None,
    deployed_orchestrations: Mapping[str, ChildTarget] | None = None,
    deployed_connections: Mapping[str, str] | None = None,
    unknown_objects: bool = False,
    deployed_routings: Collection[str] | None = None,
) -> list[list[Issue]]:
    """Check every document; returns each document's issues (same order as ``docs``).

    ``deployed_orchestrations``: the orchestrations a step may start as child runs besides
    those in ``docs``; None leaves such references unchecked (a stored definition read again).
    ``deployed_connections`` (name -> type) are the connections steps may name besides
    those in ``docs``; None leaves the names unchecked (unless ``docs`` define some).
    ``unknown_objects``: the object types deployed are not known (``deployed_objects`` is
    not all of them), so a reference to an object type that neither they nor ``docs``
    define is left unchecked rather than reported.
    ``deployed_routings``: the routing rules active now; a step's ``assign: {routing:
    NAME}`` or SLA action ``routing: NAME`` must name one of them or one of ``docs``'
    (reported with the document's other problems). None leaves the names to
    :meth:`~baton.runtime.definitions.DefinitionRepo.routing_issues_txn`.
    """
    orchestrations = None if deployed_orchestrations is None else {
        **deployed_orchestrations,
        **{d.data["name"]: ChildTarget.of_document(d.data) for d in docs
           if isinstance(d.data, dict) and d.data.get("kind") == "orchestration"
           and isinstance(d.data.get("name"), str)}}
    env = Env(_object_types(docs, deployed_objects or {}), known_flows,
              orchestrations=orchestrations, shapes=_object_shapes(docs, deployed_objects or {}),
              connections=_connections(docs, deployed_connections),
              required=_required_fields(docs, deployed_objects or {}),
              unknown_objects=unknown_objects,
              routings=_routings(docs, deployed_routings))
    seen: dict[tuple[str, str], ParsedDocument] = {}
    bound: dict[str, tuple[str, str, int]] = {}  # queue -> its routing rule (for_queue)
    results = []
    for doc in docs:
        ck = Checker(doc)
        _check_document(ck, env)
        _check_rule_names(ck, env)
        _check_storable(ck, doc.data, "")
        _check_unique(ck, seen)
        check_queue_binding(ck, bound)
        results.append(ck.issues)
    return results


def _check_storable(ck: Checker, value: Any, path: str, depth: int = 0) -> None:
    """Text no store keeps (a NUL, a lone surrogate: YAML's ``"\\0"`` and ``"\\ud800"``
    escapes), wherever it is in a definition: a choice holding one would be offered and then
    refused in every record (``baton.storable``). And values that are not JSON (a
    ``!!binary``, a ``!!timestamp``, ``.nan``): a variable or a default holding one would be
    refused by every write of a run or record, and nothing else in a definition means one."""
    if depth > 64:
        return
    if isinstance(value, str):
        bad = bad_text(value)
        if bad:
            ck.add(path, bad)
    elif json_problem(value) is not None:
        ck.add(path, str(json_problem(value)))
    elif isinstance(value, dict):
        for k, v in value.items():
            key = str(k)
            if bad_text(key):
                ck.add(path, f"key {key!r} {bad_text(key)}")
                continue
            _check_storable(ck, v, join(path, key), depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_storable(ck, v, item(path, i), depth + 1)


def _object_types(
    docs: Sequence[ParsedDocument], deployed: Mapping[str, ObjectTypeDefinition]
) -> dict[str, frozenset[str]]:
    types = {
        name: frozenset(f.name for f in d.fields) | set(RESERVED_FIELDS)
        for name, d in deployed.items()
    }
    for doc in docs:
        data = doc.data
        if (
            isinstance(data, dict)
            and data.get("kind") == "object"
            and isinstance(data.get("name"), str)
        ):
            fields = data.get("fields")
            names = frozenset(fields) if isinstance(fields, dict) else frozenset()
            types[data["name"]] = names | set(RESERVED_FIELDS)
    return types


_RESERVED_SHAPES: dict[str, tuple[str, str | None]] = {
    "id": ("string", None), "created_at": ("datetime", None),
    "updated_at": ("datetime", None), "version": ("int", None)}


def _object_documents(docs: Sequence[ParsedDocument]
                      ) -> Iterator[tuple[str, dict[Any, Any]]]:
    """Each ``kind: object`` document's name and its ``fields`` as written ({} when they
    are not a mapping: its own errors say so)."""
    for doc in docs:
        data = doc.data
        if isinstance(data, dict) and data.get("kind") == "object" \
                and isinstance(data.get("name"), str):
            given = data.get("fields")
            yield data["name"], (given if isinstance(given, dict) else {})


def _object_shapes(docs: Sequence[ParsedDocument], deployed: Mapping[str, ObjectTypeDefinition]
                   ) -> dict[str, dict[str, tuple[str, str | None]]]:
    """Each object type's fields as ``(type, object)``: the deployed ones, then the
    documents' (a document's own shapes are taken as written; its errors are its own)."""
    shapes = {name: {**_RESERVED_SHAPES, **{f.name: (f.type, f.object) for f in d.fields}}
              for name, d in deployed.items()}
    for type_name, fields in _object_documents(docs):
        own: dict[str, tuple[str, str | None]] = {}
        for name, spec in fields.items():
            spec = spec if isinstance(spec, dict) else {}
            ftype, target = spec.get("type"), spec.get("object")
            own[str(name)] = (ftype if isinstance(ftype, str) else "?",
                              target if isinstance(target, str) else None)
        shapes[type_name] = {**_RESERVED_SHAPES, **own}
    return shapes


def _required_fields(docs: Sequence[ParsedDocument],
                     deployed: Mapping[str, ObjectTypeDefinition]) -> dict[str, frozenset[str]]:
    """Each object type's required fields that have no default: the deployed ones, then
    the documents' (as written)."""
    out = {name: frozenset(f.name for f in d.fields if f.required and f.default is None)
           for name, d in deployed.items()}
    for type_name, fields in _object_documents(docs):
        out[type_name] = frozenset(
            str(n) for n, spec in fields.items() if isinstance(spec, dict)
            and spec.get("required") is True and spec.get("default") is None)
    return out


def _connections(docs: Sequence[ParsedDocument],
                 deployed: Mapping[str, str] | None) -> dict[str, str] | None:
    found = {d.data["name"]: d.data.get("type") for d in docs
             if isinstance(d.data, dict) and d.data.get("kind") == "connection"
             and isinstance(d.data.get("name"), str)}
    if deployed is None and not found:
        return None
    return {**(deployed or {}), **{k: str(v) for k, v in found.items()}}


def _routings(docs: Sequence[ParsedDocument],
              deployed: Collection[str] | None) -> frozenset[str] | None:
    """The routing rules active now and those ``docs`` define, by name (None: not known)."""
    if deployed is None:
        return None
    return frozenset(deployed) | {
        d.data["name"] for d in docs if isinstance(d.data, dict)
        and d.data.get("kind") == "routing" and isinstance(d.data.get("name"), str)}


def _check_rule_names(ck: Checker, env: Env) -> None:
    """The routing rules an orchestration's steps (a fulfillment's step templates and their
    rollbacks) name in ``assign`` or an SLA action: known (:func:`check_rule_names`)."""
    data, known = ck.doc.data, env.routings
    if known is None or not isinstance(data, dict):
        return
    if data.get("kind") == "orchestration":
        check_rule_names(ck, assignments(data), known)
    elif data.get("kind") == "fulfillment":
        check_rule_names(ck, template_assignments(data), known)


def _check_document(ck: Checker, env: Env) -> None:
    data = ck.doc.data
    if not isinstance(data, dict):
        ck.add("", f"a definition must be a mapping that starts with kind:, got {describe(data)}")
        return
    if "kind" not in data:
        ck.add("kind", "required key 'kind' is missing")
        return
    kind = data["kind"]
    if kind not in KINDS:
        # Spell out the kinds unless a close match says more (a later version adds more).
        hint = suggest(kind, KINDS) or f" (expected one of: {', '.join(KINDS)})"
        ck.add(
            "kind",
            f"unknown kind '{kind}'{hint}"
            if isinstance(kind, str)
            else unknown("kind", kind, KINDS),
        )
    elif kind == "object":
        _check_object(ck, data, env)
    elif kind == "calendar":
        _check_calendar(ck, data)
    elif kind == "mailbox":
        _check_mailbox(ck, data, env)
    elif kind == "connection":
        check_connection(ck, data)
    elif kind == "catalog":
        check_catalog(ck, data)
    elif kind == "fulfillment":
        _check_fulfillment(ck, data, env)
    elif kind == "routing":
        check_routing_document(ck, data)
    elif kind == "intake_form":
        check_intake_form(ck, data, env.shapes, env.object_types,
                          unknown_objects=env.unknown_objects)
    else:
        _check_orchestration(ck, data, env)


def _check_unique(ck: Checker, seen: dict[tuple[str, str], ParsedDocument]) -> None:
    data = ck.doc.data
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("name"), str)
        or data.get("kind") not in KINDS
    ):
        return
    key = (data["kind"], data["name"])
    first = seen.setdefault(key, ck.doc)
    if first is not ck.doc:
        ck.add("name", f"{key[0]} '{key[1]}' is already defined at {first.file}:{first.line}")


# --- kind: object -------------------------------------------------------------------


def _check_object(ck: Checker, data: dict[str, Any], env: Env) -> None:
    check_keys(ck, "", data, OBJECT_KEYS, ("name", "fields"))
    if "name" in data:
        expect_identifier(ck, "name", data["name"], "object type name")
    check_texts(ck, "", data, ("label", "description"))
    fields = expect_mapping(ck, "fields", data["fields"]) if "fields" in data else None
    if fields == {}:
        ck.add("fields", "an object type needs at least one field")
    rules = FieldRules(FIELD_TYPES, env.object_types, RESERVED_FIELDS,
                       unknown_objects=env.unknown_objects)
    for name, spec in (fields or {}).items():
        check_field_name(ck, join("fields", name), name, rules)
        check_field(ck, join("fields", name), spec, rules)
    for key in ("title_field", "summary_field"):
        if key in data:
            _check_shown_field(ck, key, data[key], fields)


def _check_shown_field(ck: Checker, key: str, value: Any, fields: Mapping[str, Any] | None
                       ) -> None:
    """``title_field``/``summary_field``: one of the type's own fields (or a system one)."""
    name = expect_str(ck, key, value)
    if name is None or fields is None:
        return
    known = [*fields, *RESERVED_FIELDS]
    if name not in known:
        hint = suggest(name, known) or f" (its fields: {', '.join(known)})"
        ck.add(key, f"{key} '{name}' is not a field of this object type{hint}")


# --- kind: calendar ------------------------------------------------------------------


def _check_mailbox(ck: Checker, data: dict[str, Any], env: Env) -> None:
    check_keys(ck, "", data, MAILBOX_KEYS, ("name", "object", "fields"))
    if "name" in data:
        expect_identifier(ck, "name", data["name"], "mailbox name")
    check_texts(ck, "", data, ("label", "description"))
    fields_of: frozenset[str] | None = None
    if "object" in data:
        name = expect_str(ck, "object", data["object"])
        if name is not None and name in env.object_types:
            fields_of = env.object_types[name]
        elif name is not None and not env.unknown_objects:
            ck.add("object", f"unknown object type '{name}'{suggest(name, env.object_types)}")
    fields = expect_mapping(ck, "fields", data["fields"]) if "fields" in data else None
    if fields is not None:
        if not fields:
            ck.add("fields", "fields needs at least one of: " + ", ".join(MAILBOX_ROLES))
        for role, field in fields.items():
            path = join("fields", role)
            if role not in MAILBOX_ROLES:
                ck.add(path, unknown("e-mail part", role, MAILBOX_ROLES))
            elif expect_str(ck, path, field) is not None and fields_of is not None \
                    and field not in fields_of:
                ck.add(path, f"unknown field '{field}' of {data['object']}"
                             f"{suggest(field, fields_of)}")
    if fields and fields_of is not None:
        # a required field (without a default) no part of a message fills: every message
        # would be refused by the object type, and answered "try again later" for ever
        filled = {f for r, f in fields.items() if r in MAILBOX_ROLES and isinstance(f, str)}
        unfilled = sorted(env.required.get(str(data["object"]), frozenset()) - filled)
        if unfilled:
            ck.add("fields", f"{data['object']}'s required field{'s' if len(unfilled) > 1 else ''} "
                             f"{', '.join(unfilled)} {'are' if len(unfilled) > 1 else 'is'} "
                             "filled by no part of a message, so every message would be "
                             "refused: map a part to it, or give the field a default")
    if "addresses" in data:
        for i, address in enumerate(expect_list(ck, "addresses", data["addresses"]) or []):
            if not isinstance(address, str) or not _ADDRESS.match(address):
                ck.add(item("addresses", i), f"expected an e-mail address, got {address!r}")
    if "automatic" in data and data["automatic"] not in MAILBOX_AUTOMATIC:
        ck.add("automatic", unknown("automatic mail policy", data["automatic"], MAILBOX_AUTOMATIC))
    if "attachments" in data:
        _check_attachment_policy(ck, data["attachments"])
    if "imap" in data:
        _check_imap(ck, data["imap"])


def _check_imap(ck: Checker, value: Any) -> None:
    imap = expect_mapping(ck, "imap", value)
    if imap is None or not check_keys(ck, "imap", imap, MAILBOX_IMAP_KEYS,
                                      ("host", "username", "password_secret")):
        return
    for key in ("host", "username", "folder"):
        if key in imap and (not isinstance(imap[key], str) or not imap[key].strip()):
            ck.add(f"imap.{key}", f"expected a non-empty string, got {describe(imap[key])}")
    secret = imap.get("password_secret")
    if secret is not None and (not isinstance(secret, str)
                               or not re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", secret)):
        ck.add("imap.password_secret", "expected env:NAME (the password is read from the "
                                       f"environment variable NAME), got {describe(secret)}")
    for key, low, high in (("port", 1, 65535), ("every", 5, 86400)):
        if key in imap and (isinstance(imap[key], bool) or not isinstance(imap[key], int)
                            or not low <= imap[key] <= high):
            ck.add(f"imap.{key}", f"expected a number from {low} to {high}, got "
                                  f"{describe(imap[key])}")
    if "ssl" in imap and not isinstance(imap["ssl"], bool):
        ck.add("imap.ssl", f"expected true or false, got {describe(imap['ssl'])}")


def _check_attachment_policy(ck: Checker, value: Any) -> None:
    policy = expect_mapping(ck, "attachments", value)
    if policy is None or not check_keys(ck, "attachments", policy, MAILBOX_ATTACHMENT_KEYS, ()):
        return
    if "max_bytes" in policy:
        size = policy["max_bytes"]
        if isinstance(size, bool) or not isinstance(size, int) \
                or not 1 <= size <= MAX_ATTACHMENT_BYTES:
            ck.add("attachments.max_bytes", f"expected a number of bytes from 1 to "
                                            f"{MAX_ATTACHMENT_BYTES}, got {describe(size)}")
    if "allow" in policy:
        for i, kind in enumerate(expect_list(ck, "attachments.allow", policy["allow"]) or []):
            if not isinstance(kind, str) or not _MIME.match(kind.lower()):
                ck.add(item("attachments.allow", i),
                       f"expected a MIME type like application/pdf or image/*, got {describe(kind)}")


def _check_calendar(ck: Checker, data: dict[str, Any]) -> None:
    check_keys(ck, "", data, CALENDAR_KEYS, ("name", "timezone", "hours"))
    if "name" in data:
        expect_identifier(ck, "name", data["name"], "calendar name")
    check_texts(ck, "", data, ("label", "description"))
    if "timezone" in data:
        _check_timezone(ck, "timezone", data["timezone"])
    hours = expect_mapping(ck, "hours", data["hours"]) if "hours" in data else None
    spans_given = 0
    for day, spans in (hours or {}).items():
        path = join("hours", str(day))
        if day not in WEEKDAYS:
            ck.add(path, unknown("weekday", day, WEEKDAYS))
        for span in expect_list(ck, path, spans) or []:
            spans_given += 1
            if not isinstance(span, str) or not HOURS.match(span) or span[:5] >= span[6:]:
                got = f"'{span}'" if isinstance(span, str) else describe(span)
                ck.add(path, f"expected working hours like '09:00-17:00' (start before end), got {got}")
    if hours is not None and not spans_given:
        ck.add("hours", "a calendar needs working hours on at least one day: in one without "
                        "any, business time never passes and its SLAs would never come due")
    dates = expect_list(ck, "extra_dates", data.get("extra_dates", [])) or []
    extra = {d for i, v in enumerate(dates) if (d := _check_date(ck, item("extra_dates", i), v))}
    if "holidays" in data:
        _check_holidays(ck, data["holidays"], extra)


def _check_holidays(ck: Checker, value: Any, extra_dates: Collection[_dt.date]) -> None:
    hol = expect_mapping(ck, "holidays", value)
    if hol is None or not check_keys(ck, "holidays", hol, HOLIDAY_KEYS, ("country",)) \
            or "country" not in hol:
        return
    worked = [(i, _check_date(ck, item("holidays.except", i), v))
              for i, v in enumerate(expect_list(ck, "holidays.except", hol.get("except", []))
                                    or [])]
    try:
        import holidays  # on first use (~40 ms of imports)

        table = holidays.country_holidays(hol["country"], subdiv=hol.get("subdivision"))
    except (NotImplementedError, KeyError, TypeError) as exc:
        known = {k: hol[k] for k in ("country", "subdivision") if k in hol}
        ck.add("holidays", f"the holidays package does not know {known}: {exc}")
        return
    where = hol["country"] + (f"-{hol['subdivision']}" if hol.get("subdivision") else "")
    for i, day in worked:
        if day is None:
            continue
        path = item("holidays.except", i)
        if day in extra_dates:
            ck.add(path, f"{day} is in extra_dates too: a day is either closed (extra_dates) "
                         "or worked (holidays.except)")
        elif day not in table:
            ck.warn(path, f"{day} is not a holiday in {where} in {day.year}: excepting it "
                          "changes nothing (holiday rules change between years)")


def _check_date(ck: Checker, path: str, value: Any) -> _dt.date | None:
    """A date written ``YYYY-MM-DD`` (a YAML date is read as that text); None (reported)."""
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return value  # an explicit !!timestamp
    if not isinstance(value, str):
        ck.add(path, f"expected a date like 2026-12-24, got {describe(value)}")
        return None
    if not _ISO_DATE.match(value):
        ck.add(path, f"'{value}' is not a date (expected one like 2026-12-24)")
        return None
    try:
        return _dt.date.fromisoformat(value)
    except ValueError as exc:  # 2028-02-30: "day is out of range for month"
        ck.add(path, f"'{value}' is not a date ({exc})")
        return None


# --- kind: fulfillment ----------------------------------------------------------------


def _check_fulfillment(ck: Checker, data: dict[str, Any], env: Env) -> None:
    scope = Scope(steps=frozenset(), known_flows=env.known_flows,
                  orchestrations=env.orchestrations, object_types=env.object_types,
                  connections=env.connections, allow_line=True,
                  unknown_objects=env.unknown_objects)
    if "trigger" in data:
        trigger = data["trigger"]
        if isinstance(trigger, dict) and trigger.get("type") not in (None, "record"):
            ck.add("trigger.type", "a fulfillment is started by a record trigger on its orders "
                                   "(type: record)")
        else:
            scope = _check_trigger(ck, data, env, scope)
    check_fulfillment(ck, data, scope, _check_step)


# --- kind: orchestration --------------------------------------------------------------


def _check_orchestration(ck: Checker, data: dict[str, Any], env: Env) -> None:
    check_keys(ck, "", data, ORCHESTRATION_KEYS, ("name", "trigger", "stages"))
    if "name" in data:
        expect_identifier(ck, "name", data["name"], "orchestration name")
    check_texts(ck, "", data, ("label", "description"))
    stages = _stage_list(ck, data)
    step_stages = _step_stages(stages)
    scope = Scope(
        steps=frozenset(step_stages),
        variables=_check_variables(ck, data),
        known_flows=env.known_flows,
        orchestrations=env.orchestrations,
        object_types=env.object_types,
        connections=env.connections,
        unknown_objects=env.unknown_objects,
    )
    scope = _check_trigger(ck, data, env, scope)
    _check_stage_names(ck, stages)
    _check_step_names(ck, stages)
    if "retry" in data:
        check_policies(ck, "", {"retry": data["retry"]})
    names = [s["name"] for _, s in stages if isinstance(s.get("name"), str)]
    orch = Orchestration(names, step_stages, scope)
    for i, stage in stages:
        _check_stage(ck, item("stages", i), stage, orch)
    _check_reachable(ck, stages)
    _check_related_ids(ck, data, scope)


def _expressions(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """``(path, source)`` of every ``=expression`` in a document's data."""
    if isinstance(value, str) and is_expression(value):
        yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _expressions(v, join(path, str(k)))
    elif isinstance(value, list):
        for k, v in enumerate(value):
            yield from _expressions(v, item(path, k))


def _check_related_ids(ck: Checker, data: dict[str, Any], scope: Scope) -> None:
    """Where an expression reads ``record.account.name``, ``record.account`` is the related
    Account in every expression of the orchestration (its id is ``record.account.id``): a
    read of the ref field itself would compare a record with an id, and never hold."""
    if scope.record_object is None or "stages" not in data:
        return
    found = [(p, src, list(member_chains(src))) for p, src in _expressions(
        {k: v for k, v in data.items() if k in ("trigger", "stages")}, "")]
    navigated: set[tuple[str, ...]] = set()
    for _, _, chains in found:
        for var, members in chains:
            if var == "record":
                navigated.update(_ref_prefixes(members, scope))
    for path, _, chains in found:
        for var, members in chains:
            if var == "record" and members in navigated:
                written = "record." + ".".join(members)
                ck.add(path, f"{written} is the related record here, since an expression "
                             f"reads its fields ({written}.…): write {written}.id for its id")


def _ref_prefixes(members: tuple[str, ...], scope: Scope) -> list[tuple[str, ...]]:
    """The prefixes of ``record.<members>`` that are ref fields followed further."""
    out, otype = [], scope.record_object
    for n in range(1, len(members)):
        shape = scope.objects.get(otype or "", {}).get(members[n - 1])
        if shape is None or shape[0] != "ref":
            break
        out.append(members[:n])
        otype = shape[1]
    return out


def _stage_list(ck: Checker, data: dict[str, Any]) -> Stages:
    """The stages that are mappings, with their index; reports the shape problems."""
    if "stages" not in data:
        return []
    stages = expect_list(ck, "stages", data["stages"])
    if stages is not None and not stages:
        ck.add("stages", "an orchestration needs at least one stage")
    mappings = []
    for i, stage in enumerate(stages or []):
        m = expect_mapping(ck, item("stages", i), stage)
        if m is not None:
            mappings.append((i, m))
    return mappings


def _steps_of(stage: Mapping[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    steps = stage.get("steps")
    if not isinstance(steps, list):
        return []
    return [(j, s) for j, s in enumerate(steps) if isinstance(s, dict)]


def _step_stages(stages: Stages) -> dict[str, str]:
    """Step name -> name of its (first) stage, over the whole orchestration."""
    found: dict[str, str] = {}
    for _, stage in stages:
        for _, step in _steps_of(stage):
            if isinstance(step.get("name"), str):
                found.setdefault(step["name"], str(stage.get("name")))
    return found


def _check_variables(ck: Checker, data: dict[str, Any]) -> frozenset[str]:
    # Initial values are literals: a string starting with '=' is kept as text.
    if "variables" not in data:
        return frozenset()
    variables = expect_mapping(ck, "variables", data["variables"]) or {}
    for name, value in variables.items():
        expect_readable_name(ck, join("variables", name), name, "variable name")
        check_values_fit(ck, join("variables", name), value)
    return frozenset(variables)


def _check_stage_names(ck: Checker, stages: Stages) -> None:
    first: dict[str, int] = {}
    for i, stage in stages:
        path = join(item("stages", i), "name")
        if "name" not in stage \
                or expect_readable_name(ck, path, stage["name"], "stage name") is None:
            continue
        name = stage["name"]
        if name == END:
            ck.add(path, "'end' is reserved (goto: end ends the run); choose another stage name")
        elif name in first:
            ck.add(path, f"duplicate stage name '{name}' (first at line {first[name]})")
        else:
            first[name] = ck.line(path)


def _check_step_names(ck: Checker, stages: Stages) -> None:
    # Unique across the whole orchestration: steps.<name> may name a step of any stage.
    first: dict[str, int] = {}
    for i, stage in stages:
        for j, step in _steps_of(stage):
            path = join(item(join(item("stages", i), "steps"), j), "name")
            if "name" not in step \
                    or expect_readable_name(ck, path, step["name"], "step name") is None:
                continue
            name = step["name"]
            if name in first:
                ck.add(path, f"duplicate step name '{name}' (first at line {first[name]})")
            else:
                first[name] = ck.line(path)


# --- trigger ----------------------------------------------------------------------------


def _check_trigger(ck: Checker, data: dict[str, Any], env: Env, scope: Scope) -> Scope:
    """Check the trigger; returns ``scope`` narrowed to what the trigger provides."""
    trigger = expect_mapping(ck, "trigger", data["trigger"]) if "trigger" in data else None
    if trigger is None:
        return scope
    ttype = trigger.get("type")
    if "type" not in trigger:
        ck.add("trigger.type", "required key 'type' is missing")
        return scope
    if not isinstance(ttype, str) or ttype not in TRIGGER_KEYS:
        ck.add("trigger.type", unknown("trigger type", ttype, tuple(TRIGGER_KEYS)))
        return scope
    check_keys(ck, "trigger", trigger, TRIGGER_KEYS[ttype], TRIGGER_REQUIRED[ttype])
    # A run's input is what its trigger declares (``input:`` of an autolaunched trigger),
    # typed and checked when it starts: a record or a schedule starts runs without input,
    # and an autolaunched trigger without ``input:`` takes none (``input.x`` never exists).
    scope = replace(_trigger_record(ck, trigger, env, scope), inputs=frozenset())
    if ttype == "record":
        _check_record_trigger(ck, trigger, scope)
    elif ttype == "autolaunched":
        scope = _check_input(ck, trigger, env, scope)
    else:
        if "cron" in trigger:
            _check_cron(ck, trigger["cron"])
        if "timezone" in trigger:
            _check_timezone(ck, "trigger.timezone", trigger["timezone"])
        if "misfire" in trigger and trigger["misfire"] not in MISFIRE:
            ck.add("trigger.misfire", unknown("misfire policy", trigger["misfire"], MISFIRE))
    return scope


def _trigger_record(ck: Checker, trigger: dict[str, Any], env: Env, scope: Scope) -> Scope:
    if "object" not in trigger:
        return replace(scope, has_record=False)
    name = expect_str(ck, "trigger.object", trigger["object"])
    if name is not None and name not in env.object_types and not env.unknown_objects:
        ck.add("trigger.object", f"unknown object type '{name}'{suggest(name, env.object_types)}")
    return replace(scope, record_fields=env.object_types.get(name or ""),
                   record_object=name if name in env.shapes else None, objects=env.shapes)


def _check_record_trigger(ck: Checker, trigger: dict[str, Any], scope: Scope) -> None:
    events = trigger.get("on", ["create"])
    events = [events] if isinstance(events, str) else events
    if expect_list(ck, "trigger.on", events) is None:
        return
    if not events:
        ck.add("trigger.on", "on needs at least one of: create, update")
    for event in events:
        if event not in TRIGGER_EVENTS:
            ck.add("trigger.on", unknown("trigger event", event, TRIGGER_EVENTS))
    if "when" in trigger:
        check_condition(
            ck, "trigger.when", trigger["when"], replace(scope, allow_old="update" in events)
        )
    if "changed_to_meet" in trigger:
        flag = trigger["changed_to_meet"]
        if not isinstance(flag, bool):
            ck.add("trigger.changed_to_meet", f"expected true or false, got {flag!r}")
        elif flag and "when" not in trigger:
            ck.add("trigger.changed_to_meet",
                   "changed_to_meet needs a 'when' condition: it starts a run when the record "
                   "changes to meet it")


def _check_input(ck: Checker, trigger: dict[str, Any], env: Env, scope: Scope) -> Scope:
    if "input" not in trigger:
        return scope
    fields = expect_mapping(ck, "trigger.input", trigger["input"]) or {}
    rules = FieldRules(FIELD_TYPES, env.object_types, unknown_objects=env.unknown_objects)
    for name, spec in fields.items():
        check_field_name(ck, join("trigger.input", name), name, rules)
        check_field(ck, join("trigger.input", name), spec, rules)
    return replace(scope, inputs=frozenset(fields))


def _check_timezone(ck: Checker, path: str, value: Any) -> None:
    """An IANA time zone name: the same zone on every host. zoneinfo reads any TZif file
    of the host's zone folder, also ones that name no IANA zone: ``localtime`` (Debian's
    link to the host's own zone, which differs from host to host, and listed by
    :func:`zoneinfo.available_timezones`), ``posixrules``, ``posix/…`` and ``right/…``;
    it refuses absolute paths and ``..``. Each is refused here with what it is."""
    tz = expect_str(ck, path, value)
    if tz is None:
        return
    if tz.lower() == "localtime":
        ck.add(path, f"'{tz}' is the server's own time zone, which differs from host to "
                     "host: give an IANA name like Europe/Berlin")
    elif tz.startswith(("/", ".")) or "/." in tz:
        ck.add(path, f"'{tz}' is a file path, not a time zone: give an IANA name like "
                     "Europe/Berlin")
    elif tz.lower() in HOST_ZONES or tz.startswith(("posix/", "right/")):
        ck.add(path, f"'{tz}' is a file of the server's time zone folder, not an IANA name: "
                     "give one like Europe/Berlin")
    elif tz not in _iana_zones() and tz != "UTC":
        ck.add(path, f"unknown time zone '{tz}' (an IANA name like Europe/Paris)")


@functools.cache
def _iana_zones() -> frozenset[str]:
    """The zone names of the host's tz database (or the tzdata package): a walk of its
    folder, once a process."""
    return frozenset(zoneinfo.available_timezones()) - HOST_ZONES


def _check_cron(ck: Checker, cron: Any) -> None:
    text = expect_str(ck, "trigger.cron", cron)
    if text is None:
        return
    if len(text.split()) != 5:
        ck.add(
            "trigger.cron",
            f"a cron schedule has 5 fields (minute hour day month weekday), got {len(text.split())}",
        )
    elif not _cron_valid(text):
        ck.add("trigger.cron", f"{text!r} is not a valid cron schedule (minute 0-59, hour 0-23, "
               "day 1-31, month 1-12 or jan-dec, weekday 0-6 or sun-sat; `*`, `,`, `-`, `/`)")
    elif not _cron_comes(text):
        ck.add("trigger.cron", f"{text!r} never comes: no date has that day in those months "
               "(e.g. day 31 of February)")


# --- stages -----------------------------------------------------------------------------


def _warn_entry_conditions(ck: Checker, path: str, stage: dict[str, Any]) -> None:
    """A step with an entry condition in a stage with no exit rule: if the condition never
    holds, the step never starts and the stage never completes (Salesforce stages end on their
    exit criteria; a translated one often lacks ours)."""
    for j, step in enumerate(stage["steps"]):
        if isinstance(step, dict) and "when" in step:
            name = step.get("name", f"#{j + 1}")
            ck.warn(join(item(join(path, "steps"), j), "when"),
                    f"step '{name}' starts only when this holds, and the stage has no exit_when: "
                    "if it never holds, the stage never completes")


def _check_stage(ck: Checker, path: str, stage: dict[str, Any], orch: Orchestration) -> None:
    check_keys(ck, path, stage, STAGE_KEYS, ("name",))
    check_texts(ck, path, stage, ("label", "description"))
    if "steps" in stage and expect_list(ck, join(path, "steps"), stage["steps"]) is not None:
        for j, step in enumerate(stage["steps"]):
            _check_step(ck, item(join(path, "steps"), j), step, orch.scope)
        _check_after(ck, path, stage, orch.step_stages)
        if "exit_when" not in stage:
            _warn_entry_conditions(ck, path, stage)
    if "exit_when" in stage:
        check_condition(ck, join(path, "exit_when"), stage["exit_when"], orch.scope)
    if "exit" in stage:
        if stage["exit"] not in STAGE_EXITS:
            ck.add(join(path, "exit"), unknown("stage exit", stage["exit"], STAGE_EXITS))
        elif stage["exit"] == "when_condition" and "exit_when" not in stage:
            ck.add(join(path, "exit"), "exit: when_condition needs an exit_when condition "
                                       "(the stage ends only when it holds)")
    if "next" in stage:
        _check_next(ck, join(path, "next"), stage["next"], orch)
    if "max_iterations" in stage:
        expect_int(ck, join(path, "max_iterations"), stage["max_iterations"], 1)


def _check_next(ck: Checker, path: str, rules: Any, orch: Orchestration) -> None:
    if expect_list(ck, path, rules) is None:
        return
    if not rules:
        ck.add(
            path, "next needs at least one rule (leave next out to go on with the following stage)"
        )
    names = orch.stage_names
    for k, rule in enumerate(rules):
        rpath = item(path, k)
        m = expect_mapping(ck, rpath, rule)
        if m is None:
            continue
        check_keys(ck, rpath, m, ("goto", "when", "label"), ("goto",))
        if "label" in m:
            expect_str(ck, join(rpath, "label"), m["label"])
        goto = m.get("goto")
        if (
            "goto" in m
            and expect_str(ck, join(rpath, "goto"), goto)
            and goto != END
            and goto not in names
        ):
            ck.add(join(rpath, "goto"), f"unknown stage '{goto}'{suggest(goto, names + [END])}")
        if "when" in m:
            check_condition(ck, join(rpath, "when"), m["when"], orch.scope)


def _successors(
    i: int, stage: dict[str, Any], index: dict[str, int], count: int
) -> list[int] | None:
    """Stages reachable in one move from stage ``i``; None when ``next`` is not usable."""
    if "next" not in stage:
        return [i + 1] if i + 1 < count else []
    rules = stage["next"]
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        return None
    gotos = [r.get("goto") for r in rules]
    if any(not isinstance(g, str) or (g != END and g not in index) for g in gotos):
        return None
    return [index[g] for g in gotos if g != END]


def _check_reachable(ck: Checker, stages: Stages) -> None:
    # Only decidable when every stage is a mapping with a name and every goto resolves;
    # otherwise the issues already reported explain the graph, and guessing would add noise.
    if not stages or len(stages) != max(i for i, _ in stages) + 1:
        return
    index: dict[str, int] = {s["name"]: i for i, s in stages if isinstance(s.get("name"), str)}
    if len(index) != len(stages):
        return
    edges = [_successors(i, s, index, len(stages)) for i, s in stages]
    if any(e is None for e in edges):
        return
    reached, todo = {0}, [0]
    while todo:
        for nxt in edges[todo.pop()] or []:
            if nxt not in reached:
                reached.add(nxt)
                todo.append(nxt)
    for i, stage in stages:
        if i not in reached:
            ck.add(
                item("stages", i), f"stage '{stage['name']}' is unreachable (no stage goes to it)"
            )


# --- steps --------------------------------------------------------------------------------


def _check_step(ck: Checker, path: str, step: Any, scope: Scope) -> None:
    m = expect_mapping(ck, path, step)
    if m is None:
        return
    stype = m.get("type")
    st = registry.get(stype) if isinstance(stype, str) else None
    if "type" in m and st is None:
        if stype in registry.PLANNED:
            ck.add(
                join(path, "type"), f"step type '{stype}' is not available in this version of Baton"
            )
        else:
            ck.add(join(path, "type"), unknown("step type", stype, registry.names()))
        return  # its other keys belong to a type we cannot check
    owners = registry.option_owners()
    check_keys(ck, path, m, STEP_KEYS + tuple(owners), ("name", "type"))
    if st is not None:
        _check_step_type(ck, path, m, st, owners, scope)
    check_texts(ck, path, m, ("label", "description", "lane"))
    for key in ("when", "complete_when"):
        if key in m:
            check_condition(ck, join(path, key), m[key], scope)
    if "on_failure" in m and m["on_failure"] not in ON_FAILURE:
        ck.add(join(path, "on_failure"), unknown("on_failure", m["on_failure"], ON_FAILURE))
    if "run_as" in m:
        check_value(ck, join(path, "run_as"), m["run_as"], scope)
    check_policies(ck, path, m, scope.known_flows)


def _check_step_type(ck: Checker, path: str, m: dict[str, Any], st: StepType,
                     owners: Mapping[str, tuple[str, ...]], scope: Scope) -> None:
    """Keys of other step types are mistakes here; the type checks its own options."""
    for key, names in owners.items():
        if key in m and key not in st.keys:
            article = "an" if st.name[:1] in "aeiou" else "a"
            hint = ("; a step that waits for a person is bounded by its sla: (due, jeopardy, "
                    "breach actions)" if key == "timeout" else "")
            ck.add(join(path, key), f"{key} does not apply to {article} {st.name} step "
                                    f"(only to {' or '.join(names)} steps){hint}")
    st.validate(ck, path, m, scope)


# --- after: references and cycles -------------------------------------------------------


def _check_after(
    ck: Checker, path: str, stage: dict[str, Any], step_stages: Mapping[str, str]
) -> None:
    """``after`` names steps of the same stage and never loops back."""
    steps = _steps_of(stage)
    local = [s["name"] for _, s in steps if isinstance(s.get("name"), str)]
    graph: dict[str, list[str]] = {name: [] for name in local}
    after_paths: dict[str, str] = {}
    for j, step in steps:
        if "after" not in step:
            continue
        apath = join(item(join(path, "steps"), j), "after")
        refs = expect_list(ck, apath, step["after"]) or []
        name = step.get("name")
        if isinstance(name, str):
            after_paths.setdefault(name, apath)
        seen: set[str] = set()
        for k, ref in enumerate(refs):
            if isinstance(ref, str) and ref in seen:
                # (harmless to the run, but likely a typo for another step: a warning)
                ck.warn(item(apath, k), f"step '{ref}' is named twice in after: did you "
                                        "mean another step?")
                continue
            if isinstance(ref, str):
                seen.add(ref)
            if _after_ref_ok(ck, apath, ref, local, stage.get("name"), step_stages) and isinstance(
                name, str
            ):
                graph[name].append(ref)
    for cycle in find_cycles(graph, local):
        ck.add(after_paths[cycle[0]], "cycle in after: " + " -> ".join(cycle))


def _after_ref_ok(
    ck: Checker, path: str, ref: Any, local: list[str], stage: Any, step_stages: Mapping[str, str]
) -> bool:
    if expect_str(ck, path, ref) is None:
        return False
    if ref in local:
        return True
    if ref in step_stages:
        ck.add(
            path,
            f"step '{ref}' is in stage '{step_stages[ref]}'; after only names steps of the same stage",
        )
    else:
        ck.add(path, f"unknown step '{ref}'{suggest(ref, local)}")
    return False


def _cron_valid(text: str) -> bool:
    from croniter import croniter  # on first use: reading a stored definition needs no cron

    return bool(croniter.is_valid(text))


def _cron_comes(text: str) -> bool:
    """A valid cron has a tick at all (``0 0 31 2 *`` has none: its deploy could not arm
    the schedule). Whether a day and month meet does not depend on the year or the zone."""
    from croniter import CroniterError, croniter

    try:
        croniter(text, _dt.datetime(2000, 1, 1)).get_next(_dt.datetime)
    except (CroniterError, ValueError):
        return False
    return True
