"""Fixtures the store contract tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from baton.store.sql import SqlStore


@pytest.fixture
def store(db_url: str) -> Iterator[SqlStore]:
    """A store on a fresh, migrated database of each backend (``db_url``'s parameters)."""
    st = SqlStore(db_url)
    st.migrate()
    yield st
    st.close()
