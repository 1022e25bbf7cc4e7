"""CEL wrapper: compile once, evaluate JSON-shaped data, errors as our exceptions."""

from __future__ import annotations

import ast
import datetime as _dt
import decimal
import re
from collections.abc import Iterable, Mapping
from functools import cache, lru_cache
from typing import Any

import orjson

from baton import decimals
from baton.errors import ExpressionError

MAX_SOURCE = 4096
"""Longest expression source accepted (characters, without the ``=`` prefix)."""

VARIABLES: tuple[str, ...] = ("record", "old", "input", "vars", "steps", "line", "now",
                              "item", "index", "response", "callback", "result")
"""Names every expression may read (DESIGN §2). ``item`` and ``index`` (the element of a
``for_each`` list and its position) are only bound where a step iterates over one;
validation refuses them elsewhere (:data:`ITEM_VARIABLES`). ``response``, ``callback``
and ``result`` exist only where a step type binds them (a callout's output and request, an
mcp step's output); validation says where."""

ITEM_VARIABLES = ("item", "index")
"""The names only an orchestration step's ``for_each`` binds (``steps/orchestration.py``)."""

_NUMERIC_KINDS = ("int", "double", "string", "map")  # the map: a decimal too long for a double


@cache
def _cel() -> Any:
    """The CEL runtime (cel-expr-python and protobuf), imported on first use: a process
    that never compiles an expression (a CLI read command) does not pay for it."""
    from cel_expr_python import cel

    return cel


def _compare(a: Any, b: Any) -> int:
    x, y = decimals.from_cel(a, "decimal.compare"), decimals.from_cel(b, "decimal.compare")
    return (x > y) - (x < y)


def _scaled(a: Any, scale: int) -> int:
    if not 0 <= scale <= decimals.MAX_PRECISION:
        raise ValueError(f"decimal.scaled: the scale must be from 0 to {decimals.MAX_PRECISION}, "
                         f"got {scale}")
    d = decimals.from_cel(a, "decimal.scaled")
    if d.adjusted() > 18:
        raise ValueError(f"decimal.scaled: {decimals.canonical(d)} is beyond a 64-bit whole "
                         "number; compare with decimal.compare")
    try:
        shifted = d.scaleb(scale, context=_EXACT)
    except decimal.DecimalException:
        shifted = decimal.Decimal("0.5")  # too many digits to be whole at this scale
    if shifted != shifted.to_integral_value():
        raise ValueError(f"decimal.scaled: {decimals.canonical(d)} has more than {scale} "
                         "decimal places")
    n = int(shifted)
    if not -(2**63) <= n < 2**63:
        raise ValueError(f"decimal.scaled: {decimals.canonical(d)} at scale {scale} is beyond "
                         "a 64-bit whole number; compare with decimal.compare")
    return n


def _arith(name: str, op: Any) -> Any:
    def impl(a: Any, b: Any) -> str:
        x, y = decimals.from_cel(a, f"decimal.{name}"), decimals.from_cel(b, f"decimal.{name}")
        try:
            return decimals.canonical(op(x, y))
        except decimal.DecimalException as exc:
            raise ValueError(f"decimal.{name}: {type(exc).__name__}") from None
    return impl


_EXACT = decimal.Context(prec=2 * decimals.MAX_PRECISION, Emax=999_999, Emin=-999_999,
                         traps=[decimal.Inexact, decimal.Overflow, decimal.InvalidOperation])


def _decimal_functions() -> list[Any]:
    """``decimal.compare(a, b)`` (-1, 0, 1), ``decimal.scaled(a, scale)`` (a whole number),
    ``decimal.add/sub/mul(a, b)`` (the exact result, as a decimal string): exact over a
    decimal field's value (a double or, beyond 15 significant digits, a string), a numeric
    string, an int, or a double that stands for one decimal. Overloads per argument type,
    since cel-expr-python dispatches on the runtime types."""
    cel = _cel()
    ty = cel.Type
    numeric = {"int": ty.INT, "double": ty.DOUBLE, "string": ty.STRING,
            "map": ty.Map(ty.STRING, ty.DYN)}
    pairs = [(x, y) for x in _NUMERIC_KINDS for y in _NUMERIC_KINDS]
    binary: dict[str, tuple[Any, Any]] = {
        "compare": (ty.INT, _compare),
        "add": (ty.STRING, _arith("add", lambda x, y: _EXACT.add(x, y))),
        "sub": (ty.STRING, _arith("sub", lambda x, y: _EXACT.subtract(x, y))),
        "mul": (ty.STRING, _arith("mul", lambda x, y: _EXACT.multiply(x, y))),
    }
    decls = [cel.FunctionDecl(f"decimal.{name}", [
        cel.Overload(f"decimal_{name}_{x}_{y}", ret, [numeric[x], numeric[y]], impl=impl)
        for x, y in pairs]) for name, (ret, impl) in binary.items()]
    decls.append(cel.FunctionDecl("decimal.scaled", [
        cel.Overload(f"decimal_scaled_{x}", ty.INT, [t, ty.INT], impl=_scaled)
        for x, t in numeric.items()]))
    return decls


@cache
def _env() -> Any:
    """The one CEL environment: Baton's variables and the decimal functions (built once)."""
    cel = _cel()
    data = cel.Type.Map(cel.Type.STRING, cel.Type.DYN)
    return cel.NewEnv(
        functions=_decimal_functions(),
        variables={"record": data, "old": data, "input": data, "vars": data, "steps": data,
                   "line": data, "now": cel.Type.STRING,
                   "item": cel.Type.DYN, "index": cel.Type.DYN,
                   "response": data, "callback": data, "result": data},
    )


_POS = re.compile(r"<input>:(\d+):(\d+): (.*?)(?:\n|$)")
# Reading something that is not there yet: a missing map key, or an empty (null) value
# used where a value is needed. Conditions treat these as "false for now" (DESIGN §2.1).
_MISSING_MARKERS = ("Key not found in map", "No such key", "null_type")


class Missing(ExpressionError):
    """The expression read a value that does not exist yet (or is empty)."""


def is_expression(value: object) -> bool:
    return isinstance(value, str) and value.startswith("=")


def _strip(source: str) -> str:
    return source.removeprefix("=")


@lru_cache(maxsize=4096)
def _compile(body: str) -> Any:
    try:
        return _env().compile(body)
    except RuntimeError as exc:  # cel-expr-python reports compile problems as RuntimeError
        text = str(exc)
        m = _POS.search(text)
        if m:
            raise ExpressionError(body, m.group(3).strip(), int(m.group(2))) from None
        raise ExpressionError(body, text.split("\n")[0]) from None


def compile_expression(source: str) -> Any:
    """Compile ``source`` (with or without the ``=`` prefix); cached per source text."""
    body = _strip(source)
    if len(body) > MAX_SOURCE:
        raise ExpressionError(body[:60] + "…", f"longer than {MAX_SOURCE} characters")
    if not body.strip():
        raise ExpressionError(body, "empty expression")
    return _compile(body)


def to_json_shape(value: Any) -> Any:
    """Convert Python data to what CEL may see: dict/list/str/int/float/bool/None."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_json_shape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_shape(v) for v in value]
    if isinstance(value, _dt.datetime):
        return value.isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return decimals.cel_view(value)
    raise ExpressionError("", f"value of type {type(value).__name__} cannot be passed to an expression")


_EMPTY: dict[str, Any] = {name: ({} if name != "now" else "") for name in VARIABLES}
_EMPTY["index"] = None  # (no for_each: reading it is a missing value)
_USE = re.compile(r"(?<![\w.])(" + "|".join(VARIABLES)
                  + r")\b((?:\s*\.\s*[A-Za-z_]\w*\b|\s*\[\s*\"[0-9]+\"\s*\])*)(\s*[(\[])?")
# A member of a chain: ``.name``, or ``["literal"]`` (its literal's number, strings masked).
_SEGMENT_READ = re.compile(r"\.\s*([A-Za-z_]\w*)|\[\s*\"([0-9]+)\"")

# What an expression reads of a variable: the members it reads by ``.key``, each with what
# it reads of that member in turn (None: all of it).
_Paths = tuple[tuple[str, "_Paths | None"], ...]


@lru_cache(maxsize=4096)
def _reads(body: str) -> tuple[tuple[str, _Paths | None], ...]:
    """The variables an expression reads: ``(name, paths)``, where ``paths`` are the
    member paths it reads with ``name.key.key`` or ``name["key"]`` only
    (``steps.triage.output.resolution``, ``steps["triage"].output.resolution``: ``triage``,
    of it ``output``, of that ``resolution``), or None when it uses the value in any other
    way (``size(record)``, ``steps[vars.k]``, ``record.exists(...)``): then all
    of it is bound. A member used in any other way than by ``.key`` is bound whole
    (``size(steps.triage.output)``, ``record.tags[0]``, ``record.name.startsWith("A")``:
    a method's name is not a member). String literals are ignored."""
    tree: dict[str, dict[str, Any] | None] = {}
    literals: list[str] = []

    def mask(m: re.Match[str]) -> str:  # each string literal as its number: "0", "1"...
        literals.append(unquote(m.group(0)))
        return f'"{len(literals) - 1}"'

    for m in _USE.finditer(_STRING.sub(mask, body)):
        name, chain, after = m.group(1), m.group(2), m.group(3)
        path = [ident or literals[int(n)] for ident, n in _SEGMENT_READ.findall(chain)] \
            if chain else []
        if path and after is not None and after.strip() == "(":
            path.pop()  # a method call on the value before it
        if not path or name == "now":
            tree[name] = None
            continue
        node = tree.get(name, {})
        if node is None:
            continue  # already read whole
        tree[name] = node
        for key in path[:-1]:
            child = node.get(key, {})
            if child is None:
                break  # already read whole
            node[key] = child
            node = child
        else:
            node[path[-1]] = None  # (all of the member it ends at)
    return tuple((n, _frozen(t) if t is not None else None) for n, t in tree.items())


def _frozen(tree: dict[str, Any]) -> _Paths:
    return tuple((k, _frozen(v) if v is not None else None) for k, v in tree.items())


def _pick(value: Mapping[str, Any], paths: _Paths) -> tuple[dict[str, Any], bool]:
    """The members ``paths`` reads of a mapping (one read each), as CEL sees them, and
    whether they are all exact JSON (:func:`_exact_json`)."""
    picked: dict[str, Any] = {}
    exact = True
    for m, sub in paths:
        try:
            v = value[m]
        except KeyError:
            continue  # (not there: reading it is a missing value, as with all of it bound)
        if type(v) in _SCALARS:
            picked[m] = v
            continue
        if sub is not None and (type(v) is dict or isinstance(v, Mapping)):
            v, ok = _pick(v, sub)
        else:
            v = _cel_data(v)
            ok = _exact_json(v)
        picked[m] = v
        exact = exact and ok
    return picked, exact


_Reads = tuple[tuple[str, _Paths | None], ...]
_PREPARED: dict[str, tuple[Any, _Reads, bool]] = {}


def _prepared(source: str) -> tuple[Any, _Reads, bool]:
    """The compiled expression, what it reads and whether its results may be memoized
    (it does not read ``now``, which differs at every call), by source text: one lookup."""
    hit = _PREPARED.get(source)
    if hit is None:
        reads = _reads(_strip(source))
        hit = (compile_expression(source), reads, all(n != "now" for n, _ in reads))
        if len(_PREPARED) < 4096:
            _PREPARED[source] = hit
    return hit


# Results by (source, the JSON of what was bound): CEL is a pure function of the values an
# expression is given (no clock, no I/O; the decimal functions are pure too), and the same
# few expressions meet the same few values again and again (``"tier" +
# string(vars.level)`` at every work item). Kept only for small inputs of exact JSON types
# (whose JSON tells them apart: see _exact_json) and for immutable results; cleared when full.
_MEMO: dict[tuple[str, bytes], Any] = {}
_MEMO_MAX = 4096
_MEMO_INPUT = 512  # bytes of JSON: larger inputs (a whole record) are not kept
_NO = object()


def evaluate(source: str, data: Mapping[str, Any]) -> Any:
    """Evaluate ``source`` against ``data`` (keys from :data:`VARIABLES`).

    Missing variables are bound to empty maps, so ``record.x`` without a record is
    :class:`Missing` rather than a crash. Raises :class:`Missing` or
    :class:`ExpressionError`.
    """
    expr, reads, exact = _prepared(source)
    bound: dict[str, Any] = {}
    # ``exact``: still memoizable, every value bound so far exact JSON (_exact_json): the
    # plain members tested as they are bound, only the rest walked.
    for name, members in reads:  # only what it reads: converting values to CEL costs
        # One read of each name and member: ``data`` and its values may be lazy views (the
        # engine's scope and steps) that build what they return on every read, so no
        # ``in`` test before the read (a Mapping's ``__contains__`` reads it too).
        try:
            value = data[name]
        except KeyError:
            bound[name] = _EMPTY[name]
            continue
        mapping = type(value) is dict or isinstance(value, Mapping)  # (dict: no ABC check)
        if members is not None and mapping:
            # Only the members it reads (steps.triage, record.subject), and of them only
            # what it reads (steps.triage.output.resolution), not every step's output or
            # the whole record.
            value, ok = _pick(value, members)
            exact = exact and ok
        else:
            if mapping:  # (not a dict: a lazy view, the engine's steps)
                value = _cel_data(value if type(value) is dict else {k: value[k] for k in value})
            exact = exact and _exact_json(value)
        bound[name] = value
    key: tuple[str, bytes] | None = None
    if exact:
        try:
            encoded = orjson.dumps(bound)
        except TypeError:  # an int beyond 64 bits, a string that is not UTF-8
            encoded = b""
        if 0 < len(encoded) <= _MEMO_INPUT:
            key = (source, encoded)
            hit = _MEMO.get(key, _NO)
            if hit is not _NO:
                return hit
    result = _eval(expr, source, bound)
    if result.type() != _error_type():
        plain = result.plain_value()
        if key is not None and type(plain) in _PLAIN:  # (immutable: safe to hand out again)
            if len(_MEMO) >= _MEMO_MAX:
                _MEMO.clear()
            _MEMO[key] = plain
        return plain
    if "found in Activation" in str(result.value()):
        # A read _reads() did not see: evaluate again with every variable bound.
        result = _eval(expr, source, {**_EMPTY, **{k: _cel_data(dict(v) if isinstance(v, Mapping)
                                                                else v)
                                                   for k, v in data.items()}})
        if result.type() != _error_type():
            return result.plain_value()
    reason = str(result.value())
    body = _strip(source)
    if any(marker in reason for marker in _MISSING_MARKERS):
        raise Missing(body, reason)
    if "No matching overloads" in reason and "map" in reason and _has_long_decimal(bound):
        reason += (" (a decimal of more than 15 significant digits is not a double in "
                   "expressions, since a double would round it: compare it exactly with "
                   "decimal.compare(a, b) or decimal.scaled(a, scale))")
    raise ExpressionError(body, reason)


# Values bound as they are, tested by exact type (no call apiece): what most members are.
_PLAIN = frozenset({str, int, float, bool, type(None)})
_SCALARS = frozenset({str, int, bool, type(None)})  # (a float: only when finite)


def _exact_json(value: Any) -> bool:
    """Whether ``value`` is JSON data of the exact built-in types, floats finite: data whose
    JSON (orjson's) no other value shares. orjson writes NaN as null, an enum or a UUID as
    its value, a tuple as a list, a subclass as its base: such data is not memoized, since
    CEL may see it otherwise."""
    t = type(value)
    if t is dict:
        for k, v in value.items():
            if type(k) is not str or (type(v) not in _SCALARS and not _exact_json(v)):
                return False
        return True
    if t is list:
        return all(type(v) in _SCALARS or _exact_json(v) for v in value)
    if t is float:
        return bool(value - value == 0.0)  # (inf - inf and NaN - NaN are NaN)
    return t in _SCALARS


@cache
def _error_type() -> Any:
    """CEL's error type (what a failed evaluation's result is), looked up once."""
    return _cel().Type.ERROR


def _cel_data(value: Any) -> Any:
    """``value`` with every Decimal as CEL sees it (:func:`baton.decimals.cel_view`); JSON
    data comes back as it is (the common case costs one type check per value)."""
    if type(value) is dict:
        for v in value.values():  # (plain values, the common case: no call apiece)
            if type(v) not in _PLAIN:
                return {k: v if type(v) in _PLAIN else _cel_data(v) for k, v in value.items()}
        return value
    if isinstance(value, decimal.Decimal):
        return decimals.cel_view(value)
    if isinstance(value, dict):
        if any(isinstance(v, _CONVERTED) for v in value.values()):
            return {k: _cel_data(v) for k, v in value.items()}
        return value
    if isinstance(value, list) and any(isinstance(v, _CONVERTED) for v in value):
        return [_cel_data(v) for v in value]
    return value


_CONVERTED = (decimal.Decimal, dict, list)  # (a tuple: ``A | B`` made a union per call)


def _has_long_decimal(bound: Mapping[str, Any]) -> bool:
    """Whether a decimal too long for a double was bound (as its map): the likely cause of
    a failed comparison."""
    def walk(v: Any) -> bool:
        if isinstance(v, dict):
            return (len(v) == 1 and isinstance(v.get(decimals.CEL_KEY), str)) \
                or any(walk(x) for x in v.values())
        if isinstance(v, list):
            return any(walk(x) for x in v)
        return False
    return walk(bound)


def _eval(expr: Any, source: str, bound: dict[str, Any]) -> Any:
    """``expr.eval`` with the runtime's own refusals as :class:`ExpressionError`.

    cel-expr-python raises a plain ``RuntimeError`` when an evaluation exhausts CEL's
    iteration budget (nested comprehensions) or meets a value it cannot convert; left
    alone that was a 500 from any write whose trigger condition did it.
    """
    try:
        return expr.eval(data=bound)
    except RuntimeError as exc:
        reason = str(exc).split("\n")[0].removeprefix("INTERNAL: ").removesuffix(" [INTERNAL]")
        if "budget" in reason:
            reason = f"too costly to evaluate ({reason}): CEL bounds every evaluation"
        raise ExpressionError(_strip(source), reason) from None


def evaluate_condition(source: str | bool, data: Mapping[str, Any]) -> bool:
    """Evaluate a condition: ``True``/``False``; a missing value is ``False`` for now.

    A result that is not a boolean is an :class:`ExpressionError`.
    """
    if isinstance(source, bool):
        return source
    try:
        value = evaluate(source, data)
    except Missing:
        return False
    if not isinstance(value, bool):
        raise ExpressionError(_strip(source), f"a condition must be true or false, got {value!r}")
    return value


def resolve(value: Any, data: Mapping[str, Any]) -> Any:
    """A literal stays as it is; an ``=expression`` is evaluated."""
    if is_expression(value):
        return evaluate(value, data)
    return value


_NAME_PATH = re.compile(r"(?<![\w.\"'])(record|old|steps|vars|input|line)\.([A-Za-z_]\w*)")
_STRING = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'")


_INDEXED = re.compile(r"(?<![\w.\"'])(record|old|steps|vars|input|line)\s*\[\s*")
_LITERAL_KEY = re.compile(r"(\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*')\s*\]")


def referenced_roots(source: str) -> frozenset[str]:
    """The variables (:data:`VARIABLES`) an expression reads at all."""
    return frozenset(name for name, _ in _reads(_strip(source)))


def reads_variables(source: str) -> frozenset[str]:
    """The top-level names an expression reads (``record``, ``item``…); strings ignored."""
    return frozenset(name for name, _members in _reads(_strip(source)))


def referenced_names(source: str) -> Iterable[tuple[str, str]]:
    """``(variable, member)`` pairs the expression reads, e.g. ``("steps", "triage")``,
    whether written ``steps.triage`` or ``steps["triage"]``.

    Used by validation to report unknown fields and steps; text inside string literals is
    not a reference.
    """
    body = _STRING.sub('""', _strip(source))
    for m in _NAME_PATH.finditer(body):
        yield m.group(1), m.group(2)
    for var, key in indexed_names(source):
        if key is not None:
            yield var, key


_CHAIN = re.compile(r"(?<![\w.\"'])(record|old)((?:\s*\.\s*[A-Za-z_]\w*)+)(\s*\()?")
_SEGMENT = re.compile(r"[A-Za-z_]\w*")


def member_chains(source: str) -> Iterable[tuple[str, tuple[str, ...]]]:
    """``(variable, members)`` for each dotted read of ``record`` or ``old``:
    ``record.account.owner.email`` gives ``("record", ("account", "owner", "email"))``. A
    method call's name is not a member (``record.name.startsWith("A")`` reads
    ``("name",)``); text inside string literals is not a read."""
    body = _STRING.sub('""', _strip(source))
    for m in _CHAIN.finditer(body):
        members = tuple(_SEGMENT.findall(m.group(2)))
        if m.group(3) is not None:
            members = members[:-1]
        if members:
            yield m.group(1), members


def indexed_names(source: str) -> Iterable[tuple[str, str | None]]:
    """``(variable, key)`` for each ``var[...]`` the expression reads: the key when it is a
    string literal (``steps["43b3…"]``), ``None`` when it is computed (``steps[vars.k]``)."""
    text = _strip(source)
    strings = [m.span() for m in _STRING.finditer(text)]
    for m in _INDEXED.finditer(text):
        if any(a <= m.start() < b for a, b in strings):
            continue  # inside a string literal: text, not a reference
        key = _LITERAL_KEY.match(text, m.end())
        if key is None:
            yield m.group(1), None
        else:
            yield m.group(1), unquote(key.group(1))


def unquote(literal: str) -> str:
    """A CEL string literal's text (its escapes are Python's, for what a name holds)."""
    try:
        value = ast.literal_eval(literal)
    except (ValueError, SyntaxError):
        return literal[1:-1]
    return value if isinstance(value, str) else literal[1:-1]
