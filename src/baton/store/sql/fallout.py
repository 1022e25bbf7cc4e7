"""The steps in fallout as rows of their own (``baton_fallout``, migration 31).

After an outage tens of thousands of steps can wait in fallout; the Fallout list, its
totals and its groups read these rows (an index range for a page, one aggregate for the
totals and groups) instead of every such run's state.

The rows are written by the run writer (:class:`~baton.store.sql.tx.SqlTx`), in the
transaction of the run's rows: the rows of every run it writes are deleted (one statement
per batch of runs: an index probe per run), and those of the runs whose ``attention`` holds
the fallout bit (a run in progress with a step in fallout) written again, its steps in
fallout as written. So a run whose last step in fallout was resolved, or that ended, has
none. (A trigger on ``baton_runs`` did the delete before migration 33: every run write
fired it, about 6 % of the CPU per triage run on SQLite.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, tuple_

from baton.engine.state import SplitSteps
from baton.store import schema as s
from baton.store.base import FalloutGroup

FALLOUT_BIT = 1  # baton.engine.attention.FALLOUT (the store does not import the engine's rules)
STEP_FALLOUT = "fallout"
_CHUNK = 500  # run ids in one statement's IN list


def group_message(error: Any) -> str:
    """A step's error as the Fallout page groups it: its message, else its text (a NUL,
    which PostgreSQL's text cannot hold, as U+FFFD)."""
    text = (error.get("message") if isinstance(error, dict) else None) or str(error)
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def fallout_rows(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``baton_fallout`` rows of a run row about to be written (its whole state: not
    yet split into its step rows): its steps in fallout, in the run's order."""
    steps = row["state"].get("steps")
    if isinstance(steps, SplitSteps):  # (a plan's run: its steps, not their documents)
        items: Iterable[tuple[str, Any, Any]] = (
            (name, sr.status, sr.error) for name, sr in steps.steps.items())
    else:
        items = ((name, doc.get("status"), doc.get("error"))
                 for name, doc in (steps or {}).items())
    rid, created, orch = row["id"], row["created_at"], row["orchestration"]
    return [{"run_id": rid, "step": name, "pos": pos, "created_at": created,
             "orchestration": orch, "message": group_message(error)}
            for pos, (name, status, error) in enumerate(items) if status == STEP_FALLOUT]


def with_fallout(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows (of runs about to be written) whose run has a step in fallout."""
    return [r for r in rows if (r.get("attention") or 0) & FALLOUT_BIT]


class FalloutSql:
    """``baton_fallout``: kept with the run rows (:meth:`_sync_fallout_txn`), and read."""

    conn: Connection

    def _sync_fallout_txn(self, written: Sequence[dict[str, Any]],
                          fallout: Sequence[dict[str, Any]]) -> None:
        """Keep the fallout rows of the runs just ``written`` (their rows as written, whole:
        not yet split into their step rows): every one's rows deleted, those of the runs in
        ``fallout`` (:func:`with_fallout` of them) written again, their steps in fallout."""
        f = s.fallout
        ids = [r["id"] for r in written]
        for i in range(0, len(ids), _CHUNK):
            self.conn.execute(delete(f).where(f.c.run_id.in_(ids[i:i + _CHUNK])))
        new_rows = [e for r in fallout for e in fallout_rows(r)]
        if new_rows:
            self.conn.execute(insert(f), new_rows)

    def count_fallout_txn(self) -> int:
        """How many steps are in fallout."""
        return int(self.conn.execute(select(func.count()).select_from(s.fallout)).scalar_one())

    def fallout_groups_txn(self) -> list[FalloutGroup]:
        """Every step in fallout counted by orchestration, step and error message."""
        f = s.fallout
        q = (select(f.c.orchestration, f.c.step, f.c.message, func.count(), func.min(f.c.run_id))
             .group_by(f.c.orchestration, f.c.step, f.c.message))
        return [FalloutGroup(o, st, m, int(n), first)
                for o, st, m, n, first in self.conn.execute(q)]

    def fallout_by_run_txn(self, offset: int, limit: int) -> list[tuple[str, str]]:
        """``(run_id, step)`` of the steps in fallout, the oldest run first and each run's
        steps in its order (``ix_fallout_created``): ``limit`` from ``offset``."""
        f = s.fallout
        q = (select(f.c.run_id, f.c.step).order_by(f.c.created_at, f.c.run_id, f.c.pos)
             .limit(limit).offset(offset))
        return [(r, st) for r, st in self.conn.execute(q)]

    def fallout_by_step_txn(self, after: tuple[str, str] | None, limit: int, *,
                            group: tuple[str, str, str] | None = None
                            ) -> list[tuple[str, str]]:
        """``(run_id, step)`` of the steps in fallout by run id and step (the primary
        key), ``limit`` after ``after``; of one group (orchestration, step, message) when
        given."""
        f = s.fallout
        q = select(f.c.run_id, f.c.step).order_by(f.c.run_id, f.c.step).limit(limit)
        if after is not None:
            q = q.where(tuple_(f.c.run_id, f.c.step) > tuple_(*after))
        if group is not None:
            q = q.where(f.c.orchestration == group[0], f.c.step == group[1],
                        f.c.message == group[2])
        return [(r, st) for r, st in self.conn.execute(q)]

    def count_fallout_group_txn(self, group: tuple[str, str, str]) -> int:
        f = s.fallout
        q = select(func.count()).select_from(f).where(
            f.c.orchestration == group[0], f.c.step == group[1], f.c.message == group[2])
        return int(self.conn.execute(q).scalar_one())
