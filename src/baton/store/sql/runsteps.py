"""Split run states (state format 4): a large run's steps in rows of their own.

A run of more than :data:`~baton.engine.state.SPLIT_STEPS` steps (a plan's) is stored as
its document without ``steps`` (``"split": true``) plus one ``baton_run_steps`` row per
step. A commit writes the run row (its compare-and-set on ``seq`` serializes every writer
of the run, as before) and, in the same transaction, only the step rows that changed; a
read merges the rows back into the document, so every reader sees the document of format
3 it always saw (:meth:`baton.engine.state.Run.from_json` reads it as such).

Which steps changed is found by comparison, not by tracking mutations: each step's entry is
encoded at the write and compared with its text as stored. The store keeps those texts of
the runs it read last (:class:`StepsSeen`, keyed by run id and ``seq``): the step rows of a
run at a given ``seq`` are exactly the rows committed with that ``seq`` (they are written
only in the transaction that moves it), so a write that expects ``seq`` n compares with the
rows read at n, and its compare-and-set proves they are still those. Without them (a run
read elsewhere, a first split write) every step is written, the run's rows deleted first.
Comparing texts catches every change, however made (a step's SLA or a child entry changed
in place included), which a mark set on assignment would not.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Text, bindparam, select, type_coerce

from baton.engine.state import SPLIT_FORMAT, SPLIT_STEPS, STEP_KEYS, SplitSteps
from baton.store import schema as s
from baton.store.codec import json_dumps, json_loads

SEEN_RUNS = 32
SEEN_STEPS = 100_000
"""How many runs' step texts a store keeps (the most recently read or written), and how many
steps in all: a worker's batch touches a few large runs; a 1,500-step plan's texts are
~0.3 MB, so the store keeps ~20 MB at most however many plans are open."""

StepTexts = dict[str, tuple[int, str]]
"""A split run's step rows as stored: step -> (pos, the entry's JSON text)."""


class StepsSeen:
    """Per store: the step rows of the split runs it read last, by run id and ``seq``."""

    __slots__ = ("_lock", "_runs", "_steps", "cap", "cap_steps")

    def __init__(self, cap: int = SEEN_RUNS, cap_steps: int = SEEN_STEPS) -> None:
        self.cap, self.cap_steps = cap, cap_steps
        self._runs: dict[str, tuple[int, StepTexts]] = {}
        self._steps = 0
        self._lock = threading.Lock()

    def get(self, run_id: str, seq: int) -> StepTexts | None:
        """The run's step rows at ``seq``, if they are the ones this store read last."""
        found = self._runs.get(run_id)
        return found[1] if found is not None and found[0] == seq else None

    def put(self, run_id: str, seq: int, texts: StepTexts) -> None:
        with self._lock:
            runs = self._runs
            old = runs.pop(run_id, None)
            self._steps += len(texts) - (len(old[1]) if old is not None else 0)
            runs[run_id] = (seq, texts)
            while len(runs) > 1 and (len(runs) > self.cap or self._steps > self.cap_steps):
                self._steps -= len(runs.pop(next(iter(runs)))[1])


@dataclass(slots=True)
class StepWrites:
    """What one run's write makes of its step rows."""

    run_id: str
    seq: int  # the run's seq once written
    base: StepTexts | None  # its rows as stored before, when known
    upserts: list[tuple[str, str, int, str]] = field(default_factory=list)  # run, step, pos, doc
    deletes: list[tuple[str, str]] = field(default_factory=list)  # (run, step) gone from the run
    delete_all: bool = False  # no rows as stored to compare with: rewrite them all

    def stored(self) -> StepTexts:
        """The run's step rows once these writes are made."""
        texts = dict(self.base) if self.base is not None and not self.delete_all else {}
        for _rid, step in self.deletes:
            texts.pop(step, None)
        for _rid, step, pos, text in self.upserts:
            texts[step] = (pos, text)
        return texts


VERIFY_CHANGED = False
"""Check writes of the changed steps alone against the comparison of every step (an
AssertionError when they differ): the test suite sets it, so a change made in place that
no one marked (:meth:`baton.engine.state.StepRun.touch`) fails a test, not a run.

A sample of the writes, since the check encodes every step (O(steps) per write, O(steps²)
per plan): the first ``VERIFY_FIRST`` writes of a run's marks, then one in
``VERIFY_EVERY``, and the write that ends the run. A change no one marked stays unwritten
(its row differs from the run) until the step changes again, so a later check finds it."""
VERIFY_FIRST = 4
VERIFY_EVERY = 8


def _sampled(steps: SplitSteps, row: dict[str, Any]) -> bool:
    return (steps.nth < VERIFY_FIRST or steps.nth % VERIFY_EVERY == 0
            or row.get("status") != "in_progress")


def split_row(row: dict[str, Any], base: StepTexts | None, *, insert: bool = False,
              expected: int | None = None) -> tuple[dict[str, Any], StepWrites] | None:
    """A run row to write, split if its run has more than SPLIT_STEPS steps: the row with
    the document without its steps, and the step rows to write: those that differ from
    ``base``, the rows stored at the seq the write expects (``expected``); all of them
    when it is None (the run's rows deleted first, unless it is a new run: ``insert``).
    None: write the row as it is.

    When the run knows which of its steps changed since the rows stored at ``expected``
    (:class:`~baton.engine.state.SplitSteps`), only those are encoded and compared: O(what
    changed), not O(steps); else (a run read elsewhere, a first split write, a step
    removed) every step is."""
    state = row["state"]
    steps = state.get("steps")
    if steps is None or len(steps) <= SPLIT_STEPS:
        return None
    rid = row["id"]
    head = {k: v for k, v in state.items() if k != "steps"}
    head["format"] = SPLIT_FORMAT
    head["split"] = True
    out = StepWrites(rid, row["seq"], base)
    if isinstance(steps, SplitSteps):
        if steps.changed is not None and base is not None and steps.seq == expected:
            ups = _changed_rows(rid, steps, base)
            if ups is not None:
                out.upserts = ups
                if VERIFY_CHANGED and _sampled(steps, row):
                    _verify(out, steps.docs(), base)
                return {**row, "state": head}, out
        steps = steps.docs()
    ups = out.upserts
    if base is None:
        out.delete_all = not insert
        for pos, (name, doc) in enumerate(steps.items()):
            ups.append((rid, name, pos, json_dumps(doc)))
    else:
        get = base.get
        for pos, (name, doc) in enumerate(steps.items()):
            text = json_dumps(doc)
            was = get(name)
            if was is None or was[1] != text or was[0] != pos:
                ups.append((rid, name, pos, text))
        if len(base) + len(ups) > len(steps):  # (else every stored step is still there)
            out.deletes = [(rid, n) for n in base if n not in steps]
    return {**row, "state": head}, out


def _changed_rows(rid: str, steps: SplitSteps, base: StepTexts
                  ) -> list[tuple[str, str, int, str]] | None:
    """The rows of the steps marked changed that differ from ``base`` (a step's position
    is its stored one, an added step's the next free one: no step was removed), or None
    when ``base`` is not what the marks are relative to."""
    changed, added = steps.changed, steps.added
    assert changed is not None
    n = len(base)
    if len(steps) != n + len(added):
        return None
    new = {name: n + i for i, name in enumerate(added)}
    ups = []
    get = base.get
    for name in changed:
        was = get(name)
        if was is None:
            pos = new.get(name)
            if pos is None:
                return None
        else:
            if name in new:
                return None
            pos = was[0]
        doc = steps.get(name)
        if doc is None:
            return None
        text = json_dumps(doc)
        if was is None or was[1] != text:
            ups.append((rid, name, pos, text))
    ups.sort(key=_pos)  # (in the run's order, as a comparison writes them)
    return ups


def _pos(row: tuple[str, str, int, str]) -> int:
    return row[2]


def _canonical(doc: Any) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def _verify(out: StepWrites, docs: dict[str, Any], base: StepTexts) -> None:
    """The comparison of every step (what :func:`split_row` does without marks) gives the
    rows the marks gave."""
    want = {}
    for pos, (name, doc) in enumerate(docs.items()):
        text = json_dumps(doc)
        was = base.get(name)
        if was is None or was[1] != text or was[0] != pos:
            want[name] = (pos, text)
    gone = [n for n in base if n not in docs]
    got = {name: (pos, text) for _r, name, pos, text in out.upserts}
    for name in [n for n in want if n not in got]:  # PostgreSQL's JSONB orders keys its way:
        was = base[name]  # (a text that differs by its keys' order alone is no change)
        if was[0] == want[name][0] and _canonical(json_loads(was[1])) == _canonical(docs[name]):
            del want[name]
    if want != got or gone:
        missed = sorted(set(want) - set(got))
        raise AssertionError(f"run {out.run_id}: the steps marked changed are not the steps "
                             f"that changed (unmarked: {missed[:5]}, extra: "
                             f"{sorted(set(got) - set(want))[:5]}, removed: {gone[:5]}); "
                             "a change made in place needs StepRun.touch()")


def merge_steps(state: dict[str, Any], rows: list[tuple[str, int, Any]], texts: bool
                ) -> StepTexts:
    """Put a split run's step rows (step, pos, doc; in ``pos`` order) back into its document
    as ``steps``; returns them as stored (:data:`StepTexts`). ``texts``: each doc is its
    JSON text as stored (SQLite), else a decoded value (PostgreSQL's JSONB, whose key order
    is its own: the entry is put back in the order it is written in, and its text is that
    of the entry as written)."""
    if texts:
        docs = json_loads("[" + ",".join(r[2] for r in rows) + "]")
        state["steps"] = {r[0]: d for r, d in zip(rows, docs, strict=True)}
        return {r[0]: (r[1], r[2]) for r in rows}
    steps: dict[str, Any] = {}
    stored: StepTexts = {}
    for name, pos, doc in rows:
        entry = {k: doc[k] for k in STEP_KEYS if k in doc}
        if len(entry) != len(doc):  # (a key this code does not know: kept, after)
            entry.update(doc)
        steps[name] = entry
        stored[name] = (pos, json_dumps(entry))
    state["steps"] = steps
    return stored


def read_steps_stmt(n: int, dialect: str) -> Any:
    """The step rows of ``n`` runs (``_i0``…), each with its run's ``seq`` read in the same
    statement (one snapshot: PostgreSQL reads each statement at its own), in ``pos`` order.
    On SQLite the doc comes as its text (decoded in one call per run, and compared as is)."""
    st, r = s.run_steps, s.runs
    doc = type_coerce(st.c.doc, Text) if dialect == "sqlite" else st.c.doc
    return (select(st.c.run_id, st.c.step, st.c.pos, doc.label("doc"), r.c.seq)
            .join_from(st, r, r.c.id == st.c.run_id)
            .where(st.c.run_id.in_([bindparam(f"_i{i}") for i in range(n)]))
            .order_by(st.c.run_id, st.c.pos))


def step_rows_stmt(step: str, n: int) -> Any:
    """One step's rows (``step``) of ``n`` runs whose document is split."""
    st, r = s.run_steps, s.runs
    return (select(st.c.run_id, st.c.doc, r.c.state[("split",)].label("split"))
            .join_from(st, r, r.c.id == st.c.run_id)
            .where(st.c.step == step,
                   st.c.run_id.in_([bindparam(f"_i{i}") for i in range(n)])))


# Written on the DB-API cursor with the doc already encoded (it was, to be compared).
_UPSERT = {
    "sqlite": "INSERT INTO baton_run_steps (run_id, step, pos, doc) VALUES (?, ?, ?, ?) "
              "ON CONFLICT (run_id, step) DO UPDATE SET pos = excluded.pos, doc = excluded.doc",
    "postgresql": "INSERT INTO baton_run_steps (run_id, step, pos, doc) "
                  "VALUES (%s, %s, %s, CAST(%s AS JSONB)) ON CONFLICT (run_id, step) "
                  "DO UPDATE SET pos = EXCLUDED.pos, doc = EXCLUDED.doc",
}
_DELETE_ALL = {"sqlite": "DELETE FROM baton_run_steps WHERE run_id = ?",
               "postgresql": "DELETE FROM baton_run_steps WHERE run_id = %s"}
_DELETE_ONE = {"sqlite": "DELETE FROM baton_run_steps WHERE run_id = ? AND step = ?",
               "postgresql": "DELETE FROM baton_run_steps WHERE run_id = %s AND step = %s"}


def statements(writes: list[StepWrites], dialect: str) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The executemany statements that make ``writes``: deletes first, then one upsert."""
    out: list[tuple[str, list[tuple[Any, ...]]]] = []
    wipe = [(w.run_id,) for w in writes if w.delete_all]
    if wipe:
        out.append((_DELETE_ALL[dialect], wipe))
    gone = [d for w in writes for d in w.deletes]
    if gone:
        out.append((_DELETE_ONE[dialect], gone))
    ups = [u for w in writes for u in w.upserts]
    if ups:
        out.append((_UPSERT[dialect], ups))
    return out
