"""Related records in expressions: ``record.account.name`` follows the ``ref`` field
``account`` to the Account it names (DESIGN §2.1).

What a definition navigates is known from its text: :func:`navigated` lists the ref paths
its expressions go through (``("account",)``, ``("account", "owner")``), computed once per
deployed version, so the runtime reads only those related records (``records/related.py``)
and hands them to ``decide()`` inside the record view. A navigated ref field is then the
related record (its fields, ``id``, ``created_at``, ``updated_at``, ``version``): its id is
``record.account.id``. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Iterator, Mapping
from typing import Any, Generic, TypeVar

from baton.definitions.model import OrchestrationDefinition
from baton.expressions import is_expression
from baton.expressions.cel import member_chains

T = TypeVar("T")

MAX_HOPS = 3
"""Most ref fields one expression may follow in a row (``record.a.b.c.field``)."""


def expression_sources(value: Any) -> Iterator[str]:
    """Every ``=expression`` in a definition object (conditions, assignees, inputs, a step
    type's options...), found by walking it."""
    if isinstance(value, str):
        if is_expression(value):
            yield value
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from expression_sources(getattr(value, f.name))
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from expression_sources(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from expression_sources(v)


def navigated(defn: OrchestrationDefinition | Any) -> tuple[tuple[str, ...], ...]:
    """The member paths of ``record`` that the definition's expressions read through:
    every proper prefix of a dotted read (``record.account.owner.email`` gives
    ``("account",)`` and ``("account", "owner")``), at most :data:`MAX_HOPS` long, in a
    stable order. Which of them are ref fields is known where the object types are (a
    path through a ``json`` field reads inside the value, and nothing is fetched)."""
    found: set[tuple[str, ...]] = set()
    for source in expression_sources(defn):
        for var, members in member_chains(source):
            if var != "record":
                continue
            for n in range(1, min(len(members), MAX_HOPS + 1)):
                found.add(members[:n])
    return tuple(sorted(found, key=lambda p: (len(p), p)))


class DefinitionMemo(Generic[T]):
    """A value remembered per definition object, by its id, holding the definition only
    weakly: the generated plan definitions a worker stops using (each order has its own)
    are not kept alive by what was remembered about them; an entry leaves with its
    definition (and all at once past ``limit`` entries)."""

    def __init__(self, limit: int = 1024) -> None:
        self.limit = limit
        self._entries: dict[int, tuple[weakref.ref[OrchestrationDefinition], T]] = {}

    def get(self, defn: OrchestrationDefinition) -> T | None:
        hit = self._entries.get(id(defn))
        return hit[1] if hit is not None and hit[0]() is defn else None

    def put(self, defn: OrchestrationDefinition, value: T) -> None:
        key = id(defn)
        entries = self._entries

        def forget(ref: weakref.ref[OrchestrationDefinition]) -> None:
            entry = entries.get(key)
            if entry is not None and entry[0] is ref:
                entries.pop(key, None)

        if len(entries) >= self.limit:
            entries.clear()
        entries[key] = (weakref.ref(defn, forget), value)

    def __len__(self) -> int:
        return len(self._entries)


_CACHE: DefinitionMemo[tuple[tuple[str, ...], ...]] = DefinitionMemo()


def seed_navigated(defn: OrchestrationDefinition, paths: tuple[tuple[str, ...], ...]) -> None:
    """Tell :func:`navigated_cached` what ``defn`` navigates when it is known cheaper than
    by walking it (a generated plan of thousands of steps copied from a few templates)."""
    _CACHE.put(defn, paths)


def navigated_cached(defn: OrchestrationDefinition) -> tuple[tuple[str, ...], ...]:
    """:func:`navigated`, once per definition object (deployed versions are parsed once
    and kept, so this is one dict lookup per decision)."""
    hit = _CACHE.get(defn)
    if hit is not None:
        return hit
    paths = navigated(defn)
    _CACHE.put(defn, paths)
    return paths
