"""Decomposition: an order's commercial lines -> technical fulfillment lines (DESIGN §2.4).

A bundle line decomposes through its children (the child lines the order gives, else the
catalog's children with the bundle's quantity and action); a product with a rule (its own
``decomposes_to``, else a rule by its code, else by its family) becomes its targets, each
decomposed again; any other product fulfills itself. Pure: the same lines and catalog give
the same fulfillment lines, keyed ``L1``, ``L1.2``... in the order's line order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property, lru_cache
from typing import Any

import orjson

from baton.definitions.plans import CatalogDefinition, Product, Target
from baton.errors import BatonError, ExpressionError
from baton.expressions import Missing, evaluate, is_expression, reads_variables

MAX_DEPTH = 20
_LINE_MEMBER = re.compile(r"\bline\b(\s*\.\s*([A-Za-z_]\w*))?")


class LineMemo:
    """Evaluations of expressions over ``line`` (and an order that does not change while
    one order is planned), remembered by the values of the line members each reads:
    ten thousand lines of a few products are a few distinct evaluations."""

    def __init__(self) -> None:
        self._members: dict[str, tuple[str, ...] | None] = {}
        self._hits: dict[tuple[str, Any], Any] = {}

    def reads(self, source: str) -> tuple[str, ...] | None:
        """The members of ``line`` that ``source`` reads (sorted), None when it reads
        ``line`` whole."""
        return self._reads(source)

    def _reads(self, source: str) -> tuple[str, ...] | None:
        if source not in self._members:
            found = _LINE_MEMBER.findall(source)
            whole = any(not m for _, m in found)  # `line` itself: every member
            self._members[source] = None if whole else tuple(sorted({m for _, m in found}))
        return self._members[source]

    def evaluate(self, source: str, scope: Mapping[str, Any],
                 fn: Any = None) -> Any:
        """``fn(source, scope)`` (default: evaluate), once per distinct read line values.
        Raises what it raises, every time."""
        run = fn or evaluate
        members = self._reads(source)
        if members is None:
            return run(source, scope)
        line = scope.get("line") or {}
        values = [line.get(m) for m in members]
        try:  # JSON's own types only: their text tells them apart (1, 1.0, true, "1")
            key, plain = (source, orjson.dumps(values, option=_PLAIN_ONLY)), True
        except TypeError:  # a date, a Decimal…: its text as the key, in this order only
            key, plain = (source, orjson.dumps(values, option=orjson.OPT_SORT_KEYS,
                                               default=str)), False
        hit = self._hits.get(key, _MISS)
        if isinstance(hit, BaseException):
            raise hit.with_traceback(None)  # (else each raise lengthens its traceback)
        if hit is not _MISS:
            return hit
        shared = (run, *key) if plain and line_only(source) else None
        if shared is not None:
            hit = _SHARED.get(shared, _MISS)
            if hit is not _MISS:
                self._hits[key] = hit
                return hit
        try:
            value = run(source, scope)
        except (Missing, ExpressionError) as exc:
            self._hits[key] = exc
            raise
        self._hits[key] = value
        if shared is not None:
            if len(_SHARED) >= SHARED_MAX:
                _SHARED.clear()
            _SHARED[shared] = value
        return value


_MISS = object()
# Values of expressions that read ``line`` and nothing else (no ``record``, no ``now``):
# pure functions of the members read, so one order's are every order's (an order of a
# few products asks the same few questions as the last one). Bounded: emptied when full.
# Only values are shared: a failure is raised again from its own order's memo.
SHARED_MAX = 4096
_PLAIN_ONLY = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
               | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS)
_SHARED: dict[tuple[Any, ...], Any] = {}


@lru_cache(maxsize=4096)
def line_only(source: str) -> bool:
    """Does the expression read ``line``, and no other variable?"""
    reads = reads_variables(source)
    return "line" in reads and reads <= {"line"}
# A canceled line (a disconnect, or a line an amendment takes back) is decomposed like any
# other; only scenarios that select canceled lines plan it (see ``generate.match``).
CANCEL = "cancel"


class PlanningError(BatonError):
    """An order that cannot be planned (an unknown product, a mapping that fails)."""


@dataclass(frozen=True)
class OrderLine:
    """A commercial line as the order gives it."""

    id: str
    product: str
    qty: int = 1
    action: str = "add"
    attributes: Mapping[str, Any] = field(default_factory=dict)
    start_date: str | None = None
    bundle_id: str | None = None


@dataclass(frozen=True)
class FulfillmentLine:
    key: str  # L1, L1.2, ...: stable for the same order and catalog
    product: Product
    qty: int
    action: str
    attributes: Mapping[str, Any]
    start_date: str | None
    source: str  # key of the commercial line it came from
    source_product: str
    line_id: str  # record id of that commercial line
    bundle: str | None  # key of the bundle line it belongs to

    def view(self) -> dict[str, Any]:
        """What ``line`` is in scenario conditions and plan step expressions (one dict per
        line, made once: read it, do not change it)."""
        return self._view

    @cached_property
    def _view(self) -> dict[str, Any]:
        p = self.product
        return {"key": self.key, "id": self.line_id, "qty": self.qty, "quantity": self.qty,
                "action": self.action, "attributes": dict(self.attributes),
                "start_date": self.start_date, "bundle": self.bundle, "source": self.source,
                "source_product": self.source_product,
                "product": {"code": p.code, "family": p.family, "name": p.name}}


def decompose(catalog: CatalogDefinition, lines: Sequence[OrderLine],
              order: Mapping[str, Any], keys: Mapping[str, str] | None = None
              ) -> list[FulfillmentLine]:
    """The order's fulfillment lines. ``keys``: line record id -> its key
    (:func:`commercial_keys`; default: by position)."""
    keys = dict(keys) if keys is not None else commercial_keys(lines)
    children: dict[str, list[OrderLine]] = {}
    for ln in lines:
        if ln.bundle_id is not None and ln.bundle_id in keys:
            children.setdefault(ln.bundle_id, []).append(ln)
    out: list[FulfillmentLine] = []
    memo = LineMemo()
    for ln in lines:
        if ln.bundle_id is None or ln.bundle_id not in keys:
            _expand(catalog, ln, keys[ln.id], None, keys[ln.id], ln.id, ln.product, children,
                    keys, order, out, 0, memo)
    return out


_KEY = re.compile(r"L([0-9]+)")


def commercial_keys(lines: Sequence[OrderLine], kept: Mapping[str, str] | None = None
                    ) -> dict[str, str]:
    """Line record id -> its key: ``L<position>`` for a first plan; for an amendment the
    key the plan gave the line (``kept``), a new line the next number after all of them
    (a removed line's key is never given to another: its rollbacks keep its name)."""
    if not kept:
        return {ln.id: f"L{i}" for i, ln in enumerate(lines, 1)}
    last = max((int(m.group(1)) for k in kept.values() if (m := _KEY.fullmatch(k))),
               default=0)
    out: dict[str, str] = {}
    for ln in lines:
        key = kept.get(ln.id)
        if key is None:
            last += 1
            key = f"L{last}"
        out[ln.id] = key
    return out


def line_keys(graph: Mapping[str, Any], lines: Sequence[OrderLine] = ()) -> dict[str, str]:
    """A plan graph's line record id -> commercial key: every key the plan has given,
    those of lines removed since included (stored in the graph as ``line_keys``). A graph
    stored without them: its lines' ``id`` and ``source``, and a bundle's key found
    through the ``lines`` of the order that name it."""
    stored = graph.get("line_keys")
    if stored is not None:
        return dict(stored)
    views = [v for v in graph.get("lines") or () if isinstance(v, Mapping)]
    out = {v["id"]: v["source"] for v in views if _KEY.fullmatch(str(v.get("source")))}
    bundle_of = {v["id"]: v["bundle"] for v in views if v.get("bundle")}
    for ln in lines:
        if ln.bundle_id is not None and ln.bundle_id not in out and ln.id in bundle_of:
            out[ln.bundle_id] = bundle_of[ln.id]
    return out


def _expand(catalog: CatalogDefinition, ln: OrderLine, key: str, bundle: str | None,
            source: str, source_id: str, source_product: str,
            children: Mapping[str, list[OrderLine]], keys: Mapping[str, str],
            order: Mapping[str, Any], out: list[FulfillmentLine], depth: int,
            memo: LineMemo) -> None:
    if depth > MAX_DEPTH:
        raise PlanningError(f"line {source}: decomposition deeper than {MAX_DEPTH} levels")
    product = catalog.products.get(ln.product)
    if product is None:
        raise PlanningError(f"line {source}: unknown product '{ln.product}' "
                            f"(not in catalog '{catalog.name}')")
    if product.children:
        given = children.get(ln.id)
        kids = given if given is not None else [
            OrderLine(f"{ln.id}/{c}", c, ln.qty, ln.action, {}, ln.start_date, ln.id)
            for c in product.children]
        if ln.action == CANCEL:  # a canceled bundle takes its child lines with it
            kids = [k if k.action == CANCEL else replace(k, action=CANCEL) for k in kids]
        for j, kid in enumerate(kids, 1):
            kid_key = keys.get(kid.id, f"{key}.{j}")
            own = kid.id in keys
            _expand(catalog, kid, kid_key, key, kid_key if own else source,
                    kid.id if own else source_id, kid.product if own else source_product,
                    children, keys, order, out, depth + 1, memo)
        return
    targets = catalog.targets(product)
    if targets is None:
        out.append(FulfillmentLine(key, product, ln.qty, ln.action, dict(ln.attributes),
                                   ln.start_date, source, source_product, source_id, bundle))
        return
    scope = {"line": _line_scope(product, ln), "record": dict(order)}
    for j, t in enumerate(targets, 1):
        sub = OrderLine(ln.id, t.product, _qty(t, scope, source, memo), ln.action,
                        _attributes(catalog, t, scope, source, memo), ln.start_date, ln.bundle_id)
        _expand(catalog, sub, f"{key}.{j}",
                bundle, source, source_id, source_product, children, keys, order, out,
                depth + 1, memo)


def _line_scope(product: Product, ln: OrderLine) -> dict[str, Any]:
    attrs = {k: v for k, v in product.attributes.items() if v is not None}
    attrs.update(ln.attributes)
    return {"id": ln.id, "qty": ln.qty, "quantity": ln.qty, "action": ln.action,
            "attributes": attrs, "start_date": ln.start_date,
            "product": {"code": product.code, "family": product.family, "name": product.name}}


def _eval(source: Any, scope: Mapping[str, Any], what: str, memo: LineMemo) -> Any:
    if not (isinstance(source, str) and is_expression(source)):
        return source
    try:
        return memo.evaluate(source, scope)
    except Missing as exc:
        raise PlanningError(f"{what}: {source} reads a value the line does not have "
                            f"({exc})") from None
    except ExpressionError as exc:
        raise PlanningError(f"{what}: {source}: {exc}") from None


def _qty(t: Target, scope: Mapping[str, Any], source: str, memo: LineMemo) -> int:
    q = _eval(t.qty, scope, f"line {source} -> {t.product} qty", memo)
    if isinstance(q, bool) or not isinstance(q, int | float) or int(q) != q or q < 0:
        raise PlanningError(f"line {source} -> {t.product}: qty must be a whole number >= 0, "
                            f"got {q!r}")
    return int(q)


def _attributes(catalog: CatalogDefinition, t: Target, scope: Mapping[str, Any],
                source: str, memo: LineMemo) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in t.attributes.items():
        what = f"line {source} -> {t.product} attribute {name}"
        if isinstance(spec, Mapping):
            key = _eval(spec["key"], scope, what, memo)
            table = catalog.lookups[spec["lookup"]]
            if str(key) in table:
                out[name] = table[str(key)]
            elif "default" in spec:
                out[name] = spec["default"]
            else:
                raise PlanningError(f"{what}: no entry {key!r} in lookup table "
                                    f"'{spec['lookup']}' and no default")
        else:
            try:
                out[name] = _eval(spec, scope, what, memo)
            except PlanningError:
                if not (isinstance(spec, str) and _reads_missing(spec, scope, memo)):
                    raise
                # the line does not have what it maps: the attribute stays unset
    return out


def _reads_missing(source: str, scope: Mapping[str, Any], memo: LineMemo) -> bool:
    try:
        memo.evaluate(source, scope)
    except Missing:
        return True
    except ExpressionError:
        return False
    return False
