"""None parameters take sqlite3's adapter registry's short path (see
:mod:`baton.store.sql.dialects`) and are still stored as NULL."""

from __future__ import annotations

import sqlite3

import baton.store.sql.dialects  # noqa: F401  (registers the adapter)


def test_none_has_an_adapter_that_is_one_c_call_returning_none() -> None:
    adapter = sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)]
    assert type(adapter).__name__ == "builtin_function_or_method"  # no Python frame per value
    assert adapter(None) is None


def test_a_none_parameter_is_stored_as_null() -> None:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (a, b TEXT, c INTEGER)")
    db.execute("INSERT INTO t VALUES (?, ?, ?)", (None, None, 1))
    db.executemany("INSERT INTO t VALUES (:a, :b, :c)", [{"a": None, "b": "x", "c": None}])
    rows = db.execute("SELECT typeof(a), typeof(b), typeof(c), a, b, c FROM t").fetchall()
    db.close()
    assert rows == [("null", "null", "integer", None, None, 1),
                    ("null", "text", "null", None, "x", None)]
