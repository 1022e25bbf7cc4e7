"""A record is shown with its object type's fields first, in the type's order (PostgreSQL's
jsonb sorts a record's keys; tests/integration/test_engine_backends.py shows it on both
stores)."""

from __future__ import annotations

from baton.definitions.model import FieldDefinition, ObjectTypeDefinition
from baton.records.model import in_field_order

FIELDS = (FieldDefinition("name", "string"), FieldDefinition("notes", "text"),
          FieldDefinition("data", "json"))


def test_in_field_order_puts_the_types_fields_first_then_the_rest_as_stored() -> None:
    otype = ObjectTypeDefinition("Thing", FIELDS)
    data = {"data": 1, "gone": 2, "name": "n", "older": 3}
    assert list(in_field_order(data, otype)) == ["name", "data", "gone", "older"]
    assert in_field_order(data, None) is data
