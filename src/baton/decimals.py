"""Exact ``decimal`` values: parse, fit to a field's precision and scale, and show.

A ``decimal`` field holds a :class:`decimal.Decimal` with at most ``precision`` digits,
``scale`` of them after the point. It is stored (record data, run input, step output,
audit events) as its canonical string, ``"19.90"``: exactly ``scale`` places, no
exponent, no ``-0``. A string rather than a scaled integer because it means the same
thing without its definition (a later version of the object type may change the scale;
``1990`` would silently become 19.90 or 1.990), reads the same in SQL, exports and the API,
and JSON readers (orjson, JavaScript) keep it exact whatever its size.

Pure: imported by definitions (checking defaults), records (coercion), expressions (the CEL
view) and the web and CLI edges.
"""

from __future__ import annotations

import decimal
import math
import re
from typing import Any

DEFAULT_PRECISION = 18
"""Digits a ``decimal`` field holds unless it says ``precision``: DECIMAL(18, 2), which a
signed 64-bit scaled integer also holds."""
DEFAULT_SCALE = 2
"""Digits after the point unless the field says ``scale`` (money)."""
MAX_PRECISION = 38
ROUNDINGS: dict[str, str] = {
    "half_even": decimal.ROUND_HALF_EVEN,
    "half_up": decimal.ROUND_HALF_UP,
    "half_down": decimal.ROUND_HALF_DOWN,
    "down": decimal.ROUND_DOWN,
    "up": decimal.ROUND_UP,
    "floor": decimal.ROUND_FLOOR,
    "ceiling": decimal.ROUND_CEILING,
}
"""``rounding:`` a field may declare; without one, a value with more places is refused."""
FLOAT_DIGITS = 15
"""Significant digits a binary double keeps exactly (DBL_DIG): every decimal of at most 15
significant digits maps to a distinct double and back, in order."""

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,4})?")
_CTX = decimal.Context(prec=MAX_PRECISION + 2, Emax=999_999, Emin=-999_999,
                       traps=[decimal.InvalidOperation, decimal.Overflow])


def parse(value: Any) -> decimal.Decimal:
    """The exact number ``value`` stands for: a Decimal, an int, a numeric string, or a
    float (taken as its shortest repr, ``0.1`` is 0.1). Raises ValueError."""
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            raise ValueError(f"expected a finite number, got {value}")
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return decimal.Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite number, got {value!r}")
        return decimal.Decimal(repr(value))
    if isinstance(value, str):
        text = value.strip()
        if len(text) <= 100 and _NUMBER.fullmatch(text):
            return decimal.Decimal(text)
    raise ValueError(f"expected a number, got {_show(value)}")


def limits(precision: int | None, scale: int | None) -> tuple[int, int]:
    """A field's precision and scale with the defaults filled in: ``scale: 4`` alone is
    (18, 4); ``precision: 1`` alone is (1, 1)."""
    p = precision if precision is not None else max(DEFAULT_PRECISION, scale or 0)
    return p, scale if scale is not None else min(DEFAULT_SCALE, p)


def fit(value: Any, precision: int | None = None, scale: int | None = None,
        rounding: str | None = None) -> decimal.Decimal:
    """``value`` as a Decimal with exactly ``scale`` places, within ``precision`` digits.

    More places than ``scale`` are rounded with ``rounding`` (a key of :data:`ROUNDINGS`)
    or refused without one; a float is refused when it stands for more digits than a double
    keeps exactly (``0.1 + 0.2`` is 0.30000000000000004: not 0.30). Raises ValueError with
    the limit it broke.
    """
    precision, scale = limits(precision, scale)
    d = parse(value)
    exponent = d.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if -exponent > scale and rounding is None:
        raise ValueError(f"{_brief(d)} has {-exponent:,} decimal places: at most {scale} "
                         f"(scale: {scale}; or declare rounding: half_even)")
    try:
        q = d.quantize(decimal.Decimal(1).scaleb(-scale), rounding=ROUNDINGS.get(
            rounding or "half_even", decimal.ROUND_HALF_EVEN), context=_CTX)
    except decimal.InvalidOperation:
        q = None
    whole = precision - scale
    if q is None or abs(q) >= decimal.Decimal(10) ** whole:
        raise ValueError(f"{_brief(d)} is out of range: at most {whole} digits before the "
                         f"point (precision: {precision}, scale: {scale})")
    if isinstance(value, float) and len(q.as_tuple().digits) > FLOAT_DIGITS:
        raise ValueError(f"the float {value!r} may not be exact (a float keeps "
                         f"{FLOAT_DIGITS} significant digits): pass a decimal.Decimal or a "
                         "string such as \"1234567890123456.78\"")
    return q.copy_abs() if q.is_zero() else q


def canonical(d: decimal.Decimal) -> str:
    """The stored and shown form: plain digits, never an exponent (``1E+2`` is ``100``)."""
    return _plain(d)


def read(value: Any) -> Any:
    """A stored ``decimal`` value as a Decimal: the canonical string, or a JSON number
    stored before values were exact (read as its shortest repr, converted lazily here and
    written back as a string on the record's next write). Anything else is left as it is."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        try:
            return parse(value)
        except ValueError:
            return value
    return value


def cel_view(d: decimal.Decimal) -> float | dict[str, str]:
    """What CEL sees for a decimal: a double when that is provably exact for comparisons
    (at most 15 significant digits: it is the double a CEL literal with the same digits
    parses to, and distinct values stay distinct and in order); beyond that, the map
    ``{"decimal": "<exact digits>"}``: ``==`` between two of them is exact (the digits are
    normalised), while ``<`` or ``>`` with anything is an error rather than a wrong answer
    (as a string it would compare letter by letter), and ``decimal.compare`` reads it."""
    n = d.normalize(_CTX)
    t = n.as_tuple()
    exponent = t.exponent
    assert isinstance(exponent, int)
    if len(t.digits) <= FLOAT_DIGITS and -300 < exponent + len(t.digits) < 300:
        return float(d)
    return {CEL_KEY: _plain(n)}


CEL_KEY = "decimal"
"""The key of the map CEL sees for a decimal too long for a double."""


def from_cel(value: Any, what: str) -> decimal.Decimal:
    """An argument of the ``decimal.*`` CEL functions, exactly: an int, a numeric string,
    a long decimal's map (:func:`cel_view`), or a double that stands for one decimal (at
    most 15 significant digits — a double made by arithmetic such as ``0.1 + 0.2`` does
    not)."""
    if isinstance(value, dict) and isinstance(value.get(CEL_KEY), str) and len(value) == 1:
        value = value[CEL_KEY]
    elif isinstance(value, float):
        d = parse(value)
        if len(d.normalize(_CTX).as_tuple().digits) > FLOAT_DIGITS:
            raise ValueError(f"{what}: the double {value!r} is not an exact decimal (more than "
                             f"{FLOAT_DIGITS} significant digits, e.g. the result of double "
                             "arithmetic); pass the number as a string")
        return d
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _plain(d: decimal.Decimal) -> str:
    return format(d, "f")


def _brief(d: decimal.Decimal) -> str:
    """``d`` for a message: plain digits, or scientific notation when the plain form of
    an extreme exponent (``1e999999`` from a JSON body) would run to megabytes."""
    t = d.as_tuple()
    if len(t.digits) > 60:
        return f"a number of {len(t.digits):,} digits"
    if isinstance(t.exponent, int) and abs(t.exponent) > 60:
        return str(d)
    return _plain(d)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
