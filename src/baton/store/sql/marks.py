"""What each transaction method means to a plan, declared where the method is written.

A :class:`~baton.store.sql.plan.PlanTx` works a commit out on a read snapshot: it must know,
for every method of :class:`~baton.store.sql.tx.SqlTx`, whether the method reads rows (and
which: the plan remembers them and refuses to read a row it wrote), makes a write the plan
can record and make again under the lock, or makes one it cannot. Those facts are declared
on the method itself with the decorators below, so a new table or method is written in one
place; ``PlanTx`` builds its wrappers from the declarations when it is defined. A method
without a declaration runs on the snapshot as it is (the appended and deferred writes,
which ``SqlTx`` buffers itself, and reads the plan need not check).

The decorators only attach the declaration: a plain ``SqlTx`` pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

ATTR = "__plan__"

# How a method names the rows it touches, from its first argument:
#   "id": one row's id; "ids": a sequence of ids; "parent": the id of the row they belong
#   to (a work item's run, a run's record); "row": a row to insert (its "id" and parent
#   column); "all": every row of the table.
By = Literal["id", "ids", "parent", "row", "all"]
# What a read returns: "row" (a row or None), "rows" (id -> row), "versions" (id -> the
# version column), "ids" (a list of ids, kept whole and compared again under the lock),
# "list" (a page of rows, not remembered: such a read is refused once the table is written).
Returns = Literal["row", "rows", "versions", "ids", "list"]


@dataclass(frozen=True, slots=True)
class Read:
    table: str
    by: By
    returns: Returns


@dataclass(frozen=True, slots=True)
class Write:
    """A write the plan records now and makes again at replay (as ``replay``, another
    method of the same arguments, when given). ``now``: a method run at once on the plan
    whose result is returned (the share of the write the plan can make in its own
    buffers); else ``result`` is returned."""

    table: str | None
    by: By | None = None
    replay: str | None = None
    now: str | None = None
    result: Any = None


@dataclass(frozen=True, slots=True)
class Refuse:
    """A write a plan cannot defer: the plan is abandoned (:class:`PlanAborted`)."""

    reason: str


Mark = Read | Write | Refuse


def reads(table: str, by: By, returns: Returns) -> Callable[[F], F]:
    return _mark(Read(table, by, returns))


def writes(table: str | None, by: By | None = None, *, replay: str | None = None,
           now: str | None = None, result: Any = None) -> Callable[[F], F]:
    return _mark(Write(table, by, replay, now, result))


def refused(reason: str) -> Callable[[F], F]:
    return _mark(Refuse(reason))


def _mark(mark: Mark) -> Callable[[F], F]:
    def attach(fn: F) -> F:
        setattr(fn, ATTR, mark)
        return fn
    return attach
