"""Shell completion of the names and ids a user types that come from the project.

``baton --install-completion`` (Typer's) installs a script that asks ``baton`` itself for
the candidates on each TAB (``_BATON_COMPLETE=complete_bash`` and the words so far in the
environment). For definition names, run, record and work item ids and user names, the
functions here read the project's database: a SQLite file only, opened read-only with the
stdlib's ``sqlite3`` (no Engine, no migration), a short busy timeout, a few dozen rows by
an index. A shell waits on them, so they never say anything: no project, no database yet,
PostgreSQL (a server away would keep the shell waiting), a locked file or an older schema
complete nothing, and the shell goes on as it would without them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

LIMIT = 50  # candidates offered at most (the newest ids first)
BUSY_TIMEOUT_S = 0.2  # a database a writer holds: complete nothing rather than wait
TOP = "\U0010ffff"  # above every character: ``id >= prefix AND id < prefix + TOP``

Candidates = list[str]


def _database(ctx: Any) -> str | None:
    """The SQLite file the command line's ``--project``/``--db`` (or the folder, or
    ``BATON_DB``) names, when it exists; None otherwise."""
    from baton.cli.context import State
    from baton.store.lean import sqlite_path

    params = ctx.find_root().params if ctx is not None else {}
    state = State()
    state.project_dir, state.db = params.get("project"), params.get("db")
    if state.find_project() is None:
        return None
    path = sqlite_path(state.database_url())
    return path if path is not None and os.path.isfile(path) else None


def _query(ctx: Any, sql: str, params: Sequence[Any]) -> Candidates:
    """The first column of ``sql``'s rows, or nothing at all on any error."""
    import sqlite3  # (here: every command imports this module, few complete)
    from urllib.parse import quote

    try:
        path = _database(ctx)
        if path is None:
            return []
        conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True,
                               timeout=BUSY_TIMEOUT_S)
        try:
            return [str(r[0]) for r in conn.execute(sql, tuple(params)) if r[0] is not None]
        finally:
            conn.close()
    except Exception:  # noqa: BLE001 - a shell is waiting: complete nothing, say nothing
        return []


def _ids(table: str, prefix: str, where: str = "", params: Sequence[Any] = ()) -> Callable[
        [Any, str], Candidates]:
    """Completion of ids of ``table`` (``run_...``) that start with what is typed, newest
    first (ids sort by time): a range on the primary key, never a scan."""
    def complete(ctx: Any, incomplete: str) -> Candidates:
        typed = incomplete or prefix
        extra = f" AND {where}" if where else ""
        return _query(ctx, f"SELECT id FROM {table} WHERE id >= ? AND id < ?{extra} "
                           f"ORDER BY id DESC LIMIT {LIMIT}", (typed, typed + TOP, *params))
    return complete


def _names(sql: str, *params: Any) -> Callable[[Any, str], Candidates]:
    def complete(ctx: Any, incomplete: str) -> Candidates:
        return [n for n in _query(ctx, sql, params) if n.startswith(incomplete)]
    return complete


# (Typer passes a completion function ``ctx`` and ``incomplete`` by these names.)
def run_ids(ctx: Any, incomplete: str) -> Candidates:
    """Run ids."""
    return _ids("baton_runs", "run_")(ctx, incomplete)


def record_ids(ctx: Any, incomplete: str) -> Candidates:
    """Record ids."""
    return _ids("baton_records", "rec_")(ctx, incomplete)


def work_item_ids(ctx: Any, incomplete: str) -> Candidates:
    """Work item ids (any status: ``work show`` of a completed one too)."""
    return _ids("baton_work_items", "wi_")(ctx, incomplete)


def open_work_item_ids(ctx: Any, incomplete: str) -> Candidates:
    """Work item ids of the items still open or claimed (those a person acts on)."""
    return _ids("baton_work_items", "wi_", "status IN ('open', 'claimed')")(ctx, incomplete)


def fallout_ids(ctx: Any, incomplete: str) -> Candidates:
    """``RUN_ID:STEP`` of the steps in fallout, newest run first: the runs needing attention
    for a fallout (the partial index of migration 13: few rows), their steps read from the
    run's document or, for a split run, its step rows."""
    found = _query(ctx, f"""
        SELECT id FROM (
          SELECT r.id || ':' || s.key AS id FROM baton_runs r, json_each(r.state, '$.steps') s
           WHERE r.attention IN (1, 3) AND json_extract(s.value, '$.status') = 'fallout'
          UNION ALL
          SELECT r.id || ':' || w.step FROM baton_runs r
            JOIN baton_run_steps w ON w.run_id = r.id
           WHERE r.attention IN (1, 3) AND json_extract(w.doc, '$.status') = 'fallout')
        ORDER BY id DESC LIMIT {LIMIT * 4}""", ())
    return [f for f in found if f.startswith(incomplete)][:LIMIT]


def open_incident_ids(ctx: Any, incomplete: str) -> Candidates:
    """Ids of the open incidents (those a retry or dismissal acts on)."""
    return _ids("baton_incidents", "inc_", "status = 'open'")(ctx, incomplete)


def orchestrations(ctx: Any, incomplete: str) -> Candidates:
    """Names of the deployed orchestrations."""
    return _names("SELECT DISTINCT name FROM baton_definitions WHERE kind = ? ORDER BY name",
                  "orchestration")(ctx, incomplete)


def object_types(ctx: Any, incomplete: str) -> Candidates:
    """Names of the deployed object types."""
    return _names("SELECT DISTINCT name FROM baton_definitions WHERE kind = ? ORDER BY name",
                  "object")(ctx, incomplete)


def definitions(ctx: Any, incomplete: str) -> Candidates:
    """Names of the deployed definitions of the kind ``--kind`` names (any kind without)."""
    kind = ctx.params.get("kind") if ctx is not None else None
    if kind:
        return _names("SELECT DISTINCT name FROM baton_definitions WHERE kind = ? "
                      "ORDER BY name", kind)(ctx, incomplete)
    return _names("SELECT DISTINCT name FROM baton_definitions ORDER BY name")(ctx, incomplete)


def connections(ctx: Any, incomplete: str) -> Candidates:
    """Names of the deployed connections."""
    return _names("SELECT DISTINCT name FROM baton_definitions WHERE kind = ? ORDER BY name",
                  "connection")(ctx, incomplete)


def users(ctx: Any, incomplete: str) -> Candidates:
    """User names."""
    return _names("SELECT name FROM baton_users ORDER BY name")(ctx, incomplete)
