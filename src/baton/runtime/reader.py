"""``ctx.records``: how a flow reads records other than its run's own (DESIGN §2.1: an
evaluation flow "may read other records").

Each call is one short read transaction of its own, made by the worker while the flow runs,
outside the transaction that commits the flow's result: what it returns is as committed at
that moment. A flow in a flow process asks through its pipe and the worker reads for it
(``runtime/flowpool.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from baton.definitions.checks import RESERVED_FIELDS
from baton.definitions.model import FieldDefinition
from baton.errors import BatonError, NotFound, ValidationError
from baton.flows import FIND_LIMIT
from baton.records.fields import coerce_fields
from baton.records.model import record_view

if TYPE_CHECKING:
    from baton.runtime.definitions import DefinitionRepo
    from baton.store.sql import SqlStore


class StoreRecords:
    """:class:`baton.flows.RecordReader` on a store: records typed by their object type."""

    def __init__(self, store: SqlStore, definitions: DefinitionRepo) -> None:
        self.store = store
        self.definitions = definitions

    def get(self, record_id: str) -> Mapping[str, Any] | None:
        if not isinstance(record_id, str):
            raise BatonError(f"ctx.records.get: a record id is text, got "
                             f"{type(record_id).__name__}")
        with self.store.read() as tx:
            row = tx.get_record_txn(record_id)
            if row is None:
                return None
            return record_view(row, self.definitions.object_type(row["object_type"], tx))

    def find(self, object_type: str, /, *, limit: int = FIND_LIMIT,
             **field_values: Any) -> list[Mapping[str, Any]]:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= FIND_LIMIT:
            raise BatonError(f"ctx.records.find: limit must be from 1 to {FIND_LIMIT}, "
                             f"got {limit!r}")
        with self.store.read() as tx:
            try:
                otype = self.definitions.object_type(object_type, tx)
            except NotFound as exc:
                raise BatonError(f"ctx.records.find: {exc}") from None
            known = {f.name: f for f in otype.fields}
            stored: dict[str, Any] = {}
            for name, value in field_values.items():
                field = known.get(name)
                if field is None:
                    hint = " (system fields cannot be searched)" if name in RESERVED_FIELDS \
                        else f"; its fields: {', '.join(sorted(known)) or 'none'}"
                    raise BatonError(f"ctx.records.find: {object_type} has no field "
                                     f"{name!r}{hint}")
                stored[name] = _as_stored(object_type, field, value)
            rows = tx.find_records_txn(object_type, stored, limit)
            return [record_view(row, otype) for row in rows]

    def scan(self, object_type: str, fields: Sequence[str]) -> list[Mapping[str, Any]]:
        """:class:`baton.ai.match.RecordScanner`: see :func:`scan`."""
        return scan(self, object_type, fields)


def _as_stored(object_type: str, field: FieldDefinition, value: Any) -> Any:
    """A value to search for, as a write would store it (a decimal as its exact string
    at the field's scale, a ref as its id); None finds the records where it is empty."""
    if value is None:
        return None
    try:
        return coerce_fields((field,), {field.name: value}, object_type, partial=True,
                             apply_defaults=False)[field.name]
    except ValidationError as exc:
        raise BatonError(f"ctx.records.find: {exc}") from None


SCAN_LIMIT = 50_000  # records an ``ai`` match step compares its text with, at most
SCAN_PAGE = 1_000


def scan(reader: StoreRecords, object_type: str, fields: Sequence[str]
         ) -> list[Mapping[str, Any]]:
    """Every record of ``object_type`` (``id`` and ``fields`` only), in one read
    transaction, page by page: the candidates of ``task: match`` (:mod:`baton.ai.match`).
    More than :data:`SCAN_LIMIT` is an error (matching would be slow and its answer
    arbitrary): narrow the object type."""
    with reader.store.read() as tx:
        try:
            otype = reader.definitions.object_type(object_type, tx)
        except NotFound as exc:
            raise BatonError(f"match: {exc}") from None
        known = {f.name for f in otype.fields}
        bad = [f for f in fields if f not in known]
        if bad:
            raise BatonError(f"match: {object_type} has no field(s) {', '.join(bad)}; its "
                             f"fields: {', '.join(sorted(known)) or 'none'}")
        out: list[Mapping[str, Any]] = []
        after: str | None = None
        while True:
            page = tx.page_records_txn(object_type, after, 0, SCAN_PAGE)
            for row in page.rows:
                view = record_view(row, otype)
                out.append({"id": view["id"], **{f: view.get(f) for f in fields}})
            if len(out) > SCAN_LIMIT:
                raise BatonError(f"match: more than {SCAN_LIMIT} {object_type} records to "
                                 "compare with")
            if page.next is None:
                return out
            after = page.next
