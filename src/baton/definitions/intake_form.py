"""``kind: intake_form``: a public web form whose submissions become records (DESIGN §2.5,
issue 14 item 3).

People outside the organisation (a dealer, a customer) fill in a page at
``/forms/NAME``; each submission creates one record of the form's object type, through
the same write as ``baton records create`` (field checks, record triggers that start the
case's run, the audit event), with ``form:NAME`` as the actor. The form asks for the
object type's fields it lists, typed as the object type declares them; ``set`` gives
fixed values (``channel: web``); ``rate_limit`` bounds submissions per client address.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from types import MappingProxyType
from typing import Any

from baton.definitions.checks import (
    RESERVED_FIELDS,
    Checker,
    check_keys,
    check_texts,
    describe,
    expect_bool,
    expect_identifier,
    expect_list,
    expect_mapping,
    expect_str,
    item,
    join,
    suggest,
)

KEYS = ("kind", "name", "label", "description", "object", "fields", "set", "rate_limit",
        "thanks")
FIELD_KEYS = ("field", "label", "help", "required", "also")
ASKABLE = ("string", "text", "int", "decimal", "bool", "date", "datetime", "choice")
"""Field types a person can fill in on a public form (a ``ref`` would expose record ids,
``json`` is for systems: the API)."""
DEFAULT_RATE_LIMIT = 10  # submissions per client address per minute
MAX_RATE_LIMIT = 10_000


@dataclass(frozen=True)
class FormField:
    """One question: the object's ``field`` it fills (and the ``also`` fields that get the
    same value), with the label and help people read."""

    field: str
    label: str | None = None
    help: str | None = None
    required: bool | None = None  # None: as the object type's field says
    also: tuple[str, ...] = ()


@dataclass(frozen=True)
class IntakeFormDefinition:
    name: str
    object: str
    fields: tuple[FormField, ...]
    label: str | None = None  # the page's title (default: the name, readable)
    description: str | None = None  # shown above the fields
    set: MappingProxyType[str, Any] = dc_field(default_factory=lambda: MappingProxyType({}))
    rate_limit: int = DEFAULT_RATE_LIMIT
    thanks: str | None = None  # shown after a submission, with the reference


def check_intake_form(ck: Checker, data: Mapping[str, Any],
                      shapes: Mapping[str, Mapping[str, tuple[str, str | None]]],
                      object_types: Mapping[str, frozenset[str]], *,
                      unknown_objects: bool = False) -> None:
    """Every problem of one ``kind: intake_form`` document, located (``unknown_objects``:
    object types beyond ``object_types`` may be deployed, so ``object`` is not checked)."""
    check_keys(ck, "", data, KEYS, ("name", "object", "fields"))
    if "name" in data:
        expect_identifier(ck, "name", data["name"], "form name")
    check_texts(ck, "", data, ("label", "description", "thanks"))
    fields_of: Mapping[str, tuple[str, str | None]] | None = None
    if "object" in data:
        name = expect_str(ck, "object", data["object"])
        if name is not None and name not in object_types:
            if not unknown_objects:
                ck.add("object", f"unknown object type '{name}'{suggest(name, object_types)}")
        elif name is not None:
            fields_of = shapes.get(name) or {f: ("string", None) for f in object_types[name]
                                             if f not in RESERVED_FIELDS}
    asked: set[str] = set()
    questions = expect_list(ck, "fields", data["fields"]) if "fields" in data else None
    if questions is not None and not questions:
        ck.add("fields", "a form needs at least one field")
    for i, q in enumerate(questions or []):
        path = item("fields", i)
        spec = {"field": q} if isinstance(q, str) else expect_mapping(ck, path, q)
        if spec is None:
            continue
        check_keys(ck, path, spec, FIELD_KEYS, ("field",))
        targets: list[tuple[str, Any]] = []
        if "field" in spec:
            targets.append((join(path, "field") if not isinstance(q, str) else path,
                            spec["field"]))
        for j, other in enumerate(expect_list(ck, join(path, "also"), spec["also"]) or []
                                  if "also" in spec else []):
            targets.append((item(join(path, "also"), j), other))
        for where, name in targets:
            field = expect_str(ck, where, name)
            if field is None or fields_of is None:
                continue
            if field in RESERVED_FIELDS or field not in fields_of:
                ck.add(where, f"unknown field '{field}' of {data['object']}"
                              f"{suggest(field, fields_of)}")
            elif fields_of[field][0] not in ASKABLE:
                ck.add(where, f"field '{field}' is a {fields_of[field][0]}: a public form asks "
                              f"only for {', '.join(ASKABLE)} fields (systems post other "
                              "values through the API)")
            elif field in asked:
                ck.add(where, f"field '{field}' is filled twice by this form")
            else:
                asked.add(field)
        check_texts(ck, path, spec, ("label", "help"))
        if "required" in spec:
            expect_bool(ck, join(path, "required"), spec["required"])
    fixed = expect_mapping(ck, "set", data["set"]) if "set" in data else None
    for field, value in (fixed or {}).items():
        where = join("set", str(field))
        if fields_of is not None and (field in RESERVED_FIELDS or field not in fields_of):
            ck.add(where, f"unknown field '{field}' of {data['object']}"
                          f"{suggest(field, fields_of)}")
        elif field in asked:
            ck.add(where, f"field '{field}' is asked on the form and set too: pick one")
        elif isinstance(value, (dict, list)) or (isinstance(value, str) and value.startswith("=")):
            ck.add(where, f"expected a fixed value (text, number, true/false), got "
                          f"{describe(value)}")
    if "rate_limit" in data:
        limit = data["rate_limit"]
        if isinstance(limit, bool) or not isinstance(limit, int) \
                or not 1 <= limit <= MAX_RATE_LIMIT:
            ck.add("rate_limit", f"expected submissions per client address per minute, a "
                                 f"whole number from 1 to {MAX_RATE_LIMIT}, got {describe(limit)}")


def build_intake_form(data: Mapping[str, Any]) -> IntakeFormDefinition:
    """The frozen form of a document that passed :func:`check_intake_form`."""
    fields = []
    for q in data["fields"]:
        spec: Mapping[str, Any] = {"field": q} if isinstance(q, str) else q
        required = spec.get("required")
        fields.append(FormField(str(spec["field"]), spec.get("label"), spec.get("help"),
                                None if required is None else bool(required),
                                tuple(spec.get("also") or ())))
    return IntakeFormDefinition(
        str(data["name"]), str(data["object"]), tuple(fields), data.get("label"),
        data.get("description"), MappingProxyType(dict(data.get("set") or {})),
        int(data.get("rate_limit", DEFAULT_RATE_LIMIT)), data.get("thanks"))
