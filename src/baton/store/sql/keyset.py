"""Keyset pagination and bounded counts for the long lists (runs, work items, records).

A page is read by *probes*: each probe is a handful of equality terms that an index of the
list's table starts with, and the index goes on with the list's order (``created_at, id``
…), so a probe is an index range read in order that stops after a page; never an OFFSET
scan, never a sort of the table. A filter the table has no index for is a *residual*: its
rows are read in the order of a probe's index and kept or dropped here, at most
:data:`SCAN_BUDGET` of them per probe and page. When the budget runs out before the page
is full, the page is short and its ``next`` cursor starts where the scan stopped: every
request is bounded, and following ``next`` still sees every match once.

Several probes (one per status, per queue …) are merged here by the order's key; the
cursor is the key of the last row given, opaque to clients (base64url of JSON).

Counts read at most :data:`COUNT_CAP` + 1 index entries per probe: below that the total
is exact; above, PostgreSQL answers its planner's estimate and SQLite a lower bound.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    String,
    and_,
    bindparam,
    case,
    exists,
    func,
    literal,
    or_,
    select,
    true,
    tuple_,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import GenericFunction

from baton.errors import ValidationError
from baton.store.base import KeyPage, Total

COUNT_CAP = 1000
SCAN_BUDGET = 2000
MAX_CURSOR = 600  # characters: a cursor holds a few keys
MAX_HOT_PROBES = 32  # first reads of at most this many probes run as a statement kept compiled

# Runs a statement kept compiled under a key (built by the callable only the first time)
# with these parameters: its rows (a transaction's hot path, :class:`~baton.store.sql.tx.SqlTx`).
HotRows = Callable[[Any, Callable[[], Any], dict[str, Any]], list[dict[str, Any]]]


@dataclass(frozen=True)
class Order:
    """A list's order: ``tag`` names it in cursors; ``keys`` are (expression, descending),
    the last one unique (the id), so the order is total and a cursor exact."""

    tag: str
    keys: tuple[tuple[Any, bool], ...]

    @cached_property
    def kinds(self) -> tuple[type, ...]:
        """The Python type of each key's values (``str`` or ``int``): what a cursor must
        carry in each place."""
        kinds = []
        for expr, _ in self.keys:
            try:
                kind = expr.type.python_type
            except NotImplementedError:  # (every key here has one; any value then)
                kind = object
            kinds.append(kind)
        return tuple(kinds)


@dataclass(frozen=True)
class Probe:
    """Equality terms an index starts with (its order columns follow them): ``eq``, pairs
    of a table's column and a value (no SQL built for them until one is needed), and
    ``where``, any other terms. ``small``: few rows (a record's runs, a user's claimed
    items) read by an index that does not hold the order, so they are sorted by the
    database (a sort of those few rows only)."""

    eq: tuple[tuple[Column[Any], Any], ...] = ()
    where: tuple[Any, ...] = ()
    small: bool = False
    fixed: tuple[tuple[Any, Any], ...] = ()  # order keys this probe's equalities fix

    @cached_property
    def terms(self) -> tuple[Any, ...]:
        """Every term, as SQL."""
        return (*(c == v for c, v in self.eq), *self.where)


# ---- cursors ------------------------------------------------------------------------------
def encode_cursor(tag: str, values: Sequence[Any]) -> str:
    raw = json.dumps([tag, *values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(order: Order, text: str) -> list[Any]:
    """The key values a cursor carries, checked against the list and order it must come
    from; anything else is a ValidationError naming ``after``."""
    def bad(why: str) -> ValidationError:
        return ValidationError("page", {"after": f"not a cursor of this list ({why}): pass "
                                                 "the `next` value of the previous page "
                                                 "unchanged, with the same order"})
    if len(text) > MAX_CURSOR:
        raise bad("too long")
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise bad("not base64url JSON") from None
    if not isinstance(data, list) or not data or not isinstance(data[0], str):
        raise bad("malformed")
    if data[0] != order.tag:
        raise bad(f"it pages {data[0]!r}, this is {order.tag!r}")
    values = data[1:]
    if len(values) != len(order.keys) or not all(
            _fits(v, kind) for v, kind in zip(values, order.kinds, strict=True)):
        raise bad("wrong keys")
    return values


def _fits(value: Any, kind: type) -> bool:
    """``value`` can stand for a key of ``kind``: a string for a text key, an integer the
    databases hold (64 bits) for an integer key."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return False
    if (kind is str or kind is int) and type(value) is not kind:
        return False
    return not isinstance(value, int) or -(2 ** 63) <= value < 2 ** 63


# ---- reading a page -----------------------------------------------------------------------
class _Desc:
    """Reverses comparison: a descending key in a Python sort."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return bool(self.v > other.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and bool(self.v == other.v)

    def __le__(self, other: _Desc) -> bool:
        return bool(self.v >= other.v)


_TRUE, _FALSE = object(), object()


def after_clause(order: Order, values: Sequence[Any], fixed: Sequence[tuple[Any, Any]] = (),
                 ) -> Any:
    """Rows strictly after ``values`` in ``order``: a row-value comparison written out
    (directions may differ), led by a plain bound on the first key so the index range
    starts there. A key the probe fixes (``fixed``: expression, value) is compared here,
    not in SQL, so the probe's index range stays one range; None: no row of the probe
    comes after (the probe is skipped), True: every row does."""
    const = {id(expr): v for expr, v in fixed}
    if not const and len({desc for _, desc in order.keys}) == 1:
        # One direction and no fixed key: a row value, which both databases read as one
        # index range starting at the cursor. (Written out, the range starts at the first
        # key only, and a page after many rows of one ``created_at``, a bulk import's,
        # read all of them before its own: quadratic in the length of such a run.)
        row, after = tuple_(*(e for e, _ in order.keys)), tuple_(*values)
        return row < after if order.keys[0][1] else row > after

    def cmp(i: int, strict: bool) -> Any:
        expr, desc = order.keys[i]
        if id(expr) in const:
            c, v = const[id(expr)], values[i]
            if not strict:
                return _TRUE if c == v else _FALSE
            return _TRUE if (c < v if desc else c > v) else _FALSE
        if not strict:
            return expr == values[i]
        return expr < values[i] if desc else expr > values[i]

    terms: list[Any] = []
    lead: int | None = None  # the first key not fixed: the index range starts on it
    for i, (expr, _) in enumerate(order.keys):
        parts = [cmp(j, False) for j in range(i)] + [cmp(i, True)]
        if any(p is _FALSE for p in parts):
            continue
        sql = [p for p in parts if p is not _TRUE]
        if not sql:
            return True  # every row of the probe comes after
        terms.append(and_(*sql))
        if lead is None and id(expr) not in const:
            lead = i
    if not terms:
        return None
    if lead is None:
        return or_(*terms)
    expr, desc = order.keys[lead]
    return and_(expr <= values[lead] if desc else expr >= values[lead], or_(*terms))


class Predicate:
    """A residual filter that is not an equality: it reads ``columns`` of a row, is
    checked here on the rows a probe reads (:meth:`matches`) and in SQL where rows are
    counted (:meth:`clause`, over a table's or a subquery's columns ``c``); both say the
    same."""

    columns: tuple[str, ...]

    def matches(self, row: dict[str, Any]) -> bool:
        raise NotImplementedError

    def clause(self, c: Any) -> Any:
        raise NotImplementedError


class text_lower(GenericFunction[str]):
    """``lower()`` of any letter, as Python's ``str.lower`` (SQLite's own lower() knows
    ASCII only: there it is ``baton_lower``, which the connection registers)."""

    type = String()
    name = "text_lower"
    inherit_cache = True


@compiles(text_lower)
def _text_lower(element: Any, compiler: Any, **kw: Any) -> str:
    return f"lower({compiler.process(element.clauses, **kw)})"


@compiles(text_lower, "sqlite")
def _text_lower_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    return f"baton_lower({compiler.process(element.clauses, **kw)})"


@dataclass(frozen=True)
class Contains(Predicate):
    """One of ``columns`` contains ``text``, ignoring case (a search box)."""

    columns: tuple[str, ...]
    text: str

    def matches(self, row: dict[str, Any]) -> bool:
        needle = self.text.lower()
        return any(needle in (row[c] or "").lower() for c in self.columns)

    def clause(self, c: Any) -> Any:
        needle = self.text.lower()
        return or_(*(text_lower(func.coalesce(c[n], "")).contains(needle, autoescape=True)
                     for n in self.columns))


def _matches(row: dict[str, Any], residual: dict[str, Any]) -> bool:
    """A residual value is one value, a tuple of values (any of them), or a Predicate."""
    return all(v.matches(row) if isinstance(v, Predicate)
               else row[c] in v if isinstance(v, tuple) else row[c] == v
               for c, v in residual.items())


def _term(c: Any, name: str, value: Any) -> Any:
    if isinstance(value, Predicate):
        return value.clause(c)
    return c[name].in_(value) if isinstance(value, tuple) else c[name] == value


def _residual_columns(residual: dict[str, Any]) -> list[str]:
    """The columns the residual filters read (a predicate's, or the key's own)."""
    out: list[str] = []
    for name, value in residual.items():
        for col in value.columns if isinstance(value, Predicate) else (name,):
            if col not in out:
                out.append(col)
    return out


def _labels(order: Order) -> list[Any]:
    return [expr.label(f"_k{i}") for i, (expr, _) in enumerate(order.keys)]


def _position(order: Order, row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(_Desc(row[f"_k{i}"]) if desc else row[f"_k{i}"]
                 for i, (_, desc) in enumerate(order.keys))


def read_page(conn: Connection, columns: Sequence[Any], order: Order, probes: Sequence[Probe],
              residual: dict[str, Any], after: Sequence[Any] | None, offset: int,
              limit: int, hot: HotRows | None = None) -> KeyPage:
    """Rows ``offset .. offset + limit`` after the cursor ``after``, in ``order``, from the
    union of ``probes``, keeping rows whose columns equal ``residual``'s values.

    The probes' first reads go in one statement (UNION ALL of one ordered, limited read
    per probe); a probe with a residual filter that needs more reads on alone. With
    ``hot``, a first page whose probes are all ``column == value`` terms runs a statement
    built and compiled once per shape (which columns each probe compares), the values
    and the page size its parameters: no statement is built, its cache key computed
    or its result columns matched again on every call (most of a short list's cost)."""
    want = offset + limit
    found: dict[Any, dict[str, Any]] = {}
    cuts = []
    last = f"_k{len(order.keys) - 1}"  # the id: a row met by two probes is kept once
    first = None
    if hot is not None and after is None:
        first = _hot_first_reads(hot, columns, order, probes, want + 1)
    if first is None:
        first = _first_reads(conn, columns, order, probes, after, want + 1)
    for probe, rows in first:
        matched, cut = _go_on(conn, columns, order, probe, residual, rows, want)
        if cut is not None:
            cuts.append(cut)
        for row in matched:
            found[row[last]] = row
    ordered = sorted(found.values(), key=lambda r: _position(order, r))
    boundary = min(cuts) if cuts else None
    if boundary is not None:
        ordered = [r for r in ordered if not boundary < _position(order, r)]
    page = ordered[offset:want]
    if len(ordered) > want:
        nxt: list[Any] | None = _key(order, page[-1])
    elif boundary is not None:
        nxt = [b.v if isinstance(b, _Desc) else b for b in boundary]
    else:
        nxt = None
    for row in page:
        for i in range(len(order.keys)):
            del row[f"_k{i}"]
    return KeyPage(page, encode_cursor(order.tag, nxt) if nxt is not None else None)


def _key(order: Order, row: dict[str, Any]) -> list[Any]:
    return [row[f"_k{i}"] for i in range(len(order.keys))]


def _read(order: Order, columns: Sequence[Any], probe: Probe, start: Sequence[Any] | None,
          size: int) -> Any:
    """One probe's ordered read of ``size`` rows after ``start``; None: none come after."""
    q = select(*columns, *_labels(order)).where(*probe.terms)
    if start is not None:
        clause = after_clause(order, start, probe.fixed)
        if clause is None:
            return None  # the whole probe lies before the cursor
        if clause is not True:
            q = q.where(clause)
    return q.order_by(*[e.desc() if d else e.asc() for e, d in order.keys]).limit(size)


def _first_reads(conn: Connection, columns: Sequence[Any], order: Order,
                 probes: Sequence[Probe], after: Sequence[Any] | None, size: int,
                 ) -> list[tuple[Probe, list[dict[str, Any]]]]:
    reads = [(i, q) for i, p in enumerate(probes)
             if (q := _read(order, columns, p, after, size)) is not None]
    out: list[tuple[Probe, list[dict[str, Any]]]] = [(p, []) for p in probes]
    if len(reads) == 1:
        i, q = reads[0]
        out[i][1].extend(dict(r._mapping) for r in conn.execute(q))
    elif reads:
        parts = [select(literal(i).label("_probe"), q.subquery()) for i, q in reads]
        for r in conn.execute(union_all(*parts)):
            row = dict(r._mapping)
            out[row.pop("_probe")][1].append(row)
    return [out[i] for i, _ in reads]


def _equalities(probe: Probe) -> tuple[tuple[Column[Any], ...], list[Any]] | None:
    """A probe made of ``column == value`` terms only: its columns and values; else None
    (a None value too: SQL makes ``column == None`` an IS NULL, a parameter would not)."""
    if probe.where or not all(isinstance(c, Column) and v is not None for c, v in probe.eq):
        return None
    return tuple(c for c, _ in probe.eq), [v for _, v in probe.eq]


def _hot_first_reads(hot: HotRows, columns: Sequence[Any], order: Order,
                     probes: Sequence[Probe], size: int,
                     ) -> list[tuple[Probe, list[dict[str, Any]]]] | None:
    """:func:`_first_reads` of the first page, through a statement kept compiled per
    shape (see :func:`read_page`); None when a probe is not made of equalities."""
    if not probes or len(probes) > MAX_HOT_PROBES:
        return None
    shapes: list[tuple[Column[Any], ...]] = []
    params: dict[str, Any] = {"_size": size}
    for i, probe in enumerate(probes):
        eq = _equalities(probe)
        if eq is None:
            return None
        shapes.append(eq[0])
        params.update({f"_p{i}_{j}": v for j, v in enumerate(eq[1])})
    # (columns, order and the probes' columns are the schema's, alive as long as the
    # process: their ids name them)
    key = ("keyset.first", id(order), tuple(map(id, columns)),
           tuple(tuple(map(id, cols)) for cols in shapes))

    def build() -> Any:
        def part(i: int, cols: Sequence[Column[Any]]) -> Any:
            return (select(*columns, *_labels(order))
                    .where(*(c == bindparam(f"_p{i}_{j}") for j, c in enumerate(cols)))
                    .order_by(*[e.desc() if d else e.asc() for e, d in order.keys])
                    .limit(bindparam("_size", type_=Integer)))
        if len(shapes) == 1:
            return part(0, shapes[0])
        return union_all(*(select(literal(i).label("_probe"), part(i, cols).subquery())
                           for i, cols in enumerate(shapes)))

    rows = hot(key, build, params)
    if len(probes) == 1:
        return [(probes[0], rows)]
    out: list[tuple[Probe, list[dict[str, Any]]]] = [(p, []) for p in probes]
    for row in rows:
        out[row.pop("_probe")][1].append(row)
    return out


def _go_on(conn: Connection, columns: Sequence[Any], order: Order, probe: Probe,
           residual: dict[str, Any], rows: list[dict[str, Any]], want: int,
           ) -> tuple[list[dict[str, Any]], tuple[Any, ...] | None]:
    """A probe's matches, from its first ``want + 1`` rows and, with a residual filter,
    further reads (each 4 times the last) until ``want + 1`` rows matched or SCAN_BUDGET
    rows were read; and where its reading stopped (None: it read all there is)."""
    budget = max(SCAN_BUDGET, want + 1) if residual else want + 1
    matched: list[dict[str, Any]] = []
    read, size = 0, want + 1
    while True:
        read += len(rows)
        matched += [r for r in rows if _matches(r, residual)] if residual else rows
        if len(rows) < size:
            return matched, None
        if len(matched) > want or read >= budget:
            return matched, _position(order, rows[-1])
        start, size = _key(order, rows[-1]), min(size * 4, budget - read)
        q = _read(order, columns, probe, start, size)
        rows = [dict(r._mapping) for r in conn.execute(q)] if q is not None else []


# ---- counting -----------------------------------------------------------------------------
def count(conn: Connection, table: Any, order: Order, probes: Sequence[Probe],
          residual: dict[str, Any]) -> Total:
    """How many rows the probes and residual match: exact up to :data:`COUNT_CAP`, else an
    estimate (PostgreSQL) or a lower bound (SQLite), reading at most ``COUNT_CAP + 1``
    index entries per probe (the newest, in the list's order)."""
    counted, over = 0, False
    sort = [expr.desc() if desc else expr.asc() for expr, desc in order.keys]
    match = and_(*(_term(table.c, c, v) for c, v in residual.items())) if residual else None
    last = order.keys[-1][0]  # the id: unique, the table's key
    row = table.alias("_row")
    for probe in probes:
        # the order's keys (in the probe's index: PostgreSQL may read the index alone)
        keys = [e.label(f"_k{i}") for i, e in enumerate(e for e, _ in order.keys)]
        # In the list's order: the planner walks the probe's index (a bare LIMIT lets
        # PostgreSQL scan the heap until enough rows match, all of it for a rare value).
        sub = (select(*keys).select_from(table).where(*probe.terms).order_by(*sort)
               .limit(COUNT_CAP + 1).subquery())
        if residual:
            # The residual filters' columns are not in the index: each row the index gave
            # is looked up by its key (asked for in the ordered read itself, PostgreSQL
            # would rather fetch every row of the probe and sort them; joined, it would
            # hash the whole table).
            found = exists(select(literal(1)).select_from(row).where(
                row.c[last.name] == sub.c[f"_k{len(order.keys) - 1}"],
                *(_term(row.c, c, v) for c, v in residual.items())))
            matched: Any = func.coalesce(func.sum(case((found, 1), else_=0)), 0)
        else:
            matched = func.count()
        scanned, hits = conn.execute(select(func.count(), matched).select_from(sub)).one()
        counted += int(hits)
        over = over or int(scanned) > COUNT_CAP
    if not over:
        return Total(counted)
    if conn.dialect.name == "postgresql":
        where = or_(*(and_(true(), *p.terms) for p in probes))  # an unfiltered probe: TRUE
        q = select(literal(1)).select_from(table).where(where)
        if match is not None:
            q = q.where(match)
        return Total(max(counted, _planner_rows(conn, q)), "estimate")
    return Total(min(counted, COUNT_CAP), "at_least")


def _planner_rows(conn: Connection, query: Any) -> int:
    """PostgreSQL's estimate of the rows ``query`` returns (EXPLAIN: no row is read)."""
    compiled = query.compile(dialect=conn.dialect)
    plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + compiled.string,
                                compiled.params).scalar_one()
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])
