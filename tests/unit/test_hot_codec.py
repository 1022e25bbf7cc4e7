"""The hot path's JSON columns on SQLite are encoded and decoded by the store's codec
directly (``statements._sqlite_json_bind`` / ``_sqlite_json_result``), not through
SQLAlchemy's processors: they must give exactly what those give, value for value."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import JSON, literal_column, null, select
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

from baton.store import schema as s
from baton.store.codec import json_dumps, json_loads
from baton.store.sql import statements as st
from baton.store.sql.statements import INSERT_ITEM, Hot

DIALECT = SQLiteDialect_pysqlite(json_serializer=json_dumps, json_deserializer=json_loads)
BIND = s.JsonDocument()._cached_bind_processor(DIALECT)
RESULT = s.JsonDocument().dialect_impl(DIALECT)._cached_result_processor(DIALECT, None)

VALUES: list[Any] = [
    None, {}, [], {"a": 1, "b": [1, 2.5, None, True]}, [{"x": "é\u2028"}], "text", 0, -3,
    2**63 - 1, 2**70, 1.5, True, False, {1: "int key"}, {"nested": {"deep": ["ok"]}},
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_a_value_is_encoded_as_sqlalchemy_encodes_it(value: Any) -> None:
    assert st._sqlite_json_bind(value) == BIND(value)


def test_what_is_not_plain_json_goes_through_sqlalchemy() -> None:
    assert st._sqlite_json_bind(JSON.NULL) == BIND(JSON.NULL) == "null"
    assert st._sqlite_json_bind(null()) is BIND(null()) is None
    # (a Decimal is refused by orjson and json alike: the same error either way)
    with pytest.raises(TypeError):
        BIND(Decimal("1.5"))
    with pytest.raises(TypeError):
        st._sqlite_json_bind(Decimal("1.5"))


@pytest.mark.parametrize("stored", [None, "null", "{}", '{"a": [1, 2.5, null]}', "[1]",
                                    '"s"', "12", b'{"b": 1}', 7, 2.5, "NaN"], ids=repr)
def test_a_stored_value_is_decoded_as_sqlalchemy_decodes_it(stored: Any) -> None:
    assert repr(st._sqlite_json_result(stored)) == repr(RESULT(stored))


def test_only_json_document_columns_on_sqlite_take_the_fast_path() -> None:
    h = Hot(INSERT_ITEM, DIALECT, ["id", "form", "data", "title"])
    assert {p for _, p in h.procs} == {st._sqlite_json_bind}
    assert [h.names[i] for i, _ in h.procs] == ["form", "data"]
    row = Hot(select(s.work_items), DIALECT)
    assert sorted(row.keys[i] for i, p in row.row_procs if p is st._sqlite_json_result) == [
        "data", "form", "input", "routing"]
    # A column of another type keeps SQLAlchemy's processor.
    plain = Hot(select(literal_column("'[1]'", JSON).label("j")), DIALECT)
    assert [p is st._sqlite_json_result for _, p in plain.row_procs] == [False]
    # Another dialect's codec: SQLAlchemy's processors.
    other = SQLiteDialect_pysqlite()
    assert st._sqlite_json_bind not in {p for _, p in Hot(INSERT_ITEM, other, ["id", "form"]).procs}


def test_parameters_come_in_the_statements_order() -> None:
    h = Hot(INSERT_ITEM, DIALECT, ["id", "form", "data"])
    got = h.params({"data": None, "id": "wi_1", "form": [{"name": "x"}]})
    assert got == ("wi_1", '[{"name":"x"}]', "null")
    one = Hot(select(s.runs).where(s.runs.c.id == st.bindparam("_id")), DIALECT)
    assert one.params({"_id": "run_1", "other": 1}) == ("run_1",)
