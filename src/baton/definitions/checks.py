"""Building blocks shared by the validation rules: located issues and shape checks.

Every check *adds* an issue and returns what it could make of the value (or ``None``),
so callers keep going and one run of validation reports every problem at once.
"""

from __future__ import annotations

import datetime as _dt
import difflib
import json as _json
import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from baton import decimals
from baton.definitions.refs import MAX_HOPS
from baton.errors import ExpressionError, Issue
from baton.expressions import (
    ITEM_VARIABLES,
    VARIABLES,
    compile_expression,
    indexed_names,
    is_expression,
    reads_variables,
    referenced_names,
    referenced_roots,
)
from baton.expressions.cel import member_chains

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Words CEL reads as literals or operators: ``steps.in.status`` or ``vars.null`` cannot be
# written, so a step, stage, variable, input or field may not be named one of them.
CEL_RESERVED = ("false", "in", "null", "true")
DURATION = re.compile(r"(\d+)(ms|s|m|h|d)\Z")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
MAX_DURATION_DAYS = 36_500
"""The longest duration a definition may give (100 years): an instant that far ahead is
still a date (``now + 3000000d`` is not), and a timer, a timeout or an SLA longer than a
century is a typo. ``engine/policy.py`` counts a longer one read from an older stored
definition as this long."""
MAX_DURATION_MS = MAX_DURATION_DAYS * _UNIT_MS["d"]
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
"""Whole numbers a definition's values may hold: what an ``int`` field, CEL and the
stores' JSON reader keep exact (as ``records/fields.py``)."""
DEFAULT_MAX_LENGTH = {"string": 1_000, "text": 100_000, "json": 100_000}
"""A field's ``max_length`` when it gives none (as ``records/fields.py``: MAX_STRING,
MAX_TEXT)."""
FIELD_KEYS = ("type", "required", "default", "choices", "object", "label", "description",
              "max_length", "check", "precision", "scale", "rounding")
LENGTH_TYPES = ("string", "text", "json")
MAX_LENGTH_LIMIT = 1_000_000
RESERVED_FIELDS = ("id", "created_at", "updated_at", "version")
_UNDECLARED = re.compile(r"undeclared reference to '([A-Za-z_]\w*)")
# Variables only some step keys bind, and where (see Scope.extra_roots).
STEP_ROOTS = {
    "response": "the output of a callout step",
    "callback": "a callout step with wait: callback (its request and output)",
    "result": "the output of an mcp step (what the tool answered)",
}
CONDITION_MESSAGE = "a condition must be an expression starting with '=' or {flow: name}"


@dataclass
class ParsedDocument:
    """One YAML document before validation: plain data plus the line of every path."""

    file: str
    line: int  # 1-based line of the document's root node
    source: str  # exact text of the document (what gets versioned)
    data: Any
    lines: dict[str, int] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)  # found while reading (duplicate keys…)


class Checker:
    """Collects the issues of one document, locating each path on its line."""

    def __init__(self, doc: ParsedDocument) -> None:
        self.doc = doc
        self.issues: list[Issue] = list(doc.issues)

    def line(self, path: str) -> int:
        # A path with no node of its own (a missing key) is reported on its parent's line.
        while path and path not in self.doc.lines:
            path = _parent(path)
        return self.doc.lines.get(path, self.doc.line)

    def add(self, path: str, message: str) -> None:
        self.issues.append(Issue(self.doc.file, self.line(path), path, message))

    def warn(self, path: str, message: str) -> None:
        """A definition that deploys but probably does not do what its author meant."""
        self.issues.append(Issue(self.doc.file, self.line(path), path, message, "warning"))


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def item(path: str, index: int) -> str:
    return f"{path}[{index}]"


_PATH_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def step_at(data: Any, path: str) -> str | None:
    """The name of the step ``path`` stands in (``stages[0].steps[2].input.n`` -> the third
    step's ``name``; a fulfillment's ``scenarios[0].steps[1]`` too), walking the document's
    data as written; None when the path is in no named step."""
    node, key, step = data, "", None
    for index, name in _PATH_PART.findall(path):
        if index:
            i = int(index)
            node = node[i] if isinstance(node, list) and i < len(node) else None
            if key == "steps" and isinstance(node, dict) and isinstance(node.get("name"), str):
                step = node["name"]
        else:
            node, key = (node.get(name) if isinstance(node, dict) else None), name
        if node is None:
            break
    return step


# --- messages ------------------------------------------------------------------------


def suggest(name: object, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a close match exists, else ``""``."""
    if not isinstance(name, str):
        return ""
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown(what: str, value: object, options: Collection[str]) -> str:
    """Message for a value outside a small fixed set: a suggestion, else the whole set."""
    if not isinstance(value, str):
        return f"expected a {what} (one of: {', '.join(options)}), got {describe(value)}"
    hint = suggest(value, options) or f" (expected one of: {', '.join(options)})"
    return f"unknown {what} '{value}'{hint}"


def _show(value: object) -> str:
    """A scalar as the user typed it; anything bigger by its type."""
    if isinstance(value, str):
        return f"'{_short(value)}'".replace("\n", "\\n")
    if isinstance(value, bool):
        return "true" if value else "false"
    return _short(value) if isinstance(value, int | float) else describe(value)


def describe(value: object) -> str:
    """A user's word for a YAML value's type: ``a string``, ``a list``…"""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


# --- shapes --------------------------------------------------------------------------


def check_keys(
    ck: Checker,
    path: str,
    data: Mapping[str, Any],
    allowed: Collection[str],
    required: Iterable[str] = (),
) -> bool:
    """Report unknown and missing keys; True when there was no unknown key."""
    clean = True
    for key in data:
        if key not in allowed:
            # A short list of what is allowed helps more than silence when nothing is close.
            hint = suggest(key, allowed) or (
                f" (expected one of: {', '.join(allowed)})" if len(allowed) <= 8 else ""
            )
            ck.add(join(path, key), f"unknown key '{key}'{hint}")
            clean = False
    for key in required:
        if key not in data:
            ck.add(join(path, key), f"required key '{key}' is missing")
    return clean


def expect_mapping(ck: Checker, path: str, value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    ck.add(path, f"expected a mapping, got {describe(value)}")
    return None


def expect_list(ck: Checker, path: str, value: Any) -> list[Any] | None:
    if isinstance(value, list):
        return value
    ck.add(path, f"expected a list, got {describe(value)}")
    return None


def expect_str(ck: Checker, path: str, value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    ck.add(
        path,
        "expected a non-empty string"
        + ("" if isinstance(value, str) else f", got {describe(value)}"),
    )
    return None


def expect_bool(ck: Checker, path: str, value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    ck.add(path, f"expected true or false, got {describe(value)}")
    return None


def expect_int(ck: Checker, path: str, value: Any, minimum: int) -> int | None:
    # YAML booleans are Python ints; a `true` here is a mistake, not the number 1.
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return value
    got = str(value) if isinstance(value, int) and not isinstance(value, bool) else describe(value)
    ck.add(path, f"expected a whole number >= {minimum}, got {got}")
    return None


def expect_identifier(ck: Checker, path: str, value: Any, what: str) -> str | None:
    name = expect_str(ck, path, value)
    if name is not None and not IDENTIFIER.match(name):
        ck.add(
            path,
            f"{what} '{name}' must be an identifier (letters, digits and _, not starting with a digit)",
        )
        return None
    return name


def expect_readable_name(ck: Checker, path: str, value: Any, what: str) -> str | None:
    """An identifier that expressions read as a member (``steps.<name>``, ``vars.<name>``,
    ``record.<name>``): not one of CEL's reserved words."""
    name = expect_identifier(ck, path, value, what)
    if name in CEL_RESERVED:
        ck.add(path, f"{what} '{name}' is a reserved word in expressions "
                     f"({', '.join(CEL_RESERVED)}): choose another name")
        return None
    return name


def check_texts(ck: Checker, path: str, data: Mapping[str, Any], keys: Iterable[str]) -> None:
    for key in keys:
        if key in data:
            expect_str(ck, join(path, key), data[key])


def duration_ms(value: Any) -> int | None:
    """Milliseconds of a duration like ``30s``, ``10m``, ``4h``, ``2d`` (None if not one).

    A number of more than 18 digits counts as one more than :data:`MAX_DURATION_MS`
    (Python refuses to read one of thousands of digits)."""
    m = DURATION.match(value) if isinstance(value, str) else None
    if m is None:
        return None
    digits = m.group(1)
    return int(digits) * _UNIT_MS[m.group(2)] if len(digits) <= 18 else MAX_DURATION_MS + 1


def check_duration(ck: Checker, path: str, value: Any) -> int | None:
    """A well-formed duration of at most :data:`MAX_DURATION_DAYS` days; its milliseconds,
    or None (reported)."""
    ms = duration_ms(value)
    if ms is None:
        got = f"'{value}'" if isinstance(value, str) else describe(value)
        ck.add(path, f"expected a duration like 30s, 10m, 4h or 2d, got {got}")
    elif ms > MAX_DURATION_MS:
        ck.add(path, f"duration '{_short(value)}' is too long: at most {MAX_DURATION_DAYS}d "
                     "(100 years)")
        return None
    return ms


def check_flow(ck: Checker, path: str, value: Any, known_flows: Collection[str] | None) -> None:
    name = expect_str(ck, path, value)
    if name is not None and known_flows is not None and name not in known_flows:
        ck.add(path, f"unknown flow '{name}'{suggest(name, known_flows)}")


# --- fields (object types, forms, trigger input) -------------------------------------


@dataclass(frozen=True)
class FieldRules:
    types: tuple[str, ...]
    object_types: Collection[str]
    reserved: tuple[str, ...] = ()
    unknown_objects: bool = False  # others may be deployed: a ref to one is not checked


def check_field_name(ck: Checker, path: str, name: Any, rules: FieldRules) -> None:
    if expect_readable_name(ck, path, name, "field name") and name in rules.reserved:
        ck.add(
            path,
            f"'{name}' is a reserved field name (every record has {', '.join(RESERVED_FIELDS)})",
        )


def check_field(
    ck: Checker, path: str, spec: Any, rules: FieldRules, *, named: bool = False
) -> None:
    """One field spec ``{type, required, default, choices, object, label, description}``.

    ``named``: the spec carries its own ``name`` key (form fields) instead of being a
    mapping value keyed by the name (object fields, trigger input).
    """
    m = expect_mapping(ck, path, spec)
    if m is None:
        return
    check_keys(
        ck,
        path,
        m,
        FIELD_KEYS + (("name",) if named else ()),
        ("name", "type") if named else ("type",),
    )
    if named and "name" in m:
        check_field_name(ck, join(path, "name"), m["name"], rules)
    check_texts(ck, path, m, ("label", "description"))
    if "required" in m:
        expect_bool(ck, join(path, "required"), m["required"])
    ftype = m.get("type")
    if "type" in m and ftype not in rules.types:
        # Only forms leave out ref: a form cannot pick a record yet.
        message = (
            "a form field cannot be a ref"
            if ftype == "ref"
            else unknown("field type", ftype, rules.types)
        )
        ck.add(join(path, "type"), message)
        return
    if "type" in m:
        _check_field_extras(ck, path, m, str(ftype), rules)


def _check_field_extras(
    ck: Checker, path: str, m: Mapping[str, Any], ftype: str, rules: FieldRules
) -> None:
    choices = _check_choices(ck, path, m, ftype)
    if ftype == "ref":
        target = m.get("object")
        if "object" not in m:
            ck.add(join(path, "object"), "a ref field needs object: the object type it points to")
        elif expect_str(ck, join(path, "object"), target) and target not in rules.object_types \
                and not rules.unknown_objects:
            ck.add(
                join(path, "object"),
                f"unknown object type '{target}'{suggest(target, rules.object_types)}",
            )
    elif "object" in m:
        ck.add(join(path, "object"), "object only applies to ref fields")
    if "check" in m:
        if ftype != "ref":
            ck.add(join(path, "check"), "check only applies to ref fields")
        else:
            expect_bool(ck, join(path, "check"), m["check"])
    limit = DEFAULT_MAX_LENGTH.get(ftype)
    if "max_length" in m and _check_max_length(ck, join(path, "max_length"), m["max_length"],
                                                ftype):
        limit = m["max_length"]
    exact = _check_decimal_keys(ck, path, m, ftype)
    if "default" in m and m["default"] is not None:
        if ftype == "decimal" and exact is not None:
            _check_decimal_default(ck, join(path, "default"), m["default"], *exact)
        elif ftype != "decimal":
            _check_default(ck, join(path, "default"), m["default"], ftype, choices, limit)


def _check_decimal_keys(ck: Checker, path: str, m: Mapping[str, Any], ftype: str
                        ) -> tuple[int, int, str | None] | None:
    """``precision``, ``scale`` and ``rounding`` of a decimal field; the three as they
    apply (defaults filled in), or None when one is wrong."""
    keys = [k for k in ("precision", "scale", "rounding") if k in m]
    if ftype != "decimal":
        for k in keys:
            ck.add(join(path, k), f"{k} only applies to decimal fields")
        return None
    ok = True
    limits = {"precision": (1, decimals.MAX_PRECISION), "scale": (0, decimals.MAX_PRECISION)}
    for k, (low, high) in limits.items():
        v = m.get(k)
        if k in m and (isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high):
            ck.add(join(path, k), f"{k} must be a whole number from {low} to {high}, "
                                  f"got {_show(v)}")
            ok = False
    rounding = m.get("rounding")
    if "rounding" in m and rounding not in decimals.ROUNDINGS:
        ck.add(join(path, "rounding"),
               unknown("rounding", rounding, tuple(decimals.ROUNDINGS)))
        ok = False
    if not ok:
        return None
    precision, scale = decimals.limits(m.get("precision"), m.get("scale"))
    if scale > precision:
        ck.add(join(path, "scale"), f"scale {scale} is more than precision {precision} "
                                    "(the digits after the point are part of the precision)")
        return None
    return precision, scale, rounding


def _check_decimal_default(ck: Checker, path: str, value: Any, precision: int, scale: int,
                           rounding: str | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        ck.add(path, f"default {_show(value)} is not a valid decimal")
        return
    try:
        decimals.fit(value, precision, scale, rounding)
    except ValueError as exc:
        ck.add(path, f"default {_show(value)} is not a valid decimal: {exc}")


def _check_max_length(ck: Checker, path: str, value: Any, ftype: str) -> bool:
    if ftype not in LENGTH_TYPES:
        ck.add(path, f"max_length only applies to {', '.join(LENGTH_TYPES)} fields")
    elif isinstance(value, bool) or not isinstance(value, int) \
            or not 1 <= value <= MAX_LENGTH_LIMIT:
        ck.add(path, f"max_length must be a whole number from 1 to {MAX_LENGTH_LIMIT:,}, "
                     f"got {_show(value)}")
    else:
        return True
    return False


def _check_choices(ck: Checker, path: str, m: Mapping[str, Any], ftype: str) -> list[str] | None:
    cpath = join(path, "choices")
    if ftype != "choice":
        if "choices" in m:
            ck.add(cpath, "choices only apply to choice fields")
        return None
    value = m.get("choices")
    if not isinstance(value, list) or not value:
        ck.add(cpath, "a choice field needs a non-empty list of choices")
        return None
    seen: set[str] = set()
    for i, choice in enumerate(value):
        if expect_str(ck, item(cpath, i), choice) is None:
            return None
        if choice in seen:
            ck.add(item(cpath, i), f"duplicate choice '{choice}'")
        seen.add(choice)
    return list(value)


def _check_default(
    ck: Checker, path: str, value: Any, ftype: str, choices: list[str] | None,
    limit: int | None = None,
) -> None:
    """A default is a value of its field: what a record write would take for it (the
    field's type, range, one line, ``max_length``), since records get it unchecked."""
    if ftype == "choice":
        if choices is not None and value not in choices:
            ck.add(
                path, f"default {_show(value)} is not one of the choices{suggest(value, choices)}"
            )
        return
    if not _fits(value, ftype):
        ck.add(path, f"default {_show(value)} is not a valid {ftype}")
        return
    problem = _default_problem(value, ftype, limit)
    if problem:
        shown = "" if isinstance(value, dict | list) else f" {_show(value)}"
        ck.add(path, f"default{shown} {problem}")


def _default_problem(value: Any, ftype: str, limit: int | None) -> str | None:
    if ftype == "int" and not INT_MIN <= value <= INT_MAX:
        return (f"is out of range: a whole number is kept exact from {INT_MIN} to {INT_MAX} "
                "(use type decimal or text beyond that)")
    if ftype == "string" and "\n" in value:
        return "is not one line (use type text for several)"
    if ftype in ("string", "text") and limit is not None and len(value) > limit:
        return f"is too long: {len(value):,} characters, at most {limit:,} (max_length)"
    if ftype == "json":
        wide = wide_int(value)
        if wide is not None:
            return (f"holds {_short(wide)}, a whole number beyond 64 bits (from {INT_MIN} to "
                    f"{INT_MAX}; write wider ones as text)")
        size = len(_JSON_TEXT.encode(value))
        if limit is not None and size > limit:
            return f"is too long: {size:,} characters of JSON, at most {limit:,} (max_length)"
    return None


def _fits(value: Any, ftype: str) -> bool:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if ftype in ("string", "text", "ref"):
        return isinstance(value, str)
    if ftype == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if ftype == "decimal":
        return number
    if ftype == "bool":
        return isinstance(value, bool)
    if ftype in ("date", "datetime"):
        return isinstance(value, str) and _parses(value, ftype)
    return True  # json: any JSON value (what is not one is reported on the whole document)


# What a json field's size is measured in: its compact JSON text (records/fields.py).
_JSON_TEXT = _json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str)


def _short(value: Any, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else text[:width] + "…"


def wide_int(value: Any, depth: int = 0) -> int | None:
    """The first whole number beyond 64 bits in a JSON value (None: there is none)."""
    if isinstance(value, bool) or depth > 64:
        return None
    if isinstance(value, int):
        return None if INT_MIN <= value <= INT_MAX else value
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) \
        else ()
    for v in items:
        found = wide_int(v, depth + 1)
        if found is not None:
            return found
    return None


def check_values_fit(ck: Checker, path: str, value: Any) -> None:
    """A literal JSON value a run keeps (a variable's initial value): its whole numbers fit
    64 bits, as the stores and CEL keep them (what is not JSON at all is reported on the
    whole document)."""
    wide = wide_int(value)
    if wide is not None:
        ck.add(path, f"holds {_short(wide)}, a whole number beyond 64 bits (from {INT_MIN} to "
                     f"{INT_MAX}; write wider ones as text)")


def json_problem(value: Any) -> str | None:
    """Why a scalar YAML gave is no JSON value (a ``!!binary``, a ``!!timestamp``, ``.nan``,
    ``.inf``), or None. Lists and mappings are walked by the caller."""
    if value is None or isinstance(value, str | bool | int | list | dict):
        return None
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        shown = ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"
        return f"{shown} is not a number a JSON value can hold (write a finite number)"
    if isinstance(value, bytes):
        return ("a binary value (!!binary) is not a JSON value: definitions hold text, "
                "numbers, true/false, null, lists and mappings")
    if isinstance(value, _dt.date):  # datetime too
        return (f"a timestamp (!!timestamp) is not a JSON value: write it as text, "
                f"'{value.isoformat()}'")
    return f"a {type(value).__name__} is not a JSON value"


def _parses(text: str, ftype: str) -> bool:
    try:
        (_dt.date if ftype == "date" else _dt.datetime).fromisoformat(text)
    except ValueError:
        return False
    return True


# --- expressions and conditions -------------------------------------------------------


@dataclass(frozen=True)
class ChildTarget:
    """An orchestration as a child-run step that starts it sees it: its trigger and the
    input it takes (``inputs`` None: not known)."""

    trigger: str | None = None
    object: str | None = None
    inputs: frozenset[str] | None = None
    required: frozenset[str] = frozenset()

    @classmethod
    def of_document(cls, data: Mapping[str, Any]) -> ChildTarget:
        """From an orchestration's YAML (as written, maybe invalid: what is unclear is
        left unknown)."""
        trigger = data.get("trigger")
        if not isinstance(trigger, dict):
            return cls()
        spec = trigger.get("input", {})
        inputs = frozenset(spec) if isinstance(spec, dict) else None
        required = frozenset(k for k, v in spec.items() if isinstance(v, dict)
                             and v.get("required") is True and "default" not in v) \
            if isinstance(spec, dict) else frozenset()
        kind, obj = trigger.get("type"), trigger.get("object")
        return cls(kind if isinstance(kind, str) else None,
                   obj if isinstance(obj, str) else None, inputs, required)


@dataclass(frozen=True)
class Scope:
    """What the expressions of one orchestration may name.

    ``record_fields``/``inputs`` None means "not checkable" (an unknown object type, no
    declared input); ``has_record`` False means the run has no record at all.
    """

    steps: frozenset[str] = frozenset()
    variables: frozenset[str] = frozenset()
    has_record: bool = True
    record_fields: frozenset[str] | None = None
    inputs: frozenset[str] | None = None
    allow_old: bool = False
    known_flows: Collection[str] | None = None
    # Orchestrations a child-run step may name (None: not checkable, e.g. a stored
    # definition parsed again); ``item``/``index`` are bound (a ``for_each`` step's input).
    orchestrations: Mapping[str, ChildTarget] | None = None
    allow_item: bool = False
    object_types: Mapping[str, frozenset[str]] | None = None  # name -> field names
    # Object types beyond ``object_types`` may be deployed (``baton validate FILE`` outside
    # a project): a name outside it is not an error.
    unknown_objects: bool = False
    # The record's object type, and every object type's fields (name -> (type, the object
    # a ref names)): what ``record.account.name`` may follow. Empty: not checkable.
    record_object: str | None = None
    objects: Mapping[str, Mapping[str, tuple[str, str | None]]] = field(default_factory=dict)
    # Connection name -> its type ("http" | "mcp"), of this load and those deployed;
    # None: not checkable (a deployed orchestration re-read on its own).
    connections: Mapping[str, str] | None = None
    # Extra root names a step's own expressions may use (``response``, ``callback``…):
    # set by a step type for the keys it evaluates with more in scope.
    extra_roots: frozenset[str] = frozenset()
    allow_line: bool = False  # ``line`` is bound: a fulfillment's scenarios and plan steps


def check_expression(ck: Checker, path: str, source: str, scope: Scope) -> bool:
    """Report what is wrong with an ``=expression``; False when it does not compile."""
    try:
        compile_expression(source)
    except ExpressionError as exc:
        at = f" at column {exc.position}" if exc.position else ""
        ck.add(path, f"bad expression{at}: {_reason(exc.reason)}")
        return False
    if not scope.allow_item:
        for name in sorted(reads_variables(source) & set(ITEM_VARIABLES)):
            ck.add(path, f"'{name}' is only available in the input and record fields of an "
                         "orchestration step with for_each")
    for root in sorted(referenced_roots(source) & STEP_ROOTS.keys() - scope.extra_roots):
        ck.add(path, f"'{root}' is only available in {STEP_ROOTS[root]}")
    reported: set[tuple[str, str]] = set()
    for var, member in referenced_names(source):
        message = _reference_problem(var, member, scope)
        if message and (var, member) not in reported:
            reported.add((var, member))
            ck.add(path, message)
    for var, members in member_chains(source):
        message = _navigation_problem(var, members, scope)
        if message and (var, ".".join(members)) not in reported:
            reported.add((var, ".".join(members)))
            ck.add(path, message)
    if scope.steps is not None and any(var == "steps" and key is None
                                       for var, key in indexed_names(source)):
        # A step read by a computed name is never checked, and waits for ever at run time
        # when the name is wrong: name the step.
        ck.add(path, "steps[...] needs the step's name as a quoted string "
                     "(a computed step name cannot be checked)")
    return True


def _reason(reason: str) -> str:
    reason = reason.replace(" (in container '')", "")
    m = _UNDECLARED.match(reason)
    return reason + suggest(m.group(1), VARIABLES) if m else reason


def _reference_problem(var: str, member: str, scope: Scope) -> str | None:
    if var == "line":
        return None if scope.allow_line else \
            "'line' is not available in an orchestration (only in fulfillment scenarios)"
    if var == "old" and not scope.allow_old:
        return "'old' is only available in trigger.when of a record trigger on update"
    if var in ("record", "old"):
        return _record_problem(member, scope)
    known = {"steps": scope.steps, "vars": scope.variables, "input": scope.inputs}[var]
    if known is None or member in known:
        return None
    if var == "input" and not known:
        return f"unknown input '{member}': the trigger declares no input"
    what = {"steps": "step", "vars": "variable", "input": "input"}[var]
    return f"unknown {what} '{member}'{suggest(member, known)}"


def _record_problem(member: str, scope: Scope) -> str | None:
    if not scope.has_record:
        return "this orchestration has no record (its trigger names no object)"
    fields = scope.record_fields
    if fields is None or member in fields:
        return None
    return f"unknown record field '{member}'{suggest(member, fields)}"


def _navigation_problem(var: str, members: tuple[str, ...], scope: Scope) -> str | None:
    """``record.account.owner.email``: each member after the first is a field of the
    object type the ref before it names, at most MAX_HOPS refs in a row; a field that is
    not a ref (nor ``json``, whose value has members of its own) has no fields."""
    if len(members) < 2 or not scope.has_record or scope.record_object is None:
        return None
    fields = scope.objects.get(scope.record_object)
    if fields is None or members[0] not in fields:
        return None  # the record's type or first field is unknown: reported already
    written = f"{var}.{'.'.join(members)}"
    otype = scope.record_object
    for i, name in enumerate(members[:-1]):
        ftype, target = fields[name]
        at = f"{var}.{'.'.join(members[:i + 1])}"
        if ftype == "json":
            return None  # members of a json value: not checked
        if ftype != "ref":
            return (f"{at} is a {ftype} field of {otype}, not a ref: it has no field "
                    f"'{members[i + 1]}' ({written})")
        if var == "old":
            return (f"{written}: related records are read through 'record' as they are now "
                    f"(old.{name} is the id the field had)")
        if i + 1 > MAX_HOPS:  # every member before this one was a ref followed
            return (f"{written} follows more than {MAX_HOPS} ref fields: expressions read "
                    f"related records at most {MAX_HOPS} refs away")
        if target is None or target not in scope.objects:
            return None  # an unknown target type is reported on the object type
        otype, fields = target, scope.objects[target]
        nxt = members[i + 1]
        if nxt not in fields:
            return f"unknown field '{nxt}' of {otype} ({written}){suggest(nxt, fields)}"
    return None


def check_condition(ck: Checker, path: str, value: Any, scope: Scope) -> None:
    """``=expression``, ``true``/``false``, or ``{flow: name}`` (an evaluation flow)."""
    if isinstance(value, bool):
        return
    if isinstance(value, str):
        if not is_expression(value):
            ck.add(path, CONDITION_MESSAGE)
        elif check_expression(ck, path, value, scope):
            gives = _non_bool_result(value)
            if gives is not None:
                ck.add(path, f"a condition must give true or false, and this gives {gives}")
        return
    if isinstance(value, dict):
        if check_keys(ck, path, value, ("flow", "input"), ("flow",)) and "flow" in value:
            check_flow(ck, join(path, "flow"), value["flow"], scope.known_flows)
        if "input" in value:
            check_input(ck, join(path, "input"), value["input"], scope)
        return
    ck.add(path, f"{CONDITION_MESSAGE}, got {describe(value)}")


# What an expression's static type says it gives (cel-expr-python's names), for messages.
_RESULT_WORDS = {"STRING": "a string", "INT": "a number", "UINT": "a number",
                 "DOUBLE": "a number", "BYTES": "bytes", "NULL": "null", "LIST": "a list",
                 "MAP": "a map", "TIMESTAMP": "a timestamp", "DURATION": "a duration",
                 "TYPE": "a type"}


def _non_bool_result(source: str) -> str | None:
    """What a condition that compiles gives when its static type is known and not a bool
    (``="yes"``: a string), or None (a bool, or only known when evaluated: ``=vars.ok``)."""
    kind = str(compile_expression(source).return_type())
    if kind in ("BOOL", "DYN"):
        return None
    head = kind.split("<", 1)[0]
    return _RESULT_WORDS.get(head, f"a value of type {kind}")


def check_input(ck: Checker, path: str, value: Any, scope: Scope) -> None:
    """``input:`` of a step or of an evaluation flow: names (identifiers) mapped to literals
    or ``=expressions`` checked like every other expression of the orchestration."""
    spec = expect_mapping(ck, path, value)
    if spec is None:
        return
    if not spec:
        ck.add(path, "input is empty: give at least one name, or leave input out")
    for name, v in spec.items():
        if not isinstance(name, str) or not IDENTIFIER.match(name):
            ck.add(join(path, str(name)), f"input name {name!r} must be a name: letters, "
                                          "digits and _, not starting with a digit")
            continue
        if isinstance(v, str) and is_expression(v):
            check_expression(ck, join(path, name), v, scope)


def with_own_input(scope: Scope, spec: Any) -> Scope:
    """The scope of a step's other expressions when the step has an ``input:`` of its own
    (a callout, an mcp step): its names join the run's input, over which they are merged
    at run time. The ``input:`` values themselves see the run's input only."""
    if scope.inputs is None or not isinstance(spec, Mapping) or not spec:
        return scope
    return replace(scope, inputs=scope.inputs | {n for n in spec if isinstance(n, str)})


def check_value(ck: Checker, path: str, value: Any, scope: Scope) -> str | None:
    """A string that is a literal name or an ``=expression`` (assignees, run_as)."""
    text = expect_str(ck, path, value)
    if text is not None and is_expression(text):
        check_expression(ck, path, text, scope)
    return text


# --- step policies: shape only (acted on by later versions) -------------------------------

RETRY_KEYS = ("max", "backoff", "initial", "max_delay", "jitter")
BACKOFFS = ("fixed", "exponential")
SLA_KEYS = ("duration", "jeopardy", "calendar", "on_jeopardy", "on_overdue")
SLA_ACTION_KEYS = ("reassign", "routing", "exclude_assignee", "flow", "notify")


def check_policies(ck: Checker, path: str, m: Mapping[str, Any],
                   known_flows: Collection[str] | None = None) -> None:
    """``timeout``, ``sla`` and ``retry`` of a step. ``known_flows``: the registered flows an
    SLA action's ``flow:`` may name (as every other flow name of a definition is checked);
    None: not checked (a file validated alone)."""
    if "timeout" in m:
        check_duration(ck, join(path, "timeout"), m["timeout"])
    if "sla" in m:
        _check_sla(ck, join(path, "sla"), m["sla"], known_flows)
    if "retry" in m:
        _check_retry(ck, join(path, "retry"), m["retry"])


def _check_sla(ck: Checker, path: str, value: Any, known_flows: Collection[str] | None) -> None:
    sla = expect_mapping(ck, path, value)
    if sla is None:
        return
    check_keys(ck, path, sla, SLA_KEYS, ("duration",))
    duration = (
        check_duration(ck, join(path, "duration"), sla["duration"]) if "duration" in sla else None
    )
    jeopardy = (
        check_duration(ck, join(path, "jeopardy"), sla["jeopardy"]) if "jeopardy" in sla else None
    )
    if "calendar" in sla:
        expect_identifier(ck, join(path, "calendar"), sla["calendar"], "calendar name")
    for key in ("on_jeopardy", "on_overdue"):
        if key in sla:
            _check_sla_action(ck, join(path, key), sla[key], known_flows)
    if "on_jeopardy" in sla and "jeopardy" not in sla:
        ck.add(join(path, "on_jeopardy"),
               "on_jeopardy is what is done when the step is in jeopardy, `jeopardy` before it "
               "is due: without a jeopardy it never is, and the action would never run; give "
               "one (e.g. jeopardy: 1h) or leave on_jeopardy out")
    if jeopardy == 0:  # (jeopardy and overdue at one instant: both actions run, no warning)
        ck.add(join(path, "jeopardy"),
               f"jeopardy ({sla['jeopardy']}) is the time before due at which the step is in "
               "jeopardy: 0 would be the due time itself, when it is overdue; give a longer "
               "one (e.g. 1h) or leave jeopardy out")
    elif duration is not None and jeopardy is not None and jeopardy >= duration:
        ck.add(
            join(path, "jeopardy"),
            f"jeopardy ({sla['jeopardy']}) must be shorter than duration ({sla['duration']})",
        )


def _check_sla_action(ck: Checker, path: str, value: Any,
                      known_flows: Collection[str] | None) -> None:
    """``{reassign: queue:NAME | user:NAME | group:NAME, flow: name, notify: [who, ...]}``
    (``who``: an e-mail address, ``assignee`` or a name of ``BATON_NOTIFY_ADDRESSES``; the
    escalation flow one of ``known_flows``), or ``routing: RULE`` instead of ``reassign``
    (the item is routed again with that rule; ``exclude_assignee: true`` keeps its assignee
    out)."""
    action = expect_mapping(ck, path, value)
    if action is None:
        return
    check_keys(ck, path, action, SLA_ACTION_KEYS)
    if "routing" in action:
        expect_identifier(ck, join(path, "routing"), action["routing"], "routing rule name")
        if "reassign" in action:
            ck.add(join(path, "routing"), "give either reassign or routing, not both")
    if "exclude_assignee" in action:
        expect_bool(ck, join(path, "exclude_assignee"), action["exclude_assignee"])
        if "routing" not in action:
            ck.add(join(path, "exclude_assignee"), "exclude_assignee needs routing: RULE")
    if "reassign" in action:
        to = expect_str(ck, join(path, "reassign"), action["reassign"])
        kind, _, name = (to or "").partition(":")
        if to is not None and (kind not in ("user", "group", "queue") or not name):
            ck.add(join(path, "reassign"), f"expected user:NAME, group:NAME or queue:NAME, got '{to}'")
    if "flow" in action:
        check_flow(ck, join(path, "flow"), action["flow"], known_flows)
    if "notify" in action:
        who = action["notify"]
        if not isinstance(who, (str, list)) or (
                isinstance(who, list) and not all(isinstance(w, str) and w for w in who)):
            ck.add(join(path, "notify"), "expected a name or address, or a list of them, "
                                         f"got {describe(who)}")


def _check_retry(ck: Checker, path: str, value: Any) -> None:
    retry = expect_mapping(ck, path, value)
    if retry is None:
        return
    check_keys(ck, path, retry, RETRY_KEYS)
    if "max" in retry:
        expect_int(ck, join(path, "max"), retry["max"], 0)
    if "backoff" in retry and retry["backoff"] not in BACKOFFS:
        ck.add(join(path, "backoff"), unknown("backoff", retry["backoff"], BACKOFFS))
    for key in ("initial", "max_delay"):
        if key in retry:
            check_duration(ck, join(path, key), retry[key])
    if "jitter" in retry:
        expect_bool(ck, join(path, "jitter"), retry["jitter"])


# --- graphs ------------------------------------------------------------------------------


def find_cycles(graph: Mapping[str, list[str]], order: list[str]) -> list[list[str]]:
    """One cycle per back edge found by a depth-first walk in file order, each reported once."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    found: list[list[str]] = []
    seen: set[frozenset[str]] = set()

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        trail.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :] + [nxt]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    found.append(cycle)
            elif nxt not in state:
                visit(nxt, trail)
        trail.pop()
        state[node] = 2

    for node in order:
        if node not in state:
            visit(node, [])
    return found
