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


def _by_hand(h: Hot, values: dict[str, Any]) -> Any:
    """A statement's parameters made step by step: the static binds under the call's
    values, each value in the statement's order, its processor applied."""
    values = {**h.static, **values}
    vals = [values[n] for n in h.names]
    for i, p in h.procs:
        vals[i] = p(vals[i])
    return tuple(vals) if h.positional else dict(zip(h.names, vals))


def _plain(params: Any) -> Any:
    """Parameters comparable: psycopg's Jsonb wrapper (no equality of its own) as its class
    and the object it wraps."""
    def one(v: Any) -> Any:
        return (type(v).__name__, v.obj) if hasattr(v, "obj") else v
    if isinstance(params, dict):
        return {k: one(v) for k, v in params.items()}
    return tuple(one(v) for v in params)


def _dialects() -> list[Any]:
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    return [DIALECT, PGDialect_psycopg(json_serializer=json_dumps, json_deserializer=json_loads)]


@pytest.mark.parametrize("dialect", _dialects(), ids=lambda d: d.name)
def test_each_statement_binds_as_made_by_hand(dialect: Any) -> None:
    """Each kind of statement the binder is chosen for (no processor, one, several;
    static binds; positional or by name) gives what it gives when made by hand."""
    item = {"id": "wi_1", "form": [{"name": "x"}], "data": None, "title": "t", "input": {"a": 1}}
    cases: list[tuple[Hot, dict[str, Any]]] = [
        (Hot(INSERT_ITEM, dialect, ["id"]), {"id": "wi_1"}),  # one name, no processor
        (Hot(INSERT_ITEM, dialect, ["id", "title"]), {"id": "wi_1", "title": "t"}),
        (Hot(INSERT_ITEM, dialect, ["id", "form"]), {"id": "wi_1", "form": [1]}),  # one
        (Hot(INSERT_ITEM, dialect, list(item)), item),  # several processors
        (Hot(st.update_item_hot(2, True), dialect, ["status", "data"]),  # static: version + 1
         {"status": "completed", "data": {"x": 1}, "_id": "wi_1", "_s0": "open",
          "_s1": "claimed", "_version": 3}),
        (Hot(st.GET_RUN, dialect), {"_id": "run_1"}),
    ]
    for h, values in cases:
        got = h.params(values)
        assert _plain(got) == _plain(_by_hand(h, values))
        assert type(got) is (tuple if h.positional else dict)
    assert cases[4][0].static  # (the case above does cover a static bind)


@pytest.mark.parametrize("dialect", _dialects(), ids=lambda d: d.name)
def test_each_row_reads_as_made_by_hand(dialect: Any) -> None:
    items = Hot(select(s.work_items), dialect)
    raw = [None] * len(items.keys)
    for i, k in enumerate(items.keys):
        raw[i] = '{"k": [1]}' if k in ("form", "data", "input", "routing") else f"v{i}"
    plain = Hot(select(s.runs.c.id, s.runs.c.seq), dialect)
    one = Hot(select(s.runs.c.id, s.runs.c.state), dialect)
    for h, row in ((items, raw), (plain, ["run_1", 4]), (one, ["run_1", '{"a": 2}'])):
        vals = list(row)
        for i, p in h.row_procs:
            vals[i] = p(vals[i])
        assert h.row(tuple(row)) == dict(zip(h.keys, vals))
    if dialect is DIALECT:
        assert len(items.row_procs) > 1 and len(one.row_procs) == 1 and not plain.row_procs
        assert one.row(("run_1", '{"a": 2}')) == {"id": "run_1", "state": {"a": 2}}
