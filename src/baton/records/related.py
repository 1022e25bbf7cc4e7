"""Related records for expressions: the record view ``decide()`` and trigger conditions
see, with each ref field the definition navigates (``definitions/refs.py``) replaced by the
record it names, read now.

A navigated ref field becomes that record's view (its fields, ``id``, ``created_at``,
``updated_at``, ``version``), so ``record.account.name`` is the Account's name and
``record.account.id`` its id. A ref that names no record (deleted, or not checked on write)
becomes ``{"id": ...}``: its fields are not there yet, and a condition reading them is
false for now, like any missing value. An empty ref stays empty. Only the paths the
definition reads are fetched, one level at a time (one statement per level).

Related records are read, not locked: a condition is evaluated again when the run's own
record or one of its steps changes, not when a related record does (as in Salesforce).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from baton.definitions.model import ObjectTypeDefinition, OrchestrationDefinition
from baton.definitions.refs import navigated_cached
from baton.errors import NotFound
from baton.records.model import record_view
from baton.store.ports import Transaction

ObjectTypes = Callable[[str], ObjectTypeDefinition]


def with_related_txn(tx: Transaction, defn: OrchestrationDefinition,
                     view: Mapping[str, Any] | None, object_type: str | None,
                     object_types: ObjectTypes) -> Mapping[str, Any] | None:
    """``view`` (a record of ``object_type``) with the related records ``defn``'s
    expressions read (a new mapping); ``view`` itself when they read none (the common
    case costs one dict lookup)."""
    if view is None or object_type is None:
        return view
    paths = navigated_cached(defn)
    if not paths:
        return view
    out = dict(view)
    _fill_txn(tx, [(out, object_type, ())], paths, object_types)
    return out


def _fill_txn(tx: Transaction, nodes: Sequence[tuple[dict[str, Any], str, tuple[str, ...]]],
              paths: Sequence[tuple[str, ...]], object_types: ObjectTypes) -> None:
    """Replace, in each node (a record view of its type, reached by its path), the ref
    fields a path follows from there; then the next level, in the records read."""
    wanted: list[tuple[dict[str, Any], str, str, tuple[str, ...]]] = []
    for node, otype, at in nodes:
        try:
            fields = {f.name: f for f in object_types(otype).fields}
        except NotFound:
            continue
        depth = len(at)
        for name in sorted({p[depth] for p in paths if len(p) > depth and p[:depth] == at}):
            f = fields.get(name)
            if f is not None and f.type == "ref" and f.object and isinstance(node.get(name), str):
                wanted.append((node, name, f.object, (*at, name)))
    if not wanted:
        return
    rows = tx.get_records_txn(sorted({node[name] for node, name, _, _ in wanted}))
    following: list[tuple[dict[str, Any], str, tuple[str, ...]]] = []
    for node, name, target, path in wanted:
        rid = node[name]
        row = rows.get(rid)
        if row is None or row["object_type"] != target:
            node[name] = {"id": rid}  # names no record of its type: its fields are missing
            continue
        related = record_view(row, object_types(target))
        node[name] = related
        following.append((related, target, path))
    if following:
        _fill_txn(tx, following, paths, object_types)
